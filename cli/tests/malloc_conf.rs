//! The `statekit` tool's allocator is jemalloc in every build, and it reads `MALLOC_CONF`:
//! the harness tunes each run's allocator through that variable (background purging, huge
//! pages for the memory backend), and reports say so. A build without RocksDB once linked a
//! prefixed jemalloc that read only `_RJEM_MALLOC_CONF`, so those settings were silently
//! ignored.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::process::Command;

#[test]
fn the_allocator_reads_malloc_conf() {
    let output = Command::new(env!("CARGO_BIN_EXE_statekit"))
        .arg("--version")
        .env("MALLOC_CONF", "stats_print:true")
        .env_remove("_RJEM_MALLOC_CONF")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // jemalloc prints its statistics at exit when MALLOC_CONF asks it to.
    assert!(
        stderr.contains("jemalloc statistics"),
        "MALLOC_CONF was not read:\n{stderr}"
    );
}
