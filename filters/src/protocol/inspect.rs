//! Applying a policy's input side to a request body read by a [`Protocol`]: every unit is
//! scanned as the backend will assemble it; a rewrite is written back into the pieces it
//! spans; the classifiers get one text per group.

use std::borrow::Cow;

use serde_json::Value;

use super::read::{Kind, Piece, Reader, Role, ShapeError, Unit};
use super::{Protocol, path::Path};
use crate::actions::{Pseudonymizer, Vault, replacement};
use crate::finding::Action;
use crate::policy::{Applied, Policy, select_rewrites};

/// A text for the model classifiers: one message (its parts, name, tool calls), one tool
/// definition, one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierText {
    /// Who wrote it.
    pub role: Role,
    /// The text as the client sent it.
    pub text: String,
}

/// What the input side decided about a request.
#[derive(Debug, Default)]
pub struct Inspection {
    /// Whether a rewrite changed the body (serialize it again before forwarding).
    pub changed: bool,
    /// Every finding, over all units (spans are relative to each unit's text).
    pub findings: Vec<Applied>,
    /// The finding that blocked, if any.
    pub blocked: Option<Applied>,
    /// Texts for the classifiers, when asked for.
    pub texts: Vec<ClassifierText>,
    /// How many units were read (for tests and metrics).
    pub units: usize,
}

/// Why the input side could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// A field the gateway cannot read safely (refused under `unknown_fields: refuse`).
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

/// Read `body` with `proto` under `policy`'s settings (no scanning).
pub fn read_units(
    proto: &dyn Protocol,
    body: &Value,
    policy: &Policy,
) -> Result<Vec<Unit>, ShapeError> {
    let mut r = Reader::new(policy.settings.unknown_fields);
    proto.read(body, &mut r)?;
    Ok(r.into_units())
}

/// A unit's text and, per piece, its byte range in that text.
type Materialized<'v> = (Cow<'v, str>, Vec<(usize, usize)>);

/// A unit's text and, per piece, its byte range in that text.
fn materialize<'v>(u: &Unit, body: &'v Value) -> Result<Materialized<'v>, ShapeError> {
    let piece = |p: &Piece| -> Result<Cow<'v, str>, ShapeError> {
        Ok(match p {
            Piece::Text(path) => Cow::Borrowed(path.str(body).ok_or_else(|| {
                ShapeError::new(
                    path,
                    "the field changed while the gateway rewrote the request",
                )
            })?),
            Piece::Member(_, k) => Cow::Owned(k.clone()),
            Piece::Sep(s) => Cow::Borrowed(*s),
        })
    };
    if let [one] = u.pieces.as_slice() {
        let t = piece(one)?;
        let n = t.len();
        return Ok((t, vec![(0, n)]));
    }
    let mut text = String::new();
    let mut ranges = Vec::with_capacity(u.pieces.len());
    for p in &u.pieces {
        let t = piece(p)?;
        let s = text.len();
        text.push_str(&t);
        ranges.push((s, text.len()));
    }
    Ok((Cow::Owned(text), ranges))
}

/// Where a unit's text ends up after its rewrites: each `Text` piece's new string. A rewrite
/// goes into the piece where its span starts (the next text piece when that is a separator);
/// what it covers in later pieces is removed from them.
fn rewrite_pieces(
    u: &Unit,
    text: &str,
    ranges: &[(usize, usize)],
    findings: &[Applied],
    vault: &mut Vault,
    pseudo: &Pseudonymizer,
) -> Result<Vec<Option<String>>, ShapeError> {
    let mut out: Vec<String> = u.pieces.iter().map(|_| String::new()).collect();
    let owner = |at: usize| -> usize {
        ranges
            .iter()
            .position(|&(s, e)| at >= s && at < e)
            .unwrap_or(ranges.len().saturating_sub(1))
    };
    // copy text[a..b) into the pieces it belongs to
    let copy = |out: &mut Vec<String>, a: usize, b: usize| {
        for (i, &(s, e)) in ranges.iter().enumerate() {
            let (x, y) = (a.max(s), b.min(e));
            if x < y {
                out[i].push_str(&text[x..y]);
            }
        }
    };
    let mut at = 0;
    for f in select_rewrites(findings) {
        if f.start < at || f.end > text.len() {
            continue;
        }
        let value = &text[f.start..f.end];
        let Some(r) = replacement(f.action, f.ty, value, vault, pseudo) else {
            continue;
        };
        copy(&mut out, at, f.start);
        let mut i = owner(f.start);
        while i < u.pieces.len() && matches!(u.pieces[i], Piece::Sep(_)) {
            i += 1;
        }
        match u.pieces.get(i) {
            Some(Piece::Text(_)) => out[i].push_str(&r),
            Some(Piece::Member(path, _)) => {
                return Err(ShapeError::new(
                    path,
                    format!(
                        "a member name carries `{}`, which the policy rewrites; names cannot be rewritten, so the request is refused",
                        f.ty
                    ),
                ));
            }
            _ => {}
        }
        at = f.end;
    }
    copy(&mut out, at, text.len());
    Ok(u.pieces
        .iter()
        .zip(out)
        .enumerate()
        .map(|(i, (p, new))| match p {
            Piece::Text(_) if new != text[ranges[i].0..ranges[i].1] => Some(new),
            _ => None,
        })
        .collect())
}

