//! How state maps onto SlateDB's single ordered key space, and the merge operator.
//!
//! # Keys
//! Every key starts with its key group (two bytes, big-endian), so the entries of a key-group
//! range are one contiguous byte range: that is what lets restore and rescaling clone a
//! checkpoint with a *projection range* instead of copying data.
//!
//! - entry: `kg u16 | 0x01 | state u64 | len key | key | len namespace | namespace | user key`
//! - timer: `kg u16 | 0x02 | state u64 | timestamp (order-preserving i64) | key | namespace`
//!   (byte strings escaped and terminated, so timers sort by (time, key, namespace)).
//!
//! `state` is a 64-bit hash of the state's name rather than its registration index: instances
//! of one job may register states in different orders, and their checkpoints must still
//! merge when rescaling. Registration rejects the (2^-64) case of two names sharing a hash.
//!
//! # Values
//! A stored record is `0 | expiry | payload` (a value) or `1 | written_at | expiry | payload`
//! (an append without a known base), expiry as varint `0` = none else `ms + 1`. The merge
//! operator below combines them so that merge appends to the live value and starts afresh on
//! an expired one, exactly like the reference backend, whatever order SlateDB combines
//! operands in (the combination is associative; a unit test checks it).

use std::ops::Bound;

use bytes::Bytes;
use slatedb::{MergeOperator, MergeOperatorError, PrefixExtractor, PrefixTarget};

use crate::backend::{prefix_successor, Scope, Timer, UserKeyRange};
use crate::codec::{get_length_prefixed, get_varint, put_length_prefixed, put_varint, KeyCodec};
use crate::error::{Error, Result};
use crate::keygroup::{KeyGroup, KeyGroupRange};

const TAG_ENTRY: u8 = 1;
const TAG_TIMER: u8 = 2;

