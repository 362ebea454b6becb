//! The internal tokio runtime the synchronous trait blocks on.
//!
//! One runtime per process, shared by every remote backend instance and object-store
//! checkpoint storage: SlateDB's background tasks (memtable uploads, compaction, garbage
//! collection) and the HTTP connection pools of the object stores live on it, so they must
//! outlive any one instance.
//!
//! It is a *current-thread* runtime: the thread that calls the backend runs SlateDB's tasks
//! while it waits inside a call. Every SlateDB write hands its batch to a writer task and
//! waits for the answer; on a multi-thread runtime that is two cross-thread wake-ups per
//! operation, which measured 6.3x slower end to end (ad-click at 40 displays/s, 62k events:
//! 1,434 events/s and put p50 139 us on two workers; 9,043 events/s and put p50 11.8 us
//! here; `statekit bench` on a 2-core machine). The price: background work (uploads,
//! compaction) advances only while some thread is inside a call, so an idle instance does
//! not compact; a checkpoint waits for everything it needs. Several threads may call at
//! once: one drives the runtime and the others' futures hook into it.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, ErrorKind, Result};

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// The shared runtime's handle.
///
/// # Errors
/// `Internal` if the runtime could not be started.
pub(crate) fn handle() -> Result<Handle> {
    Ok(runtime()?.handle().clone())
}

fn runtime() -> Result<&'static Runtime> {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .thread_name("statekit-remote")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    match rt {
        Ok(rt) => Ok(rt),
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
    Ok(runtime()?.block_on(fut))
}
