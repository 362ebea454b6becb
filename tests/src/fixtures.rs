//! Where tests find their files: in the tree under test, located at run time.
//!
//! Cargo sets `CARGO_MANIFEST_DIR` for every test process it runs, pointing at the package
//! of the checkout being tested. The compile-time value of that variable (`env!`) is not used:
//! with a build cache shared between checkouts, cargo may run a test binary built in another
//! checkout, and a path baked into it would read that other tree's files.

use std::path::PathBuf;

/// This package's directory in the tree under test: `CARGO_MANIFEST_DIR` at run time, or
/// the working directory (cargo runs tests from the package directory) when the binary is
/// started by hand.
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default()
}

/// A file of `tests/data/` (listed, with its origin, in `tests/data/README.md`).
pub fn data(name: &str) -> PathBuf {
    package_dir().join("data").join(name)
}

/// A path relative to the repository's root, e.g. `profiles/daily-uv.toml`.
pub fn repo(relative: &str) -> PathBuf {
    package_dir().join("..").join(relative)
}