/// The stable 64-bit tag of a state name used in keys.
pub(crate) fn state_tag(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

fn head(out: &mut Vec<u8>, kg: KeyGroup, tag: u8, state: u64) {
    out.extend_from_slice(&kg.to_be_bytes());
    out.push(tag);
    out.extend_from_slice(&state.to_be_bytes());
}

/// The prefix of every entry of `state` in key group `kg`.
pub(crate) fn entries_prefix(kg: KeyGroup, state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    head(&mut out, kg, TAG_ENTRY, state);
    out
}

/// The prefix of every timer of queue `state` in key group `kg`.
pub(crate) fn timers_prefix(kg: KeyGroup, state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    head(&mut out, kg, TAG_TIMER, state);
    out
}

/// The prefix of the entries of one scope; unambiguous because key and namespace are
/// length-prefixed.
pub(crate) fn scope_prefix(scope: &Scope<'_>, state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + scope.key.len() + scope.namespace.len());
    head(&mut out, scope.key_group, TAG_ENTRY, state);
    put_length_prefixed(&mut out, scope.key);
    put_length_prefixed(&mut out, scope.namespace);
    out
}

/// The keys of one key group's timers at or after `from`: pops and head lookups start
/// there, so they never walk the tombstones of timers already popped (an LSM keeps those
/// until compaction drops them, and a queue makes one per fired timer).
pub(crate) fn timers_from(kg: KeyGroup, state: u64, from: i64) -> (Bound<Bytes>, Bound<Bytes>) {
    let prefix = timers_prefix(kg, state);
    let mut lower = prefix.clone();
    from.encode_key(&mut lower);
    (Bound::Included(Bytes::from(lower)), prefix_bound(&prefix))
}

/// The keys of one key group's timers after the timer key `last` (a resumed pop).
pub(crate) fn timers_after(kg: KeyGroup, state: u64, last: &[u8]) -> (Bound<Bytes>, Bound<Bytes>) {
    (
        Bound::Excluded(Bytes::copy_from_slice(last)),
        prefix_bound(&timers_prefix(kg, state)),
    )
}

/// The full key of an entry.
pub(crate) fn entry_key(prefix: &[u8], user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + user_key.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(user_key);
    out
}

/// The byte range of the user keys in `range` under `prefix`, or `None` if it is empty.
pub(crate) fn user_range(
    prefix: &[u8],
    range: &UserKeyRange<'_>,
) -> Option<(Bound<Bytes>, Bound<Bytes>)> {
    if range.is_empty() {
        return None;
    }
    let key = |uk: &[u8]| Bytes::from(entry_key(prefix, uk));
    let lower = match range.lower {
        Bound::Included(l) => Bound::Included(key(l)),
        Bound::Excluded(l) => Bound::Excluded(key(l)),
        Bound::Unbounded => Bound::Included(Bytes::copy_from_slice(prefix)),
    };
    let upper = match range.upper {
        Bound::Included(u) => Bound::Included(key(u)),
        Bound::Excluded(u) => Bound::Excluded(key(u)),
        Bound::Unbounded => prefix_bound(prefix),
    };
    let bounds = (lower, upper);
    (!is_empty(&bounds)).then_some(bounds)
}

/// Whether no key lies in a byte range (SlateDB rejects empty ranges, for example
/// `..Excluded(b"")` once the scope prefix is added).
pub(crate) fn is_empty(range: &(Bound<Bytes>, Bound<Bytes>)) -> bool {
    match range {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
        _ => false,
    }
}

/// The range of every key starting with `prefix`.
pub(crate) fn prefix_range(prefix: &[u8]) -> (Bound<Bytes>, Bound<Bytes>) {
    (
        Bound::Included(Bytes::copy_from_slice(prefix)),
        prefix_bound(prefix),
    )
}

fn prefix_bound(prefix: &[u8]) -> Bound<Bytes> {
    match prefix_successor(prefix) {
        Some(s) => Bound::Excluded(Bytes::from(s)),
        None => Bound::Unbounded,
    }
}

/// `range`, whose bounds are full keys under `prefix` (an upper bound past the prefix is its
/// successor), as the range of suffixes SlateDB's prefix scan takes.
pub(crate) fn suffix_range(
    prefix: &[u8],
    range: &(Bound<Bytes>, Bound<Bytes>),
) -> (Bound<Bytes>, Bound<Bytes>) {
    let strip = |b: &Bound<Bytes>| match b {
        Bound::Included(k) if k.starts_with(prefix) => Bound::Included(k.slice(prefix.len()..)),
        Bound::Excluded(k) if k.starts_with(prefix) => Bound::Excluded(k.slice(prefix.len()..)),
        _ => Bound::Unbounded,
    };
    (strip(&range.0), strip(&range.1))
}

/// The length of the scope prefix (key group, state, key, namespace) an entry key or a
/// longer prefix starts with; `None` for timer keys and for prefixes that stop inside it.
fn scope_prefix_len(key: &[u8]) -> Option<usize> {
    if key.get(2) != Some(&TAG_ENTRY) {
        return None;
    }
    let mut rest = key.get(11..)?;
    get_length_prefixed(&mut rest).ok()?;
    get_length_prefixed(&mut rest).ok()?;
    Some(key.len() - rest.len())
}

/// Hashes each entry's scope into SlateDB's Bloom filters (besides the whole key), so a scan
/// of one scope skips every table that holds nothing of it: RocksDB's prefix Bloom filter.
/// Most of an interval join's scans and cleanup deletes find an empty scope (a user with no
/// click in the window); without it each probes every L0 table and sorted run.
///
/// The scope prefix is self-delimiting (length-prefixed key and namespace), so it depends on
/// its own bytes only, which is the invariant SlateDB asks of an extractor.
pub(crate) struct ScopePrefixExtractor;

impl PrefixExtractor for ScopePrefixExtractor {
    fn name(&self) -> &str {
        "statekit-scope-v1"
    }

    fn prefix_len(&self, target: &PrefixTarget) -> Option<usize> {
        match target {
            PrefixTarget::Point(key) | PrefixTarget::Prefix(key) => scope_prefix_len(key),
        }
    }
}

/// The byte range holding every key of the key groups in `range`.
pub(crate) fn key_group_span(range: KeyGroupRange) -> (Bound<Bytes>, Bound<Bytes>) {
    let lower = Bound::Included(Bytes::copy_from_slice(&range.start.to_be_bytes()));
    let upper = match range.end.checked_add(1) {
        Some(next) => Bound::Excluded(Bytes::copy_from_slice(&next.to_be_bytes())),
        None => Bound::Unbounded,
    };
    (lower, upper)
}

/// Splits an entry key found under `entries_prefix(kg, state)` into key, namespace and user
/// key.
pub(crate) fn split_entry_key(full: &[u8]) -> Result<(&[u8], &[u8], &[u8])> {
    let mut rest = full
        .get(11..)
        .ok_or_else(|| Error::corruption("remote entry key shorter than its header"))?;
    let key = get_length_prefixed(&mut rest)?;
    let namespace = get_length_prefixed(&mut rest)?;
    Ok((key, namespace, rest))
}

/// The key of a timer.
pub(crate) fn timer_key(state: u64, timer: &Timer) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + timer.key.len() + timer.namespace.len());
    head(&mut out, timer.key_group, TAG_TIMER, state);
    timer.timestamp.encode_key(&mut out);
    timer.key.encode_key(&mut out);
    timer.namespace.encode_key(&mut out);
    out
}

