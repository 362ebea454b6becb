//! The internal tokio runtime the synchronous trait blocks on.
//!
//! One runtime per process, shared by every remote backend instance and object-store
//! checkpoint storage: SlateDB's background tasks (memtable uploads, compaction, garbage
//! collection) and the HTTP connection pools of the object stores live on it, so they must
//! outlive any one instance.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, ErrorKind, Result};

/// Worker threads of the shared runtime: object-store I/O is mostly waiting, and compaction
/// gets its share without starving the caller's threads on a small machine.
const WORKER_THREADS: usize = 2;

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// The shared runtime's handle.
///
/// # Errors
/// `Internal` if the runtime could not be started.
pub(crate) fn handle() -> Result<Handle> {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("statekit-remote")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    match rt {
        Ok(rt) => Ok(rt.handle().clone()),
        Err(e) => Err(Error::new(
            ErrorKind::Internal,
            format!("could not start the remote backend's runtime: {e}"),
        )),
    }
}

/// Runs `fut` to completion on the shared runtime from synchronous code.
///
/// # Errors
/// `InvalidArgument` when called from inside an async runtime (blocking there would stall or
/// panic it; call the backend from a blocking thread, e.g. `spawn_blocking`).
pub(crate) fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    if Handle::try_current().is_ok() {
        return Err(Error::invalid(
            "the remote backend's synchronous API was called from inside an async runtime; \
             call it from a blocking thread (tokio::task::spawn_blocking)",
        ));
    }
    Ok(handle()?.block_on(fut))
}
