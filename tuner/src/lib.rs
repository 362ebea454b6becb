//! The statekit tuner: will derive RocksDB settings from a workload profile and the machine; nothing is built here yet.
