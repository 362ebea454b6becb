//! Trace decoding: any bytes are read record by record to the footer or to an error, never a
//! panic or an allocation beyond the file. The target appends a valid checksum, so that the
//! fuzzer explores the record decoder behind the up-front checksum check.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use statekit_bench::trace::TraceReader;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile_in_shm();
    let crc = crc32c::crc32c(data);
    file.1.write_all(data).unwrap();
    file.1.write_all(&crc.to_le_bytes()).unwrap();
    drop(file.1);
    if let Ok(mut reader) = TraceReader::open(&file.0) {
        while let Ok(Some(_)) = reader.next_record() {}
    }
    let _ = std::fs::remove_file(&file.0);
});

fn tempfile_in_shm() -> (std::path::PathBuf, std::fs::File) {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("statekit-fuzz-trace-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}
