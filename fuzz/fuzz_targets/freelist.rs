//! Fuzzes `persistx_io::format::catalog::decode_freelist` (free-list page payloads).
//!
//! The checks (canonical re-encoding, decode again to the same value) live in
//! `persistx_io::format::fuzz_checks::freelist`, shared with the corpus replay in
//! `io/tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = persistx_io::format::fuzz_checks::freelist(data);
});
