//! The `statekit` command line (work in progress).

fn main() {}
