//! Byte encodings: an order-preserving codec for keys, user keys and namespaces, and a serde
//! codec for values.
//!
//! Map state is ordered by its encoded user keys, so the user-key codec must preserve order:
//! `a < b` implies `encode(a) < encode(b)` bytewise. That is what lets an interval join read
//! "timestamps from t-20min to t" as one bounded range. Integers are big-endian (signed ones
//! with the sign bit flipped), byte strings are escaped and terminated so that tuples compose
//! without losing order.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// A type with an order-preserving, self-delimiting byte encoding.
pub trait KeyCodec: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode_key(&self, out: &mut Vec<u8>);

    /// Decodes one value from the front of `input` and advances it.
    ///
    /// # Errors
    /// `Corruption` if the bytes are not a valid encoding.
    fn decode_key(input: &mut &[u8]) -> Result<Self>;
}

/// Encodes `value` into a fresh buffer.
pub fn encode_key<K: KeyCodec>(value: &K) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode_key(&mut out);
    out
}

/// Decodes a value that must span all of `bytes`.
///
/// # Errors
/// `Corruption` if the bytes are not exactly one valid encoding.
pub fn decode_key<K: KeyCodec>(mut bytes: &[u8]) -> Result<K> {
    let value = K::decode_key(&mut bytes)?;
    if !bytes.is_empty() {
        return Err(Error::corruption(format!(
            "{} trailing bytes after an encoded key",
            bytes.len()
        )));
    }
    Ok(value)
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if input.len() < n {
        return Err(Error::corruption(format!(
            "encoded key truncated: need {n} bytes, have {}",
            input.len()
        )));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

macro_rules! unsigned_key {
    ($($t:ty),*) => {$(
        impl KeyCodec for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_key(input: &mut &[u8]) -> Result<Self> {
                let bytes = take(input, std::mem::size_of::<$t>())?;
                let mut buf = [0u8; std::mem::size_of::<$t>()];
                buf.copy_from_slice(bytes);
                Ok(<$t>::from_be_bytes(buf))
            }
        }
    )*};
}
unsigned_key!(u8, u16, u32, u64, u128);

macro_rules! signed_key {
    ($($t:ty => $u:ty),*) => {$(
        impl KeyCodec for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                // Flipping the sign bit maps MIN..=MAX onto 0..=MAX of the unsigned type.
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode_key(input: &mut &[u8]) -> Result<Self> {
                let raw = <$u as KeyCodec>::decode_key(input)?;
                Ok((raw ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed_key!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

impl KeyCodec for bool {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self> {
        match take(input, 1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::corruption(format!("invalid bool byte {b:#04x}"))),
        }
    }
}

impl KeyCodec for f64 {
    fn encode_key(&self, out: &mut Vec<u8>) {
        // IEEE-754 total order: flip all bits of negatives, only the sign bit of positives.
        let bits = self.to_bits();
        let ordered = if bits >> 63 == 1 {
            !bits
        } else {
            bits ^ (1 << 63)
        };
        out.extend_from_slice(&ordered.to_be_bytes());
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self> {
        let ordered = u64::decode_key(input)?;
        let bits = if ordered >> 63 == 1 {
            ordered ^ (1 << 63)
        } else {
            !ordered
        };
        Ok(f64::from_bits(bits))
    }
}

impl KeyCodec for () {
    fn encode_key(&self, _out: &mut Vec<u8>) {}
    fn decode_key(_input: &mut &[u8]) -> Result<Self> {
        Ok(())
    }
}

/// Escapes 0x00 as `00 FF` and terminates with `00 01`. Both keep bytewise order (the
/// terminator sorts below any continuation, so a prefix sorts first) and make the encoding
/// self-delimiting: after a 0x00 the next byte says "escaped zero" or "end", whatever
/// follows in a tuple. (A bare 0x00 terminator, as in FoundationDB's tuple layer, relies on
/// a type byte after it; without one, a following 0xFF would read as an escape.)
fn encode_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 2);
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(ESCAPED_ZERO);
        }
    }
    out.extend_from_slice(&[0, TERMINATOR]);
}

const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

fn decode_escaped(input: &mut &[u8]) -> Result<Vec<u8>> {
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
            Some(&ESCAPED_ZERO) => {
                out.push(0);
                i += 2;
            }
            Some(&TERMINATOR) => {
                *input = &input[i + 2..];
                return Ok(out);
            }
            Some(&other) => {
                return Err(Error::corruption(format!(
                    "invalid byte {other:#04x} after 0x00 in an encoded byte string"
                )))
            }
            None => break,
        }
    }
    Err(Error::corruption("encoded byte string has no terminator"))
}

impl KeyCodec for Vec<u8> {
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_escaped(self, out);
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self> {
        decode_escaped(input)
    }
}

impl KeyCodec for String {
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_escaped(self.as_bytes(), out);
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self> {
        String::from_utf8(decode_escaped(input)?)
            .map_err(|e| Error::corruption(format!("encoded string is not UTF-8: {e}")))
    }
}

macro_rules! tuple_key {
    ($($name:ident),+) => {
        impl<$($name: KeyCodec),+> KeyCodec for ($($name,)+) {
            #[allow(non_snake_case)]
            fn encode_key(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $($name.encode_key(out);)+
            }
            fn decode_key(input: &mut &[u8]) -> Result<Self> {
                Ok(($($name::decode_key(input)?,)+))
            }
        }
    };
}
tuple_key!(A);
tuple_key!(A, B);
tuple_key!(A, B, C);
tuple_key!(A, B, C, D);

/// Encodes a value with serde (postcard: compact, stable wire format).
///
/// # Errors
/// `InvalidArgument` if the value cannot be serialized.
pub fn encode_value<V: Serialize + ?Sized>(value: &V) -> Result<Vec<u8>> {
    let len = encoded_len(value)?;
    postcard::to_extend(value, Vec::with_capacity(len)).map_err(serialize_error)
}

/// Appends `value`'s encoding (as [`encode_value`] makes it) to `out` behind its varint
/// length, as [`put_length_prefixed`] would append the bytes of `encode_value(value)`.
///
/// # Errors
/// `InvalidArgument` if the value cannot be serialized; `out` is then left as it was.
pub fn put_length_prefixed_value<V: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &V,
) -> Result<()> {
    let len = encoded_len(value)?;
    let start = out.len();
    put_length(out, len);
    let at = out.len();
    out.resize(at + len, 0);
    if let Err(e) = postcard::to_slice(value, &mut out[at..]) {
        // Not reached while the same serializer walks the same value twice alike.
        out.truncate(start);
        return Err(serialize_error(e));
    }
    Ok(())
}

