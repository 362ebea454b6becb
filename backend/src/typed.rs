//! Typed state on top of the byte-level [`StateBackend`]: what operator code uses.
//!
//! Keys, namespaces and map keys go through the order-preserving [`KeyCodec`]; values go
//! through serde ([`encode_value`]). A [`KeyContext`] is computed once per element (it hashes
//! the key to its key group) and passed to every state access for that element, like
//! Flink's "current key", but explicit.

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{
    Direction, Scope, StateBackend, StateDescriptor, StateId, StateKind, Timer, UserKeyRange,
    Visit, WriteBatch,
};
use crate::codec::{
    decode_key, decode_value, encode_key, encode_value, get_length_prefixed,
    put_length_prefixed_value, KeyCodec,
};
use crate::error::{Error, Result};
use crate::keygroup::{key_group_of, KeyGroup};

/// The key (and namespace) that state accesses of the current element refer to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyContext {
    key_group: KeyGroup,
    key: Vec<u8>,
    namespace: Vec<u8>,
}

impl KeyContext {
    /// The context of `key` with no namespace.
    ///
    /// # Errors
    /// `InvalidArgument` if the key's key group is not owned by `backend`: the element was
    /// routed to the wrong instance.
    pub fn new<B: StateBackend + ?Sized, K: KeyCodec>(backend: &B, key: &K) -> Result<Self> {
        Self::from_bytes(backend, encode_key(key))
    }

    /// The context of an already encoded key.
    ///
    /// # Errors
    /// As [`KeyContext::new`].
    pub fn from_bytes<B: StateBackend + ?Sized>(backend: &B, key: Vec<u8>) -> Result<Self> {
        let key_group = key_group_of(&key, backend.max_parallelism());
        if !backend.key_group_range().contains(key_group) {
            return Err(Error::invalid(format!(
                "key (key group {key_group}) is not owned by this instance (it owns {})",
                backend.key_group_range()
            )));
        }
        Ok(KeyContext {
            key_group,
            key,
            namespace: Vec::new(),
        })
    }

    /// The same key in namespace `namespace` (a window, for example).
    pub fn with_namespace<N: KeyCodec>(&self, namespace: &N) -> KeyContext {
        KeyContext {
            key_group: self.key_group,
            key: self.key.clone(),
            namespace: encode_key(namespace),
        }
    }

    /// The key group.
    pub fn key_group(&self) -> KeyGroup {
        self.key_group
    }

    /// The encoded key.
    pub fn key_bytes(&self) -> &[u8] {
        &self.key
    }

    /// The encoded namespace.
    pub fn namespace_bytes(&self) -> &[u8] {
        &self.namespace
    }

    /// The decoded key.
    ///
    /// # Errors
    /// `Corruption` if the bytes are not a `K`.
    pub fn key<K: KeyCodec>(&self) -> Result<K> {
        decode_key(&self.key)
    }

    /// The scope of `state` for this key and namespace.
    pub fn scope(&self, state: StateId) -> Scope<'_> {
        Scope {
            state,
            key_group: self.key_group,
            key: &self.key,
            namespace: &self.namespace,
        }
    }
}

fn register<B: StateBackend + ?Sized>(
    backend: &mut B,
    name: &str,
    kind: StateKind,
    ttl: Option<Duration>,
) -> Result<StateId> {
    let mut descriptor = StateDescriptor::new(name, kind);
    if let Some(ttl) = ttl {
        descriptor = descriptor.with_ttl(ttl);
    }
    backend.register_state(&descriptor)
}

/// Whether `scope` holds no entry: a scan that stops at the first one.
fn scope_is_empty<B: StateBackend + ?Sized>(backend: &B, scope: Scope<'_>) -> Result<bool> {
    let mut empty = true;
    backend.scan(
        scope,
        UserKeyRange::all(),
        Direction::Forward,
        &mut |_, _| {
            empty = false;
            Ok(Visit::Stop)
        },
    )?;
    Ok(empty)
}

