//! Filtering answers, whole or streamed, for any [`Protocol`].
//!
//! A family says where its answer text is (content, tool-call arguments, reasoning, refusals,
//! alternatives); this module applies the output policy there and puts the request's
//! placeholders back as the policy allows:
//!
//! * [`AnswerCx`] for a whole JSON answer: each text field is scanned and rewritten in place.
//! * [`StreamState`]/[`StreamCx`] for an event stream: one [`StreamGuard`] per stream key
//!   (a choice's content, a tool call's arguments, a content block), so an entity split
//!   across events of one field is caught while nothing is buffered beyond the hold-back.
//!
//! Members a family does not know are not trusted either: every string in them is filtered
//! as one whole text ([`AnswerCx::others`], [`StreamCx::others`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::read::Kind;
use crate::actions::{Pseudonymizer, Restorer, Vault};
use crate::finding::Action;
use crate::policy::{Applied, Policy, rewrite};
use crate::stream::{Blocked, StreamGuard};

/// Filter one whole text under the output policy and put placeholders back: `Err` when a
/// block rule fires (or a blocked type's placeholder would be restored).
pub fn filter_text(
    policy: &Policy,
    s: &mut String,
    kind: Kind,
    vault: &mut Vault,
    pseudo: &Pseudonymizer,
    findings: &mut Vec<Applied>,
) -> Result<(), Blocked> {
    if kind == Kind::Arguments
        && let Some(plain) = super::json::unescape_plain(s)
    {
        // `"\u0073k-..."` is the key the tool receives: read (and send) it decoded
        *s = plain;
    }
    if policy.output.is_active() {
        let found = policy.output.findings(s);
        if let Some(b) = found.iter().find(|f| f.action == Action::Block) {
            let b = b.clone();
            findings.extend(found);
            return Err(Blocked(b));
        }
        if found.iter().any(|f| f.action.rewrites()) {
            *s = rewrite(s, &found, vault, pseudo);
        }
        findings.extend(found);
    }
    if !vault.is_empty() && s.contains('<') {
        let rule = policy.restore_rule(pseudo, kind == Kind::Arguments);
        let mut r = Restorer::default();
        let mut out = r.push_with(vault, s, &rule)?;
        out.push_str(&r.finish());
        *s = out;
    }
    Ok(())
}

/// Filter the member names of `o` with `filter`, renaming those it rewrites.
fn member_names(
    o: &mut Map<String, Value>,
    mut filter: impl FnMut(&mut String) -> Result<(), Blocked>,
) -> Result<(), Blocked> {
    let mut renamed = Vec::new();
    for k in o.keys() {
        let mut n = k.clone();
        filter(&mut n)?;
        if n != *k {
            renamed.push((k.clone(), n));
        }
    }
    for (old, new) in renamed {
        if let Some(v) = o.remove(&old) {
            o.insert(new, v);
        }
    }
    Ok(())
}

/// Filters the text fields of one whole answer.
pub struct AnswerCx<'a> {
    policy: &'a Policy,
    vault: &'a mut Vault,
    pseudo: &'a Pseudonymizer,
    /// Findings so far.
    pub findings: Vec<Applied>,
}

