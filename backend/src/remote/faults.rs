//! A fault-injecting object store: wraps any store and makes a seeded fraction of its calls
//! fail, time out, run slowly, or fail *after* a write took effect (the response was lost).
//!
//! Fault injection is a wrapper, not code inside the backend: tests put it between the remote
//! backend (or [`super::ObjectStoreCheckpointStorage`]) and a real store. Decisions come from
//! a seeded generator, so a failing run can be replayed with the same seed.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// What fraction of calls gets which fault. Fractions are in `0.0..=1.0` and are drawn in
/// this order from one uniform sample per call, so they add up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// The call fails at once, without effect.
    pub error: f64,
    /// The call hangs for `timeout`, then fails without effect (a client-side timeout).
    pub timeout: f64,
    /// A write takes effect but the caller gets an error (a lost response, the nastiest case
    /// for atomicity); reads and lists just fail.
    pub error_after_write: f64,
    /// The call succeeds after `slow_delay`.
    pub slow: f64,
    /// How long a timed-out call hangs.
    pub timeout_after: Duration,
    /// How long a slow call takes.
    pub slow_delay: Duration,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        FaultPlan {
            error: 0.0,
            timeout: 0.0,
            error_after_write: 0.0,
            slow: 0.0,
            timeout_after: Duration::from_millis(20),
            slow_delay: Duration::from_millis(5),
        }
    }

    /// `rate` of all calls fail, spread over plain errors, timeouts and lost write
    /// responses; as many again are slow.
    pub fn failing(rate: f64) -> Self {
        FaultPlan {
            error: rate * 0.5,
            timeout: rate * 0.25,
            error_after_write: rate * 0.25,
            slow: rate,
            ..FaultPlan::none()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Error,
    Timeout,
    ErrorAfter,
    Slow,
}

#[derive(Debug)]
struct Injector {
    plan: Mutex<FaultPlan>,
    rng: Mutex<u64>,
    armed: AtomicBool,
    calls: AtomicU64,
    injected: AtomicU64,
}

impl Injector {
    fn draw(&self) -> Fault {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.armed.load(Ordering::Relaxed) {
            return Fault::None;
        }
        let sample = {
            let mut s = self
                .rng
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // SplitMix64: tiny, seedable, good enough to spread faults.
            *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = *s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        };
        let plan = *self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bands = [
            (plan.error, Fault::Error),
            (plan.timeout, Fault::Timeout),
            (plan.error_after_write, Fault::ErrorAfter),
            (plan.slow, Fault::Slow),
        ];
        let mut edge = 0.0;
        let mut fault = Fault::None;
        for (width, kind) in bands {
            edge += width;
            if sample < edge {
                fault = kind;
                break;
            }
        }
        if matches!(fault, Fault::Error | Fault::Timeout | Fault::ErrorAfter) {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fault
    }

    fn plan(&self) -> FaultPlan {
        *self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn injected(op: &str, location: &str, what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyObjectStore",
        source: format!("injected fault: {what} during {op} of {location}").into(),
    }
}

/// Before the call: fails or delays it according to the drawn fault. Returns whether a write
/// should report failure after taking effect.
async fn before(injector: &Injector, op: &str, location: &str) -> object_store::Result<bool> {
    match injector.draw() {
        Fault::None => Ok(false),
        Fault::Error => Err(injected(op, location, "error")),
        Fault::Timeout => {
            tokio::time::sleep(injector.plan().timeout_after).await;
            Err(injected(op, location, "timeout"))
        }
        Fault::ErrorAfter => Ok(true),
        Fault::Slow => {
            tokio::time::sleep(injector.plan().slow_delay).await;
            Ok(false)
        }
    }
}

/// An object store that injects faults into the calls it forwards to `inner`.
#[derive(Debug, Clone)]
pub struct FaultyObjectStore {
    inner: Arc<dyn ObjectStore>,
    injector: Arc<Injector>,
}

impl FaultyObjectStore {
    /// Wraps `inner`; faults are drawn from `plan` with a generator seeded by `seed`. The
    /// store starts armed.
    pub fn new(inner: Arc<dyn ObjectStore>, plan: FaultPlan, seed: u64) -> Self {
        FaultyObjectStore {
            inner,
            injector: Arc::new(Injector {
                plan: Mutex::new(plan),
                rng: Mutex::new(seed),
                armed: AtomicBool::new(true),
                calls: AtomicU64::new(0),
                injected: AtomicU64::new(0),
            }),
        }
    }

    /// Turns fault injection on or off (clones share the switch).
    pub fn set_armed(&self, armed: bool) {
        self.injector.armed.store(armed, Ordering::SeqCst);
    }

    /// Replaces the fault plan.
    pub fn set_plan(&self, plan: FaultPlan) {
        *self
            .injector
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = plan;
    }

    /// Calls seen so far.
    pub fn calls(&self) -> u64 {
        self.injector.calls.load(Ordering::Relaxed)
    }

    /// Calls that were made to fail so far.
    pub fn injected(&self) -> u64 {
        self.injector.injected.load(Ordering::Relaxed)
    }
}

impl fmt::Display for FaultyObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyObjectStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let fail_after = before(&self.injector, "put", location.as_ref()).await?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        if fail_after {
            return Err(injected("put", location.as_ref(), "lost response"));
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        before(&self.injector, "put_multipart", location.as_ref()).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            injector: Arc::clone(&self.injector),
            location: location.to_string(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if before(&self.injector, "get", location.as_ref()).await? {
            return Err(injected("get", location.as_ref(), "error"));
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if before(&self.injector, "get_ranges", location.as_ref()).await? {
            return Err(injected("get_ranges", location.as_ref(), "error"));
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let injector = Arc::clone(&self.injector);
        self.inner
            .delete_stream(locations)
            .then(move |result| {
                let injector = Arc::clone(&injector);
                async move {
                    let path = result?;
                    // The delete has happened; a fault here is a lost response.
                    match injector.draw() {
                        Fault::Error | Fault::Timeout | Fault::ErrorAfter => {
                            Err(injected("delete", path.as_ref(), "lost response"))
                        }
                        Fault::None | Fault::Slow => Ok(path),
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let at = prefix.map(ToString::to_string).unwrap_or_default();
        match self.injector.draw() {
            Fault::Error | Fault::Timeout | Fault::ErrorAfter => {
                futures::stream::once(async move { Err(injected("list", &at, "error")) }).boxed()
            }
            Fault::None | Fault::Slow => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let at = prefix.map(ToString::to_string).unwrap_or_default();
        match self.injector.draw() {
            Fault::Error | Fault::Timeout | Fault::ErrorAfter => {
                futures::stream::once(async move { Err(injected("list", &at, "error")) }).boxed()
            }
            Fault::None | Fault::Slow => self.inner.list_with_offset(prefix, offset),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let at = prefix.map(ToString::to_string).unwrap_or_default();
        if before(&self.injector, "list", &at).await? {
            return Err(injected("list", &at, "error"));
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let fail_after = before(&self.injector, "copy", to.as_ref()).await?;
        self.inner.copy_opts(from, to, options).await?;
        if fail_after {
            return Err(injected("copy", to.as_ref(), "lost response"));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    injector: Arc<Injector>,
    location: String,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let injector = Arc::clone(&self.injector);
        let location = self.location.clone();
        Box::pin(async move {
            // A failed part leaves the upload incomplete: nothing becomes visible.
            before(&injector, "put_part", &location).await?;
            part.await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let fail_after = before(&self.injector, "complete", &self.location).await?;
        let result = self.inner.complete().await?;
        if fail_after {
            return Err(injected("complete", &self.location, "lost response"));
        }
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}
