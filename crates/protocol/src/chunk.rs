//! `ByteChunk`: raw bytes carried as a base64 string on the wire.

use base64::Engine;
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Bytes that travel as standard (padded) base64. Encoding streams straight into the
/// serializer's output, so sending a chunk never allocates an intermediate string.
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
    serializer.collect_str(&Base64Display::new(bytes, &STANDARD))
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
                STANDARD
                    .decode(v)
                    .map(ByteChunk)
                    .map_err(|e| E::custom(format!("invalid base64: {e}")))
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
