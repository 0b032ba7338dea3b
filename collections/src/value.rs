//! Value encoding: a one-byte header naming the codec, the schema version for codec-encoded
//! values, then the payload.
//!
//! ```text
//! raw:    0x00, bytes                       (Vec<u8>, Bytes, [u8; N]: stored as they are)
//! codec:  codec id (u8), schema version (u16 LE), codec payload
//!         ids: 1 = JSON (default), 2 = MessagePack (feature `msgpack`), 3 = postcard (feature `postcard`)
//! ```
//!
//! Any serde type is a value. Blobs do not pay for JSON: a value whose serde form is a byte
//! string or a sequence of `u8` (that is `Vec<u8>`, `bytes::Bytes`, `[u8; N]`) is detected by
//! a probing serializer and stored raw. Every stored value says which codec and schema
//! version wrote it, so a reader never guesses.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Header byte of a raw value.
pub const RAW: u8 = 0;

/// Why a value did not encode or decode.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The codec refused the value.
    #[error("cannot encode value with {codec}: {reason}")]
    Encode {
        /// The codec's name.
        codec: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// The stored bytes do not decode as the expected type.
    #[error("cannot decode value with {codec}: {reason}")]
    Decode {
        /// The codec's name.
        codec: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// The header names a codec this build does not have (or no codec at all).
    #[error("value written with unknown codec id {0} (a feature may be missing)")]
    UnknownCodec(u8),
    /// The value is empty or its header is cut short.
    #[error("value header truncated")]
    Truncated,
}

/// A serialization format for values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// JSON (serde_json): readable, the default.
    #[default]
    Json,
    /// MessagePack (rmp-serde), compact and self-describing.
    #[cfg(feature = "msgpack")]
    MsgPack,
    /// postcard: compact, not self-describing.
    #[cfg(feature = "postcard")]
    Postcard,
}

impl Codec {
    /// The id stored in each value's header.
    pub fn id(self) -> u8 {
        match self {
            Codec::Json => 1,
            #[cfg(feature = "msgpack")]
            Codec::MsgPack => 2,
            #[cfg(feature = "postcard")]
            Codec::Postcard => 3,
        }
    }

    /// The codec of a header id.
    pub fn from_id(id: u8) -> Result<Codec, ValueError> {
        match id {
            1 => Ok(Codec::Json),
            #[cfg(feature = "msgpack")]
            2 => Ok(Codec::MsgPack),
            #[cfg(feature = "postcard")]
            3 => Ok(Codec::Postcard),
            other => Err(ValueError::UnknownCodec(other)),
        }
    }

    /// A short name for errors.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "JSON",
            #[cfg(feature = "msgpack")]
            Codec::MsgPack => "MessagePack",
            #[cfg(feature = "postcard")]
            Codec::Postcard => "postcard",
        }
    }

    fn encode<T: Serialize>(self, value: &T, out: &mut Vec<u8>) -> Result<(), ValueError> {
        let err = |reason: String| ValueError::Encode {
            codec: self.name(),
            reason,
        };
        match self {
            Codec::Json => serde_json::to_writer(out, value).map_err(|e| err(e.to_string())),
            #[cfg(feature = "msgpack")]
            Codec::MsgPack => {
                rmp_serde::encode::write_named(out, value).map_err(|e| err(e.to_string()))
            }
            #[cfg(feature = "postcard")]
            Codec::Postcard => {
                let bytes = postcard::to_allocvec(value).map_err(|e| err(e.to_string()))?;
                out.extend_from_slice(&bytes);
                Ok(())
            }
        }
    }

    fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, ValueError> {
        let err = |reason: String| ValueError::Decode {
            codec: self.name(),
            reason,
        };
        match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| err(e.to_string())),
            #[cfg(feature = "msgpack")]
            Codec::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| err(e.to_string())),
            #[cfg(feature = "postcard")]
            Codec::Postcard => postcard::from_bytes(bytes).map_err(|e| err(e.to_string())),
        }
    }
}

