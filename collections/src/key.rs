//! Order-preserving key encoding: `a.cmp(&b) == encode(a).cmp(&encode(b))`.
//!
//! Collections keep keys as bytes in a B+tree ordered by byte comparison, so range scans over
//! typed keys are correct only if the encoding preserves `Ord`. The rules (documented in
//! `docs/format.md` once keys reach disk):
//!
//! | type | encoding |
//! |---|---|
//! | `u8`..`u128`, `usize` | big-endian, fixed width (`usize` as `u64`) |
//! | `i8`..`i128`, `isize` | sign bit flipped, then big-endian (`isize` as `i64`) |
//! | `bool` | one byte, 0 or 1 |
//! | `char` | its scalar value as a big-endian `u32` |
//! | `String`, `Vec<u8>`, `Bytes` (and, for lookups, `str` and `[u8]`: [`KeyRef`]) | last in the key: the raw bytes; elsewhere: each `0x00` written as `0x00 0xFF`, then `0x00 0x00` |
//! | `Option<T>` | `0x00` for `None`; `0x01` then `T` |
//! | tuples (up to 6), `[T; N]` | the elements in order |
//!
//! Byte strings are stored as they are when they end the key (a plain `Vec<u8>` key costs
//! nothing); inside a composite key the escape makes them self-delimiting, and the
//! terminator `0x00 0x00` sorts below every continuation, so a prefix sorts first, as `Ord`
//! says. UTF-8 byte order equals `char` order, so strings follow the same rule.

use bytes::Bytes;

/// Why bytes did not decode as a key of the expected type.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes end before the key does.
    #[error("key bytes end early: need {needed} more for {ty}")]
    Truncated {
        /// The type being decoded.
        ty: &'static str,
        /// Bytes missing.
        needed: usize,
    },
    /// A byte that no encoding of the type can contain.
    #[error("invalid key bytes for {ty}: {what}")]
    Invalid {
        /// The type being decoded.
        ty: &'static str,
        /// What was wrong.
        what: String,
    },
    /// Bytes left over after the key.
    #[error("{0} bytes left over after the key")]
    Trailing(usize),
}

/// A type usable as a collection key: encodes so that byte order equals `Ord`.
pub trait Key: Ord + Sized {
    /// Appends the encoding. `last` is true when nothing follows in the key (the whole key,
    /// or the last element of a tuple that is itself last), so variable-length values need
    /// no terminator.
    fn encode_key(&self, out: &mut Vec<u8>, last: bool);
    /// Decodes from the front of `input`, advancing it. `last` as for [`Key::encode_key`].
    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError>;
}

/// The bytes of a whole key, given as itself or as a borrowed form ([`KeyRef`]).
pub fn encode<Q: KeyRef + ?Sized>(key: &Q) -> Vec<u8> {
    let mut out = Vec::new();
    key.encode_whole(&mut out);
    out
}

/// A form of a key that lookups accept, as `std`'s maps take `&Q` where `K: Borrow<Q>`:
/// every [`Key`] itself, `[u8]` for `Vec<u8>`, `Bytes` and byte arrays, and `str` for
/// `String`. A whole key's encoding and its borrowed form's are the same bytes, so
/// `map.get(b"abc".as_slice())` finds what `map.insert(b"abc".to_vec(), v)` stored.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use persistx_collections::{Database, PersistentMap};
/// let db = Database::in_memory().await?;
/// let ages: PersistentMap<String, u32> = db.map("ages").await?;
/// ages.insert("ada".to_string(), 36).await?;
/// assert_eq!(ages.get("ada").await?, Some(36)); // a &str: no String is made
/// let blobs: PersistentMap<Vec<u8>, u32> = db.map("blobs").await?;
/// blobs.insert(b"k1".to_vec(), 1).await?;
/// assert!(blobs.contains_key(b"k1".as_slice()).await?);
/// db.close().await?;
/// # Ok::<(), persistx_collections::Error>(()) }).unwrap();
/// ```
///
/// Implementing it for a type of your own: if `K: Borrow<Q>`, `Q`'s `encode_whole` must write
/// exactly the bytes [`encode`] writes for the `K` it borrows from (as `std` asks `Borrow`
/// to keep `Eq`, `Ord` and `Hash`); otherwise a lookup by `Q` silently misses.
pub trait KeyRef {
    /// Appends the encoding of the whole key.
    fn encode_whole(&self, out: &mut Vec<u8>);
}

impl<K: Key> KeyRef for K {
    fn encode_whole(&self, out: &mut Vec<u8>) {
        self.encode_key(out, true);
    }
}

impl KeyRef for [u8] {
    fn encode_whole(&self, out: &mut Vec<u8>) {
        encode_bytes(self, out, true);
    }
}

impl KeyRef for str {
    fn encode_whole(&self, out: &mut Vec<u8>) {
        encode_bytes(self.as_bytes(), out, true);
    }
}

