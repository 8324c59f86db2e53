//! Policy files: what the gateway does with what the filters find.
//!
//! A policy is a YAML file in `policies/`. This module holds its identity (name, version,
//! description); detectors and their per-direction actions are added to the same file format.

use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::yaml::{Loaded, YamlError, load_yaml};

/// A policy file.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Name the gateway refers to the policy by (letters, digits, `-`, `_`).
    pub name: String,
    /// Version, recorded with every decision the policy makes.
    pub version: u32,
    /// What the policy is for.
    #[serde(default)]
    pub description: Option<String>,
}

impl Policy {
    /// Load and validate a policy file.
    pub fn load(path: &Path) -> Result<Policy, YamlError> {
        let loaded: Loaded<Policy> = load_yaml(path)?;
        let p = &loaded.value;
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(loaded.error_at(
                "name",
                format!(
                    "policy name `{}` must be non-empty and use only letters, digits, `-` and `_`",
                    p.name
                ),
            ));
        }
        Ok(loaded.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(s: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(s.as_bytes()).unwrap();
        f
    }

    #[test]
    fn loads_a_valid_policy() {
        let f = write("name: default\nversion: 3\ndescription: hi\n");
        let p = Policy::load(f.path()).unwrap();
        assert_eq!(p.name, "default");
        assert_eq!(p.version, 3);
    }

    #[test]
    fn rejects_bad_names_with_a_line() {
        let f = write("version: 1\nname: 'bad name'\n");
        let e = Policy::load(f.path()).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("bad name"));
    }

    #[test]
    fn rejects_unknown_fields() {
        let f = write("name: a\nversion: 1\nactions: []\n");
        let e = Policy::load(f.path()).unwrap_err();
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn the_shipped_policies_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 1, "no policies found in {}", dir.display());
    }
}
