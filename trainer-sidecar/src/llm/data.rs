//! Fine-tuning data: JSON lines of `{"prompt": …, "completion": …}` or `{"messages": [...]}`
//! (chat, rendered with the model's template), to token ids and a mask of the tokens trained on.
//!
//! - prompt/completion: the prompt tokenized as a text (the tokenizer adds its special tokens),
//!   then the completion without them, then EOS; the loss is on the completion and EOS.
//! - messages: the whole conversation rendered with the chat template and tokenized once; the
//!   loss is on the assistant turns. Where an assistant turn is in the text is found by
//!   rendering the conversation up to it (with the generation prompt) and up to its end: the
//!   template must render a conversation prefix by prefix (all common ones do; one that does
//!   not is refused, not guessed at).
//! - Longer than `max_length` tokens: cut at the end; an example with nothing trained left is
//!   dropped. Both are counted in the report.

use std::path::Path;

use serde_json::Value;

use super::LlmError;
use super::text::TextCodec;

/// One line of the data, after the data guard.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A prompt and the completion to learn.
    Completion {
        /// Context (not trained on).
        prompt: String,
        /// Trained on.
        completion: String,
    },
    /// A conversation; assistant turns are trained on.
    Chat {
        /// `{role, content}` objects.
        messages: Vec<Value>,
    },
}

