//! Workload profiles: any text parses or is an error naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statekit_bench::profile::Profile;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Profile::parse(std::path::Path::new("fuzz.toml"), &text) {
        assert!(e.to_string().contains("fuzz.toml"), "{e}");
    }
});
