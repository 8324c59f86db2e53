//! The entity head: a per-token BIO tagger (person names, street addresses) on the encoder's
//! per-token states, evaluated in plain Rust beside the sequence heads in the same session run.
//!
//! The head is an MLP whose hidden part runs once per token; with `context: c` its output layer
//! reads the hidden units of the `c` tokens before and after the token too (zeros past the
//! window's edges), a width-`2c + 1` convolution over the hidden layer.
//!
//! Decoding is `models/build/entity_head.py`'s `decode`, token for token (the bundle's figures
//! are measured with it):
//! - a token is part of an entity when `1 - p(O)` reaches the calibrated threshold; its type is
//!   the likelier one (`B-` and `I-` of a type summed);
//! - a token between two tokens of one type, the second of which continues the span (not
//!   `B-`), takes that type (one-token gaps and flips are bridged);
//! - a run of tokens of one type between two tokens of another, same type takes that type ("Via
//!   Giuseppe Verdi 3": a street named after a person is part of the address);
//! - the tokens of one word (joined with no gap, letters or digits on both sides of the joint)
//!   take the type of the word's first entity token;
//! - consecutive entity tokens of one type make one span; a `B-` token starts a new span unless
//!   it continues the previous token's word (no gap between them);
//! - a span grows to whole words (letters and digits around it), so a name is never half masked.

use std::path::Path;

use safetensors::SafeTensors;

use super::ModelError;
use super::bundle::EntitySpec;
use super::heads::{Layer, forward_rows, load_layers};

/// Most entity types one head may have.
const MAX_TYPES: usize = 8;
/// Most neighbours on each side the output layer may read.
const MAX_CONTEXT: usize = 8;

/// A person name or street address the entity head found: UTF-8 byte offsets into the text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntitySpan {
    /// Finding type (`person`, `address`).
    pub ty: &'static str,
    /// Start byte.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
    /// Highest `1 - p(O)` over the span's tokens.
    pub score: f32,
}

/// One token's tag.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tag {
    /// 0: no entity; `i + 1`: the head's `i`-th type.
    pub ty: u8,
    /// The token begins an entity (`B-` likelier than `I-`).
    pub begin: bool,
    /// `1 - p(O)`.
    pub p: f32,
}

/// The loaded entity head.
#[derive(Debug, Clone)]
pub struct TokenHead {
    layers: Vec<Layer>,
    /// Finding type of each entity type index.
    types: Vec<&'static str>,
    /// Per output unit: `None` for `O`, else (type index, is `B-`).
    units: Vec<Option<(usize, bool)>>,
    threshold: f32,
    dim: usize,
    /// Neighbours on each side whose hidden units the output layer reads.
    context: usize,
}

impl TokenHead {
    /// Load the head of `spec` from `path`, reading `dim`-wide token states.
    pub fn load(spec: &EntitySpec, path: &Path, dim: usize) -> Result<TokenHead, ModelError> {
        let bad = |message: String| ModelError::Head {
            head: "entities".into(),
            message,
        };
        let raw = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let st =
            SafeTensors::deserialize(&raw).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        if spec.context > MAX_CONTEXT {
            return Err(bad(format!(
                "context {} is more than {MAX_CONTEXT} tokens on each side",
                spec.context
            )));
        }
        let span = 2 * spec.context + 1;
        let (layers, width) =
            load_layers(&st, &spec.tensors, &spec.kind, dim, span).map_err(&bad)?;
        if spec.context > 0 && layers.len() < 2 {
            return Err(bad(format!(
                "context {} needs an `mlp` head (a hidden layer to read the neighbours' units of)",
                spec.context
            )));
        }
        if width != spec.labels.len() {
            return Err(bad(format!(
                "the last layer has {width} outputs but {} labels are named",
                spec.labels.len()
            )));
        }
        let mut types: Vec<&'static str> = Vec::new();
        let mut units = Vec::with_capacity(spec.labels.len());
        let mut outside = 0;
        for label in &spec.labels {
            if label == "O" {
                outside += 1;
                units.push(None);
                continue;
            }
            let (begin, name) = match label.split_once('-') {
                Some(("B", n)) => (true, n),
                Some(("I", n)) => (false, n),
                _ => {
                    return Err(bad(format!(
                        "label `{label}` is not `O`, `B-<TYPE>` or `I-<TYPE>`"
                    )));
                }
            };
            let lower = name.to_ascii_lowercase();
            let ty = crate::finding::TYPES
                .iter()
                .find(|t| t.name == lower && t.group == crate::finding::Group::Pii)
                .map(|t| t.name)
                .ok_or_else(|| {
                    bad(format!(
                        "label `{label}`: `{lower}` is not a PII finding type"
                    ))
                })?;
            let i = match types.iter().position(|t| *t == ty) {
                Some(i) => i,
                None => {
                    types.push(ty);
                    types.len() - 1
                }
            };
            units.push(Some((i, begin)));
        }
        if outside != 1 || types.is_empty() || types.len() > MAX_TYPES {
            return Err(bad(format!(
                "labels {:?}: need exactly one `O` and from 1 to {MAX_TYPES} entity types",
                spec.labels
            )));
        }
        if !(spec.threshold > 0.0 && spec.threshold < 1.0) {
            return Err(bad(format!(
                "threshold {} is not a probability in (0, 1)",
                spec.threshold
            )));
        }
        Ok(TokenHead {
            layers,
            types,
            units,
            threshold: spec.threshold as f32,
            dim,
            context: spec.context,
        })
    }

