//! Arbitrary upstream bytes, cut at arbitrary points, through every API family's stream
//! rewriter (`filters::protocol::AnswerStream`).
#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock};

use filters::protocol::{self, AnswerStream};
use filters::{Policy, Pseudonymizer, Vault};
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Arc<Policy>> = LazyLock::new(|| {
    let y =
        "name: f\nversion: 1\noutput:\n  pii: redact\n  secrets: block\n  unsafe_output: redact\n";
    Arc::new(Policy::parse(Path::new("fuzz.yaml"), y).expect("policy"))
});

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut).max(1);
    for proto in protocol::families() {
        let mut r = AnswerStream::new(proto, POLICY.clone());
        let mut vault = Vault::default();
        vault.placeholder("email", "a@b.io");
        let ps = Pseudonymizer::new(b"k", "t");
        for c in rest.chunks(chunk) {
            let _ = r.feed(c, &mut vault, &ps);
        }
        let _ = r.finish(&mut vault, &ps);
    }
});
