//! The one error type of the typed collections.

use crate::key::KeyError;
use crate::value::ValueError;

/// Result alias of the collections crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with a database or a collection.
///
/// Engine failures keep their own variants (I/O, corruption with file and offset, a locked
/// database, a poisoned log, a value too large...) inside [`Error::Engine`]; match on
/// [`Error::engine`] to tell them apart. The typed layer adds encoding failures.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The engine failed: I/O, corruption, lock, bad argument, closed... (see the inner
    /// error for which).
    #[error(transparent)]
    Engine(#[from] persistx_actors::Error),
    /// A stored key does not decode as the collection's key type (damage, or the
    /// collection was written with another key type).
    #[error("collection {collection:?}: a stored key does not decode: {source}")]
    Key {
        /// The collection.
        collection: String,
        /// Why.
        source: KeyError,
    },
    /// A value does not encode, or a stored value does not decode as the collection's value
    /// type.
    #[error("collection {collection:?}: {source}")]
    Value {
        /// The collection.
        collection: String,
        /// Why.
        source: ValueError,
    },
}

impl Error {
    /// The engine error inside, if this is one.
    pub fn engine(&self) -> Option<&persistx_actors::Error> {
        match self {
            Error::Engine(e) => Some(e),
            _ => None,
        }
    }

    /// True if the error reports damaged data on disk.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Engine(persistx_actors::Error::Corruption { .. })
        )
    }
}
