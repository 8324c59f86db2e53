//! Baseline for `gateway/benches/guard_request.rs`: the same shapes through the previous
//! request path (a `serde_json` check, then `gateway::guard::apply_input`). Copied into a
//! worktree of the base commit by `benches/protocols/run.sh`; same modes (`GUARD_ITERS`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput};
use filters::{Policy, Pseudonymizer, Vault};
use gateway::routes::Route;

include!("common/guard_shapes.rs");

fn once(route: Route, body: &[u8], policy: &Policy, ps: &Pseudonymizer) -> usize {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).unwrap();
    let mut vault = Vault::default();
    let out = gateway::guard::apply_input(route, body, policy, &mut vault, ps).unwrap();
    black_box(out.body.map(|b| b.len()));
    out.findings.len()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.yaml");
    std::fs::write(&path, policy_text(&root)).unwrap();
    std::fs::create_dir_all(dir.path().join("lexicons")).unwrap();
    std::os::unix::fs::symlink(
        root.join("policies/lexicons/toxicity"),
        dir.path().join("lexicons/toxicity"),
    )
    .unwrap();
    let policy = Policy::load(&path).unwrap();
    let ps = Pseudonymizer::new(b"bench", "t");
    let shapes: Vec<_> = shapes()
        .into_iter()
        .map(|(n, l, b)| (n, Route::ALL.iter().copied().find(|r| r.label() == l).unwrap(), b))
        .collect();
    if let Some(n) = std::env::var("GUARD_ITERS").ok().and_then(|v| v.parse::<usize>().ok()) {
        let only = std::env::var("GUARD_SHAPE").ok();
        for (name, route, body) in &shapes {
            if only.as_deref().is_none_or(|o| o == *name) {
                for _ in 0..n {
                    black_box(once(*route, black_box(body), &policy, &ps));
                }
            }
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("request_guard");
    for (name, route, body) in &shapes {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(*name, |b| b.iter(|| once(*route, black_box(body), &policy, &ps)));
    }
    g.finish();
    c.final_summary();
}
