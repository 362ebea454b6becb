//! Gadget trace import: any text converts to a statekit trace or is an error naming the
//! input, never a panic; a converted trace reads back to its footer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statekit_bench::trace::{import_gadget, GadgetImport, TraceReader};

fuzz_target!(|data: &[u8]| {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let input = dir.join(format!("statekit-fuzz-gadget-{}.log", std::process::id()));
    let output = dir.join(format!(
        "statekit-fuzz-gadget-{}.sktrace",
        std::process::id()
    ));
    std::fs::write(&input, data).unwrap();
    match import_gadget(&input, &output, GadgetImport::default()) {
        Ok(_) => {
            let mut reader = TraceReader::open(&output).expect("an imported trace opens");
            while reader
                .next_record()
                .expect("an imported trace reads")
                .is_some()
            {}
        }
        Err(e) => assert!(e.to_string().contains("statekit-fuzz-gadget"), "{e}"),
    }
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
});
