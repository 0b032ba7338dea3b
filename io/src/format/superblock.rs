//! The superblock: the root of the page file, in two alternating slots.
//!
//! Slot 0 is page 0 and slot 1 is page 1 of `data.px`. A checkpoint writes the slot that does
//! not hold the newest valid superblock, syncs, and from then on that one wins: at open the
//! valid slot with the highest checkpoint number is used, so a crash mid-checkpoint leaves
//! the previous superblock in force.
//!
//! ```text
//! offset size field
//!  0      8   magic "PXSUPER\0"
//!  8      4   format version (u32)
//! 12      4   page size in bytes (u32): a power of two, 4096..=65536
//! 16      8   checkpoint number (u64), >= 1, +1 per checkpoint
//! 24      8   checkpoint LSN (u64): every WAL record up to it is in the page file
//! 32      8   catalog root page id (u64), 0 = empty catalog
//! 40      8   free-list root page id (u64), 0 = none
//! 48      8   page count (u64): pages the file holds, slots included (>= 2)
//! 56      8   database id (u64): random at creation, ties the WAL to this file
//! 64     60   reserved, zero
//! 124     4   crc32c of bytes 0..124 ++ slot number as u32 LE (u32)
//! ```
//!
//! The slot number is bound into the checksum, so a superblock copied into the other slot
//! does not validate there. Bytes after 128 up to the page size are zero and not read.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{FORMAT_VERSION, FormatError, need};

/// Bytes of the superblock structure at the start of its slot.
pub const SUPERBLOCK_LEN: usize = 128;
/// The superblock magic.
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"PXSUPER\0";
/// Smallest page size.
pub const MIN_PAGE_SIZE: u32 = 4096;
/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 65536;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawSuperblock {
    magic: [u8; 8],
    version: U32,
    page_size: U32,
    checkpoint: U64,
    checkpoint_lsn: U64,
    catalog_root: U64,
    free_list_root: U64,
    page_count: U64,
    database_id: U64,
    reserved: [u8; 60],
    crc: U32,
}

const _: () = assert!(size_of::<RawSuperblock>() == SUPERBLOCK_LEN);

/// A decoded superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Page size of the file.
    pub page_size: u32,
    /// Checkpoint number; the valid slot with the highest wins.
    pub checkpoint: u64,
    /// Every WAL record up to this LSN is reflected in the page file.
    pub checkpoint_lsn: u64,
    /// Root page of the catalog, 0 if empty.
    pub catalog_root: u64,
    /// Root page of the free list, 0 if none.
    pub free_list_root: u64,
    /// Pages in the file, the two slots included.
    pub page_count: u64,
    /// Random id chosen at creation.
    pub database_id: u64,
}

fn checksum(bytes: &[u8], slot: u32) -> u32 {
    crc32c::crc32c_append(
        crc32c::crc32c(&bytes[..SUPERBLOCK_LEN - 4]),
        &slot.to_le_bytes(),
    )
}

impl Superblock {
    /// Encodes the superblock for `slot` (0 or 1): 128 bytes.
    ///
    /// # Panics
    /// If `slot` is not 0 or 1 (a programming error).
    pub fn encode(&self, slot: u32) -> [u8; SUPERBLOCK_LEN] {
        assert!(slot < 2, "superblock slots are 0 and 1");
        let mut raw = RawSuperblock {
            magic: SUPERBLOCK_MAGIC,
            version: U32::new(FORMAT_VERSION),
            page_size: U32::new(self.page_size),
            checkpoint: U64::new(self.checkpoint),
            checkpoint_lsn: U64::new(self.checkpoint_lsn),
            catalog_root: U64::new(self.catalog_root),
            free_list_root: U64::new(self.free_list_root),
            page_count: U64::new(self.page_count),
            database_id: U64::new(self.database_id),
            reserved: [0; 60],
            crc: U32::new(0),
        };
        raw.crc = U32::new(checksum(raw.as_bytes(), slot));
        let mut out = [0u8; SUPERBLOCK_LEN];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Decodes and checks the superblock read from `slot`.
    pub fn decode(buf: &[u8], slot: u32) -> Result<Superblock, FormatError> {
        need(buf, SUPERBLOCK_LEN)?;
        let bytes = &buf[..SUPERBLOCK_LEN];
        if bytes.iter().all(|b| *b == 0) {
            return Err(FormatError::Zeroed);
        }
        let (raw, _) =
            RawSuperblock::read_from_prefix(bytes).map_err(|_| FormatError::Truncated {
                needed: SUPERBLOCK_LEN as u64,
                available: buf.len() as u64,
            })?;
        if raw.magic != SUPERBLOCK_MAGIC {
            return Err(FormatError::BadMagic {
                found: u64::from_le_bytes(raw.magic),
            });
        }
        let computed = checksum(bytes, slot);
        if computed != raw.crc.get() {
            return Err(FormatError::ChecksumMismatch {
                stored: raw.crc.get(),
                computed,
            });
        }
        let version = raw.version.get();
        if version == 0 || version > FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let page_size = raw.page_size.get();
        if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(FormatError::InvalidField {
                field: "page size",
                value: page_size.into(),
            });
        }
        if raw.checkpoint.get() == 0 {
            return Err(FormatError::InvalidField {
                field: "checkpoint number",
                value: 0,
            });
        }
        let page_count = raw.page_count.get();
        if page_count < 2 {
            return Err(FormatError::InvalidField {
                field: "page count",
                value: page_count,
            });
        }
        for (field, id) in [
            ("catalog root", raw.catalog_root.get()),
            ("free-list root", raw.free_list_root.get()),
        ] {
            if id != 0 && (id < 2 || id >= page_count) {
                return Err(FormatError::InvalidField { field, value: id });
            }
        }
        if raw.reserved.iter().any(|b| *b != 0) {
            return Err(FormatError::InvalidField {
                field: "superblock reserved bytes",
                value: 1,
            });
        }
        Ok(Superblock {
            page_size,
            checkpoint: raw.checkpoint.get(),
            checkpoint_lsn: raw.checkpoint_lsn.get(),
            catalog_root: raw.catalog_root.get(),
            free_list_root: raw.free_list_root.get(),
            page_count,
            database_id: raw.database_id.get(),
        })
    }
}