/// Encodes a value: raw if its serde form is a byte string, else with `codec` under schema
/// `version`.
pub fn encode<T: Serialize>(value: &T, codec: Codec, version: u16) -> Result<Vec<u8>, ValueError> {
    let mut out = vec![RAW];
    if value.serialize(probe::RawProbe { out: &mut out }).is_ok() {
        return Ok(out);
    }
    out.clear();
    out.push(codec.id());
    out.extend_from_slice(&version.to_le_bytes());
    codec.encode(value, &mut out)?;
    Ok(out)
}

/// A decoded value and the schema version it was written with (`None` for raw values).
pub fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<(T, Option<u16>), ValueError> {
    let (&id, rest) = bytes.split_first().ok_or(ValueError::Truncated)?;
    if id == RAW {
        // The common blob types in one copy instead of serde's byte-by-byte sequence.
        let mut out: Option<T> = None;
        let any: &mut dyn std::any::Any = &mut out;
        if let Some(v) = any.downcast_mut::<Option<Vec<u8>>>() {
            *v = Some(rest.to_vec());
        } else if let Some(v) = any.downcast_mut::<Option<bytes::Bytes>>() {
            *v = Some(bytes::Bytes::copy_from_slice(rest));
        }
        if let Some(v) = out {
            return Ok((v, None));
        }
        let de = serde::de::value::SeqDeserializer::<_, serde::de::value::Error>::new(
            rest.iter().copied(),
        );
        return T::deserialize(de)
            .map(|v| (v, None))
            .map_err(|e| ValueError::Decode {
                codec: "raw",
                reason: e.to_string(),
            });
    }
    let codec = Codec::from_id(id)?;
    if rest.len() < 2 {
        return Err(ValueError::Truncated);
    }
    let version = u16::from_le_bytes([rest[0], rest[1]]);
    Ok((codec.decode(&rest[2..])?, Some(version)))
}

mod probe {
    //! A serializer that succeeds only for byte strings, writing them raw.

    use serde::ser::{self, Impossible, Serialize, SerializeSeq, SerializeTuple};

    #[derive(Debug)]
    pub(super) struct NotRaw;

