//! On-disk formats: WAL segment headers, WAL records, page headers, B+tree node payloads and
//! the superblock.
//!
//! Every structure is little-endian, laid out with `zerocopy` (no `usize`, no padding), and
//! carries a crc32c. `docs/format.md` documents each byte. Decoders take arbitrary bytes and
//! return [`FormatError`] on anything unexpected; they never panic (fuzzed in `fuzz/`).

use std::path::Path;

use crate::error::Error;

pub mod catalog;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod node;
pub mod page;
pub mod segment;
pub mod superblock;
pub mod wal;

/// The on-disk format version written by this build. Readers refuse newer versions.
pub const FORMAT_VERSION: u32 = 1;

/// Why bytes failed to decode. Carries no file context; [`FormatError::at`] adds it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Fewer bytes than the structure needs.
    #[error("truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the structure needs.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// The bytes are all zero: nothing was ever written here.
    #[error("zeroed: no structure was written here")]
    Zeroed,
    /// The magic number is wrong.
    #[error("bad magic: found {found:#x}")]
    BadMagic {
        /// The magic found.
        found: u64,
    },
    /// Written by a newer (or unknown) format version.
    #[error("unsupported format version {found} (this build reads up to {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The stored checksum does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid {field}: {value}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A field holds a valid value, but not the one this location requires.
    #[error("{field} mismatch: expected {expected}, found {found}")]
    Mismatch {
        /// The field's name.
        field: &'static str,
        /// What the reader expected (e.g. the page id it asked for).
        expected: u64,
        /// What the bytes say.
        found: u64,
    },
}

impl FormatError {
    /// Turns the decoding error into a corruption error naming the file and offset.
    pub fn at(self, file: &Path, offset: u64) -> Error {
        Error::Corruption {
            file: file.to_path_buf(),
            offset,
            what: self.to_string(),
        }
    }
}

/// Fails with [`FormatError::Truncated`] if `buf` is shorter than `needed`.
pub(crate) fn need(buf: &[u8], needed: usize) -> Result<(), FormatError> {
    if buf.len() < needed {
        return Err(FormatError::Truncated {
            needed: needed as u64,
            available: buf.len() as u64,
        });
    }
    Ok(())
}
