//! The conformance suite against the remote backend on a real S3-protocol server.
//!
//! Start one with `eval "$(tests/s3-server.sh start)"`, which sets `STATEKIT_S3_ENDPOINT`,
//! `STATEKIT_S3_BUCKET` and dummy credentials. Without `STATEKIT_S3_ENDPOINT` every case is
//! skipped with a printed notice.
#![cfg(feature = "remote")]

use std::sync::Arc;

use statekit_backend::remote::{RemoteBackend, RemoteConfig, RemoteStore, Size};
use statekit_backend::{CheckpointStorage, InstanceConfig, Result};

struct S3 {
    store: RemoteStore,
}

/// The S3 configuration from the environment, or `None` when no server is configured.
fn s3_config() -> Option<RemoteConfig> {
    let endpoint = std::env::var("STATEKIT_S3_ENDPOINT").ok()?;
    let bucket = std::env::var("STATEKIT_S3_BUCKET").unwrap_or_else(|_| "statekit-test".into());
    // Each factory gets its own prefix, so tests running in parallel never share a database.
    let prefix = uuid_like();
    Some(RemoteConfig {
        url: format!("s3://{bucket}/conformance/{prefix}"),
        endpoint: Some(endpoint),
        region: Some(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())),
        allow_http: true,
        block_cache: Size(32 << 20),
        ..RemoteConfig::default()
    })
}

fn uuid_like() -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process: prefixes differ across runs too.
    let n = N.fetch_add(1, Ordering::Relaxed);
    let salt = std::collections::hash_map::RandomState::new().hash_one(n);
    format!("{}-{n}-{salt:016x}", std::process::id())
}

impl statekit_tests::BackendFactory for S3 {
    type Backend = RemoteBackend;

    fn new() -> Self {
        let config = s3_config().expect("cases run only when STATEKIT_S3_ENDPOINT is set");
        let store = RemoteStore::connect(&config).expect("an S3 store");
        S3 { store }
    }

    fn open(&self, config: InstanceConfig) -> Result<RemoteBackend> {
        RemoteBackend::open_in(config, &self.store)
    }

    fn checkpoint_storage(&self) -> Option<Arc<dyn CheckpointStorage>> {
        Some(Arc::new(self.store.checkpoint_storage("checkpoints")))
    }
}

statekit_tests::conformance_suite!(S3, skip_unless_env = "STATEKIT_S3_ENDPOINT");
