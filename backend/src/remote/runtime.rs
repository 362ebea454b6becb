//! The internal tokio runtimes the synchronous trait blocks on.
//!
//! Two per process, shared by every remote backend instance and object-store checkpoint
//! storage (SlateDB's background tasks and the object stores' connection pools must outlive
//! any one instance):
//!
//! - the *caller* runtime, current-thread, driven by whichever thread calls the backend:
//!   every read and write runs on it. Every SlateDB write hands its batch to a writer task
//!   (placed here with SlateDB's `with_write_runtime`); on a multi-thread runtime that is two
//!   cross-thread wake-ups per write, which measured 6.3x slower end to end (ad-click at 40
//!   displays/s, 62k events, 2 cores: 1,434 events/s and put p50 139 us on two workers;
//!   9,043 events/s and put p50 11.8 us driving it here). Reads polled from the calling
//!   thread on the multi-thread runtime park and wake that thread on every pending step:
//!   measured 2,515 events/s against 4,428 here (standard-rate ad-click, 40 s of events).
//! - the *background* runtime, multi-threaded: databases are built on it, so memtable
//!   uploads, compaction and garbage collection run on its workers, on the cores the
//!   calling thread does not use, and advance while no thread is inside a call. Moving them
//!   off the caller runtime took the same run from 3,120 to 4,428 events/s (with prefix
//!   Bloom filters, see [`super::keys::ScopePrefixExtractor`]).
//!
//! Several threads may call at once: one drives the caller runtime and the others' futures
//! hook into it.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, ErrorKind, Result};

static BACKGROUND: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
static CALLER: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// The cores this process may use, read once: `available_parallelism` reads cgroup files
/// on every call, far too slow for a write path.
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Worker threads of the background runtime: compaction and uploads beside one calling
/// thread on a small machine, without oversubscribing a large one.
fn background_workers() -> usize {
    cores().clamp(2, 4)
}

fn started(
    rt: &'static std::result::Result<Runtime, String>,
    which: &str,
) -> Result<&'static Runtime> {
    rt.as_ref().map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("could not start the remote backend's {which} runtime: {e}"),
        )
    })
}

fn background() -> Result<&'static Runtime> {
    let rt = BACKGROUND.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(background_workers())
            .thread_name("statekit-remote")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    started(rt, "background")
}

fn caller() -> Result<&'static Runtime> {
    // The I/O driver serves object-store connections made by reads.
    let rt = CALLER.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    started(rt, "caller")
}

/// The background runtime's handle (spawned prefetches).
///
/// # Errors
/// `Internal` if the runtime could not be started.
pub(crate) fn handle() -> Result<Handle> {
    Ok(background()?.handle().clone())
}

/// The caller runtime's handle, for SlateDB's `with_write_runtime`.
///
/// # Errors
/// `Internal` if the runtime could not be started.
pub(crate) fn caller_handle() -> Result<Handle> {
    Ok(caller()?.handle().clone())
}

fn not_inside_a_runtime() -> Result<()> {
    if Handle::try_current().is_ok() {
        return Err(Error::invalid(
            "the remote backend's synchronous API was called from inside an async runtime; \
             call it from a blocking thread (tokio::task::spawn_blocking)",
        ));
    }
    Ok(())
}

/// Runs `fut` to completion on the caller runtime from synchronous code.
///
/// # Errors
/// `InvalidArgument` when called from inside an async runtime (blocking there would stall or
/// panic it; call the backend from a blocking thread, e.g. `spawn_blocking`).
pub(crate) fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    not_inside_a_runtime()?;
    Ok(caller()?.block_on(fut))
}

/// Runs `fut` on the background runtime: a database build, whose tasks stay there.
///
/// # Errors
/// As [`block_on`].
pub(crate) fn on_background<F: Future>(fut: F) -> Result<F::Output> {
    not_inside_a_runtime()?;
    Ok(background()?.block_on(fut))
}