/// The stored form of list elements (a list state's value, one merge operand): each
/// element's encoding behind its varint length.
fn encode_list<'a, V: Serialize + 'a>(values: impl IntoIterator<Item = &'a V>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for v in values {
        put_length_prefixed_value(&mut out, v)?;
    }
    Ok(out)
}

/// Decodes the elements of one stored list of `state` into `visit`, stopping when it says so.
fn decode_list<V: DeserializeOwned>(
    mut bytes: &[u8],
    state: StateId,
    mut visit: impl FnMut(V) -> Result<Visit>,
) -> Result<Visit> {
    while !bytes.is_empty() {
        let element = get_length_prefixed(&mut bytes)
            .map_err(|e| e.context(format!("list of state #{}", state.index())))?;
        if visit(decode_named(element, state)?)? == Visit::Stop {
            return Ok(Visit::Stop);
        }
    }
    Ok(Visit::Continue)
}

fn decode_named<V: DeserializeOwned>(bytes: &[u8], state: StateId) -> Result<V> {
    decode_value(bytes).map_err(|e| e.context(format!("state #{}", state.index())))
}

/// One value per key and namespace.
#[derive(Debug, Clone, Copy)]
pub struct ValueState<V> {
    id: StateId,
    _value: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> ValueState<V> {
    /// Registers (or looks up) the value state `name`.
    ///
    /// # Errors
    /// As [`StateBackend::register_state`].
    pub fn register<B: StateBackend + ?Sized>(backend: &mut B, name: &str) -> Result<Self> {
        Self::register_with_ttl(backend, name, None)
    }

    /// Registers the state with an optional time-to-live.
    ///
    /// # Errors
    /// As [`StateBackend::register_state`].
    pub fn register_with_ttl<B: StateBackend + ?Sized>(
        backend: &mut B,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<Self> {
        Ok(ValueState {
            id: register(backend, name, StateKind::Value, ttl)?,
            _value: PhantomData,
        })
    }

    /// The state's id.
    pub fn id(&self) -> StateId {
        self.id
    }

    /// The value, if set.
    ///
    /// # Errors
    /// Backend errors; `Corruption` if the stored bytes are not a `V`.
    pub fn get<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        ctx: &KeyContext,
    ) -> Result<Option<V>> {
        self.decode(backend.get(ctx.scope(self.id), &[])?.as_deref())
    }

    /// The values of several keys, in the order of `contexts`, read in one
    /// [`StateRead::multi_get`](crate::backend::StateRead::multi_get): a backend on slow
    /// storage reads them in parallel.
    ///
    /// # Errors
    /// As [`ValueState::get`].
    pub fn get_many<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        contexts: &[&KeyContext],
    ) -> Result<Vec<Option<V>>> {
        read_scopes(backend, self.id, contexts)?
            .into_iter()
            .map(|b| self.decode(b.as_deref()))
            .collect()
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<Option<V>> {
        bytes.map(|b| decode_named(b, self.id)).transpose()
    }

    /// Sets the value.
    ///
    /// # Errors
    /// Backend errors.
    pub fn set<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        value: &V,
    ) -> Result<()> {
        backend.put(ctx.scope(self.id), &[], &encode_value(value)?)
    }

    /// Removes the value.
    ///
    /// # Errors
    /// Backend errors.
    pub fn clear<B: StateBackend + ?Sized>(&self, backend: &mut B, ctx: &KeyContext) -> Result<()> {
        backend.delete(ctx.scope(self.id), &[])
    }
}

