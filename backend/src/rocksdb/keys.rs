//! The byte layout of keys and values in RocksDB.
//!
//! Key/value state (one column family per state):
//! `key group (2 bytes BE) | varint len | key | varint len | namespace | user key`.
//! The key group comes first so that a key-group range is one contiguous key range (restore
//! clips with `delete_range`, snapshots scan it with one bounded iterator); key and namespace
//! are length-prefixed so that no scope is a prefix of another, and the user key comes last
//! so that the entries of one scope are ordered by user key. Every read of a scope is then a
//! seek between an exact lower and upper bound.
//!
//! Timer queues (one column family per queue) keep one entry per timer, with an empty value:
//! `0 | timestamp (order-preserving i64) | key group | escaped key | namespace`, in firing
//! order for `pop_due_timers` and `next_timer`. `scan_timers` and restores that clip or copy
//! a key-group range read it whole and filter by key group: they are rare, while a second
//! index ordered by key group (`1 | key group | timestamp | ...`, which checkpoints of
//! earlier versions hold and a restore drops) cost every registration and every pop a
//! second memtable insert.
//!
//! Values of states with a TTL start with the expiry time (8 bytes BE, ms), so the merge
//! operator and the compaction filter can see it without knowing anything else.

use std::ops::Bound;

use crate::backend::{prefix_successor, Scope, Timer, UserKeyRange};
use crate::codec::{get_length_prefixed, put_length_prefixed, KeyCodec};
use crate::error::{Error, Result};
use crate::keygroup::{KeyGroup, KeyGroupRange};

/// Tag of the firing-order timer index.
pub(crate) const TIMER_BY_TIME: u8 = 0;
/// Tag of the per-key-group timer index of earlier versions: the end of the firing-order
/// index, and what a restore drops.
pub(crate) const TIMER_BY_GROUP: u8 = 1;

/// Length of the expiry prefix of TTL values.
pub(crate) const EXPIRY_LEN: usize = 8;

/// The key prefix of a scope: every entry of the scope starts with it, no other entry does.
pub(crate) fn scope_prefix(scope: &Scope<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 2 + scope.key.len() + scope.namespace.len() + 16);
    out.extend_from_slice(&scope.key_group.to_be_bytes());
    put_length_prefixed(&mut out, scope.key);
    put_length_prefixed(&mut out, scope.namespace);
    out
}

/// The full key of one entry.
pub(crate) fn entry_key(scope: &Scope<'_>, user_key: &[u8]) -> Vec<u8> {
    let mut out = scope_prefix(scope);
    out.extend_from_slice(user_key);
    out
}

/// The key bounds `[lower, upper)` of a user-key range inside a scope, or `None` if the range
/// is empty. `upper` is `None` only if no key is greater than the prefix (cannot happen with
/// key groups below 0x8000, kept for totality).
pub(crate) fn scope_bounds(
    prefix: &[u8],
    range: &UserKeyRange<'_>,
) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    if range.is_empty() {
        return None;
    }
    let join = |suffix: &[u8], successor: bool| {
        let mut k = Vec::with_capacity(prefix.len() + suffix.len() + 1);
        k.extend_from_slice(prefix);
        k.extend_from_slice(suffix);
        if successor {
            // `k\0` is the smallest key greater than `k`.
            k.push(0);
        }
        k
    };
    let lower = match range.lower {
        Bound::Included(l) => join(l, false),
        Bound::Excluded(l) => join(l, true),
        Bound::Unbounded => prefix.to_vec(),
    };
    let upper = match range.upper {
        Bound::Included(u) => Some(join(u, true)),
        Bound::Excluded(u) => Some(join(u, false)),
        Bound::Unbounded => prefix_successor(prefix),
    };
    Some((lower, upper))
}

/// The key bounds `[lower, upper)` holding exactly the entries of `range`'s key groups.
pub(crate) fn key_group_bounds(range: KeyGroupRange) -> (Vec<u8>, Vec<u8>) {
    // Key groups are below 2^15, so `end + 1` fits two bytes.
    (
        range.start.to_be_bytes().to_vec(),
        (u32::from(range.end) + 1).to_be_bytes()[2..].to_vec(),
    )
}

/// A decoded key/value entry key.
pub(crate) struct DecodedKey<'a> {
    pub key_group: KeyGroup,
    pub key: &'a [u8],
    pub namespace: &'a [u8],
    pub user_key: &'a [u8],
}

/// Decodes an entry key.
pub(crate) fn decode_entry_key(raw: &[u8]) -> Result<DecodedKey<'_>> {
    if raw.len() < 2 {
        return Err(Error::corruption(format!(
            "entry key of {} bytes is too short",
            raw.len()
        )));
    }
    let key_group = u16::from_be_bytes([raw[0], raw[1]]);
    let mut rest = &raw[2..];
    let key = get_length_prefixed(&mut rest)?;
    let namespace = get_length_prefixed(&mut rest)?;
    Ok(DecodedKey {
        key_group,
        key,
        namespace,
        user_key: rest,
    })
}

