//! What the CLI's scenario tests share.

use std::path::PathBuf;

/// A path of the tree under test, found at run time (see `statekit_tests::fixtures`).
pub fn repo(relative: &str) -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    package.join("..").join(relative)
}
