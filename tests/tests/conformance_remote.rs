//! The conformance suite and the model test against the remote backend on the embedded
//! default store: a local directory through `object_store`, no server.
#![cfg(feature = "remote")]

use std::sync::Arc;

use statekit_backend::remote::{RemoteBackend, RemoteConfig, RemoteStore, Size};
use statekit_backend::{CheckpointStorage, InstanceConfig, Result};

struct Remote {
    store: RemoteStore,
    _dir: tempfile::TempDir,
}

impl statekit_tests::BackendFactory for Remote {
    type Backend = RemoteBackend;

    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the store");
        let config = RemoteConfig {
            block_cache: Size(64 << 20),
            ..RemoteConfig::local(dir.path())
        };
        let store = RemoteStore::connect(&config).expect("a local store");
        Remote { store, _dir: dir }
    }

    fn open(&self, config: InstanceConfig) -> Result<RemoteBackend> {
        RemoteBackend::open_in(config, &self.store)
    }

    fn checkpoint_storage(&self) -> Option<Arc<dyn CheckpointStorage>> {
        Some(Arc::new(self.store.checkpoint_storage("checkpoints")))
    }
}

statekit_tests::conformance_suite!(Remote);
