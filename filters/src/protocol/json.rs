//! Parsing a request body the way the gateway must: into a `serde_json::Value`, refusing
//! duplicate member names.
//!
//! `{"messages": [benign], "messages": [attack]}` is valid JSON, and parsers disagree about it:
//! serde_json's `Value` keeps the last member, a `#[derive(Deserialize)]` struct (TGI) refuses
//! it, others keep the first. The gateway forwards the client's bytes when it rewrites
//! nothing, so it must read exactly what every backend reads: it refuses the ambiguity.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body is not a JSON document the gateway accepts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// Deepest nesting accepted (serde_json's own recursion limit is 128).
pub const MAX_DEPTH: usize = 64;

/// Parse `body`, refusing duplicate member names and nesting deeper than [`MAX_DEPTH`]. The
/// message gives a position or a member path, never content.
pub fn parse_strict(body: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = Strict { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| JsonError(e.to_string()))?;
    de.end().map_err(|e| JsonError(e.to_string()))?;
    Ok(v)
}

struct Strict {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(Strict {
            depth: self.depth + 1,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(Strict {
                depth: self.depth + 1,
            })?;
            if out.contains_key(&k) {
                let shown = if k.len() <= 40
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    format!("`{k}`")
                } else {
                    "a member name".to_string()
                };
                return Err(de::Error::custom(format!(
                    "{shown} appears twice in one object; backends disagree about which one counts, so the gateway refuses it"
                )));
            }
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_duplicates() {
        let v = parse_strict(br#"{"a":[1,2.5,"x",null,true],"b":{"c":-3}}"#).unwrap();
        assert_eq!(v["a"][2], "x");
        assert_eq!(v["b"]["c"], -3);
        let e = parse_strict(br#"{"messages":[],"messages":[1]}"#).unwrap_err();
        assert!(e.to_string().contains("`messages` appears twice"), "{e}");
        let e = parse_strict(br#"{"a":{"x":1,"x":2}}"#).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(parse_strict(b"{} x").is_err());
        assert!(parse_strict(b"{\"a\":\"\\ud800\"}").is_err());
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse_strict(deep.as_bytes()).is_err());
    }
}
