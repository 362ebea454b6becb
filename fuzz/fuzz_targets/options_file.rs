//! RocksDB OPTIONS files (and statekit's per-state sections): any text parses or is an error
//! naming the file, never a panic; what parses validates or is refused, and writes back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statekit_backend::rocksdb_config::RocksDbConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match RocksDbConfig::from_options_str(&text, "FUZZ-OPTIONS") {
        Ok(config) => {
            if config.validate().is_ok() {
                let _ = config.to_options_string();
            }
        }
        Err(e) => assert!(e.to_string().contains("FUZZ-OPTIONS"), "{e}"),
    }
});