/// Decodes a whole key; every byte must belong to it.
pub fn decode<K: Key>(mut bytes: &[u8]) -> Result<K, KeyError> {
    let key = K::decode_key(&mut bytes, true)?;
    if !bytes.is_empty() {
        return Err(KeyError::Trailing(bytes.len()));
    }
    Ok(key)
}

fn take<'a>(input: &mut &'a [u8], n: usize, ty: &'static str) -> Result<&'a [u8], KeyError> {
    if input.len() < n {
        return Err(KeyError::Truncated {
            ty,
            needed: n - input.len(),
        });
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>, _last: bool) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_key(input: &mut &[u8], _last: bool) -> Result<Self, KeyError> {
                let b = take(input, size_of::<$t>(), stringify!($t))?;
                let mut a = [0u8; size_of::<$t>()];
                a.copy_from_slice(b);
                Ok(<$t>::from_be_bytes(a))
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64, u128);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                flipped.encode_key(out, last);
            }
            fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError> {
                let u = <$u>::decode_key(input, last)?;
                Ok((u ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

impl Key for usize {
    fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
        (*self as u64).encode_key(out, last);
    }
    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError> {
        let v = u64::decode_key(input, last)?;
        usize::try_from(v).map_err(|_| KeyError::Invalid {
            ty: "usize",
            what: format!("{v} does not fit"),
        })
    }
}

impl Key for isize {
    fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
        (*self as i64).encode_key(out, last);
    }
    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError> {
        let v = i64::decode_key(input, last)?;
        isize::try_from(v).map_err(|_| KeyError::Invalid {
            ty: "isize",
            what: format!("{v} does not fit"),
        })
    }
}

impl Key for bool {
    fn encode_key(&self, out: &mut Vec<u8>, _last: bool) {
        out.push(u8::from(*self));
    }
    fn decode_key(input: &mut &[u8], _last: bool) -> Result<Self, KeyError> {
        match take(input, 1, "bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(KeyError::Invalid {
                ty: "bool",
                what: format!("byte {b}"),
            }),
        }
    }
}

impl Key for char {
    fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
        u32::from(*self).encode_key(out, last);
    }
    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError> {
        let v = u32::decode_key(input, last)?;
        char::from_u32(v).ok_or_else(|| KeyError::Invalid {
            ty: "char",
            what: format!("{v:#x} is not a scalar value"),
        })
    }
}

/// Writes a byte string: raw if last, else escaped and terminated.
fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>, last: bool) {
    if last {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Reads a byte string written by [`encode_bytes`].
fn decode_bytes(input: &mut &[u8], last: bool, ty: &'static str) -> Result<Vec<u8>, KeyError> {
    if last {
        let out = input.to_vec();
        *input = &[];
        return Ok(out);
    }
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match input.get(i) {
            None => return Err(KeyError::Truncated { ty, needed: 2 }),
            Some(0) => match input.get(i + 1) {
                Some(0) => {
                    *input = &input[i + 2..];
                    return Ok(out);
                }
                Some(0xFF) => {
                    out.push(0);
                    i += 2;
                }
                Some(b) => {
                    return Err(KeyError::Invalid {
                        ty,
                        what: format!("0x00 followed by {b:#04x}"),
                    });
                }
                None => return Err(KeyError::Truncated { ty, needed: 1 }),
            },
            Some(&b) => {
                out.push(b);
                i += 1;
            }
        }
    }
}

impl Key for Vec<u8> {
    fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(self, out, last);
    }
    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError> {
        decode_bytes(input, last, "byte string")
    }
}

impl Key for Bytes {
    fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(self, out, last);
    }
    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError> {
        decode_bytes(input, last, "byte string").map(Bytes::from)
    }
}

impl Key for String {
    fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(self.as_bytes(), out, last);
    }
    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError> {
        let bytes = decode_bytes(input, last, "String")?;
        String::from_utf8(bytes).map_err(|e| KeyError::Invalid {
            ty: "String",
            what: e.to_string(),
        })
    }
}

impl<T: Key> Key for Option<T> {
    fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode_key(out, last);
            }
        }
    }
    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError> {
        match take(input, 1, "Option")?[0] {
            0 => Ok(None),
            1 => T::decode_key(input, last).map(Some),
            b => Err(KeyError::Invalid {
                ty: "Option",
                what: format!("tag {b}"),
            }),
        }
    }
}

impl<T: Key, const N: usize> Key for [T; N] {
    fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
        for (i, v) in self.iter().enumerate() {
            v.encode_key(out, last && i + 1 == N);
        }
    }
    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError> {
        let mut items = Vec::with_capacity(N);
        for i in 0..N {
            items.push(T::decode_key(input, last && i + 1 == N)?);
        }
        items.try_into().map_err(|_| KeyError::Invalid {
            ty: "array",
            what: "wrong length".into(),
        })
    }
}

