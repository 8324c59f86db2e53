//! Text in and out of a checkpoint: its `tokenizer.json` (the `tokenizers` crate) and its chat
//! template (Jinja, rendered with `minijinja` the way transformers renders it).
//!
//! transformers' rules, kept here because they decide which tokens a model sees:
//! - the template comes from `chat_template.jinja` first, then `tokenizer_config.json`'s
//!   `chat_template` (a string, or a list of `{name, template}` of which `default` is used);
//! - it renders with `trim_blocks` and `lstrip_blocks`, `tojson` as Python's
//!   `json.dumps(ensure_ascii=False)` (`", "` and `": "` separators, no HTML escaping), and the
//!   globals `raise_exception` and `strftime_now`; Python string methods (`.strip()`) work;
//! - the rendered text is tokenized *without* special tokens added (the template wrote them);
//! - a plain text is tokenized with them (the tokenizer's post-processor decides, e.g. no BOS
//!   for SmolLM2).

use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde, Value as JValue};
use minijinja::{Environment, Error as JError, ErrorKind};
use serde_json::Value;
use tokenizers::Tokenizer;

use super::LlmError;

/// A message of a conversation, as chat templates expect it.
pub type Message = Value;

/// Token ids of a text and where each token is in it (byte offsets).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<i64>,
    /// `(start, end)` byte offsets of each token in the text; special tokens added by the
    /// tokenizer have `(0, 0)`.
    pub offsets: Vec<(usize, usize)>,
}

/// A checkpoint's tokenizer, special tokens and chat template.
pub struct TextCodec {
    tokenizer: Tokenizer,
    env: Option<Environment<'static>>,
    /// Special tokens by role (`bos_token`, `eos_token`, `pad_token`, `unk_token`), as the
    /// template sees them.
    pub specials: Vec<(String, String)>,
    /// The end-of-sequence token's id, when the tokenizer has one.
    pub eos_id: Option<i64>,
}

impl std::fmt::Debug for TextCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextCodec")
            .field("specials", &self.specials)
            .field("template", &self.env.is_some())
            .finish()
    }
}

fn special(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl TextCodec {
    /// Read `tokenizer.json`, `tokenizer_config.json` and the chat template of `dir`.
    pub fn from_dir(dir: &Path) -> Result<TextCodec, LlmError> {
        let tpath = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tpath).map_err(|e| LlmError::Tokenizer {
            file: tpath.clone(),
            msg: e.to_string(),
        })?;
        let cpath = dir.join("tokenizer_config.json");
        let config: Value = match std::fs::read_to_string(&cpath) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| LlmError::Config {
                file: cpath.clone(),
                msg: format!("not JSON: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
            Err(e) => return Err(LlmError::Io(cpath, e)),
        };
        let specials: Vec<(String, String)> = ["bos_token", "eos_token", "pad_token", "unk_token"]
            .iter()
            .filter_map(|k| config.get(*k).and_then(special).map(|s| (k.to_string(), s)))
            .collect();
        let eos_id = specials
            .iter()
            .find(|(k, _)| k == "eos_token")
            .and_then(|(_, s)| tokenizer.token_to_id(s))
            .map(i64::from);
        let jinja = dir.join("chat_template.jinja");
        let source = if jinja.is_file() {
            Some(std::fs::read_to_string(&jinja).map_err(|e| LlmError::Io(jinja.clone(), e))?)
        } else {
            match config.get("chat_template") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .and_then(|t| t.get("template"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            }
        };
        let env = match source {
            Some(s) => Some(environment(s).map_err(|e| LlmError::Template(e.to_string()))?),
            None => None,
        };
        Ok(TextCodec {
            tokenizer,
            env,
            specials,
            eos_id,
        })
    }

    /// Whether the checkpoint has a chat template.
    pub fn has_template(&self) -> bool {
        self.env.is_some()
    }

    /// Token ids of `text` (`special`: let the tokenizer add its special tokens).
    pub fn encode(&self, text: &str, special: bool) -> Result<Encoded, LlmError> {
        let e = self
            .tokenizer
            .encode(text, special)
            .map_err(|e| LlmError::Tokenizer {
                file: "tokenizer.json".into(),
                msg: e.to_string(),
            })?;
        Ok(Encoded {
            ids: e.get_ids().iter().map(|&i| i64::from(i)).collect(),
            offsets: e.get_offsets().to_vec(),
        })
    }

    /// The text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[i64]) -> Result<String, LlmError> {
        let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
        self.tokenizer
            .decode(&ids, false)
            .map_err(|e| LlmError::Tokenizer {
                file: "tokenizer.json".into(),
                msg: e.to_string(),
            })
    }

    /// Render `messages` with the chat template (`generation`: end with the assistant's
    /// opening, as `add_generation_prompt=True` does).
    pub fn render(&self, messages: &[Message], generation: bool) -> Result<String, LlmError> {
        let Some(env) = &self.env else {
            return Err(LlmError::Template(
                "the checkpoint has no chat template (chat_template.jinja or \
                 tokenizer_config.json `chat_template`)"
                    .into(),
            ));
        };
        let tmpl = env
            .get_template("chat")
            .map_err(|e| LlmError::Template(e.to_string()))?;
        // transformers drops keys whose value is None from each message
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| match m {
                Value::Object(o) => Value::Object(
                    o.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                other => other.clone(),
            })
            .collect();
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), Value::Array(messages));
        ctx.insert("add_generation_prompt".into(), Value::Bool(generation));
        for (k, v) in &self.specials {
            ctx.insert(k.clone(), Value::String(v.clone()));
        }
        tmpl.render(JValue::from(Serde(&ctx)))
            .map_err(|e| LlmError::Template(describe(&e)))
    }
}

