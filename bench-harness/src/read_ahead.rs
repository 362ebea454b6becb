//! A run's input read on a thread of its own, so that parsing a file or generating events
//! overlaps the operator's state work instead of adding to it (an engine's source runs apart
//! from its keyed operators too). Events cross in batches, which keeps the hand-over cost far
//! below the cost of an event; a bounded queue keeps the reader at most a few batches ahead,
//! so memory stays small and fixed.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use statekit_backend::{Error, ErrorKind, Result};

use crate::event::Event;

/// Events per hand-over.
const BATCH: usize = 1024;
/// Batches the reader may hold ready. Few: a queue that fills when the state store is the
/// slower side (RocksDB) but stays empty when it is not (the footprint run on a backend that
/// stores nothing) is memory the budget rule would charge to the store. Eight batches of
/// feature-concat's ~1 KB events were ~8 MiB of a 48 MiB budget's runs.
const BATCHES_AHEAD: usize = 2;

/// The events of a source, read ahead on a thread.
pub struct ReadAhead {
    batches: Receiver<Vec<Result<Event>>>,
    batch: std::vec::IntoIter<Result<Event>>,
    reader: Option<JoinHandle<()>>,
    waited: Duration,
}

impl ReadAhead {
    /// Starts reading `source` on a new thread.
    ///
    /// # Errors
    /// An I/O error if the thread cannot be started.
    pub fn spawn(source: impl Iterator<Item = Result<Event>> + Send + 'static) -> Result<Self> {
        let (send, batches) = sync_channel(BATCHES_AHEAD);
        let reader = std::thread::Builder::new()
            .name("statekit-input".into())
            .spawn(move || {
                let mut source = source;
                loop {
                    // An error ends the input: the run stops at it.
                    let mut batch = Vec::with_capacity(BATCH);
                    let mut ended = false;
                    while !ended && batch.len() < BATCH {
                        match source.next() {
                            Some(item) => {
                                ended = item.is_err();
                                batch.push(item);
                            }
                            None => ended = true,
                        }
                    }
                    // A receiver that hung up stopped the run early: nothing more to read.
                    if (!batch.is_empty() && send.send(batch).is_err()) || ended {
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("the input reader thread", e))?;
        Ok(ReadAhead {
            batches,
            batch: Vec::new().into_iter(),
            reader: Some(reader),
            waited: Duration::ZERO,
        })
    }

    /// How long the consumer has waited for the reader so far: the time the input, not the
    /// state, cost the run. Timed per batch, where the consumer can block, rather than per
    /// event (two clock reads an event were 1.5% of a memory-backend run).
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Iterator for ReadAhead {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.batch.next() {
                return Some(event);
            }
            let asked = Instant::now();
            let next = self.batches.recv();
            self.waited += asked.elapsed();
            match next {
                Ok(batch) => self.batch = batch.into_iter(),
                // The reader is done: at the end of its input, or because it panicked, which
                // must not pass for the end of the input.
                Err(_) => {
                    let reader = self.reader.take()?;
                    return reader.join().err().map(|_| {
                        Err(Error::new(
                            ErrorKind::Internal,
                            "the input reader thread panicked before the end of the input",
                        ))
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Click, Event};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn click(ts: i64) -> Event {
        Event::Click(Click {
            id: 0,
            user: 1,
            ts,
            display: 2,
        })
    }

    #[test]
    fn every_event_arrives_in_order() {
        let n = 3 * BATCH as i64 + 17;
        let read: Vec<i64> = ReadAhead::spawn((0..n).map(|t| Ok(click(t))))
            .unwrap()
            .map(|e| e.unwrap().ts())
            .collect();
        assert_eq!(read, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn an_error_ends_the_input_after_the_events_before_it() {
        let source = (0..10)
            .map(|t| Ok(click(t)))
            .chain(std::iter::once(Err(Error::invalid("events.csv:12: bad"))))
            .chain((20..30).map(|t| Ok(click(t))));
        let read: Vec<Result<Event>> = ReadAhead::spawn(source).unwrap().collect();
        assert_eq!(read.len(), 11);
        let e = read[10].as_ref().unwrap_err();
        assert!(e.to_string().contains("events.csv:12"), "{e}");
    }

    #[test]
    fn a_reader_that_panics_is_an_error_not_the_end_of_the_input() {
        let source = (0..BATCH as i64 + 5).map(|t| {
            assert!(t < BATCH as i64, "the generator broke");
            Ok(click(t))
        });
        let read: Vec<Result<Event>> = ReadAhead::spawn(source).unwrap().collect();
        assert_eq!(read.len(), BATCH + 1);
        let e = read[BATCH].as_ref().unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
    }

    /// A consumer that stops taking events stops the reader a few batches ahead: events
    /// read ahead are memory, and the footprint run (whose consumer keeps up) would not
    /// count them.
    #[test]
    fn the_reader_stops_a_few_batches_ahead_of_a_stalled_consumer() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&pulled);
        let source = (0..100 * BATCH as i64).map(move |t| {
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(click(t))
        });
        let mut input = ReadAhead::spawn(source).unwrap();
        assert!(input.next().is_some());
        std::thread::sleep(Duration::from_millis(300));
        // Queued, being handed over, and the one being filled.
        let ahead = pulled.load(Ordering::Relaxed);
        assert!(ahead <= 4 * BATCH, "{ahead} events read ahead");
        assert_eq!(input.count(), 100 * BATCH - 1);
    }

    /// The time spent waiting for a slow source is counted (the rates leave it out), and
    /// only once per batch.
    #[test]
    fn waits_for_a_slow_source_are_counted() {
        let source = (0..2 * BATCH as i64).map(|t| {
            if t % BATCH as i64 == 0 {
                std::thread::sleep(Duration::from_millis(40));
            }
            Ok(click(t))
        });
        let mut input = ReadAhead::spawn(source).unwrap();
        assert_eq!(input.waited(), Duration::ZERO);
        assert_eq!(input.by_ref().count(), 2 * BATCH);
        // The first batch waits out at least one sleep (the reader starts with it).
        assert!(
            input.waited() >= Duration::from_millis(35),
            "{:?}",
            input.waited()
        );
    }
}
