//! `ByteChunk`: raw bytes carried as a base64 string on the wire.
//!
//! Encoding uses SIMD (`base64-simd`). Decoding what a peer sent uses the `base64` crate,
//! as upstream does, so an invalid chunk is refused with upstream's exact words ("Invalid
//! symbol 42, offset 0."); the client's hot path for output decodes with SIMD itself.

use base64::Engine as _;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Bytes that travel as standard (padded) base64.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ByteChunk(pub Vec<u8>);

impl fmt::Debug for ByteChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByteChunk({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for ByteChunk {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

/// Serialize any byte slice as base64 (for borrowed outbound types).
pub fn serialize_base64<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&base64_simd::STANDARD.encode_to_string(bytes))
}

/// Decode standard padded base64, refusing what upstream refuses, in its words.
pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|err| format!("invalid base64: {err}"))
}

impl Serialize for ByteChunk {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_base64(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for ByteChunk {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Base64Visitor;
        impl Visitor<'_> for Base64Visitor {
            type Value = ByteChunk;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteChunk, E> {
                decode_base64(v.as_bytes())
                    .map(ByteChunk)
                    .map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Base64Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_base64() {
        let chunk = ByteChunk(b"ready\n".to_vec());
        let json = serde_json::to_string(&chunk).expect("serialize");
        assert_eq!(json, "\"cmVhZHkK\"");
        let back: ByteChunk = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, chunk);
    }

    #[test]
    fn rejects_invalid_base64() {
        let err = serde_json::from_str::<ByteChunk>("\"***\"").expect_err("must fail");
        assert!(err.to_string().contains("invalid base64"), "{err}");
    }
}