    /// Width of the token states the head reads.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The finding types the head reports.
    pub fn types(&self) -> &[&'static str] {
        &self.types
    }

    /// Tag the tokens whose states lie one after another in `states` (`dim` values each).
    pub fn tag_tokens(&self, states: &[f32]) -> Vec<Tag> {
        let n = states.len() / self.dim.max(1);
        let states = &states[..n * self.dim];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let Some((last, hidden_layers)) = self.layers.split_last().filter(|_| n > 0) else {
            return Vec::new();
        };
        if self.context == 0 || hidden_layers.is_empty() {
            forward_rows(&self.layers, states, false, &mut a, &mut b);
        } else {
            // the hidden units of every token, then the output layer over each token's
            // neighbourhood [h(i - c) .. h(i + c)], zeros past the edges
            forward_rows(hidden_layers, states, true, &mut a, &mut b);
            let width = a.len() / n.max(1);
            let span = 2 * self.context + 1;
            let mut near = vec![0f32; n * span * width];
            for (i, row) in near.chunks_exact_mut(span * width).enumerate() {
                for (k, slot) in row.chunks_exact_mut(width).enumerate() {
                    if let Some(j) = (i + k).checked_sub(self.context).filter(|&j| j < n) {
                        slot.copy_from_slice(&a[j * width..(j + 1) * width]);
                    }
                }
            }
            last.apply_rows(&near, &mut a);
        }
        let outputs = self.units.len();
        a.chunks_exact_mut(outputs)
            .map(|logits| self.tag_logits(logits))
            .collect()
    }

    /// The tag of one token from its output layer's logits (softmax in place).
    fn tag_logits(&self, a: &mut [f32]) -> Tag {
        let max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for v in a.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        // per type: (p of its `B-` label, p of its `I-` label)
        let mut p_out = 0f32;
        let mut by_type = [(0f32, 0f32); MAX_TYPES];
        for (v, u) in a.iter().zip(&self.units) {
            let p = v / sum;
            match *u {
                None => p_out += p,
                Some((i, true)) => by_type[i].0 += p,
                Some((i, false)) => by_type[i].1 += p,
            }
        }
        let p = 1.0 - p_out;
        if p < self.threshold {
            return Tag {
                ty: 0,
                begin: false,
                p,
            };
        }
        let total = |i: usize| by_type[i].0 + by_type[i].1;
        let best =
            (1..self.types.len()).fold(0, |best, i| if total(i) > total(best) { i } else { best });
        Tag {
            ty: (best + 1) as u8,
            begin: by_type[best].0 > by_type[best].1,
            p,
        }
    }

