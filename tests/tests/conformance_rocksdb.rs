//! The conformance suite and the model test against the RocksDB backend.
#![cfg(feature = "rocksdb")]
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, OnceLock};

use statekit_backend::rocksdb::{MemoryBudget, RocksDbBackend, RocksDbResources, RocksDbSettings};
use statekit_backend::{InstanceConfig, Result};

struct RocksDb {
    dir: tempfile::TempDir,
}

/// One budget for the whole test process, as in production: every instance of every test
/// shares the cache and the write buffer manager.
fn resources() -> Arc<RocksDbResources> {
    static SHARED: OnceLock<Arc<RocksDbResources>> = OnceLock::new();
    SHARED
        .get_or_init(|| RocksDbResources::new(MemoryBudget::new(128 << 20)).unwrap())
        .clone()
}

impl statekit_tests::BackendFactory for RocksDb {
    type Backend = RocksDbBackend;

    fn new() -> Self {
        RocksDb {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn open(&self, config: InstanceConfig) -> Result<RocksDbBackend> {
        RocksDbBackend::open(config, RocksDbSettings::new(self.dir.path(), resources()))
    }
}

statekit_tests::conformance_suite!(RocksDb);

/// The same suite with small range deletes written as point deletes.
mod point_deletes {
    use super::*;
    use statekit_backend::rocksdb::RocksDbConfig;

    struct PointDeletes(RocksDb);

    impl statekit_tests::BackendFactory for PointDeletes {
        type Backend = RocksDbBackend;

        fn new() -> Self {
            PointDeletes(RocksDb::new())
        }

        fn open(&self, config: InstanceConfig) -> Result<RocksDbBackend> {
            let mut rocksdb = RocksDbConfig::default();
            rocksdb.backend.point_delete_limit = Some(64);
            let settings =
                RocksDbSettings::new(self.0.dir.path(), resources()).with_config(rocksdb);
            RocksDbBackend::open(config, settings)
        }
    }

    statekit_tests::conformance_suite!(PointDeletes);
}

/// The same suite with every key/value state's memtable a hash of skip lists: reverse and
/// whole-state scans, restores and checkpoints must read the same through it.
mod hash_memtables {
    use super::*;
    use statekit_backend::rocksdb::RocksDbConfig;

    struct HashMemtables(RocksDb);

    impl statekit_tests::BackendFactory for HashMemtables {
        type Backend = RocksDbBackend;

        fn new() -> Self {
            HashMemtables(RocksDb::new())
        }

        fn open(&self, config: InstanceConfig) -> Result<RocksDbBackend> {
            let mut rocksdb = RocksDbConfig::default();
            rocksdb.cf.hash_skiplist_buckets = Some(1024);
            rocksdb.db.allow_concurrent_memtable_write = Some(false);
            let settings =
                RocksDbSettings::new(self.0.dir.path(), resources()).with_config(rocksdb);
            RocksDbBackend::open(config, settings)
        }
    }

    statekit_tests::conformance_suite!(HashMemtables);
}
