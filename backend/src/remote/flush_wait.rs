//! How long a flush may wait. SlateDB's flushes (a checkpoint's, the bound on unflushed
//! writes, closing) wait for uploads, and when level 0 is full they wait for compaction
//! too: on a busy machine with a large state that backpressure can last minutes while the
//! store keeps accepting tables. What must fail is a store that accepts nothing (full, or
//! unreachable beyond SlateDB's retries), so the wait gives up only once the store has
//! completed no table write for `flush_timeout_secs`.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, ErrorKind};

/// The store completed no table write for the whole quiet period.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NoProgress;

/// Awaits `work`, giving up once `quiet` passes without `progress` (a count of bytes the
/// store has written) changing. Must run inside a Tokio runtime with timers.
pub(super) async fn wait_while_progressing<F: Future>(
    work: F,
    quiet: Duration,
    progress: impl Fn() -> u64,
) -> Result<F::Output, NoProgress> {
    let mut work = std::pin::pin!(work);
    let mut seen = progress();
    loop {
        match tokio::time::timeout(quiet, work.as_mut()).await {
            Ok(output) => return Ok(output),
            Err(_) => {
                let now = progress();
                if now == seen {
                    return Err(NoProgress);
                }
                seen = now;
            }
        }
    }
}

/// A flush that waited `quiet` without the store completing a table write.
pub(super) fn flush_made_no_progress(what: &str, quiet: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "{what}: SlateDB's flush waited {} s (flush_timeout_secs) without the object \
             store completing a table write: the store refuses writes (full? unreachable?) or \
             is far too slow; nothing after the last completed checkpoint is durable",
            quiet.as_secs()
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A runtime whose clock only moves when every task waits: timings are exact.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// Work that takes ten quiet periods finishes while the store keeps writing, as a flush
    /// behind a long compaction does.
    #[test]
    fn a_slow_flush_finishes_while_the_store_keeps_writing() {
        let written = Arc::new(AtomicU64::new(0));
        let out = runtime().block_on(async {
            let writer = Arc::clone(&written);
            let compaction = tokio::spawn(async move {
                for _ in 0..60 {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    writer.fetch_add(1 << 20, Ordering::Relaxed);
                }
            });
            let flush = tokio::time::sleep(Duration::from_millis(1_000));
            let counts = Arc::clone(&written);
            let out = wait_while_progressing(flush, Duration::from_millis(100), move || {
                counts.load(Ordering::Relaxed)
            })
            .await;
            compaction.await.unwrap();
            out
        });
        assert_eq!(out, Ok(()));
    }

    /// Work that never finishes fails after one quiet period when nothing is written.
    #[test]
    fn a_flush_gives_up_when_the_store_writes_nothing() {
        let (out, waited) = runtime().block_on(async {
            let started = tokio::time::Instant::now();
            let out = wait_while_progressing(
                std::future::pending::<()>(),
                Duration::from_millis(100),
                || 7,
            )
            .await;
            (out, started.elapsed())
        });
        assert_eq!(out, Err(NoProgress));
        assert_eq!(waited, Duration::from_millis(100), "one quiet period");
        let message = flush_made_no_progress("checkpoint 3", Duration::from_secs(120)).to_string();
        assert!(message.contains("checkpoint 3"), "{message}");
        assert!(
            message.contains("refuses writes (full? unreachable?)"),
            "{message}"
        );
    }
}