/// Escapes 0x00 as `00 FF` and terminates with `00 01`: order preserving and unambiguous
/// whatever byte follows (a plain `00` terminator would collide with an escape when the
/// next field starts with 0xFF).
fn put_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 1]);
}

fn get_escaped(input: &mut &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b != 0 {
            out.push(b);
            i += 1;
            continue;
        }
        match input.get(i + 1) {
            Some(0xFF) => {
                out.push(0);
                i += 2;
            }
            Some(1) => {
                *input = &input[i + 2..];
                return Ok(out);
            }
            _ => break,
        }
    }
    Err(Error::corruption(
        "timer key: escaped byte string is not terminated",
    ))
}

/// The firing-order index key of a timer.
pub(crate) fn timer_time_key(timer: &Timer) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 2 + timer.key.len() + timer.namespace.len() + 3);
    out.push(TIMER_BY_TIME);
    timer.timestamp.encode_key(&mut out);
    out.extend_from_slice(&timer.key_group.to_be_bytes());
    put_escaped(&mut out, &timer.key);
    out.extend_from_slice(&timer.namespace);
    out
}

/// Decodes a timer's key.
pub(crate) fn decode_timer_key(raw: &[u8]) -> Result<Timer> {
    let corrupt = || Error::corruption(format!("timer key of {} bytes is malformed", raw.len()));
    let (&tag, mut rest) = raw.split_first().ok_or_else(corrupt)?;
    let group = |rest: &mut &[u8]| -> Result<KeyGroup> {
        if rest.len() < 2 {
            return Err(corrupt());
        }
        let kg = u16::from_be_bytes([rest[0], rest[1]]);
        *rest = &rest[2..];
        Ok(kg)
    };
    if tag != TIMER_BY_TIME {
        return Err(corrupt());
    }
    let timestamp = i64::decode_key(&mut rest)?;
    let key_group = group(&mut rest)?;
    let key = get_escaped(&mut rest)?;
    Ok(Timer {
        timestamp,
        key_group,
        key,
        namespace: rest.to_vec(),
    })
}

/// Length of the scope prefix (key group, key, namespace) at the start of an entry key:
/// the part all entries of one scope share (see [`scope_prefix`]); `None` for a key that does
/// not parse as one.
pub(crate) fn scope_prefix_len(raw: &[u8]) -> Option<usize> {
    let mut rest = raw.get(2..)?;
    get_length_prefixed(&mut rest).ok()?;
    get_length_prefixed(&mut rest).ok()?;
    Some(raw.len() - rest.len())
}

/// The scope prefix of an entry key, for RocksDB's prefix extractor (prefix filters); a key
/// that does not parse maps to itself (RocksDB asks [`has_scope_prefix`] first).
pub(crate) fn scope_prefix_of(raw: &[u8]) -> &[u8] {
    match scope_prefix_len(raw) {
        Some(len) => &raw[..len],
        None => raw,
    }
}

/// Whether an entry key starts with a whole scope prefix.
pub(crate) fn has_scope_prefix(raw: &[u8]) -> bool {
    scope_prefix_len(raw).is_some()
}

/// Bounds of the whole firing-order index.
pub(crate) fn timer_index_bounds() -> (Vec<u8>, Vec<u8>) {
    (vec![TIMER_BY_TIME], vec![TIMER_BY_GROUP])
}

/// Upper bound (exclusive) of the firing-order index for timers due at `watermark`.
pub(crate) fn timer_due_upper(watermark: i64) -> Vec<u8> {
    let mut out = vec![TIMER_BY_TIME];
    match watermark.checked_add(1) {
        Some(next) => next.encode_key(&mut out),
        None => return vec![TIMER_BY_GROUP],
    }
    out
}

/// Splits a TTL value into expiry and payload.
pub(crate) fn split_expiry(value: &[u8]) -> Result<(u64, &[u8])> {
    if value.len() < EXPIRY_LEN {
        return Err(Error::corruption(format!(
            "value of a TTL state has {} bytes, less than its expiry prefix",
            value.len()
        )));
    }
    let (head, payload) = value.split_at(EXPIRY_LEN);
    let mut b = [0u8; EXPIRY_LEN];
    b.copy_from_slice(head);
    Ok((u64::from_be_bytes(b), payload))
}

