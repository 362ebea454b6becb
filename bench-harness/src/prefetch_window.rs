//! A window of upcoming events whose state is prefetched before they are handled.
//!
//! An engine's keyed operator sees its input before it handles it (a network buffer, a
//! micro-batch); Flink 2's asynchronous state API uses that to read state ahead. The harness
//! does the same: an event enters the window [`AHEAD`] events before the operator handles it,
//! and the operator then names the state it will read ([`Operator::prefetch`]), so a backend
//! whose reads wait for a disk (RocksDB under direct I/O) or a network (the remote backend)
//! can load it meanwhile. Events still reach the operator one by one, in input order: the
//! results are those of a run without the window.

use std::collections::VecDeque;

use statekit_backend::{Result, StateBackend};

use crate::event::Event;
use crate::workloads::Operator;

/// How many events ahead of the operator the window reads. A click of ad-click's stream comes
/// every ~35 events, and reading its user's displays under direct I/O takes ~250 us, while the
/// two prefetch threads share two cores with the operator, the input and compactions. On
/// ad-click's 3.7M-event stream at 256 MiB (tuned configuration, direct I/O) the clicks'
/// scans took 146 us with 128 ahead, 89 us with 512, 72 us with 1,024 and 70 us with 2,048
/// (250 us without prefetching); 1,024 events are ~0.5 MB.
pub const AHEAD: usize = 1024;

/// Events of a source, handed out [`AHEAD`] events after their state was prefetched.
pub struct PrefetchWindow<I> {
    source: I,
    ahead: VecDeque<Event>,
    /// The source's error, returned once the events before it are handed out.
    failed: Option<statekit_backend::Error>,
    ended: bool,
}

impl<I: Iterator<Item = Result<Event>>> PrefetchWindow<I> {
    /// A window over `source`.
    pub fn new(source: I) -> Self {
        PrefetchWindow {
            source,
            ahead: VecDeque::with_capacity(AHEAD + 1),
            failed: None,
            ended: false,
        }
    }

    /// The source.
    pub fn source(&self) -> &I {
        &self.source
    }

    /// The next event, after filling the window and naming each event entering it to
    /// `operator`; `None` at the end of the input.
    ///
    /// # Errors
    /// The source's error, after the events before it (the run stops there), or the
    /// backend's error from a prefetch (only invalid arguments: a key group not owned).
    pub fn next(
        &mut self,
        operator: &dyn Operator,
        backend: &dyn StateBackend,
    ) -> Option<Result<Event>> {
        while !self.ended && self.ahead.len() <= AHEAD {
            match self.source.next() {
                Some(Ok(event)) => {
                    if let Err(e) = operator.prefetch(backend, &event) {
                        return Some(Err(e));
                    }
                    self.ahead.push_back(event);
                }
                Some(Err(e)) => {
                    self.failed = Some(e);
                    self.ended = true;
                }
                None => self.ended = true,
            }
        }
        match self.ahead.pop_front() {
            Some(event) => Some(Ok(event)),
            None => self.failed.take().map(Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Click;
    use crate::util::Counters;
    use crate::watermark::WatermarkGenerator;
    use crate::workloads::CheckOutcome;
    use statekit_backend::memory::MemoryBackend;
    use statekit_backend::{Error, InstanceConfig};
    use std::cell::RefCell;

    fn click(ts: i64) -> Event {
        Event::Click(Click {
            id: ts as u64,
            user: 1,
            ts,
            display: 2,
        })
    }

    /// Records the events it is told about, in order.
    struct Named {
        named: RefCell<Vec<i64>>,
        watermarks: WatermarkGenerator,
    }

    impl Operator for Named {
        fn handle(&mut self, _: &mut dyn StateBackend, _: Event) -> Result<()> {
            Ok(())
        }
        fn on_watermark(&mut self, _: &mut dyn StateBackend, _: i64) -> Result<()> {
            Ok(())
        }
        fn watermarks(&self) -> &WatermarkGenerator {
            &self.watermarks
        }
        fn watermarks_mut(&mut self) -> &mut WatermarkGenerator {
            &mut self.watermarks
        }
        fn counters(&self) -> Counters {
            Counters::default()
        }
        fn check(&self, _: &[Event]) -> Option<Vec<CheckOutcome>> {
            None
        }
        fn save_progress(&self) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn load_progress(&mut self, _: &[u8]) -> Result<()> {
            Ok(())
        }
        fn prefetch(&self, _: &dyn StateBackend, event: &Event) -> Result<()> {
            self.named.borrow_mut().push(event.ts());
            Ok(())
        }
    }

    fn named() -> Named {
        Named {
            named: RefCell::new(Vec::new()),
            watermarks: WatermarkGenerator::new(0, 200),
        }
    }

    #[test]
    fn events_come_in_order_each_named_once_and_ahead() {
        let backend = MemoryBackend::open(InstanceConfig::single(128).unwrap()).unwrap();
        let op = named();
        let n = 3 * AHEAD as i64 + 5;
        let mut window = PrefetchWindow::new((0..n).map(|t| Ok(click(t))));
        let mut handed = Vec::new();
        while let Some(event) = window.next(&op, &backend) {
            let ts = event.unwrap().ts();
            // Every event handed out was named, and so were the AHEAD after it (or the rest).
            let named = op.named.borrow().len() as i64;
            assert_eq!(named, (ts + 1 + AHEAD as i64).min(n), "at {ts}");
            handed.push(ts);
        }
        assert_eq!(handed, (0..n).collect::<Vec<_>>());
        assert_eq!(*op.named.borrow(), (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn a_source_error_comes_after_the_events_before_it() {
        let backend = MemoryBackend::open(InstanceConfig::single(128).unwrap()).unwrap();
        let op = named();
        let source = (0..10)
            .map(|t| Ok(click(t)))
            .chain(std::iter::once(Err(Error::invalid("events.csv:12: bad"))))
            .chain((20..30).map(|t| Ok(click(t))));
        let mut window = PrefetchWindow::new(source);
        let mut out = Vec::new();
        while let Some(item) = window.next(&op, &backend) {
            out.push(item);
        }
        assert_eq!(out.len(), 11);
        assert!(out[..10].iter().all(Result::is_ok));
        let err = out[10].as_ref().unwrap_err().to_string();
        assert!(err.contains("events.csv:12"), "{err}");
        // Nothing after the error was read or named.
        assert_eq!(*op.named.borrow(), (0..10).collect::<Vec<_>>());
    }
}
