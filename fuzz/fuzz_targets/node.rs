//! Fuzzes the B+tree node decoders in `persistx_io::format::node`.
//!
//! Input layout: the first byte picks the decoder (0 leaf, 1 interior, else overflow), the
//! rest is the payload. Decoders must return `Ok` or `Err`, never panic; an accepted node
//! must re-encode to the bytes it was decoded from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use persistx_io::format::node::{
    decode_interior, decode_leaf, decode_overflow, encode_interior, encode_leaf, interior_len,
    leaf_len,
};

fuzz_target!(|data: &[u8]| {
    let Some((which, payload)) = data.split_first() else {
        return;
    };
    match which {
        0 => {
            if let Ok(entries) = decode_leaf(payload) {
                let mut again = Vec::new();
                encode_leaf(&entries, &mut again);
                assert_eq!(&again[..], &payload[..leaf_len(&entries)]);
            }
        }
        1 => {
            if let Ok((children, seps)) = decode_interior(payload) {
                let mut again = Vec::new();
                encode_interior(&children, &seps, &mut again);
                assert_eq!(&again[..], &payload[..interior_len(&children, &seps)]);
            }
        }
        _ => {
            let _ = decode_overflow(payload);
        }
    }
});