impl Record {
    /// Every text of the record, to scan and rewrite in place.
    pub fn texts_mut(&mut self) -> Vec<&mut String> {
        match self {
            Record::Completion { prompt, completion } => vec![prompt, completion],
            Record::Chat { messages } => messages
                .iter_mut()
                .filter_map(|m| match m.get_mut("content") {
                    Some(Value::String(s)) => Some(s),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// A line of the file: its record and (user-level privacy) its user.
#[derive(Debug, Clone)]
pub struct Line {
    /// 1-based line number.
    pub line: usize,
    /// The example.
    pub record: Record,
    /// The privacy unit's id when the data names users.
    pub user: Option<String>,
}

/// Why a data file cannot be used: every bad line, up to a limit.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {}", .problems.join("; "))]
pub struct DataError {
    /// The file.
    pub file: String,
    /// `line N: what is wrong`.
    pub problems: Vec<String>,
}

/// Read a JSONL file. `user_field`: the member naming each line's user (required on every
/// line when set).
pub fn read(path: &Path, user_field: Option<&str>) -> Result<Vec<Line>, DataError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DataError {
        file: file.clone(),
        problems: vec![e.to_string()],
    })?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        match parse_line(raw, user_field) {
            Ok((record, user)) => out.push(Line {
                line: n,
                record,
                user,
            }),
            Err(e) => {
                problems.push(format!("line {n}: {e}"));
                if problems.len() >= 20 {
                    problems.push("(more problems not shown)".into());
                    break;
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(DataError { file, problems });
    }
    if out.is_empty() {
        return Err(DataError {
            file,
            problems: vec!["no examples".into()],
        });
    }
    Ok(out)
}

fn parse_line(raw: &str, user_field: Option<&str>) -> Result<(Record, Option<String>), String> {
    let v: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON ({e})"))?;
    let Some(o) = v.as_object() else {
        return Err("expected a JSON object".into());
    };
    let user = match user_field {
        None => None,
        Some(f) => Some(match o.get(f) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(format!("`{f}` (the user of the line) is missing or empty")),
        }),
    };
    let record = match (o.get("messages"), o.get("prompt"), o.get("completion")) {
        (Some(Value::Array(m)), None, None) => {
            let mut assistant = 0;
            for (j, msg) in m.iter().enumerate() {
                let role = msg.get("role").and_then(Value::as_str);
                let content = msg.get("content");
                match (role, content) {
                    (Some(r), Some(Value::String(_))) => {
                        if r == "assistant" {
                            assistant += 1;
                        }
                    }
                    _ => {
                        return Err(format!(
                            "`messages[{j}]` needs a string `role` and a string `content`"
                        ));
                    }
                }
            }
            if assistant == 0 {
                return Err("`messages` has no assistant turn to learn".into());
            }
            Record::Chat {
                messages: m.clone(),
            }
        }
        (None, Some(Value::String(p)), Some(Value::String(c))) => {
            if c.is_empty() {
                return Err("`completion` is empty".into());
            }
            Record::Completion {
                prompt: p.clone(),
                completion: c.clone(),
            }
        }
        _ => {
            return Err(
                "expected `prompt` and `completion` strings, or a `messages` list (not both)"
                    .into(),
            );
        }
    };
    Ok((record, user))
}

/// A tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Token ids.
    pub ids: Vec<i64>,
    /// Per token: trained on (predicted from the tokens before it).
    pub trained: Vec<bool>,
    /// The privacy unit's id when the data names users.
    pub user: Option<String>,
    /// Cut at `max_length`.
    pub truncated: bool,
}

impl Example {
    /// Tokens trained on.
    pub fn trained_tokens(&self) -> usize {
        self.trained.iter().skip(1).filter(|t| **t).count()
    }
}

/// Tokenize one record; `None` when nothing trained is left within `max_length`.
pub fn tokenize(
    codec: &TextCodec,
    line: &Line,
    max_length: usize,
) -> Result<Option<Example>, LlmError> {
    let (mut ids, mut trained) = match &line.record {
        Record::Completion { prompt, completion } => {
            let p = codec.encode(prompt, true)?;
            let c = codec.encode(completion, false)?;
            let mut ids = p.ids;
            let mut trained = vec![false; ids.len()];
            ids.extend(&c.ids);
            trained.extend(std::iter::repeat_n(true, c.ids.len()));
            if let Some(eos) = codec.eos_id {
                ids.push(eos);
                trained.push(true);
            }
            (ids, trained)
        }
        Record::Chat { messages } => {
            let full = codec.render(messages, false)?;
            let mut spans = Vec::new();
            for (i, m) in messages.iter().enumerate() {
                if m.get("role").and_then(Value::as_str) != Some("assistant") {
                    continue;
                }
                let before = codec.render(&messages[..i], true)?;
                let through = codec.render(&messages[..=i], false)?;
                if !through.starts_with(&before) || !full.starts_with(&through) {
                    return Err(LlmError::Template(format!(
                        "line {}: the chat template does not render the conversation prefix by \
                         prefix, so the assistant turns cannot be located",
                        line.line
                    )));
                }
                spans.push((before.len(), through.len()));
            }
            let e = codec.encode(&full, false)?;
            let trained = e
                .offsets
                .iter()
                .map(|&(s, end)| end > s && spans.iter().any(|&(a, b)| s >= a && s < b))
                .collect();
            (e.ids, trained)
        }
    };
    let truncated = ids.len() > max_length;
    ids.truncate(max_length);
    trained.truncate(max_length);
    let ex = Example {
        ids,
        trained,
        user: line.user.clone(),
        truncated,
    };
    Ok((ex.trained_tokens() > 0).then_some(ex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_line_parses_or_names_its_problem(raw in "\\PC{0,200}") {
            // never a panic; a refusal says what is wrong
            if let Err(e) = parse_line(&raw, Some("user")) {
                prop_assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn lines_are_checked_one_by_one_with_their_number() {
        let dir = std::env::temp_dir().join(format!("data-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("d.jsonl");
        std::fs::write(
            &p,
            "{\"prompt\": \"a\", \"completion\": \"b\", \"user\": 1}\n\n{\"prompt\": \"a\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"user\": \"u\"}\nnot json\n",
        )
        .unwrap();
        let e = read(&p, Some("user")).unwrap_err().to_string();
        assert!(
            e.contains("line 3:") && e.contains("line 4:") && e.contains("line 5:"),
            "{e}"
        );
        assert!(e.contains("no assistant turn"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