impl<'a> AnswerCx<'a> {
    /// A context applying `policy`'s output side.
    pub fn new(
        policy: &'a Policy,
        vault: &'a mut Vault,
        pseudo: &'a Pseudonymizer,
    ) -> AnswerCx<'a> {
        AnswerCx {
            policy,
            vault,
            pseudo,
            findings: Vec::new(),
        }
    }

    /// Filter a text field (a string; `null` and absent carry nothing; any other value has
    /// every string inside it filtered).
    pub fn text(&mut self, v: Option<&mut Value>, kind: Kind) -> Result<(), Blocked> {
        match v {
            Some(Value::String(s)) => filter_text(
                self.policy,
                s,
                kind,
                self.vault,
                self.pseudo,
                &mut self.findings,
            ),
            Some(other) => self.all(other, kind),
            None => Ok(()),
        }
    }

    /// Every string inside `v`: values at any depth, and member names (a tool's input object
    /// can carry a secret as a name as well as a value).
    pub fn all(&mut self, v: &mut Value, kind: Kind) -> Result<(), Blocked> {
        match v {
            Value::String(_) => self.text(Some(v), kind),
            Value::Array(a) => a.iter_mut().try_for_each(|x| self.all(x, kind)),
            Value::Object(o) => {
                o.values_mut().try_for_each(|x| self.all(x, kind))?;
                let (policy, vault, pseudo) = (self.policy, &mut *self.vault, self.pseudo);
                member_names(o, |k| {
                    filter_text(policy, k, kind, vault, pseudo, &mut self.findings)
                })
            }
            _ => Ok(()),
        }
    }

    /// Whether token alternatives and other lists that would carry unfiltered text must go.
    pub fn strips(&self) -> bool {
        self.policy.output.is_active() || !self.vault.is_empty()
    }

    /// Replace `v` (logprobs, top tokens, prefill) with `empty` when [`AnswerCx::strips`].
    pub fn strip(&self, v: Option<&mut Value>, empty: Value) {
        if let Some(v) = v
            && self.strips()
            && !v.is_null()
        {
            *v = empty;
        }
    }

    /// Members of `o` not in `known` are filtered as text (fail closed on fields a family
    /// adds after this code was written).
    pub fn others(&mut self, o: &mut Map<String, Value>, known: &[&str]) -> Result<(), Blocked> {
        for (k, v) in o.iter_mut() {
            if !known.contains(&k.as_str()) {
                self.all(v, Kind::Other)?;
            }
        }
        Ok(())
    }
}

/// Identifies one text field of a stream: `(slot, sub, field)`, such as (choice 0, -, content)
/// or (choice 0, tool call 2, arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub u32, pub u32, pub u32);

/// One event to write: its `event:` name (when the family names events) and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` payload.
    pub data: Value,
}

struct Slot {
    guard: StreamGuard,
    sent: String,
    kind: Kind,
    open: bool,
}

fn slot_mut(st: &mut StreamState, key: Key, kind: Kind) -> &mut Slot {
    let policy = &st.policy;
    st.slots.entry(key).or_insert_with(|| Slot {
        guard: if kind == Kind::Arguments {
            StreamGuard::in_json_string(policy.clone())
        } else {
            StreamGuard::new(policy.clone())
        },
        sent: String::new(),
        kind,
        open: true,
    })
}

/// The state of one answer stream across events.
pub struct StreamState {
    policy: Arc<Policy>,
    slots: BTreeMap<Key, Slot>,
    /// A family's running counter (TGI's index shift, Responses' sequence-number shift).
    pub shift: i64,
    /// The last sequence number written (Responses).
    pub last_seq: Option<i64>,
    /// The first event, as a template for events the gateway must synthesize.
    pub template: Option<Value>,
    before: Vec<Frame>,
    /// Family-specific notes kept across events (Responses: each output item's id, for the
    /// delta events the gateway inserts).
    pub notes: BTreeMap<u32, String>,
}

impl std::fmt::Debug for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamState")
            .field("keys", &self.slots.keys().collect::<Vec<_>>())
            .field("shift", &self.shift)
            .finish()
    }
}

impl StreamState {
    /// A stream under `policy`.
    pub fn new(policy: Arc<Policy>) -> StreamState {
        StreamState {
            policy,
            slots: BTreeMap::new(),
            shift: 0,
            last_seq: None,
            template: None,
            before: Vec::new(),
            notes: BTreeMap::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Findings applied so far over every key.
    pub fn findings(&self) -> impl Iterator<Item = &Applied> {
        self.slots.values().flat_map(|s| s.guard.findings().iter())
    }

    /// Frames queued to go out before the current event.
    pub fn take_before(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.before)
    }

    /// Frames queued during the current event (a family may renumber them).
    pub fn queued(&mut self) -> &mut [Frame] {
        &mut self.before
    }

    /// Keys whose field has not ended.
    pub fn open_keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .filter(|(_, s)| s.open)
            .map(|(k, _)| *k)
            .collect()
    }
}

