//! Loading YAML configuration with errors that point at the file, line and column.
//!
//! serde_yaml reports where a *syntax or type* error is, but semantic checks that run after
//! deserialization (an unknown upstream name, an empty list) only know the *path* of the bad
//! value (`upstreams.tgi.backends`). [`SourceMap`] maps such paths back to lines by walking the
//! YAML event stream once, so every error a user sees names a line.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// An error in a YAML file: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The dotted path of the offending value (`upstreams.tgi.backends[0]`), when known.
    pub path: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(p) = &self.path {
            write!(f, "{p}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for YamlError {}

/// Every problem found in a file (or in a file and those it names), each located: what the
/// gateway config and policy loaders return, so one run reports everything to fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct YamlErrors {
    /// The problems, in the order they were found.
    pub errors: Vec<YamlError>,
}

impl From<YamlError> for YamlErrors {
    fn from(e: YamlError) -> Self {
        YamlErrors { errors: vec![e] }
    }
}

/// Where each value of a YAML document starts, by dotted path.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    spots: HashMap<String, (usize, usize)>,
}

impl SourceMap {
    /// Index a document. A document that does not parse gives an empty map.
    pub fn new(source: &str) -> SourceMap {
        let mut w = Walker::default();
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut w, false).is_err() {
            return SourceMap::default();
        }
        SourceMap { spots: w.spots }
    }

    /// Line and column (1-based) of the value at `path`, or of its nearest indexed ancestor.
    pub fn locate(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(&spot) = self.spots.get(p) {
                return Some(spot);
            }
            // strip the last segment: `a.b[2]` -> `a.b`, `a.b` -> `a`
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

#[derive(Default)]
struct Walker {
    spots: HashMap<String, (usize, usize)>,
    /// One frame per open container: its path, and for mappings the pending key state.
    stack: Vec<Frame>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

impl Walker {
    /// The path of the node that is about to start, advancing the parent's state.
    fn next_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => key.take().map(|k| {
                if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }
            }),
        }
    }

    fn is_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let spot = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, ..) => {
                if self.is_key_position() {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let p = if path.is_empty() {
                            value.clone()
                        } else {
                            format!("{path}.{value}")
                        };
                        self.spots.insert(p, spot);
                        *key = Some(value);
                    }
                } else if let Some(p) = self.next_path() {
                    self.spots.entry(p).or_insert(spot);
                }
            }
            Event::Alias(_) if !self.is_key_position() => {
                let _ = self.next_path();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = if self.is_key_position() {
                    // complex keys are not used in our files; index them under a placeholder
                    "?".to_string()
                } else {
                    self.next_path().unwrap_or_default()
                };
                self.spots.entry(path.clone()).or_insert(spot);
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// A YAML document read from a file, with its source map for later semantic errors.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The deserialized value.
    pub value: T,
    /// The file it came from.
    pub file: PathBuf,
    /// Where each path's value is.
    pub map: SourceMap,
}

impl<T> Loaded<T> {
    /// An error about the value at `path` (dotted), located in the file.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> YamlError {
        let spot = self.map.locate(path);
        YamlError {
            file: self.file.clone(),
            line: spot.map(|s| s.0),
            column: spot.map(|s| s.1),
            path: Some(path.to_string()),
            message: message.into(),
        }
    }
}

/// Read and deserialize a YAML file, with located errors.
pub fn load_yaml<T: DeserializeOwned>(file: &Path) -> Result<Loaded<T>, YamlError> {
    let source = std::fs::read_to_string(file).map_err(|e| YamlError {
        file: file.to_path_buf(),
        line: None,
        column: None,
        path: None,
        message: format!("cannot read file: {e}"),
    })?;
    parse_yaml(file, &source)
}

/// Deserialize YAML text that came from `file` (used in messages only).
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, source: &str) -> Result<Loaded<T>, YamlError> {
    match serde_yaml::from_str::<T>(source) {
        Ok(value) => Ok(Loaded {
            value,
            file: file.to_path_buf(),
            map: SourceMap::new(source),
        }),
        Err(e) => {
            let loc = e.location();
            let mut message = e.to_string();
            // serde_yaml appends " at line L column C"; we print the location up front instead.
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            Err(YamlError {
                file: file.to_path_buf(),
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                path: None,
                message,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const DOC: &str = "\
server:
  listen: 0.0.0.0:8080
upstreams:
  tgi:
    backends:
      - 127.0.0.1:3000
      - 127.0.0.1:3001
  other: {backends: [a:1]}
";

    #[test]
    fn locates_keys_values_and_sequence_items() {
        let m = SourceMap::new(DOC);
        assert_eq!(m.locate("server"), Some((1, 1)));
        assert_eq!(m.locate("server.listen"), Some((2, 3)));
        assert_eq!(m.locate("upstreams.tgi.backends"), Some((5, 5)));
        assert_eq!(m.locate("upstreams.tgi.backends[1]"), Some((7, 9)));
        assert_eq!(
            m.locate("upstreams.other.backends[0]").map(|s| s.0),
            Some(8)
        );
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        let m = SourceMap::new(DOC);
        assert_eq!(m.locate("upstreams.tgi.missing"), m.locate("upstreams.tgi"));
        assert_eq!(m.locate("nothing.here"), None);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
    }

    #[test]
    fn serde_errors_carry_line_and_column() {
        let e = parse_yaml::<T>(Path::new("x.yaml"), "a: 1\nb: 2\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("unknown field `b`"), "{e}");
        assert!(e.to_string().starts_with("x.yaml:2:1: "), "{e}");
        let e = parse_yaml::<T>(Path::new("x.yaml"), "a: many\n").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("invalid type"), "{e}");
    }

    proptest::proptest! {
        /// Config files are written by people: any text must give a map or an error, never a
        /// panic, and every located spot must lie inside the text.
        #[test]
        fn any_text_is_handled(src in "[a-z:\\[\\]{}, \\-\\n\"']{0,120}") {
            let map = SourceMap::new(&src);
            for (line, col) in map.spots.values() {
                proptest::prop_assert!(*line >= 1 && *line <= src.lines().count().max(1) + 1);
                proptest::prop_assert!(*col >= 1);
            }
            let _ = parse_yaml::<serde_yaml::Value>(Path::new("p.yaml"), &src);
        }
    }

    #[test]
    fn semantic_errors_are_located_by_path() {
        let l: Loaded<serde_yaml::Value> = parse_yaml(Path::new("c.yaml"), DOC).unwrap();
        let e = l.error_at("upstreams.tgi.backends[1]", "duplicate backend");
        assert_eq!(
            e.to_string(),
            "c.yaml:7:9: upstreams.tgi.backends[1]: duplicate backend"
        );
    }
}