/// An appendable list per key and namespace. Appends are merges: they never read the list.
#[derive(Debug, Clone, Copy)]
pub struct ListState<V> {
    id: StateId,
    _value: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> ListState<V> {
    /// Registers (or looks up) the list state `name`.
    ///
    /// # Errors
    /// As [`StateBackend::register_state`].
    pub fn register<B: StateBackend + ?Sized>(backend: &mut B, name: &str) -> Result<Self> {
        Self::register_with_ttl(backend, name, None)
    }

    /// Registers the state with an optional time-to-live.
    ///
    /// # Errors
    /// As [`StateBackend::register_state`].
    pub fn register_with_ttl<B: StateBackend + ?Sized>(
        backend: &mut B,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<Self> {
        Ok(ListState {
            id: register(backend, name, StateKind::List, ttl)?,
            _value: PhantomData,
        })
    }

    /// The state's id.
    pub fn id(&self) -> StateId {
        self.id
    }

    /// The elements, oldest first (empty if none).
    ///
    /// # Errors
    /// Backend errors; `Corruption` if the stored bytes are not a list of `V`.
    pub fn get<B: StateBackend + ?Sized>(&self, backend: &B, ctx: &KeyContext) -> Result<Vec<V>> {
        self.decode(backend.get(ctx.scope(self.id), &[])?.as_deref())
    }

    /// The lists of several keys, in the order of `contexts`, read in one
    /// [`StateRead::multi_get`](crate::backend::StateRead::multi_get): a backend on slow
    /// storage reads them in parallel.
    ///
    /// # Errors
    /// As [`ListState::get`].
    pub fn get_many<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        contexts: &[&KeyContext],
    ) -> Result<Vec<Vec<V>>> {
        read_scopes(backend, self.id, contexts)?
            .into_iter()
            .map(|b| self.decode(b.as_deref()))
            .collect()
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<Vec<V>> {
        let mut out = Vec::new();
        if let Some(bytes) = bytes {
            decode_list(bytes, self.id, |v| {
                out.push(v);
                Ok(Visit::Continue)
            })?;
        }
        Ok(out)
    }

    /// Appends one element.
    ///
    /// # Errors
    /// Backend errors.
    pub fn add<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        value: &V,
    ) -> Result<()> {
        self.add_all(backend, ctx, std::slice::from_ref(value))
    }

    /// Appends several elements in one merge.
    ///
    /// # Errors
    /// Backend errors.
    pub fn add_all<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        values: &[V],
    ) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        backend.merge(ctx.scope(self.id), &[], &encode_list(values)?)
    }

    /// Replaces the whole list.
    ///
    /// # Errors
    /// Backend errors.
    pub fn update<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        values: &[V],
    ) -> Result<()> {
        if values.is_empty() {
            return self.clear(backend, ctx);
        }
        backend.put(ctx.scope(self.id), &[], &encode_list(values)?)
    }

    /// Removes the list.
    ///
    /// # Errors
    /// Backend errors.
    pub fn clear<B: StateBackend + ?Sized>(&self, backend: &mut B, ctx: &KeyContext) -> Result<()> {
        backend.delete(ctx.scope(self.id), &[])
    }
}

/// An ordered map per key and namespace, ordered by the encoding of `K`.
#[derive(Debug, Clone, Copy)]
pub struct MapState<K, V> {
    id: StateId,
    _types: PhantomData<fn() -> (K, V)>,
}

/// The single values (empty user key) of state `id` in each of `contexts`, in one
/// [`StateRead::multi_get`](crate::backend::StateRead::multi_get).
fn read_scopes<B: StateBackend + ?Sized>(
    backend: &B,
    id: StateId,
    contexts: &[&KeyContext],
) -> Result<Vec<Option<Vec<u8>>>> {
    let requests: Vec<(Scope<'_>, &[u8])> =
        contexts.iter().map(|c| (c.scope(id), &[][..])).collect();
    backend.multi_get(&requests)
}

/// A range of map keys encoded as bytes, with owned bounds.
struct EncodedRange {
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
}

impl EncodedRange {
    fn new<K: KeyCodec, R: RangeBounds<K>>(range: &R) -> Self {
        let enc = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(encode_key(k)),
            Bound::Excluded(k) => Bound::Excluded(encode_key(k)),
            Bound::Unbounded => Bound::Unbounded,
        };
        EncodedRange {
            lower: enc(range.start_bound()),
            upper: enc(range.end_bound()),
        }
    }

    fn as_range(&self) -> UserKeyRange<'_> {
        UserKeyRange::new(
            self.lower.as_ref().map(Vec::as_slice),
            self.upper.as_ref().map(Vec::as_slice),
        )
    }
}