/// What a family's event handler works with: the stream's state and the request's vault.
pub struct StreamCx<'a> {
    /// The stream's state.
    pub st: &'a mut StreamState,
    vault: &'a mut Vault,
    pseudo: &'a Pseudonymizer,
}

impl<'a> StreamCx<'a> {
    /// A context for one call.
    pub fn new(
        st: &'a mut StreamState,
        vault: &'a mut Vault,
        pseudo: &'a Pseudonymizer,
    ) -> StreamCx<'a> {
        StreamCx { st, vault, pseudo }
    }

    /// Filter the next piece of field `key`; returns what may be sent now.
    pub fn push(&mut self, key: Key, kind: Kind, piece: &str) -> Result<String, Blocked> {
        let slot = slot_mut(self.st, key, kind);
        let out = slot.guard.push(piece, self.vault, self.pseudo)?;
        slot.sent.push_str(&out);
        Ok(out)
    }

    /// Field `key` ended: whatever it still holds, filtered. A key never pushed gives `""`.
    pub fn finish(&mut self, key: Key) -> Result<String, Blocked> {
        let (vault, pseudo) = (&mut *self.vault, self.pseudo);
        let Some(slot) = self.st.slots.get_mut(&key) else {
            return Ok(String::new());
        };
        if !slot.open {
            return Ok(String::new());
        }
        slot.open = false;
        let out = slot.guard.finish(vault, pseudo)?;
        slot.sent.push_str(&out);
        Ok(out)
    }

    /// Everything sent for `key` so far (what a family's "done" event must repeat).
    pub fn sent(&self, key: Key) -> &str {
        self.st.slots.get(&key).map_or("", |s| s.sent.as_str())
    }

    /// The kind of an open key.
    pub fn kind(&self, key: Key) -> Option<Kind> {
        self.st.slots.get(&key).map(|s| s.kind)
    }

    /// Queue an event to go out before the current one.
    pub fn before(&mut self, event: Option<&str>, data: Value) {
        self.st.before.push(Frame {
            event: event.map(str::to_string),
            data,
        });
    }

    /// Whether token alternatives must be dropped.
    pub fn strips(&self) -> bool {
        self.st.policy.output.is_active() || !self.vault.is_empty()
    }

    /// Replace `v` with `empty` when [`StreamCx::strips`].
    pub fn strip(&self, v: Option<&mut Value>, empty: Value) {
        if let Some(v) = v
            && self.strips()
            && !v.is_null()
        {
            *v = empty;
        }
    }

    /// Filter a whole text that has no stream key (a field that arrives complete in one event).
    pub fn whole(&mut self, v: Option<&mut Value>, kind: Kind) -> Result<(), Blocked> {
        let mut findings = Vec::new();
        let r = match v {
            Some(Value::String(s)) => filter_text(
                &self.st.policy,
                s,
                kind,
                self.vault,
                self.pseudo,
                &mut findings,
            ),
            Some(Value::Array(a)) => a.iter_mut().try_for_each(|x| self.whole(Some(x), kind)),
            Some(Value::Object(o)) => {
                let r = o.values_mut().try_for_each(|x| self.whole(Some(x), kind));
                r.and_then(|()| {
                    let (policy, vault, pseudo) = (&self.st.policy, &mut *self.vault, self.pseudo);
                    member_names(o, |k| {
                        filter_text(policy, k, kind, vault, pseudo, &mut findings)
                    })
                })
            }
            _ => Ok(()),
        };
        self.note(findings);
        r
    }

    /// Members of `o` not in `known` are filtered whole.
    pub fn others(&mut self, o: &mut Map<String, Value>, known: &[&str]) -> Result<(), Blocked> {
        for (k, v) in o.iter_mut() {
            if !known.contains(&k.as_str()) {
                self.whole(Some(v), Kind::Other)?;
            }
        }
        Ok(())
    }

    /// Keep findings of whole-text filtering with the stream's (under a key no event uses).
    fn note(&mut self, found: Vec<Applied>) {
        if found.is_empty() {
            return;
        }
        let slot = slot_mut(self.st, Key(u32::MAX, u32::MAX, u32::MAX), Kind::Other);
        slot.open = false;
        slot.guard.note(found);
    }
}
