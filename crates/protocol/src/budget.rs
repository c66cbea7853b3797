//! The JSON value budget applied to every untrusted frame before it is decoded.
//!
//! A frame is walked once without building anything: each JSON value (scalar, array or
//! object) costs one unit, and objects may not repeat a key. This bounds the heap a frame
//! can make the decoder allocate (a 4 MiB array of zeros would otherwise become ~233 MB of
//! `Value`s) and mirrors upstream's 262 144-value limit and duplicate-key rejection.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

/// Upstream's `MAX_JSONRPC_VALUE_NODES`.
pub const MAX_JSONRPC_VALUE_NODES: usize = 262_144;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueBudgetError(pub String);

/// Check that `frame` is JSON with at most `max_values` values and no duplicate keys.
/// Syntax errors are reported too (with serde's message).
pub fn check_value_budget(frame: &[u8], max_values: usize) -> Result<(), ValueBudgetError> {
    let remaining = Cell::new(max_values);
    let mut deserializer = serde_json::Deserializer::from_slice(frame);
    let counter = Counter {
        remaining: &remaining,
        max_values,
    };
    counter
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|e| ValueBudgetError(crate::jsonrpc::serde_message(&e)))
}

#[derive(Clone, Copy)]
struct Counter<'b> {
    remaining: &'b Cell<usize>,
    max_values: usize,
}

impl Counter<'_> {
    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.remaining.get().checked_sub(1) {
            Some(left) => {
                self.remaining.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "JSON-RPC message exceeds the limit of {} JSON values",
                self.max_values
            ))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Counter<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

macro_rules! count_scalar {
    ($($name:ident: $ty:ty),*) => {$(
        fn $name<E: de::Error>(self, _: $ty) -> Result<(), E> { self.take() }
    )*};
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    count_scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64,
        visit_str: &str, visit_i128: i128, visit_u128: u128);

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.take()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.take()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.take()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.take()?;
        let mut keys = DuplicateKeys::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            keys.insert(key)?;
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// Remembers an object's keys; linear for small objects, hashed beyond.
#[derive(Default)]
struct DuplicateKeys<'de> {
    small: Vec<Cow<'de, str>>,
    large: HashSet<Cow<'de, str>>,
}

impl<'de> DuplicateKeys<'de> {
    const SMALL: usize = 16;

    fn insert<E: de::Error>(&mut self, key: Cow<'de, str>) -> Result<(), E> {
        let duplicate = if self.large.is_empty() && self.small.len() < Self::SMALL {
            let seen = self.small.contains(&key);
            if !seen {
                self.small.push(key.clone());
            }
            seen
        } else {
            self.large.extend(self.small.drain(..));
            !self.large.insert(key.clone())
        };
        if duplicate {
            return Err(E::custom(format!("duplicate key `{key}`")));
        }
        Ok(())
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_frames() {
        let frame = br#"{"id":1,"method":"process/start","params":{"argv":["a","b"],"env":{}}}"#;
        check_value_budget(frame, MAX_JSONRPC_VALUE_NODES).expect("within budget");
    }

    #[test]
    fn counts_every_value() {
        // object + id + 1 + method + "x" = the object plus two values (keys are not values)
        assert!(check_value_budget(br#"{"id":1,"method":"x"}"#, 3).is_ok());
        let err = check_value_budget(br#"{"id":1,"method":"x"}"#, 2).expect_err("over");
        assert!(
            err.0.contains("exceeds the limit of 2 JSON values"),
            "{err}"
        );
    }

    #[test]
    fn rejects_compact_array_heap_amplification() {
        let mut frame = Vec::with_capacity(4_194_304);
        frame.push(b'[');
        for i in 0..2_097_137 {
            if i > 0 {
                frame.push(b',');
            }
            frame.push(b'0');
        }
        frame.push(b']');
        let err = check_value_budget(&frame, MAX_JSONRPC_VALUE_NODES).expect_err("over");
        assert!(err.0.contains("262144"), "{err}");
    }

    #[test]
    fn rejects_duplicate_keys_small_and_large() {
        let err = check_value_budget(br#"{"a":1,"a":2}"#, 100).expect_err("dup");
        assert_eq!(err.0, "duplicate key `a`");
        let mut frame = String::from("{");
        for i in 0..40 {
            frame.push_str(&format!("\"k{i}\":0,"));
        }
        frame.push_str("\"k3\":1}");
        let err = check_value_budget(frame.as_bytes(), 1000).expect_err("dup");
        assert_eq!(err.0, "duplicate key `k3`");
    }

    #[test]
    fn rejects_trailing_garbage_and_syntax_errors() {
        assert!(check_value_budget(b"{} x", 100).is_err());
        assert!(check_value_budget(b"not-json", 100).is_err());
    }
}