/// The length of `value`'s encoding. Sizing first lets the encoding go straight into a
/// buffer of the right size: postcard's own `to_stdvec` grows its vector byte by byte
/// (a 450-byte value reallocated and copied eight times), then the caller copied it again.
fn encoded_len<V: Serialize + ?Sized>(value: &V) -> Result<usize> {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .map_err(serialize_error)
}

fn serialize_error(e: postcard::Error) -> Error {
    Error::invalid(format!("value cannot be serialized: {e}"))
}

/// Decodes a value written by [`encode_value`].
///
/// # Errors
/// `Corruption` if the bytes do not decode as a `V`.
pub fn decode_value<V: DeserializeOwned>(bytes: &[u8]) -> Result<V> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::corruption(format!(
            "{} bytes do not decode as {}: {e}",
            bytes.len(),
            std::any::type_name::<V>()
        ))
    })
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint from the front of `input`.
///
/// # Errors
/// `Corruption` if the varint is truncated or longer than 10 bytes.
pub fn get_varint(input: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    for (i, &b) in input.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            *input = &input[i + 1..];
            return Ok(v);
        }
    }
    Err(Error::corruption("truncated or overlong varint"))
}

/// Reads a varint length and then that many bytes.
///
/// # Errors
/// `Corruption` if the input is shorter than the length says.
pub fn get_length_prefixed<'a>(input: &mut &'a [u8]) -> Result<&'a [u8]> {
    let len = get_varint(input)?;
    let len = usize::try_from(len).map_err(|_| Error::corruption("length overflows usize"))?;
    take(input, len)
}

