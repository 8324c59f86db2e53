//! Arbitrary text through every detector (all types enabled) and every action.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use filters::{Policy, Pseudonymizer, Vault};
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    let y = "name: f\nversion: 1\ninput:\n  pii: placeholder\n  secrets: pseudonymize\n  injection: monitor\n  unsafe_output: redact\n";
    Policy::parse(Path::new("fuzz.yaml"), y).expect("policy")
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut vault = Vault::default();
    let ps = Pseudonymizer::new(b"k", "t");
    let d = POLICY.input.evaluate(&text, &mut vault, &ps);
    for f in &d.findings {
        assert!(f.start <= f.end && f.end <= text.len());
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
    }
    if let Some(t) = d.text {
        let _ = vault.restore(&t);
    }
});
