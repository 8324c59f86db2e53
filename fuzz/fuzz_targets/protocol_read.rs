//! Arbitrary request bodies through the strict parser and every API family's reader and input
//! policy (`filters::protocol::inspect`), under both `unknown_fields` settings; and arbitrary
//! answers through every family's whole-answer filter. Nothing may panic, and a body the policy
//! lets through, read again, may not show the model the e-mail address the corpus plants
//! (`jane.doe@example.com`, standing alone: glued to other characters it is another string, and
//! whether that one is an address is the detector's business, tested beside it): whatever the
//! reader finds, the rewrite must reach.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use filters::protocol::{self, AnswerCx, inspect, parse_strict, unit_texts};
use filters::{Policy, Pseudonymizer, Vault};
use libfuzzer_sys::fuzz_target;

static POLICIES: LazyLock<[Policy; 2]> = LazyLock::new(|| {
    let p = |unknown: &str| {
        let y = format!(
            "name: f\nversion: 1\ninput:\n  pii: placeholder\n  secrets: redact\n  injection: block\noutput:\n  pii: redact\nsettings:\n  unknown_fields: {unknown}\n"
        );
        Policy::parse(Path::new("fuzz.yaml"), &y).expect("policy")
    };
    [p("refuse"), p("allow")]
});

const PLANTED: &str = "jane.doe@example.com";

/// Whether `text` holds [`PLANTED`] between delimiters (start, end, whitespace, quotes, brackets,
/// `,;!?`; not `:`, `/` or `=`, after which it can be a URL's user and host).
fn standalone(text: &str) -> bool {
    let delim =
        |c: Option<char>| c.is_none_or(|c| c.is_whitespace() || "\"'`<>()[]{},;!?".contains(c));
    text.match_indices(PLANTED).any(|(i, m)| {
        delim(text[..i].chars().next_back()) && delim(text[i + m.len()..].chars().next())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = parse_strict(data) else { return };
    let ps = Pseudonymizer::new(b"k", "t");
    for policy in POLICIES.iter() {
        for proto in protocol::families() {
            let mut body = v.clone();
            let mut vault = Vault::default();
            if let Ok(ins) = inspect(proto, &mut body, policy, &mut vault, &ps, true)
                && ins.blocked.is_none()
            {
                let texts = unit_texts(proto, &body, policy).expect("a rewritten body reads again");
                for (role, text) in texts {
                    assert!(
                        !standalone(&text),
                        "{}: {role:?} text still holds the address: {text:?}",
                        proto.name()
                    );
                }
            }
            let mut answer = v.clone();
            let mut cx = AnswerCx::new(policy, &mut vault, &ps);
            let _ = proto.answer(&mut answer, &mut cx);
        }
    }
});
