//! Fuzzes `persistx_io::format::wal::decode_record`.
//!
//! Input layout: bytes 0..8 are the segment sequence number (u64 LE), the rest is the buffer
//! handed to the decoder (inputs shorter than 8 bytes use sequence 0 and all their bytes).
//! The decoder must return `Ok` or `Err`, never panic; an accepted record must be the
//! canonical encoding of what it decoded to (re-encoding gives the same bytes back) and must
//! decode again to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use persistx_io::format::wal::{RECORD_HEADER_LEN, decode_record, encode_record, frame_len};

fuzz_target!(|data: &[u8]| {
    let (seq, buf) = match data.split_first_chunk::<8>() {
        Some((seq, rest)) => (u64::from_le_bytes(*seq), rest),
        None => (0, data),
    };
    let Ok((header, payload)) = decode_record(buf, seq) else {
        return;
    };
    assert_eq!(header.len as usize, payload.len());
    assert_eq!(header.frame_len() as usize, frame_len(payload.len()));
    let end = RECORD_HEADER_LEN + payload.len();
    let mut again = Vec::new();
    encode_record(&mut again, seq, header.lsn, header.durable_lsn, payload);
    assert_eq!(again.len(), frame_len(payload.len()));
    assert_eq!(
        &again[..end],
        &buf[..end],
        "an accepted record is not canonical"
    );
    assert_eq!(decode_record(&again, seq), Ok((header, payload)));
});