impl<K: KeyCodec, V: Serialize + DeserializeOwned> MapState<K, V> {
    /// Registers (or looks up) the map state `name`.
    ///
    /// # Errors
    /// As [`StateBackend::register_state`].
    pub fn register<B: StateBackend + ?Sized>(backend: &mut B, name: &str) -> Result<Self> {
        Self::register_with_ttl(backend, name, None)
    }

    /// Registers the state with an optional time-to-live (per map entry).
    ///
    /// # Errors
    /// As [`StateBackend::register_state`].
    pub fn register_with_ttl<B: StateBackend + ?Sized>(
        backend: &mut B,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<Self> {
        Ok(MapState {
            id: register(backend, name, StateKind::Map, ttl)?,
            _types: PhantomData,
        })
    }

    /// The state's id.
    pub fn id(&self) -> StateId {
        self.id
    }

    /// The value under `key`, if any.
    ///
    /// # Errors
    /// Backend errors; `Corruption` for undecodable bytes.
    pub fn get<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        ctx: &KeyContext,
        key: &K,
    ) -> Result<Option<V>> {
        backend
            .get(ctx.scope(self.id), &encode_key(key))?
            .map(|b| decode_named(&b, self.id))
            .transpose()
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    /// Backend errors.
    pub fn contains<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        ctx: &KeyContext,
        key: &K,
    ) -> Result<bool> {
        Ok(backend.get(ctx.scope(self.id), &encode_key(key))?.is_some())
    }

    /// Sets the value under `key`.
    ///
    /// # Errors
    /// Backend errors.
    pub fn put<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        key: &K,
        value: &V,
    ) -> Result<()> {
        backend.put(ctx.scope(self.id), &encode_key(key), &encode_value(value)?)
    }

    /// Removes `key`.
    ///
    /// # Errors
    /// Backend errors.
    pub fn remove<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        key: &K,
    ) -> Result<()> {
        backend.delete(ctx.scope(self.id), &encode_key(key))
    }

    /// Visits the entries with keys in `range`, in `direction` order, until `visit` says
    /// stop. Only the range is read.
    ///
    /// # Errors
    /// Backend errors, decoding errors, or `visit`'s error.
    pub fn for_each_in_range<B: StateBackend + ?Sized, R: RangeBounds<K>>(
        &self,
        backend: &B,
        ctx: &KeyContext,
        range: R,
        direction: Direction,
        mut visit: impl FnMut(K, V) -> Result<Visit>,
    ) -> Result<()> {
        let encoded = EncodedRange::new(&range);
        backend.scan(
            ctx.scope(self.id),
            encoded.as_range(),
            direction,
            &mut |k, v| visit(decode_key(k)?, decode_named(v, self.id)?),
        )
    }

    /// The entries with keys in `range`, ascending.
    ///
    /// # Errors
    /// As [`MapState::for_each_in_range`].
    pub fn range<B: StateBackend + ?Sized, R: RangeBounds<K>>(
        &self,
        backend: &B,
        ctx: &KeyContext,
        range: R,
    ) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        self.for_each_in_range(backend, ctx, range, Direction::Forward, |k, v| {
            out.push((k, v));
            Ok(Visit::Continue)
        })?;
        Ok(out)
    }

    /// All entries, ascending.
    ///
    /// # Errors
    /// As [`MapState::for_each_in_range`].
    pub fn entries<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        ctx: &KeyContext,
    ) -> Result<Vec<(K, V)>> {
        self.range(backend, ctx, ..)
    }

    /// Whether the map is empty.
    ///
    /// # Errors
    /// Backend errors.
    pub fn is_empty<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        ctx: &KeyContext,
    ) -> Result<bool> {
        scope_is_empty(backend, ctx.scope(self.id))
    }

    /// Removes the keys in `range` with one range delete, without reading them.
    ///
    /// # Errors
    /// Backend errors.
    pub fn remove_range<B: StateBackend + ?Sized, R: RangeBounds<K>>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        range: R,
    ) -> Result<()> {
        let encoded = EncodedRange::new(&range);
        backend.delete_range(ctx.scope(self.id), encoded.as_range())
    }

    /// Adds a range delete of the keys in `range` to `batch`: cleanups of many keys written
    /// together, which a backend without native range deletes can apply in one pass.
    pub fn remove_range_in<R: RangeBounds<K>>(
        &self,
        batch: &mut WriteBatch,
        ctx: &KeyContext,
        range: R,
    ) {
        let encoded = EncodedRange::new(&range);
        let (lower, upper) = encoded.as_range().to_half_open();
        batch.delete_range(ctx.scope(self.id), lower.as_deref(), upper.as_deref());
    }

    /// Removes the whole map.
    ///
    /// # Errors
    /// Backend errors.
    pub fn clear<B: StateBackend + ?Sized>(&self, backend: &mut B, ctx: &KeyContext) -> Result<()> {
        backend.delete_range(ctx.scope(self.id), UserKeyRange::all())
    }
}