    impl std::fmt::Display for NotRaw {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("not a byte string")
        }
    }

    impl std::error::Error for NotRaw {}

    impl ser::Error for NotRaw {
        fn custom<T: std::fmt::Display>(_msg: T) -> Self {
            NotRaw
        }
    }

    pub(super) struct RawProbe<'a> {
        pub(super) out: &'a mut Vec<u8>,
    }

    /// Accepts only `u8` elements.
    pub(super) struct Bytes<'a> {
        out: &'a mut Vec<u8>,
    }

    struct Byte(Option<u8>);

    /// Rejects (`NotRaw`) every serializer method named, with its argument types.
    macro_rules! reject {
        ($($name:ident($($arg:ty),*)),* $(,)?) => {$(
            fn $name(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> { Err(NotRaw) }
        )*};
    }

    /// The methods both serializers reject: everything but integers, byte strings,
    /// sequences and tuples.
    macro_rules! reject_compound {
        () => {
            reject!(
                serialize_bool(bool),
                serialize_i8(i8),
                serialize_i16(i16),
                serialize_i32(i32),
                serialize_i64(i64),
                serialize_u16(u16),
                serialize_u32(u32),
                serialize_u64(u64),
                serialize_f32(f32),
                serialize_f64(f64),
                serialize_char(char),
                serialize_str(&str),
                serialize_none(),
                serialize_unit(),
                serialize_unit_struct(&'static str),
                serialize_unit_variant(&'static str, u32, &'static str),
            );
            fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), NotRaw> {
                Err(NotRaw)
            }
            fn serialize_newtype_struct<T: ?Sized + Serialize>(
                self,
                _: &'static str,
                _: &T,
            ) -> Result<(), NotRaw> {
                Err(NotRaw)
            }
            fn serialize_newtype_variant<T: ?Sized + Serialize>(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: &T,
            ) -> Result<(), NotRaw> {
                Err(NotRaw)
            }
            fn serialize_tuple_struct(
                self,
                _: &'static str,
                _: usize,
            ) -> Result<Impossible<(), NotRaw>, NotRaw> {
                Err(NotRaw)
            }
            fn serialize_tuple_variant(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: usize,
            ) -> Result<Impossible<(), NotRaw>, NotRaw> {
                Err(NotRaw)
            }
            fn serialize_map(self, _: Option<usize>) -> Result<Impossible<(), NotRaw>, NotRaw> {
                Err(NotRaw)
            }
            fn serialize_struct(
                self,
                _: &'static str,
                _: usize,
            ) -> Result<Impossible<(), NotRaw>, NotRaw> {
                Err(NotRaw)
            }
            fn serialize_struct_variant(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: usize,
            ) -> Result<Impossible<(), NotRaw>, NotRaw> {
                Err(NotRaw)
            }
        };
    }

    impl<'a> ser::Serializer for RawProbe<'a> {
        type Ok = ();
        type Error = NotRaw;
        type SerializeSeq = Bytes<'a>;
        type SerializeTuple = Bytes<'a>;
        type SerializeTupleStruct = Impossible<(), NotRaw>;
        type SerializeTupleVariant = Impossible<(), NotRaw>;
        type SerializeMap = Impossible<(), NotRaw>;
        type SerializeStruct = Impossible<(), NotRaw>;
        type SerializeStructVariant = Impossible<(), NotRaw>;

        fn serialize_bytes(self, v: &[u8]) -> Result<(), NotRaw> {
            self.out.extend_from_slice(v);
            Ok(())
        }
        fn serialize_seq(self, len: Option<usize>) -> Result<Bytes<'a>, NotRaw> {
            self.out.reserve(len.unwrap_or(0));
            Ok(Bytes { out: self.out })
        }
        fn serialize_tuple(self, len: usize) -> Result<Bytes<'a>, NotRaw> {
            self.out.reserve(len);
            Ok(Bytes { out: self.out })
        }
        reject!(serialize_u8(u8));
        reject_compound!();
    }

    impl Bytes<'_> {
        fn push<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), NotRaw> {
            let mut b = Byte(None);
            value.serialize(&mut b)?;
            self.out.push(b.0.ok_or(NotRaw)?);
            Ok(())
        }
    }

    impl SerializeSeq for Bytes<'_> {
        type Ok = ();
        type Error = NotRaw;
        fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), NotRaw> {
            self.push(value)
        }
        fn end(self) -> Result<(), NotRaw> {
            Ok(())
        }
    }

    impl SerializeTuple for Bytes<'_> {
        type Ok = ();
        type Error = NotRaw;
        fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), NotRaw> {
            self.push(value)
        }
        fn end(self) -> Result<(), NotRaw> {
            Ok(())
        }
    }

    /// Accepts exactly one `u8`.
    impl ser::Serializer for &mut Byte {
        type Ok = ();
        type Error = NotRaw;
        type SerializeSeq = Impossible<(), NotRaw>;
        type SerializeTuple = Impossible<(), NotRaw>;
        type SerializeTupleStruct = Impossible<(), NotRaw>;
        type SerializeTupleVariant = Impossible<(), NotRaw>;
        type SerializeMap = Impossible<(), NotRaw>;
        type SerializeStruct = Impossible<(), NotRaw>;
        type SerializeStructVariant = Impossible<(), NotRaw>;

        fn serialize_u8(self, v: u8) -> Result<(), NotRaw> {
            self.0 = Some(v);
            Ok(())
        }
        reject!(serialize_bytes(&[u8]));
        fn serialize_seq(self, _: Option<usize>) -> Result<Impossible<(), NotRaw>, NotRaw> {
            Err(NotRaw)
        }
        fn serialize_tuple(self, _: usize) -> Result<Impossible<(), NotRaw>, NotRaw> {
            Err(NotRaw)
        }
        reject_compound!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct User {
        id: u64,
        name: String,
        tags: Vec<String>,
        avatar: Vec<u8>,
    }

    #[test]
    fn blobs_are_stored_raw() {
        let blob = vec![0u8, 1, 2, 255];
        assert_eq!(
            encode(&blob, Codec::Json, 1).expect("encode"),
            vec![RAW, 0, 1, 2, 255]
        );
        assert_eq!(
            decode::<Vec<u8>>(&[RAW, 0, 1, 2, 255]).expect("decode"),
            (blob, None)
        );
        let b = bytes::Bytes::from_static(b"abc");
        let enc = encode(&b, Codec::Json, 1).expect("encode");
        assert_eq!(enc, b"\0abc".to_vec());
        assert_eq!(decode::<bytes::Bytes>(&enc).expect("decode").0, b);
        let arr = [7u8; 4];
        let enc = encode(&arr, Codec::Json, 1).expect("encode");
        assert_eq!(enc, vec![RAW, 7, 7, 7, 7]);
        assert_eq!(decode::<[u8; 4]>(&enc).expect("decode").0, arr);
        assert_eq!(
            encode(&Vec::<u8>::new(), Codec::Json, 1).expect("encode"),
            vec![RAW]
        );
    }

    #[test]
    fn structs_record_codec_and_version() {
        let u = User {
            id: 7,
            name: "ann".into(),
            tags: vec!["a".into()],
            avatar: vec![1, 2],
        };
        let enc = encode(&u, Codec::Json, 3).expect("encode");
        assert_eq!(&enc[..3], &[1, 3, 0]);
        assert!(
            std::str::from_utf8(&enc[3..])
                .expect("JSON")
                .contains("\"ann\"")
        );
        assert_eq!(decode::<User>(&enc).expect("decode"), (u, Some(3)));
        // Sequences of other integers are not blobs.
        assert_eq!(
            encode(&vec![1u16, 2], Codec::Json, 0).expect("encode")[0],
            1
        );
        assert_eq!(encode(&"text", Codec::Json, 0).expect("encode")[0], 1);
    }

    #[test]
    fn every_codec_round_trips() {
        let codecs = [
            Codec::Json,
            #[cfg(feature = "msgpack")]
            Codec::MsgPack,
            #[cfg(feature = "postcard")]
            Codec::Postcard,
        ];
        let u = User {
            id: 1,
            name: "b".into(),
            tags: vec!["x".into(), "y".into()],
            avatar: vec![9; 3],
        };
        for codec in codecs {
            let enc = encode(&u, codec, 5).expect("encode");
            assert_eq!(enc[0], codec.id());
            assert_eq!(Codec::from_id(enc[0]), Ok(codec));
            assert_eq!(
                decode::<User>(&enc).expect("decode"),
                (u.clone(), Some(5)),
                "{}",
                codec.name()
            );
        }
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert_eq!(decode::<u64>(&[]), Err(ValueError::Truncated));
        assert_eq!(decode::<u64>(&[1, 0]), Err(ValueError::Truncated));
        assert_eq!(
            decode::<u64>(&[200, 0, 0]),
            Err(ValueError::UnknownCodec(200))
        );
        assert!(matches!(
            decode::<User>(&[1, 0, 0, b'{']),
            Err(ValueError::Decode { .. })
        ));
        assert!(matches!(
            decode::<User>(&[RAW, 1, 2]),
            Err(ValueError::Decode { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trips(id in any::<u64>(), name in ".{0,12}", avatar in proptest::collection::vec(any::<u8>(), 0..40), version in any::<u16>()) {
            let u = User { id, name, tags: vec![], avatar: avatar.clone() };
            prop_assert_eq!(decode::<User>(&encode(&u, Codec::Json, version).expect("encode")).expect("decode"), (u, Some(version)));
            prop_assert_eq!(decode::<Vec<u8>>(&encode(&avatar, Codec::Json, version).expect("encode")).expect("decode"), (avatar, None));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<User>(&bytes);
            let _ = decode::<Vec<u8>>(&bytes);
            let _ = decode::<(u8, String)>(&bytes);
        }
    }
}
