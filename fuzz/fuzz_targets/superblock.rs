//! Fuzzes `persistx_io::format::superblock::Superblock::decode`.
//!
//! Input layout: the first byte's low bit is the slot (0 or 1), the rest is the buffer. The
//! decoder must return `Ok` or `Err`, never panic; an accepted superblock must be the
//! canonical encoding for its slot and decode again to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use persistx_io::format::superblock::{SUPERBLOCK_LEN, Superblock};

fuzz_target!(|data: &[u8]| {
    let Some((first, buf)) = data.split_first() else {
        return;
    };
    let slot = u32::from(first & 1);
    let Ok(sb) = Superblock::decode(buf, slot) else {
        return;
    };
    assert_eq!(
        &sb.encode(slot)[..],
        &buf[..SUPERBLOCK_LEN],
        "an accepted superblock is not canonical"
    );
    assert_eq!(Superblock::decode(&sb.encode(slot), slot), Ok(sb));
});
