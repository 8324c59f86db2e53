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

/// `s`, a JSON text (tool-call arguments in a string), with every escape that hides a plain
/// character written as the character itself: `\u0040` is `@`, `\u043e` is `о`, `\/` is `/`.
/// Escapes that a JSON string needs (`\"`, `\\`, control characters, lone surrogates) stay.
/// The result is the same JSON value, but the rules read what the backend decodes (it parses
/// the arguments before the template renders them) and what a tool receives. `None` when
/// nothing changes or `s` is not JSON.
pub fn unescape_plain(s: &str) -> Option<String> {
    if !s.contains('\\') || serde_json::from_str::<de::IgnoredAny>(s).is_err() {
        return None;
    }
    let b = s.as_bytes();
    let hex = |i: usize| -> Option<u32> {
        s.get(i..i + 4)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    let mut out = String::with_capacity(s.len());
    let (mut i, mut copied, mut in_string, mut changed) = (0, 0, false, false);
    while i < b.len() {
        match b[i] {
            b'"' => {
                in_string = !in_string;
                i += 1;
            }
            b'\\' if in_string => {
                let (c, len) = match b.get(i + 1) {
                    Some(b'/') => (Some('/'), 2),
                    Some(b'u') => match hex(i + 2) {
                        Some(hi @ 0xD800..=0xDBFF) => match (b.get(i + 6..i + 8), hex(i + 8)) {
                            (Some(b"\\u"), Some(lo @ 0xDC00..=0xDFFF)) => (
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)),
                                12,
                            ),
                            _ => (None, 6),
                        },
                        Some(u) => (char::from_u32(u), 6),
                        None => (None, 2),
                    },
                    _ => (None, 2),
                };
                match c {
                    Some(c) if !c.is_control() && c != '"' && c != '\\' => {
                        out.push_str(&s[copied..i]);
                        out.push(c);
                        copied = i + len;
                        changed = true;
                    }
                    _ => {}
                }
                i += len;
            }
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&s[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_characters_are_unescaped_and_the_value_kept() {
        let cases = [
            (
                r#"{"q":"jane\u0040corp.com"}"#,
                Some(r#"{"q":"jane@corp.com"}"#),
            ),
            (r#"{"q":"Ign\u043ere a\/b"}"#, Some(r#"{"q":"Ignоre a/b"}"#)),
            (r#"{"q":"\ud83d\ude00 ok"}"#, Some(r#"{"q":"😀 ok"}"#)),
            // needed escapes stay; keys too are strings
            (
                r#"{"\u0071":"a\"b\\c\n\u0000"}"#,
                Some(r#"{"q":"a\"b\\c\n\u0000"}"#),
            ),
            (r#"{"q":"a\u0022b\u005cc"}"#, None),
            // a lone surrogate is kept as it is
            (r#"{"q":"\ud800x"}"#, None),
            (r#"{"q":"plain"}"#, None),
            (r#"not json \u0040"#, None),
        ];
        for (input, want) in cases {
            let got = unescape_plain(input);
            assert_eq!(got.as_deref(), want, "{input}");
            if let Some(g) = got {
                let a: Value = serde_json::from_str(input).unwrap();
                let b: Value = serde_json::from_str(&g).unwrap();
                assert_eq!(a, b, "{input}");
            }
        }
    }

    /// `s` with every non-ASCII or listed character written as `\uXXXX` (as Python's
    /// `json.dumps` does for non-ASCII).
    fn escape_all(s: &str, also: &str) -> String {
        let mut out = String::new();
        let mut in_string = false;
        let mut prev_backslash = false;
        for c in s.chars() {
            if in_string && !prev_backslash && (!c.is_ascii() || also.contains(c)) {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
                continue;
            }
            if c == '"' && !prev_backslash {
                in_string = !in_string;
            }
            prev_backslash = c == '\\' && !prev_backslash;
            out.push(c);
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn unescaping_never_changes_the_value(m in proptest::collection::btree_map("[a-z@./ é😀\"\\\\\n]{0,8}", "[a-zA-Z0-9@./ é😀\"\\\\\n-]{0,24}", 0..4)) {
            let text = serde_json::to_string(&m).unwrap();
            let escaped = escape_all(&text, "@./a");
            let back = unescape_plain(&escaped).unwrap_or_else(|| escaped.clone());
            let a: Value = serde_json::from_str(&escaped).unwrap();
            let b: Value = serde_json::from_str(&back).unwrap();
            proptest::prop_assert_eq!(&a, &b);
            // nothing plain stays hidden
            proptest::prop_assert!(!back.contains("\\u00"), "{}", back);
        }
    }

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
