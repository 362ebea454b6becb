//! A key and a namespace in one inline buffer: the identity of a scope in the memory
//! backend's hash maps and of a timer in its queues.
//!
//! Two [`KeyBytes`] took 48 bytes, a key and a boxed namespace 40; both halves in one buffer
//! with the split point take 32, inline while together they fit in 16 bytes (an encoded
//! `u64` key and an empty or 8-byte namespace). A million keys' scopes and cleanup timers
//! are the backend's largest structures after the values themselves.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use super::user_map::{compare_keys, KeyBytes};

/// A key followed by a namespace, ordered and hashed as the pair `(key, namespace)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyAndNamespace {
    bytes: KeyBytes,
    key_len: u32,
}

impl KeyAndNamespace {
    /// Both parts copied in (inline when they fit).
    pub(super) fn new(key: &[u8], namespace: &[u8]) -> Self {
        let mut bytes = KeyBytes::with_capacity(key.len() + namespace.len());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(namespace);
        KeyAndNamespace {
            bytes,
            // Keys longer than 4 GiB cannot reach a backend: the trait's callers hold them in
            // memory, and every encoding of them carries a u32 length.
            key_len: u32::try_from(key.len()).unwrap_or(u32::MAX),
        }
    }

    /// The key.
    pub(super) fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len as usize]
    }

    /// The namespace.
    pub(super) fn namespace(&self) -> &[u8] {
        &self.bytes[self.key_len as usize..]
    }

    /// Key and namespace bytes together.
    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Heap bytes outside the struct: none while inline.
    pub(super) fn heap_bytes(&self) -> usize {
        if self.bytes.spilled() {
            self.bytes.capacity()
        } else {
            0
        }
    }
}

impl Ord for KeyAndNamespace {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_keys(self.key(), other.key())
            .then_with(|| compare_keys(self.namespace(), other.namespace()))
    }
}

impl PartialOrd for KeyAndNamespace {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for KeyAndNamespace {
    /// As the pair of slices `(key, namespace)` hashes, so that a borrowed pair finds it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
        self.namespace().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::hash::BuildHasher;

    #[test]
    fn short_parts_stay_inline_in_32_bytes() {
        assert_eq!(std::mem::size_of::<KeyAndNamespace>(), 32);
        let k = KeyAndNamespace::new(&42u64.to_be_bytes(), &7u64.to_be_bytes());
        assert_eq!(k.heap_bytes(), 0);
        assert_eq!(k.key(), 42u64.to_be_bytes());
        assert_eq!(k.namespace(), 7u64.to_be_bytes());
        assert!(KeyAndNamespace::new(&[1; 17], b"").heap_bytes() >= 17);
    }

    /// A key or namespace: any length, or eight bytes (an encoded `u64`, compared as an
    /// integer) differing in the high bit.
    fn part() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(0u8..3, 0..20),
            proptest::collection::vec(prop::sample::select(vec![0u8, 1, 0x7f, 0x80, 0xff]), 8),
        ]
    }

    proptest! {
        /// Equality, order and hash are those of the pair, wherever the split falls: `("a",
        /// "b")` and `("ab", "")` share their bytes but are different scopes.
        #[test]
        fn behaves_as_the_pair(
            k1 in part(),
            n1 in part(),
            k2 in part(),
            n2 in part(),
        ) {
            let (a, b) = (KeyAndNamespace::new(&k1, &n1), KeyAndNamespace::new(&k2, &n2));
            let (pa, pb) = ((&k1[..], &n1[..]), (&k2[..], &n2[..]));
            prop_assert_eq!(a.cmp(&b), pa.cmp(&pb));
            prop_assert_eq!(a == b, pa == pb);
            let hasher = hashbrown::DefaultHashBuilder::default();
            prop_assert_eq!(hasher.hash_one(&a), hasher.hash_one(pa));
        }
    }
}
