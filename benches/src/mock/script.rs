//! Script mode: answers come from a file instead of echoing the prompt.
//!
//! ```yaml
//! # benches/data/demo-script.yaml
//! rules:                       # first match wins
//!   - when_contains: weather   # case-insensitive substring of the prompt
//!     reply: "It is sunny in the mock world."
//! default: "I am a mock model; ask me about the weather."
//! ```

use std::path::Path;

use serde::Deserialize;

/// A parsed script file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Rules tried in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// The answer when no rule matches.
    pub default: String,
}

/// One scripted answer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Case-insensitive substring that the prompt must contain.
    pub when_contains: String,
    /// The answer.
    pub reply: String,
}

/// Why a script file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("cannot read script {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid script.
    #[error("invalid script {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause, with line and column.
        source: serde_yaml::Error,
    },
}

impl Script {
    /// Load a YAML (or JSON) script file.
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| ScriptError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// The answer for a prompt.
    pub fn reply(&self, prompt: &str) -> &str {
        let lower = prompt.to_lowercase();
        self.rules
            .iter()
            .find(|r| lower.contains(&r.when_contains.to_lowercase()))
            .map_or(self.default.as_str(), |r| r.reply.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins_case_insensitively() {
        let s: Script = serde_yaml::from_str(
            "rules:\n  - {when_contains: Weather, reply: sunny}\n  - {when_contains: e, reply: e}\ndefault: dunno\n",
        )
        .unwrap();
        assert_eq!(s.reply("how is the WEATHER"), "sunny");
        assert_eq!(s.reply("hello"), "e");
        assert_eq!(s.reply("xyz"), "dunno");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = serde_yaml::from_str::<Script>("default: a\nrulez: []\n").unwrap_err();
        assert!(e.to_string().contains("rulez"), "{e}");
    }
}