/// An ordered map per key and namespace whose values are appendable lists (a map of lists,
/// Flink's `MapState<K, List<V>>` without the read-modify-write).
///
/// [`ListMapState::add`] appends to one map key's list with a merge, never reading it; a range
/// read visits the elements of the lists in a key range; [`ListMapState::remove_in`] drops a
/// whole list with one point delete. Operators that buffer elements by a time bucket and
/// drop a bucket at once use it instead of a [`MapState`] entry per element and a range
/// delete per bucket: an LSM engine then holds no range tombstones, which RocksDB keeps and
/// fragments outside its memory budget, and a memory backend keeps one entry per bucket.
#[derive(Debug, Clone, Copy)]
pub struct ListMapState<K, V> {
    id: StateId,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: KeyCodec, V: Serialize + DeserializeOwned> ListMapState<K, V> {
    /// Registers (or looks up) the state `name` (a [`StateKind::Map`] whose values are lists).
    ///
    /// # Errors
    /// As [`StateBackend::register_state`].
    pub fn register<B: StateBackend + ?Sized>(backend: &mut B, name: &str) -> Result<Self> {
        Ok(ListMapState {
            id: register(backend, name, StateKind::Map, None)?,
            _types: PhantomData,
        })
    }

    /// The state's id.
    pub fn id(&self) -> StateId {
        self.id
    }

    /// Appends `value` to the list under `key` (creating it).
    ///
    /// # Errors
    /// Backend and codec errors.
    pub fn add<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        key: &K,
        value: &V,
    ) -> Result<()> {
        let element = encode_list(std::slice::from_ref(value))?;
        backend.merge(ctx.scope(self.id), &encode_key(key), &element)
    }

    /// The list under `key`, oldest first (empty if none).
    ///
    /// # Errors
    /// Backend errors; `Corruption` if the stored bytes are not a list of `V`.
    pub fn get<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        ctx: &KeyContext,
        key: &K,
    ) -> Result<Vec<V>> {
        let mut out = Vec::new();
        if let Some(bytes) = backend.get(ctx.scope(self.id), &encode_key(key))? {
            decode_list(&bytes, self.id, |v| {
                out.push(v);
                Ok(Visit::Continue)
            })?;
        }
        Ok(out)
    }

    /// Visits the elements of the lists with keys in `range`, lists in `direction` order and
    /// each list oldest first, until `visit` says stop. Only the range is read.
    ///
    /// # Errors
    /// Backend errors, decoding errors, or `visit`'s error.
    pub fn for_each_in_range<B: StateBackend + ?Sized, R: RangeBounds<K>>(
        &self,
        backend: &B,
        ctx: &KeyContext,
        range: R,
        direction: Direction,
        mut visit: impl FnMut(&K, V) -> Result<Visit>,
    ) -> Result<()> {
        let encoded = EncodedRange::new(&range);
        backend.scan(
            ctx.scope(self.id),
            encoded.as_range(),
            direction,
            &mut |k, list| {
                let key: K = decode_key(k)?;
                decode_list(list, self.id, |v| visit(&key, v))
            },
        )
    }

    /// Whether no list is stored for `ctx`.
    ///
    /// # Errors
    /// Backend errors.
    pub fn is_empty<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        ctx: &KeyContext,
    ) -> Result<bool> {
        scope_is_empty(backend, ctx.scope(self.id))
    }

    /// Removes the list under `key`.
    ///
    /// # Errors
    /// Backend errors.
    pub fn remove<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        key: &K,
    ) -> Result<()> {
        backend.delete(ctx.scope(self.id), &encode_key(key))
    }

    /// Adds the removal of the list under `key` to `batch`: one point delete.
    pub fn remove_in(&self, batch: &mut WriteBatch, ctx: &KeyContext, key: &K) {
        batch.delete(ctx.scope(self.id), &encode_key(key));
    }
}

