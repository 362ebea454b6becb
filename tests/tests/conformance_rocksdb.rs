//! The conformance suite and the model test against the RocksDB backend.
#![cfg(feature = "rocksdb")]
#![allow(clippy::unwrap_used)]

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use statekit_backend::rocksdb::{
    MemoryBudget, RocksDbBackend, RocksDbConfig, RocksDbResources, RocksDbSettings,
};
use statekit_backend::{InstanceConfig, Result};

/// One budget for the whole test process, as in production: every instance of every test
/// shares the cache and the write buffer manager.
fn resources() -> Arc<RocksDbResources> {
    static SHARED: OnceLock<Arc<RocksDbResources>> = OnceLock::new();
    SHARED
        .get_or_init(|| RocksDbResources::new(MemoryBudget::new(128 << 20)).unwrap())
        .clone()
}

/// The RocksDB configuration a suite runs with.
trait Configuration {
    fn config() -> RocksDbConfig;
}

/// RocksDB with configuration `C`, in a temporary directory of its own.
struct Configured<C> {
    dir: tempfile::TempDir,
    configuration: PhantomData<C>,
}

impl<C: Configuration> statekit_tests::BackendFactory for Configured<C> {
    type Backend = RocksDbBackend;

    fn new() -> Self {
        Configured {
            dir: tempfile::tempdir().unwrap(),
            configuration: PhantomData,
        }
    }

    fn open(&self, config: InstanceConfig) -> Result<RocksDbBackend> {
        let settings = RocksDbSettings::new(self.dir.path(), resources()).with_config(C::config());
        RocksDbBackend::open(config, settings)
    }
}

/// The backend's default configuration.
struct Defaults;

impl Configuration for Defaults {
    fn config() -> RocksDbConfig {
        RocksDbConfig::default()
    }
}

statekit_tests::conformance_suite!(Configured<Defaults>);

/// The same suite with small range deletes written as point deletes.
mod point_deletes {
    use super::*;

    struct PointDeletes;

    impl Configuration for PointDeletes {
        fn config() -> RocksDbConfig {
            let mut rocksdb = RocksDbConfig::default();
            rocksdb.backend.point_delete_limit = Some(64);
            rocksdb
        }
    }

    statekit_tests::conformance_suite!(Configured<PointDeletes>);
}

/// The same suite with every key/value state's memtable a hash of skip lists: reverse and
/// whole-state scans, restores and checkpoints must read the same through it.
mod hash_memtables {
    use super::*;

    struct HashMemtables;

    impl Configuration for HashMemtables {
        fn config() -> RocksDbConfig {
            let mut rocksdb = RocksDbConfig::default();
            rocksdb.cf.hash_skiplist_buckets = Some(1024);
            rocksdb.db.allow_concurrent_memtable_write = Some(false);
            rocksdb
        }
    }

    statekit_tests::conformance_suite!(Configured<HashMemtables>);
}