    /// Spans of `text` from its tokens' byte offsets and tags (one per token).
    pub fn decode(&self, text: &str, offsets: &[(usize, usize)], tags: &[Tag]) -> Vec<EntitySpan> {
        decode(&self.types, text, offsets, tags)
    }
}

/// A token between two tokens of one type, the second of which continues the span (not a
/// `B-` token), takes that type: one-token gaps and flips inside a name or an address are
/// bridged.
fn bridged(tags: &[Tag]) -> Vec<Tag> {
    let mut out = tags.to_vec();
    for k in 1..out.len().saturating_sub(1) {
        let (a, c) = (out[k - 1], out[k + 1]);
        if a.ty != 0 && a.ty == c.ty && out[k].ty != a.ty && !c.begin {
            out[k].ty = a.ty;
            out[k].begin = false;
        }
    }
    // a run of one type between two tokens of another, same type takes that type
    let mut k = 0;
    while k < out.len() {
        let mut j = k;
        while j + 1 < out.len() && out[j + 1].ty == out[k].ty {
            j += 1;
        }
        if out[k].ty != 0 && k > 0 && j + 1 < out.len() {
            let around = out[k - 1].ty;
            if around != 0 && around == out[j + 1].ty {
                for t in &mut out[k..=j] {
                    t.ty = around;
                    t.begin = false;
                }
            }
        }
        k = j + 1;
    }
    out
}

/// The tokens of one word take the type of the word's first entity token.
fn word_types(text: &str, offsets: &[(usize, usize)], tags: &mut [Tag]) {
    let alnum_before = |i: usize| {
        text.get(..i)
            .and_then(|t| t.chars().next_back())
            .is_some_and(char::is_alphanumeric)
    };
    let alnum_at = |i: usize| {
        text.get(i..)
            .and_then(|t| t.chars().next())
            .is_some_and(char::is_alphanumeric)
    };
    let (mut word_type, mut end) = (0u8, None);
    for (&(s, e), t) in offsets.iter().zip(tags.iter_mut()) {
        if s == e {
            continue;
        }
        let joins = end == Some(s) && s > 0 && alnum_before(s) && alnum_at(s);
        if !joins {
            word_type = 0;
        }
        if t.ty != 0 {
            if word_type == 0 {
                word_type = t.ty;
            }
            t.ty = word_type;
        }
        end = Some(e);
    }
}