/// Picks the superblock in force from the two slots' decode results: the valid one with the
/// highest checkpoint number, and its slot. If neither is valid, returns slot 0's error (the
/// caller reports corruption, naming the file). Two valid slots with the same checkpoint
/// number cannot be produced by the writer and are reported as invalid.
pub fn choose(
    slot0: Result<Superblock, FormatError>,
    slot1: Result<Superblock, FormatError>,
) -> Result<(u32, Superblock), FormatError> {
    match (slot0, slot1) {
        (Ok(a), Ok(b)) if a.checkpoint == b.checkpoint => Err(FormatError::Mismatch {
            field: "superblock checkpoint numbers",
            expected: a.checkpoint + 1,
            found: b.checkpoint,
        }),
        (Ok(a), Ok(b)) => Ok(if a.checkpoint > b.checkpoint {
            (0, a)
        } else {
            (1, b)
        }),
        (Ok(a), Err(_)) => Ok((0, a)),
        (Err(_), Ok(b)) => Ok((1, b)),
        (Err(e), Err(_)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(checkpoint: u64) -> Superblock {
        Superblock {
            page_size: 4096,
            checkpoint,
            checkpoint_lsn: 77,
            catalog_root: 5,
            free_list_root: 0,
            page_count: 10,
            database_id: 0xDEAD_BEEF,
        }
    }

    #[test]
    fn round_trip_and_slot_binding() {
        let s = sample(3);
        assert_eq!(Superblock::decode(&s.encode(1), 1), Ok(s));
        assert!(matches!(
            Superblock::decode(&s.encode(1), 0),
            Err(FormatError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let good = sample(3).encode(0);
        for bit in 0..SUPERBLOCK_LEN * 8 {
            let mut bad = good;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Superblock::decode(&bad, 0).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn the_newest_valid_slot_wins() {
        let (old, new) = (sample(4), sample(5));
        assert_eq!(choose(Ok(old), Ok(new)), Ok((1, new)));
        assert_eq!(choose(Ok(new), Ok(old)), Ok((0, new)));
        assert_eq!(choose(Ok(old), Err(FormatError::Zeroed)), Ok((0, old)));
        assert_eq!(choose(Err(FormatError::Zeroed), Ok(old)), Ok((1, old)));
        assert!(choose(Err(FormatError::Zeroed), Err(FormatError::Zeroed)).is_err());
        assert!(choose(Ok(old), Ok(old)).is_err());
    }

    #[test]
    fn invalid_fields_are_refused() {
        let mut s = sample(1);
        s.page_size = 3000;
        assert!(Superblock::decode(&s.encode(0), 0).is_err());
        let mut s = sample(1);
        s.catalog_root = 10; // == page_count
        assert!(Superblock::decode(&s.encode(0), 0).is_err());
        assert!(Superblock::decode(&sample(0).encode(0), 0).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), slot in 0u32..2) {
            let _ = Superblock::decode(&bytes, slot);
        }
    }
}
