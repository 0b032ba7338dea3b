//! Fuzzes `persistx_io::format::segment::SegmentHeader::decode`.
//!
//! Input layout: the whole input is the buffer handed to the decoder. The decoder must
//! return `Ok` or `Err`, never panic; an accepted header must be the canonical encoding of
//! what it decoded to and must decode again to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use persistx_io::format::segment::{SEGMENT_HEADER_LEN, SegmentHeader};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = SegmentHeader::decode(data) else {
        return;
    };
    let again = header.encode();
    assert_eq!(
        &again[..],
        &data[..SEGMENT_HEADER_LEN],
        "an accepted header is not canonical"
    );
    assert_eq!(SegmentHeader::decode(&again), Ok(header));
});