/// Decodes a timer key of key group `kg`.
pub(crate) fn decode_timer(kg: KeyGroup, full: &[u8]) -> Result<Timer> {
    let mut rest = full
        .get(11..)
        .ok_or_else(|| Error::corruption("remote timer key shorter than its header"))?;
    let timestamp = i64::decode_key(&mut rest)?;
    let key = Vec::<u8>::decode_key(&mut rest)?;
    let namespace = Vec::<u8>::decode_key(&mut rest)?;
    if !rest.is_empty() {
        return Err(Error::corruption("trailing bytes after a remote timer key"));
    }
    Ok(Timer {
        timestamp,
        key_group: kg,
        key,
        namespace,
    })
}

const REC_VALUE: u8 = 0;
const REC_APPEND: u8 = 1;

/// A decoded stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// `Some(t)` for an append written at `t` whose base is not known yet.
    pub append_at: Option<u64>,
    /// Expiry in processing-time ms.
    pub expires_at: Option<u64>,
    /// The value bytes.
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Whether the record is visible at `now`.
    pub fn live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

fn put_expiry(out: &mut Vec<u8>, expires_at: Option<u64>) {
    put_varint(out, expires_at.map_or(0, |t| t.saturating_add(1)));
}

/// A value record.
pub(crate) fn encode_value(expires_at: Option<u64>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(REC_VALUE);
    put_expiry(&mut out, expires_at);
    out.extend_from_slice(payload);
    out
}

/// A merge operand written at `now`.
pub(crate) fn encode_append(now: u64, expires_at: Option<u64>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 19);
    out.push(REC_APPEND);
    put_varint(&mut out, now);
    put_expiry(&mut out, expires_at);
    out.extend_from_slice(payload);
    out
}

/// Decodes a stored record.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<Record<'_>> {
    let (&kind, mut rest) = bytes
        .split_first()
        .ok_or_else(|| Error::corruption("empty remote record"))?;
    let append_at = match kind {
        REC_VALUE => None,
        REC_APPEND => Some(get_varint(&mut rest)?),
        other => {
            return Err(Error::corruption(format!(
                "unknown remote record kind {other}"
            )))
        }
    };
    let expires_at = get_varint(&mut rest)?.checked_sub(1);
    Ok(Record {
        append_at,
        expires_at,
        payload: rest,
    })
}

/// SlateDB's merge operator for statekit's append semantics.
#[derive(Debug, Default)]
pub(crate) struct AppendOperator;

fn merge_error(e: &Error) -> MergeOperatorError {
    MergeOperatorError::Callback {
        message: e.to_string(),
    }
}