macro_rules! tuple {
    ($($name:ident : $idx:tt),+ ; $lastidx:tt) => {
        impl<$($name: Key),+> Key for ($($name,)+) {
            fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
                $( self.$idx.encode_key(out, last && $idx == $lastidx); )+
            }
            fn decode_key(input: &mut &[u8], last: bool) -> Result<Self, KeyError> {
                Ok(($( $name::decode_key(input, last && $idx == $lastidx)?, )+))
            }
        }
    };
}
tuple!(A: 0; 0);
tuple!(A: 0, B: 1; 1);
tuple!(A: 0, B: 1, C: 2; 2);
tuple!(A: 0, B: 1, C: 2, D: 3; 3);
tuple!(A: 0, B: 1, C: 2, D: 3, E: 4; 4);
tuple!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5; 5);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fmt::Debug;

    fn check<K: Key + Debug + Clone>(a: &K, b: &K) -> Result<(), TestCaseError> {
        let (ea, eb) = (encode(a), encode(b));
        prop_assert_eq!(a.cmp(b), ea.cmp(&eb), "{:?} vs {:?}", a, b);
        prop_assert_eq!(&decode::<K>(&ea).expect("round trip"), a);
        Ok(())
    }

    macro_rules! order_test {
        ($name:ident, $strategy:expr) => {
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(512))]
                #[test]
                fn $name(a in $strategy, b in $strategy) {
                    check(&a, &b)?;
                }
            }
        };
    }

    fn bytes_with_zeros() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(0xFFu8), Just(1u8), any::<u8>()],
            0..12,
        )
    }

    order_test!(order_u8, any::<u8>());
    order_test!(order_u16, any::<u16>());
    order_test!(order_u32, any::<u32>());
    order_test!(order_u64, any::<u64>());
    order_test!(order_u128, any::<u128>());
    order_test!(order_usize, any::<usize>());
    order_test!(order_i8, any::<i8>());
    order_test!(order_i16, any::<i16>());
    order_test!(order_i32, any::<i32>());
    order_test!(order_i64, any::<i64>());
    order_test!(order_i128, any::<i128>());
    order_test!(order_isize, any::<isize>());
    order_test!(order_bool, any::<bool>());
    order_test!(order_char, any::<char>());
    order_test!(order_string, ".{0,8}|\0{0,3}a?\0?");
    order_test!(order_bytes, bytes_with_zeros());
    order_test!(order_option, proptest::option::of(any::<i16>()));
    order_test!(order_array, any::<[i8; 3]>());
    order_test!(order_pair_bytes_first, (bytes_with_zeros(), any::<u8>()));
    order_test!(order_pair_string_string, (".{0,4}", ".{0,4}"));
    order_test!(
        order_nested,
        (
            proptest::option::of(bytes_with_zeros()),
            any::<bool>(),
            bytes_with_zeros()
        )
    );
    order_test!(
        order_six,
        (
            any::<u8>(),
            any::<i8>(),
            any::<bool>(),
            ".{0,3}",
            proptest::option::of(any::<u16>()),
            bytes_with_zeros()
        )
    );
    order_test!(order_bytes_type, bytes_with_zeros().prop_map(Bytes::from));
    order_test!(order_array_of_strings, proptest::array::uniform2(".{0,3}"));

    #[test]
    fn raw_bytes_cost_nothing_when_last() {
        assert_eq!(encode(&b"a\0b".to_vec()), b"a\0b".to_vec());
        assert_eq!(encode(&(1u8, b"a\0".to_vec())), vec![1, b'a', 0]);
        assert_eq!(
            encode(&(b"a\0".to_vec(), 1u8)),
            vec![b'a', 0, 0xFF, 0, 0, 1]
        );
    }

    proptest! {
        /// Every borrowed form a lookup accepts encodes as the owned key does, so
        /// `get(&k[..])` finds what `insert(k)` stored.
        #[test]
        fn borrowed_forms_encode_as_their_keys(
            bytes in bytes_with_zeros(),
            text in ".{0,12}",
            arr in proptest::array::uniform4(any::<u8>()),
        ) {
            use std::borrow::Borrow;
            prop_assert_eq!(encode::<[u8]>(bytes.borrow()), encode(&bytes));
            let b = Bytes::from(bytes.clone());
            prop_assert_eq!(encode::<[u8]>(b.borrow()), encode(&b));
            prop_assert_eq!(encode::<str>(text.borrow()), encode(&text));
            prop_assert_eq!(encode::<[u8]>(arr.borrow()), encode(&arr));
            prop_assert_eq!(encode(&(7u16, text.clone())), encode(&(7u16, text)));
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode::<(String, Option<u64>, Vec<u8>)>(&bytes);
            let _ = decode::<(Vec<u8>, [char; 2], bool)>(&bytes);
            let _ = decode::<(i128, String)>(&bytes);
            let _ = decode::<usize>(&bytes);
        }
    }
}