/// A value folded with a reduce function on every add.
pub struct ReducingState<V, F> {
    inner: ValueState<V>,
    reduce: F,
}

impl<V: Serialize + DeserializeOwned, F: Fn(&V, &V) -> V> ReducingState<V, F> {
    /// Registers (or looks up) the reducing state `name`.
    ///
    /// # Errors
    /// As [`StateBackend::register_state`].
    pub fn register<B: StateBackend + ?Sized>(
        backend: &mut B,
        name: &str,
        reduce: F,
    ) -> Result<Self> {
        Ok(ReducingState {
            inner: ValueState {
                id: register(backend, name, StateKind::Reducing, None)?,
                _value: PhantomData,
            },
            reduce,
        })
    }

    /// The reduced value, if any value was added.
    ///
    /// # Errors
    /// As [`ValueState::get`].
    pub fn get<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        ctx: &KeyContext,
    ) -> Result<Option<V>> {
        self.inner.get(backend, ctx)
    }

    /// Folds `value` into the state.
    ///
    /// # Errors
    /// As [`ValueState::get`] and [`ValueState::set`].
    pub fn add<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        value: V,
    ) -> Result<()> {
        let next = match self.inner.get(backend, ctx)? {
            Some(old) => (self.reduce)(&old, &value),
            None => value,
        };
        self.inner.set(backend, ctx, &next)
    }

    /// Removes the value.
    ///
    /// # Errors
    /// Backend errors.
    pub fn clear<B: StateBackend + ?Sized>(&self, backend: &mut B, ctx: &KeyContext) -> Result<()> {
        self.inner.clear(backend, ctx)
    }
}

/// An aggregation with an accumulator distinct from its inputs and result (Flink's
/// `AggregateFunction`).
pub trait AggregateFunction {
    /// What is added.
    type Input;
    /// What is stored.
    type Accumulator: Serialize + DeserializeOwned;
    /// What is read.
    type Output;
    /// The accumulator of no input.
    fn create_accumulator(&self) -> Self::Accumulator;
    /// Adds one input.
    fn add(&self, input: &Self::Input, accumulator: &mut Self::Accumulator);
    /// The result of an accumulator.
    fn result(&self, accumulator: &Self::Accumulator) -> Self::Output;
}

/// State that aggregates its inputs with an [`AggregateFunction`].
pub struct AggregatingState<A: AggregateFunction> {
    inner: ValueState<A::Accumulator>,
    function: A,
}

impl<A: AggregateFunction> AggregatingState<A> {
    /// Registers (or looks up) the aggregating state `name`.
    ///
    /// # Errors
    /// As [`StateBackend::register_state`].
    pub fn register<B: StateBackend + ?Sized>(
        backend: &mut B,
        name: &str,
        function: A,
    ) -> Result<Self> {
        Ok(AggregatingState {
            inner: ValueState {
                id: register(backend, name, StateKind::Aggregating, None)?,
                _value: PhantomData,
            },
            function,
        })
    }

    /// Adds one input.
    ///
    /// # Errors
    /// As [`ValueState::get`] and [`ValueState::set`].
    pub fn add<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        input: &A::Input,
    ) -> Result<()> {
        let mut acc = match self.inner.get(backend, ctx)? {
            Some(acc) => acc,
            None => self.function.create_accumulator(),
        };
        self.function.add(input, &mut acc);
        self.inner.set(backend, ctx, &acc)
    }

    /// The aggregate, if anything was added.
    ///
    /// # Errors
    /// As [`ValueState::get`].
    pub fn get<B: StateBackend + ?Sized>(
        &self,
        backend: &B,
        ctx: &KeyContext,
    ) -> Result<Option<A::Output>> {
        Ok(self
            .inner
            .get(backend, ctx)?
            .map(|acc| self.function.result(&acc)))
    }

    /// Removes the accumulator.
    ///
    /// # Errors
    /// Backend errors.
    pub fn clear<B: StateBackend + ?Sized>(&self, backend: &mut B, ctx: &KeyContext) -> Result<()> {
        self.inner.clear(backend, ctx)
    }
}