/// Texts for the classifiers, one per group, as the client sent them. `data:` URLs are images
/// (the rules still scan them); member names of schemas are scored with their values.
fn classifier_texts(units: &[Unit], body: &Value) -> Vec<ClassifierText> {
    let mut out: Vec<(u32, ClassifierText)> = Vec::new();
    for u in units.iter().filter(|u| u.classify) {
        let Ok((t, _)) = materialize(u, body) else {
            continue;
        };
        if t.trim().is_empty() || (u.kind == Kind::Url && t.trim_start().starts_with("data:")) {
            continue;
        }
        match out.last_mut() {
            Some((g, c)) if *g == u.group => {
                c.text.push('\n');
                c.text.push_str(&t);
            }
            _ => out.push((
                u.group,
                ClassifierText {
                    role: u.role,
                    text: t.into_owned(),
                },
            )),
        }
    }
    out.into_iter().map(|(_, c)| c).collect()
}

/// Apply `policy`'s input side to `body` (already parsed) as `proto` reads it: scan every unit,
/// stop at the first block, write rewrites back into the body. With `classify`, also collect
/// the classifiers' texts (before any rewrite).
pub fn inspect(
    proto: &dyn Protocol,
    body: &mut Value,
    policy: &Policy,
    vault: &mut Vault,
    pseudo: &Pseudonymizer,
    classify: bool,
) -> Result<Inspection, InspectError> {
    let units = read_units(proto, body, policy)?;
    let mut out = Inspection {
        units: units.len(),
        ..Inspection::default()
    };
    if classify {
        out.texts = classifier_texts(&units, body);
    }
    if !policy.input.is_active() {
        return Ok(out);
    }
    for u in &units {
        let (text, ranges) = materialize(u, body)?;
        let found = policy.input.findings(&text);
        if found.is_empty() {
            continue;
        }
        if let Some(b) = found.iter().find(|f| f.action == Action::Block) {
            out.blocked = Some(b.clone());
            out.findings.extend(found);
            return Ok(out);
        }
        if found.iter().any(|f| f.action.rewrites()) {
            let text = text.into_owned();
            let new = rewrite_pieces(u, &text, &ranges, &found, vault, pseudo)?;
            for (p, n) in u.pieces.iter().zip(new) {
                if let (Piece::Text(path), Some(n)) = (p, n)
                    && let Some(slot) = path.get_mut(body)
                {
                    *slot = Value::String(n);
                    out.changed = true;
                }
            }
        }
        out.findings.extend(found);
    }
    Ok(out)
}

/// The texts of `body` that reach the model, as `proto` reads it (for `gateway check` and
/// tests): each unit's text in order.
pub fn unit_texts(
    proto: &dyn Protocol,
    body: &Value,
    policy: &Policy,
) -> Result<Vec<(Role, String)>, ShapeError> {
    let units = read_units(proto, body, policy)?;
    units
        .iter()
        .map(|u| materialize(u, body).map(|(t, _)| (u.role, t.into_owned())))
        .collect()
}

/// A path's printed form, for tests.
pub fn path_of(p: &Piece) -> Option<&Path> {
    match p {
        Piece::Text(p) | Piece::Member(p, _) => Some(p),
        Piece::Sep(_) => None,
    }
}
