//! Small shared pieces: readable durations and sizes, deterministic hashing and realistic
//! payload bytes.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Deserializer};
use statekit_backend::{Error, Result};

/// Named result counters of a run (joined pairs, late events, ...), sorted by name so that
/// reports and comparisons are stable.
pub type Counters = BTreeMap<String, u64>;

/// The cores this process may use (its CPU affinity and cgroup quota), at least 1: what
/// the tuner is told when the user names no core count.
pub fn available_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Parses a readable duration such as `20m`, `5s`, `200ms` or `1h 30m`.
///
/// # Errors
/// `InvalidArgument` naming the text.
pub fn parse_duration(text: &str) -> Result<Duration> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        Error::invalid(format!(
            "'{text}' is not a duration (like 20m, 5s, 200ms): {e}"
        ))
    })
}

/// Parses a readable size such as `256MiB`, `8 GiB` or `4096` (the parser of
/// [`statekit_backend::Size`], statekit's only one).
///
/// # Errors
/// `InvalidArgument` naming the text.
pub fn parse_size(text: &str) -> Result<u64> {
    text.parse::<statekit_backend::Size>()
        .map(u64::from)
        .map_err(Error::invalid)
}

/// Formats a byte count for people (`1.5 GiB`).
pub fn format_size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// Bytes in MiB with one decimal at every size (`1154.7 MiB`, not `1.1 GiB`): for figures
/// compared with each other, like peak RSS against the budget rule, where one decimal of GiB
/// (~100 MiB) would hide which is larger.
pub fn format_mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Serde helper: a duration written as text.
///
/// # Errors
/// A serde error carrying the parse message.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(|e| serde::de::Error::custom(e.message()))
}

/// Serde helper: an optional duration written as text.
///
/// # Errors
/// A serde error carrying the parse message.
pub fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|t| parse_duration(&t).map_err(|e| serde::de::Error::custom(e.message())))
        .transpose()
}

/// Serde helper: an optional size written as text or as an integer of bytes.
///
/// # Errors
/// A serde error carrying the parse message.
pub fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    Ok(Option::<statekit_backend::Size>::deserialize(d)?.map(u64::from))
}

/// Milliseconds of a duration as event-time units.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A bijective 64-bit mix (the splitmix64 finalizer): turns popularity ranks into ids that
/// spread over key groups, and never maps two ranks to one id.
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Writes JSON to a temporary file, fsyncs it, renames it over `path` and fsyncs the
/// directory: a kill at any moment leaves the old record or the new one, whole.
///
/// # Errors
/// I/O errors naming the file.
pub fn write_json_durably(path: &std::path::Path, value: &impl serde::Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| {
        Error::new(
            statekit_backend::ErrorKind::Internal,
            format!("encoding {}: {e}", path.display()),
        )
    })?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
    std::io::Write::write_all(&mut file, &bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display(), e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir.display(), e))?;
    }
    Ok(())
}

/// An order-independent fingerprint of a set of items: equal sets give equal fingerprints on
/// every backend, whatever order the operator emitted them in. It is the wrapping sum of the
/// items' 64-bit hashes, so it is also additive: the fingerprints of disjoint parts of a set
/// (the outputs of the workers of a distributed run, each owning some key groups) add up to
/// the whole set's ([`SetFingerprint::combine`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetFingerprint {
    sum: u64,
}

impl SetFingerprint {
    /// Adds one item, given as its parts.
    pub fn add(&mut self, parts: &[u64]) {
        let mut h = 0x9e37_79b9_7f4a_7c15u64;
        for &p in parts {
            h = mix64(h ^ p);
        }
        self.sum = self.sum.wrapping_add(h);
    }

    /// The fingerprint as one number.
    pub fn value(&self) -> u64 {
        self.sum
    }

    /// The fingerprint of the union of two disjoint sets, from their fingerprints' values.
    pub fn combine(a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
}

const WORDS: &[&str] = &[
    "creative",
    "banner",
    "video",
    "campaign",
    "advertiser",
    "placement",
    "feed",
    "slot",
    "bid",
    "price",
    "cpm",
    "ctr",
    "impression",
    "landing",
    "category",
    "sports",
    "games",
    "travel",
    "fashion",
    "food",
    "music",
    "auto",
    "finance",
    "device",
    "android",
    "ios",
    "region",
    "city",
    "language",
    "zh",
    "en",
    "age",
    "interest",
    "season",
    "sale",
    "new",
];

const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A realistic payload of exactly `len` bytes: the first half JSON-like text from a small
/// vocabulary (compresses well, like real field names and enum values), the second half
/// random alphanumerics (ids, hashes, encoded features; about 6 bits of entropy per byte).
/// So about half of it is incompressible, as with real event payloads.
pub fn payload<R: Rng + ?Sized>(rng: &mut R, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    out.push_str("{\"tags\":\"");
    let text_len = len / 2;
    while out.len() < text_len {
        out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        out.push(' ');
    }
    out.truncate(text_len.max(9));
    out.push_str("\",\"blob\":\"");
    while out.len() + 2 < len {
        out.push(char::from(
            TOKEN_CHARS[rng.random_range(0..TOKEN_CHARS.len())],
        ));
    }
    out.push_str("\"}");
    // Only ASCII was written, so any byte length is a char boundary.
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mib_keep_one_decimal_past_a_gib() {
        // 1.1 x 1 GiB + 28.3 MiB: one decimal of GiB would print 1.1 GiB.
        let rule = (1.1 * 1024.0 * 1048576.0 + 28.3 * 1048576.0) as u64;
        assert_eq!(format_mib(rule), "1154.7 MiB");
        assert_eq!(format_size(rule), "1.1 GiB");
        assert_eq!(format_mib(0), "0.0 MiB");
    }

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("20m").unwrap(), Duration::from_secs(1200));
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert!(parse_duration("20 parsecs").is_err());
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn payload_has_the_requested_length_and_is_half_random() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for len in [20usize, 300, 417, 2048] {
            let p = payload(&mut rng, len);
            assert_eq!(p.len(), len, "{p}");
        }
        let p = payload(&mut rng, 1000);
        let distinct: std::collections::HashSet<&[u8]> = p.as_bytes()[600..].chunks(4).collect();
        assert!(distinct.len() > 90, "the random half must not repeat");
    }

    #[test]
    fn fingerprint_is_order_independent() {
        let mut a = SetFingerprint::default();
        let mut b = SetFingerprint::default();
        a.add(&[1, 2]);
        a.add(&[3, 4]);
        b.add(&[3, 4]);
        b.add(&[1, 2]);
        assert_eq!(a.value(), b.value());
        let mut c = SetFingerprint::default();
        c.add(&[2, 1]);
        c.add(&[3, 4]);
        assert_ne!(a.value(), c.value());
    }
}