/// An event-time timer service, persisted in the backend.
#[derive(Debug, Clone, Copy)]
pub struct TimerService {
    queue: StateId,
}

impl TimerService {
    /// Registers (or looks up) the timer queue `name`.
    ///
    /// # Errors
    /// As [`StateBackend::register_state`].
    pub fn register<B: StateBackend + ?Sized>(backend: &mut B, name: &str) -> Result<Self> {
        Ok(TimerService {
            queue: register(backend, name, StateKind::Timers, None)?,
        })
    }

    /// The queue's state id.
    pub fn id(&self) -> StateId {
        self.queue
    }

    fn timer(ctx: &KeyContext, timestamp: i64) -> Timer {
        Timer {
            timestamp,
            key_group: ctx.key_group,
            key: ctx.key.clone(),
            namespace: ctx.namespace.clone(),
        }
    }

    /// Registers a timer for the context's key and namespace (idempotent).
    ///
    /// # Errors
    /// Backend errors.
    pub fn register_timer<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        timestamp: i64,
    ) -> Result<()> {
        backend.register_timer(self.queue, &Self::timer(ctx, timestamp))
    }

    /// Deletes a timer if registered.
    ///
    /// # Errors
    /// Backend errors.
    pub fn delete_timer<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        ctx: &KeyContext,
        timestamp: i64,
    ) -> Result<()> {
        backend.delete_timer(self.queue, &Self::timer(ctx, timestamp))
    }

    /// Pops the timers due at `watermark`, at most `limit`, earliest first; each comes with
    /// the [`KeyContext`] to handle it in.
    ///
    /// # Errors
    /// Backend errors.
    pub fn pop_due<B: StateBackend + ?Sized>(
        &self,
        backend: &mut B,
        watermark: i64,
        limit: usize,
    ) -> Result<Vec<(i64, KeyContext)>> {
        Ok(backend
            .pop_due_timers(self.queue, watermark, limit)?
            .into_iter()
            .map(|t| {
                (
                    t.timestamp,
                    KeyContext {
                        key_group: t.key_group,
                        key: t.key,
                        namespace: t.namespace,
                    },
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;
    use crate::InstanceConfig;

    fn backend() -> MemoryBackend {
        MemoryBackend::open(InstanceConfig::single(16).unwrap()).unwrap()
    }

    #[test]
    fn map_state_ranges_follow_numeric_order() {
        let mut b = backend();
        let m: MapState<i64, u32> = MapState::register(&mut b, "m").unwrap();
        let ctx = KeyContext::new(&b, &"k".to_string()).unwrap();
        for ts in [-5i64, -1, 0, 3, 10, 200] {
            m.put(&mut b, &ctx, &ts, &(ts.unsigned_abs() as u32))
                .unwrap();
        }
        let keys: Vec<i64> = m
            .range(&b, &ctx, -1..10)
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(keys, vec![-1, 0, 3]);
        let keys_of = |b: &MemoryBackend| -> Vec<i64> {
            m.entries(b, &ctx)
                .unwrap()
                .into_iter()
                .map(|e| e.0)
                .collect()
        };
        m.remove_range(&mut b, &ctx, ..=0).unwrap();
        assert_eq!(keys_of(&b), vec![3, 10, 200]);
        let mut batch = WriteBatch::new();
        m.remove_range_in(&mut batch, &ctx, 3..=3);
        m.remove_range_in(&mut batch, &ctx, (Bound::Excluded(10), Bound::Unbounded));
        crate::StateWrite::write(&mut b, batch).unwrap();
        assert_eq!(keys_of(&b), vec![10]);
        assert!(!m.is_empty(&b, &ctx).unwrap());
        m.clear(&mut b, &ctx).unwrap();
        assert!(m.is_empty(&b, &ctx).unwrap());
    }

    /// Many keys read at once give what reading each gives, in the order asked, absent keys
    /// and repeated keys included.
    #[test]
    fn get_many_equals_get_per_key() {
        let mut b = backend();
        let v: ValueState<u32> = ValueState::register(&mut b, "v").unwrap();
        let l: ListState<u32> = ListState::register(&mut b, "l").unwrap();
        let contexts: Vec<KeyContext> = (0..6u64)
            .map(|k| KeyContext::new(&b, &k).unwrap())
            .collect();
        for (k, ctx) in contexts.iter().enumerate().filter(|(k, _)| k % 3 != 0) {
            v.set(&mut b, ctx, &(k as u32 * 10)).unwrap();
            l.add_all(&mut b, ctx, &[k as u32, k as u32 + 1]).unwrap();
        }
        let asked: Vec<&KeyContext> = [5, 0, 1, 1, 3, 4].iter().map(|&k| &contexts[k]).collect();
        let values: Vec<Option<u32>> = asked.iter().map(|c| v.get(&b, c).unwrap()).collect();
        let lists: Vec<Vec<u32>> = asked.iter().map(|c| l.get(&b, c).unwrap()).collect();
        assert_eq!(
            values,
            vec![Some(50), None, Some(10), Some(10), None, Some(40)]
        );
        assert_eq!(v.get_many(&b, &asked).unwrap(), values);
        assert_eq!(l.get_many(&b, &asked).unwrap(), lists);
        assert!(v.get_many(&b, &[]).unwrap().is_empty());
    }

    #[test]
    fn list_reducing_aggregating() {
        let mut b = backend();
        let ctx = KeyContext::new(&b, &7u64).unwrap();
        let l: ListState<String> = ListState::register(&mut b, "l").unwrap();
        l.add(&mut b, &ctx, &"a".into()).unwrap();
        l.add_all(&mut b, &ctx, &["b".into(), "c".into()]).unwrap();
        assert_eq!(l.get(&b, &ctx).unwrap(), vec!["a", "b", "c"]);
        l.update(&mut b, &ctx, &["z".into()]).unwrap();
        assert_eq!(l.get(&b, &ctx).unwrap(), vec!["z"]);

        let r = ReducingState::register(&mut b, "sum", |a: &u64, b: &u64| a + b).unwrap();
        for v in 1..=4u64 {
            r.add(&mut b, &ctx, v).unwrap();
        }
        assert_eq!(r.get(&b, &ctx).unwrap(), Some(10));

        struct Avg;
        impl AggregateFunction for Avg {
            type Input = f64;
            type Accumulator = (f64, u64);
            type Output = f64;
            fn create_accumulator(&self) -> (f64, u64) {
                (0.0, 0)
            }
            fn add(&self, x: &f64, acc: &mut (f64, u64)) {
                acc.0 += x;
                acc.1 += 1;
            }
            fn result(&self, acc: &(f64, u64)) -> f64 {
                acc.0 / acc.1 as f64
            }
        }
        let a = AggregatingState::register(&mut b, "avg", Avg).unwrap();
        a.add(&mut b, &ctx, &1.0).unwrap();
        a.add(&mut b, &ctx, &3.0).unwrap();
        assert_eq!(a.get(&b, &ctx).unwrap(), Some(2.0));
    }

    #[test]
    fn wrong_kind_or_foreign_key_is_an_error() {
        let mut b = backend();
        ValueState::<u32>::register(&mut b, "s").unwrap();
        let err = MapState::<u32, u32>::register(&mut b, "s").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Incompatible);
        let owned = crate::KeyGroupRange::new(0, 0).unwrap();
        let narrow =
            MemoryBackend::open(InstanceConfig::single(16).unwrap().with_key_groups(owned))
                .unwrap();
        let foreign = (0u64..)
            .find(|k| key_group_of(&encode_key(k), 16) != 0)
            .unwrap();
        assert!(KeyContext::new(&narrow, &foreign).is_err());
    }
}
