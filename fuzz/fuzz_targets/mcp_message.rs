//! Arbitrary bytes as an MCP POST body or a server's message: the envelope reader, the batch
//! splitter, the three readers (client, server, tool definition) under the input policy, and
//! the tool digest must never panic, and a rewrite (only strings change) must not change
//! whether the message is a valid JSON-RPC envelope.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use filters::protocol::{inspect_read, mcp, parse_strict};
use filters::{Policy, Pseudonymizer, Vault};
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    let y = "name: f\nversion: 1\ninput:\n  pii: placeholder\n  secrets: redact\n  injection: block\n";
    Policy::parse(Path::new("fuzz.yaml"), y).expect("policy")
});

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_strict(data) else { return };
    let Ok((msgs, _)) = mcp::messages(&body) else { return };
    let ps = Pseudonymizer::new(b"k", "t");
    for m in msgs {
        let _ = mcp::envelope(m);
        let _ = mcp::tool_digest(m);
        for read in [
            &mcp::read_client as filters::protocol::ReadFn<'_>,
            &mcp::read_server,
            &mcp::read_tool,
        ] {
            let mut v = m.clone();
            let mut vault = Vault::default();
            if let Ok(o) = inspect_read(read, &mut v, &POLICY, &mut vault, &ps, true, None)
                && o.changed
            {
                assert_eq!(mcp::envelope(m).is_ok(), mcp::envelope(&v).is_ok());
            }
        }
    }
});