/// A TTL value: expiry then payload.
pub(crate) fn with_expiry(expires_at: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(EXPIRY_LEN + payload.len());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::StateId;

    fn scope<'a>(kg: u16, key: &'a [u8], ns: &'a [u8]) -> Scope<'a> {
        Scope {
            state: StateId::from_index(0),
            key_group: kg,
            key,
            namespace: ns,
        }
    }

    #[test]
    fn scopes_never_prefix_each_other() {
        let a = scope_prefix(&scope(1, b"a", b"bc"));
        let b = scope_prefix(&scope(1, b"ab", b"c"));
        assert!(!a.starts_with(&b) && !b.starts_with(&a));
        let k = entry_key(&scope(7, b"key", b"ns"), b"\x00\xffuser");
        let d = decode_entry_key(&k).unwrap();
        assert_eq!(
            (d.key_group, d.key, d.namespace, d.user_key),
            (7, &b"key"[..], &b"ns"[..], &b"\x00\xffuser"[..])
        );
    }

    proptest::proptest! {
        /// The prefix extractor finds exactly the scope of every entry key, and nothing in a
        /// truncated one.
        #[test]
        fn the_scope_prefix_of_an_entry_key_is_its_scope(
            kg in 0u16..0x8000,
            key in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            ns in proptest::collection::vec(proptest::num::u8::ANY, 0..20),
            user in proptest::collection::vec(proptest::num::u8::ANY, 0..20),
        ) {
            let s = scope(kg, &key, &ns);
            let k = entry_key(&s, &user);
            let prefix = scope_prefix(&s);
            proptest::prop_assert!(has_scope_prefix(&k));
            proptest::prop_assert_eq!(scope_prefix_of(&k), &prefix[..]);
            proptest::prop_assert!(!has_scope_prefix(&prefix[..prefix.len() - 1]));
        }
    }

    #[test]
    fn bounds_select_exactly_the_range() {
        let s = scope(3, b"k", b"");
        let p = scope_prefix(&s);
        let keys: Vec<Vec<u8>> = [&b""[..], b"a", b"a\x00", b"b", b"b\x00", b"c"]
            .iter()
            .map(|u| entry_key(&s, u))
            .collect();
        let check = |range: UserKeyRange<'_>| {
            let (lo, hi) = scope_bounds(&p, &range).unwrap();
            for (k, u) in keys
                .iter()
                .zip([&b""[..], b"a", b"a\x00", b"b", b"b\x00", b"c"])
            {
                let inside = *k >= lo && hi.as_ref().is_none_or(|h| k < h);
                assert_eq!(inside, range.contains(u), "{u:?} in {range:?}");
            }
        };
        check(UserKeyRange::all());
        check(UserKeyRange::inclusive(b"a", b"b"));
        check(UserKeyRange::half_open(b"a", b"b"));
        check(UserKeyRange::new(Bound::Excluded(b"a"), Bound::Unbounded));
        check(UserKeyRange::new(
            Bound::Unbounded,
            Bound::Excluded(b"b\x00"),
        ));
        assert!(scope_bounds(&p, &UserKeyRange::half_open(b"b", b"a")).is_none());
        // Entries of a neighbouring scope stay outside.
        let other = entry_key(&scope(3, b"k", b"\x00"), b"");
        let (lo, hi) = scope_bounds(&p, &UserKeyRange::all()).unwrap();
        assert!(!(other >= lo && hi.is_none_or(|h| other < h)));
    }

    #[test]
    fn timer_keys_order_like_timers_and_round_trip() {
        let t = |ts: i64, kg: u16, key: &[u8], ns: &[u8]| Timer {
            timestamp: ts,
            key_group: kg,
            key: key.to_vec(),
            namespace: ns.to_vec(),
        };
        let mut timers = vec![
            t(-5, 2, b"a", b"\xff"),
            t(-5, 2, b"a\x00", b""),
            t(-5, 2, b"a", b""),
            t(10, 0, b"b", b"x"),
            t(10, 0, b"ab", b"x"),
            t(3, 9, b"", b""),
        ];
        for timer in &timers {
            assert_eq!(&decode_timer_key(&timer_time_key(timer)).unwrap(), timer);
        }
        let mut by_key = timers.clone();
        by_key.sort_by_key(timer_time_key);
        timers.sort();
        assert_eq!(by_key, timers);
        assert!(timer_time_key(&timers[5]) < timer_due_upper(10));
        assert!(timer_time_key(&timers[4]) >= timer_due_upper(9));
    }

    #[test]
    fn key_group_bounds_cover_the_range() {
        let (lo, hi) = key_group_bounds(KeyGroupRange::new(1, 0x7FFF).unwrap());
        assert_eq!(lo, vec![0, 1]);
        assert_eq!(hi, vec![0x80, 0]);
        let k = entry_key(&scope(0x7FFF, b"x", b""), b"\xff\xff");
        assert!(k >= lo && k < hi);
    }
}