/// See the module documentation.
pub fn decode(
    types: &[&'static str],
    text: &str,
    offsets: &[(usize, usize)],
    tags: &[Tag],
) -> Vec<EntitySpan> {
    let mut tags = bridged(tags);
    word_types(text, offsets, &mut tags);
    let mut spans: Vec<EntitySpan> = Vec::new();
    let mut open = false;
    let mut prev_end: Option<usize> = None;
    for (&(s, e), t) in offsets.iter().zip(&tags) {
        if s == e {
            continue;
        }
        let ty = usize::from(t.ty);
        if ty == 0 || ty > types.len() {
            open = false;
            prev_end = Some(e);
            continue;
        }
        let name = types[ty - 1];
        let joined = prev_end == Some(s);
        match spans.last_mut() {
            Some(last) if open && last.ty == name && (!t.begin || joined) => {
                last.end = e;
                last.score = last.score.max(t.p);
            }
            _ => spans.push(EntitySpan {
                ty: name,
                start: s,
                end: e,
                score: t.p,
            }),
        }
        open = true;
        prev_end = Some(e);
    }
    for sp in &mut spans {
        sp.start = text[..sp.start.min(text.len())]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric())
            .last()
            .map_or(sp.start, |(i, _)| i);
        let end = sp.end.min(text.len());
        sp.end = end
            + text[end..]
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .map(char::len_utf8)
                .sum::<usize>();
    }
    spans
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::classify::heads::write_safetensors;
    use std::path::PathBuf;

    const TYPES: &[&str] = &["person", "address"];

    fn tag(ty: u8, begin: bool) -> Tag {
        Tag { ty, begin, p: 0.99 }
    }

    #[test]
    fn spans_join_tokens_and_grow_to_whole_words() {
        //          0123456789012345678901234567
        let text = "Dear Müller-Lüden, thanks";
        // tokens: dear | muller | - | lu | ##den | , | thanks   (byte offsets; ü is 2 bytes)
        let offs = [
            (0, 4),
            (5, 12),
            (12, 13),
            (13, 16),
            (16, 19),
            (19, 20),
            (21, 27),
        ];
        // `muller` B-PERSON, `-` I, `lu` I, `##den` untagged: the span still covers `Lüden`
        let tags = [
            Tag::default(),
            tag(1, true),
            tag(1, false),
            tag(1, false),
            Tag::default(),
            Tag::default(),
            Tag::default(),
        ];
        let s = decode(TYPES, text, &offs, &tags);
        assert_eq!(s.len(), 1);
        assert_eq!(&text[s[0].start..s[0].end], "Müller-Lüden");
    }

    #[test]
    fn a_begin_tag_starts_a_new_span_unless_it_continues_the_word() {
        let text = "Ann Bo and Cy Di";
        let offs = [(0, 3), (4, 5), (5, 6), (7, 10), (11, 13), (14, 16)];
        // Ann(B) B(I) o(B, same word: continues) and(O) Cy(B) Di(B: a new span)
        let tags = [
            tag(1, true),
            tag(1, false),
            tag(1, true),
            Tag::default(),
            tag(1, true),
            tag(1, true),
        ];
        let s: Vec<&str> = decode(TYPES, text, &offs, &tags)
            .iter()
            .map(|s| &text[s.start..s.end])
            .collect();
        assert_eq!(s, ["Ann Bo", "Cy", "Di"]);
    }

    #[test]
    fn one_token_gaps_and_flips_inside_a_span_are_bridged() {
        let text = "at 12 Via Roma, 00184 Roma now";
        let offs = [
            (0, 2),
            (3, 5),
            (6, 9),
            (10, 14),
            (14, 15),
            (16, 21),
            (22, 26),
            (27, 30),
        ];
        // `Via` below the threshold and `00184` tagged person: both take the address type
        let tags = [
            Tag::default(),
            tag(2, true),
            Tag::default(),
            tag(2, false),
            tag(2, false),
            tag(1, false),
            tag(2, false),
            Tag::default(),
        ];
        let s = decode(TYPES, text, &offs, &tags);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(&text[s[0].start..s[0].end], "12 Via Roma, 00184 Roma");
        // a B token after the gap starts a new entity: no bridge
        let mut t2 = tags;
        t2[3] = tag(2, true);
        assert_eq!(decode(TYPES, text, &offs, &t2).len(), 2);
        // two tokens in a row are not a one-token gap
        let mut t3 = tags;
        t3[4] = Tag::default();
        assert_eq!(decode(TYPES, text, &offs, &t3).len(), 3);
    }

    #[test]
    fn types_do_not_merge() {
        let text = "Bo 1 Main St";
        let offs = [(0, 2), (3, 4), (5, 9), (10, 12)];
        let tags = [tag(1, true), tag(2, true), tag(2, false), tag(2, false)];
        let s = decode(TYPES, text, &offs, &tags);
        assert_eq!(
            s.iter().map(|s| (s.ty, s.start, s.end)).collect::<Vec<_>>(),
            [("person", 0, 2), ("address", 3, 12)]
        );
    }

    fn spec(labels: &[&str], threshold: f64, context: usize, kind: &str) -> EntitySpec {
        EntitySpec {
            file: "heads.safetensors".into(),
            tensors: "e".into(),
            kind: kind.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            threshold,
            context,
            calibration: None,
        }
    }

    fn head(labels: &[&str], threshold: f64) -> Result<TokenHead, ModelError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("heads.safetensors");
        // linear 2 -> labels: output i = x[0] * w_i (w_O = 0, every other unit 1), bias 0
        let n = labels.len();
        let mut w = vec![0f32; n * 2];
        for i in 1..n {
            w[i * 2] = 1.0;
        }
        w[2] = 2.0; // B-PERSON leads
        write_safetensors(
            &p,
            &[
                ("e.weight", vec![n, 2], w),
                ("e.bias", vec![n], vec![0.0; n]),
            ],
        );
        TokenHead::load(&spec(labels, threshold, 0, "linear"), &p, 2)
    }

    const LABELS: &[&str] = &["O", "B-PERSON", "I-PERSON", "B-ADDRESS", "I-ADDRESS"];

    #[test]
    fn tags_follow_the_threshold_on_one_minus_p_outside() {
        let h = head(LABELS, 0.9).unwrap();
        assert_eq!(h.types(), ["person", "address"]);
        // x = 0: every unit 0, p(O) = 1/5, 1 - p(O) = 0.8 < 0.9: no entity
        // x = 5: B-PERSON dominates, p(O) tiny
        let t = h.tag_tokens(&[0.0, 0.0, 5.0, 0.0]);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].ty, 0);
        assert!((t[0].p - 0.8).abs() < 1e-5, "{t:?}");
        assert_eq!((t[1].ty, t[1].begin), (1, true), "{t:?}");
        assert!(t[1].p > 0.99);
    }

    #[test]
    fn malformed_heads_are_refused_with_the_reason() {
        let e = head(&["O", "B-PERSON", "I-PERSON", "B-NOPE", "I-NOPE"], 0.5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`nope` is not a PII finding type"), "{e}");
        let e = head(&["O", "B-PERSON", "X", "B-ADDRESS", "I-ADDRESS"], 0.5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("label `X`"), "{e}");
        let e = head(&["O", "O", "B-PERSON", "I-PERSON"], 0.5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one `O`"), "{e}");
        let e = head(LABELS, 1.5).unwrap_err().to_string();
        assert!(e.contains("not a probability"), "{e}");
        // the head's outputs must match the labels
        let e = head(&["O", "B-PERSON", "I-PERSON"], 0.5);
        assert!(e.is_ok(), "three labels, three outputs");
    }

    #[test]
    fn a_run_of_one_type_inside_another_takes_its_type() {
        // a street named after a person: the name's tokens read as a person
        let text = "at Via Giuseppe Verdi 3, Roma";
        let offs = [
            (0, 2),
            (3, 6),
            (7, 15),
            (16, 21),
            (22, 23),
            (23, 24),
            (25, 29),
        ];
        let tags = [
            Tag::default(),
            tag(2, true),
            tag(1, true),
            tag(1, false),
            tag(2, false),
            tag(2, false),
            tag(2, false),
        ];
        let s = decode(TYPES, text, &offs, &tags);
        assert_eq!(
            s.iter().map(|s| (s.ty, s.start, s.end)).collect::<Vec<_>>(),
            [("address", 3, 29)]
        );
        // a name before an address is not inside it
        let text = "to Anna Rossi, Via Roma 3";
        let offs = [
            (0, 2),
            (3, 7),
            (8, 13),
            (13, 14),
            (15, 18),
            (19, 23),
            (24, 25),
        ];
        let tags = [
            Tag::default(),
            tag(1, true),
            tag(1, false),
            Tag::default(),
            tag(2, true),
            tag(2, false),
            tag(2, false),
        ];
        let s = decode(TYPES, text, &offs, &tags);
        assert_eq!(
            s.iter().map(|s| (s.ty, s.start, s.end)).collect::<Vec<_>>(),
            [("person", 3, 13), ("address", 15, 25)]
        );
    }

    #[test]
    fn the_tokens_of_a_word_take_its_first_entity_tokens_type() {
        // `Mor` + `in` read as person then address: one person span, not two overlapping ones
        let text = "for Ada Morin.";
        let offs = [(0, 3), (4, 7), (8, 11), (11, 13), (13, 14)];
        let tags = [
            Tag::default(),
            tag(1, true),
            tag(1, false),
            tag(2, false),
            Tag::default(),
        ];
        let s = decode(TYPES, text, &offs, &tags);
        assert_eq!(
            s.iter().map(|s| (s.ty, s.start, s.end)).collect::<Vec<_>>(),
            [("person", 4, 13)]
        );
        // a word that begins outside any entity takes the type of its first entity token
        let tags = [
            Tag::default(),
            Tag::default(),
            Tag::default(),
            tag(2, true),
            Tag::default(),
        ];
        let s = decode(TYPES, text, &offs, &tags);
        assert_eq!(
            s.iter().map(|s| (s.ty, s.start, s.end)).collect::<Vec<_>>(),
            [("address", 8, 13)]
        );
    }

    /// A safetensors file of `(name, shape, values)` in a temporary directory.
    fn write_tensors(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("heads.safetensors");
        write_safetensors(&p, tensors);
        (d, p)
    }

    fn context_spec(context: usize, kind: &str) -> EntitySpec {
        spec(LABELS, 0.9, context, kind)
    }

    #[test]
    fn a_context_head_reads_the_neighbours_hidden_units() {
        // hidden: h = ReLU(x) (1 unit); output over [h_prev, h, h_next]: B-PERSON = 10 h_next,
        // every other unit 0. A token is a person's start when the next token's x is positive.
        let mut out = vec![0f32; 5 * 3];
        out[3 + 2] = 10.0; // unit 1 (B-PERSON), input 2 (h_next)
        let (_d, p) = write_tensors(&[
            ("e.0.weight", vec![1, 1], vec![1.0]),
            ("e.0.bias", vec![1], vec![0.0]),
            ("e.2.weight", vec![5, 3], out),
            ("e.2.bias", vec![5], vec![0.0; 5]),
        ]);
        let h = TokenHead::load(&context_spec(1, "mlp"), &p, 1).unwrap();
        let t = h.tag_tokens(&[0.0, 1.0, 1.0]);
        // token 0: next is 1 -> person; token 1: next is 1 -> person; token 2: past the edge
        // (zeros) -> every unit 0, 1 - p(O) = 0.8 < 0.9
        assert_eq!(
            t.iter().map(|t| t.ty).collect::<Vec<_>>(),
            [1, 1, 0],
            "{t:?}"
        );
        assert!(t[0].begin);
        // one token alone: both neighbours past the edges
        assert_eq!(h.tag_tokens(&[1.0])[0].ty, 0);
        assert!(h.tag_tokens(&[]).is_empty());
        // without context the same output layer does not fit the hidden layer
        let e = TokenHead::load(&context_spec(0, "mlp"), &p, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected [_, 1]"), "{e}");
        let e = TokenHead::load(&context_spec(9, "mlp"), &p, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 8 tokens"), "{e}");
        // a linear head has no hidden units to read
        let (_d2, p2) = write_tensors(&[
            ("e.weight", vec![5, 1], vec![0.0; 5]),
            ("e.bias", vec![5], vec![0.0; 5]),
        ]);
        let e = TokenHead::load(&context_spec(1, "linear"), &p2, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs an `mlp` head"), "{e}");
    }

    #[test]
    fn the_policy_adds_spans_with_its_actions_in_text_order() {
        let p = crate::Policy::parse(
            std::path::Path::new("p.yaml"),
            "name: t\nversion: 1\ninput:\n  email: redact\n  person: placeholder\nclassifiers:\n  model: guard\n",
        )
        .unwrap();
        let text = "Ann Lee wrote from ann@example.com at 1 Main St";
        let mut found = p.input.findings(text);
        assert_eq!(found.len(), 1);
        let spans = [
            EntitySpan {
                ty: "address",
                start: 38,
                end: 47,
                score: 0.99,
            },
            EntitySpan {
                ty: "person",
                start: 0,
                end: 7,
                score: 0.99,
            },
        ];
        p.input.add_entities(&mut found, &spans);
        // `address` is not acted on by this policy: dropped; `person` first, then the e-mail
        let got: Vec<(&str, usize)> = found.iter().map(|f| (f.ty, f.start)).collect();
        assert_eq!(got, [("person", 0), ("email", 19)]);
        assert!(p.input.wants_entities(&["person", "address"]));
        assert!(!p.input.wants_entities(&["address"]));
        let mut vault = crate::Vault::default();
        let d = p.input.evaluate_with(
            text,
            &spans,
            &mut vault,
            &crate::Pseudonymizer::new(b"k", "t"),
        );
        assert_eq!(
            d.text.as_deref(),
            Some("<PERSON_1> wrote from [EMAIL] at 1 Main St")
        );
    }
}