/// A template error with its cause chain (minijinja puts the template's own
/// `raise_exception` message in the detail).
fn describe(e: &JError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn environment(source: String) -> Result<Environment<'static>, JError> {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", |msg: String| -> Result<JValue, JError> {
        Err(JError::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", strftime_now);
    env.add_template_owned("chat", source)?;
    Ok(env)
}

/// Python's `json.dumps(x, ensure_ascii=False, indent=indent)`.
fn tojson(v: JValue, kwargs: Kwargs) -> Result<JValue, JError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&v)
        .map_err(|e| JError::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    python_json(&json, indent, 0, &mut out);
    Ok(JValue::from_safe_string(out))
}

fn python_json(v: &Value, indent: Option<usize>, depth: usize, out: &mut String) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let (item_sep, key_sep) = if indent.is_some() {
        (",", ": ")
    } else {
        (", ", ": ")
    };
    match v {
        Value::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                python_json(x, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(o) if !o.is_empty() => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(key_sep);
                python_json(x, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        Value::Number(n) if n.is_f64() => {
            // Python prints integral floats with `.0`
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 && f.abs() < 1e16 {
                out.push_str(&format!("{f:.1}"));
            } else {
                out.push_str(&n.to_string());
            }
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `strftime_now(fmt)`: the current UTC date and time (`%Y %m %d %b %B %H %M %S %%`).
fn strftime_now(fmt: String) -> Result<JValue, JError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(JValue::from(strftime(&fmt, secs)))
}

fn strftime(fmt: &str, secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, ctx: Value) -> String {
        let env = environment(src.to_string()).unwrap();
        env.get_template("chat")
            .unwrap()
            .render(JValue::from(Serde(&ctx)))
            .unwrap()
    }

    #[test]
    fn tojson_writes_what_python_writes() {
        let ctx = json!({"x": {"b": [1, 2.0, "é<&>'"], "a": null, "c": true}});
        assert_eq!(
            render("{{ x | tojson }}", ctx.clone()),
            r#"{"a": null, "b": [1, 2.0, "é<&>'"], "c": true}"#
        );
        assert_eq!(
            render("{{ x.b | tojson(indent=2) }}", ctx),
            "[\n  1,\n  2.0,\n  \"é<&>'\"\n]"
        );
    }

    #[test]
    fn blocks_are_trimmed_and_python_methods_work() {
        let src = "{% for m in messages %}\n  {{ m.content.strip() }}|\n{% endfor %}";
        assert_eq!(
            render(
                src,
                json!({"messages": [{"content": " a "}, {"content": "b\n"}]})
            ),
            "  a|\n  b|\n"
        );
        let env = environment("{{ raise_exception('no system role') }}".into()).unwrap();
        let e = env
            .get_template("chat")
            .unwrap()
            .render(JValue::from(()))
            .unwrap_err();
        assert!(describe(&e).contains("no system role"), "{}", describe(&e));
    }

    #[test]
    fn strftime_formats_a_date() {
        // 2024-07-23 01:02:03 UTC
        assert_eq!(
            strftime("%d %b %Y %H:%M:%S %B %%", 1_721_696_523),
            "23 Jul 2024 01:02:03 July %"
        );
    }
}
