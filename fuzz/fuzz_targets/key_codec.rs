//! The order-preserving key codec and the value codec: any bytes decode to a value or an
//! error, never a panic; a decoded key encodes back to bytes that decode to the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statekit_backend::codec::{
    decode_key, decode_value, encode_key, get_length_prefixed, get_varint,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = decode_key::<(i64, u64, String, Vec<u8>)>(data) {
        let again: (i64, u64, String, Vec<u8>) =
            decode_key(&encode_key(&key)).expect("a re-encoded key decodes");
        assert_eq!(again, key);
    }
    let _ = decode_key::<(u32, i32, bool)>(data);
    let _ = decode_key::<Vec<u8>>(data);
    let _ = decode_value::<(u64, String, Vec<u32>)>(data);
    let mut input = data;
    while get_varint(&mut input).is_ok() && !input.is_empty() {}
    let mut input = data;
    while get_length_prefixed(&mut input).is_ok() && !input.is_empty() {}
});