impl MergeOperator for AppendOperator {
    fn merge(
        &self,
        key: &Bytes,
        existing_value: Option<Bytes>,
        value: Bytes,
    ) -> std::result::Result<Bytes, MergeOperatorError> {
        self.merge_batch(key, existing_value, &[value])
    }

    fn merge_batch(
        &self,
        _key: &Bytes,
        existing_value: Option<Bytes>,
        operands: &[Bytes],
    ) -> std::result::Result<Bytes, MergeOperatorError> {
        // The running result: (append_at, expires_at, payload), built in one buffer so a long
        // run of appends is linear, not quadratic.
        let mut acc: Option<(Option<u64>, Option<u64>, Vec<u8>)> = match &existing_value {
            Some(b) => {
                let r = decode_record(b).map_err(|e| merge_error(&e))?;
                Some((r.append_at, r.expires_at, r.payload.to_vec()))
            }
            None => None,
        };
        for op in operands {
            let r = decode_record(op).map_err(|e| merge_error(&e))?;
            let Some(written) = r.append_at else {
                // A value record as the newer side replaces whatever lies below.
                acc = Some((None, r.expires_at, r.payload.to_vec()));
                continue;
            };
            acc = Some(match acc.take() {
                None => (Some(written), r.expires_at, r.payload.to_vec()),
                Some((_, old_expiry, _)) if old_expiry.is_some_and(|e| e <= written) => {
                    // Expired when this append was written: it starts afresh, and nothing
                    // below can matter any more.
                    (None, r.expires_at, r.payload.to_vec())
                }
                Some((append_at, _, mut payload)) => {
                    payload.extend_from_slice(r.payload);
                    (append_at, r.expires_at, payload)
                }
            });
        }
        let (append_at, expires_at, payload) = acc.ok_or(MergeOperatorError::EmptyBatch)?;
        Ok(Bytes::from(match append_at {
            None => encode_value(expires_at, &payload),
            Some(at) => encode_append(at, expires_at, &payload),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn resolve(existing: Option<Bytes>, ops: &[Bytes], now: u64) -> Option<Vec<u8>> {
        let merged = AppendOperator
            .merge_batch(&Bytes::new(), existing, ops)
            .unwrap();
        let r = decode_record(&merged).unwrap();
        r.live(now).then(|| r.payload.to_vec())
    }

    #[test]
    fn merge_appends_to_live_and_restarts_on_expired() {
        let base = Bytes::from(encode_value(Some(100), b"ab"));
        let op = |t, p: &[u8]| Bytes::from(encode_append(t, Some(t + 100), p));
        assert_eq!(
            resolve(Some(base.clone()), &[op(50, b"c")], 60),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            resolve(Some(base), &[op(100, b"c")], 110),
            Some(b"c".to_vec())
        );
        assert_eq!(
            resolve(None, &[op(1, b"x"), op(2, b"y")], 3),
            Some(b"xy".to_vec())
        );
        assert_eq!(resolve(None, &[op(1, b"x")], 101), None);
    }

    #[test]
    fn keys_sort_by_key_group_then_scope() {
        let s = |kg, key: &'static [u8]| Scope {
            state: crate::backend::StateId::from_index(0),
            key_group: kg,
            key,
            namespace: b"",
        };
        let a = entry_key(&scope_prefix(&s(1, b"zz"), 7), b"u");
        let b = entry_key(&scope_prefix(&s(2, b"a"), 7), b"u");
        assert!(a < b);
        let (key, ns, uk) = split_entry_key(&a).unwrap();
        assert_eq!((key, ns, uk), (&b"zz"[..], &b""[..], &b"u"[..]));
        let t = Timer {
            timestamp: -5,
            key_group: 3,
            key: vec![0, 1],
            namespace: vec![9],
        };
        assert_eq!(decode_timer(3, &timer_key(7, &t)).unwrap(), t);
    }

    #[test]
    fn scope_prefix_is_extracted_from_keys_and_longer_prefixes_only() {
        let scope = Scope {
            state: crate::backend::StateId::from_index(0),
            key_group: 5,
            key: b"user-1",
            namespace: b"ns",
        };
        let prefix = scope_prefix(&scope, 9);
        let key = entry_key(&prefix, b"user key");
        let of = |b: &[u8], point: bool| {
            let b = Bytes::copy_from_slice(b);
            ScopePrefixExtractor.prefix_len(&if point {
                PrefixTarget::Point(b)
            } else {
                PrefixTarget::Prefix(b)
            })
        };
        assert_eq!(of(&key, true), Some(prefix.len()));
        assert_eq!(of(&prefix, false), Some(prefix.len()));
        assert_eq!(of(&key[..key.len() - 2], false), Some(prefix.len()));
        // Inside the scope (the state or key group alone) nothing can be probed.
        assert_eq!(of(&prefix[..prefix.len() - 1], false), None);
        assert_eq!(of(&entries_prefix(5, 9), false), None);
        let t = Timer {
            timestamp: 1,
            key_group: 5,
            key: vec![1],
            namespace: vec![],
        };
        assert_eq!(of(&timer_key(9, &t), true), None);
    }

    #[test]
    fn suffix_range_strips_the_prefix() {
        let prefix = b"ab".to_vec();
        let full = user_range(
            &prefix,
            &UserKeyRange::new(Bound::Included(b"c"), Bound::Unbounded),
        )
        .unwrap();
        let (lo, hi) = suffix_range(&prefix, &full);
        assert_eq!(lo, Bound::Included(Bytes::from_static(b"c")));
        assert_eq!(hi, Bound::Unbounded);
        let full = user_range(&prefix, &UserKeyRange::all()).unwrap();
        assert_eq!(
            suffix_range(&prefix, &full),
            (Bound::Included(Bytes::new()), Bound::Unbounded)
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u64),
        Append(u8, u64),
    }

    fn encode(op: &Op, now: u64) -> Bytes {
        match *op {
            Op::Put(p, ttl) => Bytes::from(encode_value(Some(now + ttl), &[p])),
            Op::Append(p, ttl) => Bytes::from(encode_append(now, Some(now + ttl), &[p])),
        }
    }

    proptest! {
        /// Any split of a run of operands into a partially merged head and a tail gives the
        /// same result as merging one by one: SlateDB may combine operands in compaction
        /// before the base is known.
        #[test]
        fn merge_is_associative(
            ops in proptest::collection::vec(
                prop_oneof![
                    (any::<u8>(), 1..20u64).prop_map(|(p, t)| Op::Put(p, t)),
                    (any::<u8>(), 1..20u64).prop_map(|(p, t)| Op::Append(p, t)),
                ],
                1..12,
            ),
            gaps in proptest::collection::vec(0..15u64, 12),
            split in 0..12usize,
        ) {
            let mut now = 0;
            let mut encoded = Vec::new();
            // Reference: the in-memory semantics.
            let mut model: Option<(Vec<u8>, u64)> = None;
            for (op, gap) in ops.iter().zip(&gaps) {
                now += gap;
                encoded.push(encode(op, now));
                model = Some(match (op, model.take()) {
                    (Op::Put(p, t), _) => (vec![*p], now + t),
                    (Op::Append(p, t), Some((mut v, e))) if now < e => { v.push(*p); (v, now + t) }
                    (Op::Append(p, t), _) => (vec![*p], now + t),
                });
            }
            let read_at = now;
            let expect = model.filter(|(_, e)| read_at < *e).map(|(v, _)| v);
            // Puts never sit above merges in SlateDB's chain, so the first put is the base.
            let first = encoded[0].clone();
            let rest = &encoded[1..];
            let split = split.min(rest.len());
            let one_by_one = resolve(Some(first.clone()), rest, read_at);
            prop_assert_eq!(&one_by_one, &expect);
            if split > 0 {
                let head = AppendOperator.merge_batch(&Bytes::new(), None, &rest[..split]).unwrap();
                let mut tail = vec![head];
                tail.extend_from_slice(&rest[split..]);
                prop_assert_eq!(resolve(Some(first), &tail, read_at), expect);
            }
        }
    }
}
