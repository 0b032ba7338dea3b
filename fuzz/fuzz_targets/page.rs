//! Fuzzes `persistx_io::format::page::decode_page`.
//!
//! Input layout: bytes 0..8 are the expected page id (u64 LE), the rest is the page handed
//! to the decoder (inputs shorter than 8 bytes use id 0 and all their bytes). The decoder
//! must return `Ok` or `Err`, never panic; an accepted page must carry the expected id, its
//! header and payload must be the canonical encoding of what it decoded to, and re-encoding
//! must decode again to the same value. (Padding after the payload is not checked by the
//! decoder, so only header and payload are compared.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use persistx_io::format::page::{PAGE_HEADER_LEN, decode_page, encode_page};

fuzz_target!(|data: &[u8]| {
    let (page_id, buf) = match data.split_first_chunk::<8>() {
        Some((id, rest)) => (u64::from_le_bytes(*id), rest),
        None => (0, data),
    };
    let Ok((header, payload)) = decode_page(buf, page_id) else {
        return;
    };
    assert_eq!(header.page_id, page_id);
    assert_eq!(header.payload_len as usize, payload.len());
    let end = PAGE_HEADER_LEN + payload.len();
    let again = encode_page(&header, payload, buf.len());
    assert_eq!(
        &again[..end],
        &buf[..end],
        "an accepted page is not canonical"
    );
    assert_eq!(decode_page(&again, page_id), Ok((header, payload)));
});
