//! Key groups: the unit of state partitioning and rescaling.
//!
//! As in Flink, every key hashes to one of `max_parallelism` key groups, and each backend
//! instance owns a contiguous [`KeyGroupRange`]. Rescaling moves whole key groups, so the hash
//! must be stable across processes, versions and machines: it is XXH3-64 of the key's encoded
//! bytes, never Rust's randomly seeded `Hash`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The largest supported max parallelism; key groups are stored as two big-endian bytes.
pub const MAX_MAX_PARALLELISM: u32 = 1 << 15;

/// A key group id in `0..max_parallelism`.
pub type KeyGroup = u16;

/// The key group of an encoded key.
///
/// # Panics
/// Never; `max_parallelism` must be at least 1, which [`KeyGroupRange::for_operator`] and the
/// backends check before calling this.
pub fn key_group_of(key: &[u8], max_parallelism: u16) -> KeyGroup {
    let max = u64::from(max_parallelism.max(1));
    (xxhash_rust::xxh3::xxh3_64(key) % max) as KeyGroup
}

/// An inclusive range of key groups `start..=end` owned by one backend instance.
///
/// Deserializing checks `start <= end` (a range read from a damaged or hand-edited manifest or
/// handle); a range built field by field is checked by
/// [`InstanceConfig::validate`](crate::InstanceConfig::validate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawKeyGroupRange")]
pub struct KeyGroupRange {
    /// First key group (inclusive).
    pub start: KeyGroup,
    /// Last key group (inclusive).
    pub end: KeyGroup,
}

/// A [`KeyGroupRange`] as written, before its bounds are checked.
#[derive(Deserialize)]
struct RawKeyGroupRange {
    start: KeyGroup,
    end: KeyGroup,
}

impl TryFrom<RawKeyGroupRange> for KeyGroupRange {
    type Error = Error;

    fn try_from(raw: RawKeyGroupRange) -> Result<Self> {
        KeyGroupRange::new(raw.start, raw.end)
    }
}

impl KeyGroupRange {
    /// The range `start..=end`.
    ///
    /// # Errors
    /// `InvalidArgument` if `start > end`.
    pub fn new(start: KeyGroup, end: KeyGroup) -> Result<Self> {
        if start > end {
            return Err(Error::invalid(format!(
                "key group range {start}..={end} is empty (start > end)"
            )));
        }
        Ok(KeyGroupRange { start, end })
    }

    /// All key groups of a job with `max_parallelism`.
    ///
    /// # Errors
    /// `InvalidArgument` if `max_parallelism` is 0 or above [`MAX_MAX_PARALLELISM`].
    pub fn all(max_parallelism: u32) -> Result<Self> {
        check_max_parallelism(max_parallelism)?;
        Ok(KeyGroupRange {
            start: 0,
            end: (max_parallelism - 1) as KeyGroup,
        })
    }

    /// The range owned by operator instance `index` of `parallelism`, the same split Flink
    /// uses (`KeyGroupRangeAssignment`), so that every key group has exactly one owner.
    ///
    /// # Errors
    /// `InvalidArgument` if the arguments do not describe a valid instance.
    pub fn for_operator(max_parallelism: u32, parallelism: u32, index: u32) -> Result<Self> {
        check_max_parallelism(max_parallelism)?;
        if parallelism == 0 || parallelism > max_parallelism || index >= parallelism {
            return Err(Error::invalid(format!(
                "operator index {index} of parallelism {parallelism} is invalid for max \
                 parallelism {max_parallelism}"
            )));
        }
        let (m, p, i) = (
            u64::from(max_parallelism),
            u64::from(parallelism),
            u64::from(index),
        );
        let start = (i * m).div_ceil(p);
        let end = ((i + 1) * m).div_ceil(p) - 1;
        Ok(KeyGroupRange {
            start: start as KeyGroup,
            end: end as KeyGroup,
        })
    }

    /// Whether `key_group` is in the range.
    pub fn contains(&self, key_group: KeyGroup) -> bool {
        self.start <= key_group && key_group <= self.end
    }

    /// The number of key groups in the range (0 for an inverted range, which no checked
    /// constructor builds).
    pub fn len(&self) -> usize {
        usize::from(self.end.saturating_sub(self.start)) + usize::from(self.start <= self.end)
    }

    /// Always false: a range holds at least one key group.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The key groups both ranges hold, if any.
    pub fn intersect(&self, other: &KeyGroupRange) -> Option<KeyGroupRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start <= end).then_some(KeyGroupRange { start, end })
    }

    /// Iterates the key groups in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = KeyGroup> + Clone {
        self.start..=self.end
    }
}

impl std::fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..={}", self.start, self.end)
    }
}

fn check_max_parallelism(max_parallelism: u32) -> Result<()> {
    if max_parallelism == 0 || max_parallelism > MAX_MAX_PARALLELISM {
        return Err(Error::invalid(format!(
            "max parallelism {max_parallelism} is outside 1..={MAX_MAX_PARALLELISM}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inverted_range_is_refused_not_sized() {
        let err = serde_json::from_str::<KeyGroupRange>(r#"{"start":5,"end":2}"#).unwrap_err();
        assert!(err.to_string().contains("start > end"), "{err}");
        let ok: KeyGroupRange = serde_json::from_str(r#"{"start":2,"end":5}"#).unwrap();
        assert_eq!(ok.len(), 4);
        let inverted = KeyGroupRange { start: 5, end: 2 };
        assert_eq!(inverted.len(), 0);
        let config = crate::InstanceConfig::single(16)
            .unwrap()
            .with_key_groups(inverted);
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("start > end"));
    }

    #[test]
    fn operator_ranges_partition_all_key_groups() {
        for max in [1u32, 7, 128, 1000] {
            for par in 1..=max.min(9) {
                let mut next = 0u32;
                for i in 0..par {
                    let r = KeyGroupRange::for_operator(max, par, i).unwrap();
                    assert_eq!(u32::from(r.start), next, "max {max} par {par} index {i}");
                    next = u32::from(r.end) + 1;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn key_group_hash_is_stable() {
        // Pinned values: changing the hash would move keys between key groups and break
        // every existing checkpoint.
        let pinned: Vec<KeyGroup> = [&b"a"[..], b"b", b"user-42", b""]
            .iter()
            .map(|k| key_group_of(k, 128))
            .collect();
        assert_eq!(pinned, PINNED_KEY_GROUPS);
    }

    const PINNED_KEY_GROUPS: [KeyGroup; 4] = [31, 63, 77, 66];

    #[test]
    fn bad_arguments_are_errors() {
        assert!(KeyGroupRange::new(5, 4).is_err());
        assert!(KeyGroupRange::all(0).is_err());
        assert!(KeyGroupRange::for_operator(128, 0, 0).is_err());
        assert!(KeyGroupRange::for_operator(128, 2, 2).is_err());
        assert!(KeyGroupRange::for_operator(4, 5, 0).is_err());
    }

    #[test]
    fn intersect() {
        let a = KeyGroupRange::new(0, 63).unwrap();
        let b = KeyGroupRange::new(32, 127).unwrap();
        assert_eq!(a.intersect(&b), Some(KeyGroupRange::new(32, 63).unwrap()));
        assert_eq!(a.intersect(&KeyGroupRange::new(64, 70).unwrap()), None);
    }
}
