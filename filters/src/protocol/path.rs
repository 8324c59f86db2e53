//! Paths into a JSON body (`messages[1].content[0].text`), and reading and writing the strings
//! they point at.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// An object member.
    Key(Cow<'static, str>),
    /// An array element.
    Index(usize),
}

/// Where a value sits in a JSON document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Seg>);

impl Path {
    /// The document itself.
    pub fn root() -> Path {
        Path(Vec::new())
    }

    /// This path, one member further.
    pub fn key(&self, k: impl Into<Cow<'static, str>>) -> Path {
        let mut p = self.0.clone();
        p.push(Seg::Key(k.into()));
        Path(p)
    }

    /// This path, one element further.
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.0.clone();
        p.push(Seg::Index(i));
        Path(p)
    }

    /// The value at this path.
    pub fn get<'v>(&self, mut v: &'v Value) -> Option<&'v Value> {
        for s in &self.0 {
            v = match (s, v) {
                (Seg::Key(k), Value::Object(o)) => o.get(k.as_ref())?,
                (Seg::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// The value at this path, mutably.
    pub fn get_mut<'v>(&self, mut v: &'v mut Value) -> Option<&'v mut Value> {
        for s in &self.0 {
            v = match (s, v) {
                (Seg::Key(k), Value::Object(o)) => o.get_mut(k.as_ref())?,
                (Seg::Index(i), Value::Array(a)) => a.get_mut(*i)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// The string at this path.
    pub fn str<'v>(&self, v: &'v Value) -> Option<&'v str> {
        self.get(v).and_then(Value::as_str)
    }
}

/// Where a reader is in the body: a path kept on the stack while walking it, so that members
/// carrying no text cost no allocation ([`At::to_path`] makes the owned [`Path`] a unit keeps).
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    /// The document itself.
    Root,
    /// A member of the object at the first path.
    Key(&'a At<'a>, &'a str),
    /// An element of the array at the first path.
    Index(&'a At<'a>, usize),
}

impl<'a> At<'a> {
    /// This path, one member further.
    pub fn key(&'a self, k: &'a str) -> At<'a> {
        At::Key(self, k)
    }

    /// This path, one element further.
    pub fn index(&'a self, i: usize) -> At<'a> {
        At::Index(self, i)
    }

    /// The owned path.
    pub fn to_path(&self) -> Path {
        let mut segs = Vec::new();
        let mut cur = self;
        loop {
            match cur {
                At::Root => break,
                At::Key(up, k) => {
                    segs.push(Seg::Key(Cow::Owned((*k).to_string())));
                    cur = up;
                }
                At::Index(up, i) => {
                    segs.push(Seg::Index(*i));
                    cur = up;
                }
            }
        }
        segs.reverse();
        Path(segs)
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_path().fmt(f)
    }
}

/// A member name is printed bare when it is a plain identifier, quoted otherwise (a name comes
/// from the client and may be anything, so it is also shortened).
fn plain(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 40
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(body)");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if plain(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(_) => f.write_str("[<name>]")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_set_and_print() {
        let mut v = serde_json::json!({"messages": [{"content": [{"text": "a"}]}]});
        let p = Path::root()
            .key("messages")
            .index(0)
            .key("content")
            .index(0)
            .key("text");
        assert_eq!(p.str(&v), Some("a"));
        *p.get_mut(&mut v).unwrap() = "b".into();
        assert_eq!(p.str(&v), Some("b"));
        assert_eq!(p.to_string(), "messages[0].content[0].text");
        assert_eq!(
            Path::root().key("x y\"z").index(2).to_string(),
            "[<name>][2]"
        );
        assert!(Path::root().key("nope").get(&v).is_none());
    }
}