/// Appends a varint length and the bytes.
pub fn put_length_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    put_length(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends the varint `len`, reserving room for it and the `len` bytes that follow.
fn put_length(out: &mut Vec<u8>, len: usize) {
    // One reservation: a varint of a length takes at most 10 bytes.
    out.reserve(len + 10);
    put_varint(out, len as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Byte strings made of the bytes the escaping treats specially.
    fn edge_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(0xFE), Just(0xFF), any::<u8>()],
            0..5,
        )
    }

    fn roundtrip<K: KeyCodec + PartialEq + std::fmt::Debug>(k: &K) {
        let bytes = encode_key(k);
        assert_eq!(&decode_key::<K>(&bytes).unwrap(), k);
    }

    proptest! {
        #[test]
        fn i64_order_and_roundtrip(a: i64, b: i64) {
            roundtrip(&a);
            prop_assert_eq!(a.cmp(&b), encode_key(&a).cmp(&encode_key(&b)));
        }

        #[test]
        fn u32_order(a: u32, b: u32) {
            prop_assert_eq!(a.cmp(&b), encode_key(&a).cmp(&encode_key(&b)));
        }

        #[test]
        fn i32_order(a: i32, b: i32) {
            roundtrip(&a);
            prop_assert_eq!(a.cmp(&b), encode_key(&a).cmp(&encode_key(&b)));
        }

        #[test]
        fn f64_order(a in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::INFINITE,
                     b in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::INFINITE) {
            roundtrip(&a);
            if a < b { prop_assert!(encode_key(&a) < encode_key(&b)); }
        }

        #[test]
        fn bytes_order_and_roundtrip(a: Vec<u8>, b: Vec<u8>) {
            roundtrip(&a);
            prop_assert_eq!(a.cmp(&b), encode_key(&a).cmp(&encode_key(&b)));
        }

        #[test]
        fn string_order(a: String, b: String) {
            roundtrip(&a);
            prop_assert_eq!(a.cmp(&b), encode_key(&a).cmp(&encode_key(&b)));
        }

        #[test]
        fn tuple_order(a: (Vec<u8>, i64), b: (Vec<u8>, i64)) {
            roundtrip(&a);
            prop_assert_eq!(a.cmp(&b), encode_key(&a).cmp(&encode_key(&b)));
        }

        #[test]
        fn byte_string_tuples_keep_order(
            a in (edge_bytes(), edge_bytes()),
            b in (edge_bytes(), edge_bytes()),
        ) {
            roundtrip(&a);
            prop_assert_eq!(a.cmp(&b), encode_key(&a).cmp(&encode_key(&b)));
        }

        #[test]
        fn varint_roundtrip(v: u64) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut input = &out[..];
            prop_assert_eq!(get_varint(&mut input).unwrap(), v);
            prop_assert!(input.is_empty());
        }

        #[test]
        fn sized_encodings_equal_postcards_own(
            ts: i64,
            id: u64,
            body in ".{0,600}",
            before: Vec<u8>,
        ) {
            let value = (ts, id, body);
            let plain = postcard::to_stdvec(&value).unwrap();
            prop_assert_eq!(&encode_value(&value).unwrap(), &plain);
            let mut appended = before.clone();
            put_length_prefixed_value(&mut appended, &value).unwrap();
            let mut expected = before;
            put_length_prefixed(&mut expected, &plain);
            prop_assert_eq!(appended, expected);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes: Vec<u8>) {
            let _ = decode_key::<(String, i64)>(&bytes);
            let _ = decode_key::<(Vec<u8>, u32, bool)>(&bytes);
            let _ = get_length_prefixed(&mut &bytes[..]);
        }
    }

    #[test]
    fn a_byte_string_followed_by_0xff_decodes() {
        let key = (b"a".to_vec(), b"\xff".to_vec());
        assert_eq!(
            decode_key::<(Vec<u8>, Vec<u8>)>(&encode_key(&key)).unwrap(),
            key
        );
        let lo = (b"a".to_vec(), b"\xff\x01".to_vec());
        let hi = (b"a\x00".to_vec(), Vec::new());
        assert!(encode_key(&lo) < encode_key(&hi));
    }

    /// A value whose `Serialize` fails.
    struct Unserializable;

    impl Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }

    /// A value that serializes once (when it is sized) and fails the second time.
    struct FailsWhenWritten(std::cell::Cell<bool>);

    impl Serialize for FailsWhenWritten {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            if self.0.replace(true) {
                Err(serde::ser::Error::custom("refused"))
            } else {
                s.serialize_bytes(b"sized")
            }
        }
    }

    #[test]
    fn a_value_failing_after_it_was_sized_leaves_the_buffer_as_it_was() {
        let mut out = vec![1, 2, 3];
        let err =
            put_length_prefixed_value(&mut out, &FailsWhenWritten(Default::default())).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn a_value_that_cannot_be_serialized_is_an_error_and_appends_nothing() {
        let err = encode_value(&Unserializable).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        let mut out = vec![1, 2, 3];
        let err = put_length_prefixed_value(&mut out, &Unserializable).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn truncated_input_is_corruption() {
        let err = decode_key::<u64>(&[1, 2, 3]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corruption);
        assert!(decode_key::<String>(b"abc").is_err());
        assert!(decode_key::<u8>(&[1, 2]).is_err(), "trailing bytes");
    }
}
