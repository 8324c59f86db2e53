// Shared by the old and new `guard_request` benches (copied into each tree): today's request
// shapes, and the policy they run under.

/// Typical prose with one or two entities per KB (as in filters/benches/rules.rs).
pub fn typical(bytes: usize) -> String {
    let para = "I am working on a Rust service that parses log lines and aggregates latency \
        percentiles per endpoint. The current implementation keeps a HashMap from endpoint to a \
        Vec of samples and sorts on every report, which is slow once we reach a few million \
        requests per hour. Could you suggest a data structure that keeps approximate quantiles \
        in bounded memory, explain the error guarantees, and sketch the code? We deploy on \
        Kubernetes with three replicas behind an ingress and scrape metrics every fifteen \
        seconds; reports go to the on-call channel. If anything is unclear, the owner is \
        sam.lee@example.org and the runbook lives in the ops wiki under latency dashboards. ";
    let mut s = String::with_capacity(bytes + para.len());
    while s.len() < bytes {
        s.push_str(para);
    }
    s.truncate(bytes);
    s
}

/// (name, route label, body) of the shapes the gateway guarded before API families.
pub fn shapes() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let kb = typical(1024);
    let short = "What is the capital of France?";
    vec![
        ("generate_1kb", "generate", serde_json::json!({"inputs": kb, "parameters": {"max_new_tokens": 64}}).to_string().into_bytes()),
        ("chat_short", "chat_completions", serde_json::json!({"model": "tgi", "messages": [{"role": "user", "content": short}], "max_tokens": 64}).to_string().into_bytes()),
        ("chat_system_user_1kb", "chat_completions", serde_json::json!({"model": "tgi", "messages": [{"role": "system", "content": "You are a helpful assistant. Answer briefly."}, {"role": "user", "content": kb}], "max_tokens": 64}).to_string().into_bytes()),
        ("chat_parts_1kb", "chat_completions", serde_json::json!({"model": "tgi", "messages": [{"role": "user", "content": [{"type": "text", "text": &kb[..512]}, {"type": "text", "text": &kb[512..]}]}]}).to_string().into_bytes()),
        ("chat_8_turns", "chat_completions", serde_json::json!({"model": "tgi", "messages": (0..8).map(|i| serde_json::json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": &kb[..128]})).collect::<Vec<_>>()}).to_string().into_bytes()),
        ("completions_1kb", "completions", serde_json::json!({"model": "tgi", "prompt": kb, "max_tokens": 64}).to_string().into_bytes()),
    ]
}

/// The shipped default policy without its classifier section (the rule chain alone).
pub fn policy_text(root: &std::path::Path) -> String {
    let text = std::fs::read_to_string(root.join("policies/default.yaml")).unwrap();
    let cut = text.find("\nclassifiers:").unwrap_or(text.len());
    text[..cut]
        .replace("  injection_classifier: monitor\n", "")
        .replace("  toxicity_classifier: monitor\n", "")
}
