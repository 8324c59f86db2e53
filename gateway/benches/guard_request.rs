//! The rule chain's cost per request on the request shapes the gateway guarded before API
//! families existed (`common/guard_shapes.rs`), under the shipped default policy without
//! classifiers: parse the body once (strictly), read it with the route's family, scan every
//! unit, write rewrites back, serialize when changed — what `request_filter` does with a
//! guarded body. The same shapes run through the previous commit's path
//! (`gateway::guard::apply_input`) in a worktree of it for the baseline
//! (`benches/protocols/base_guard_request.rs`): see `benches/protocols/run.sh`.
//!
//! `cargo bench -p gateway --bench guard_request` gives criterion's times;
//! `GUARD_ITERS=N` (and `GUARD_SHAPE=name`) runs each shape N times without criterion, for
//! instruction counts under `valgrind --tool=callgrind`, which repeat where times on a shared
//! 2-core machine do not.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput};
use filters::protocol::{inspect, parse_strict};
use filters::{Policy, Pseudonymizer, Vault};
use gateway::routes::Route;

include!("common/guard_shapes.rs");

/// One guarded request: what the gateway does with the body.
fn once(route: Route, body: &[u8], policy: &Policy, ps: &Pseudonymizer) -> usize {
    let mut v = parse_strict(body).unwrap();
    let proto = route.protocol(&v).unwrap();
    let mut vault = Vault::default();
    let out = inspect(proto, &mut v, policy, &mut vault, ps, false).unwrap();
    if out.changed {
        black_box(serde_json::to_vec(&v).unwrap());
    }
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
        .map(|(n, l, b)| (n, Route::by_label(l).unwrap(), b))
        .collect();
    if let Some(n) = std::env::var("GUARD_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
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
        g.bench_function(*name, |b| {
            b.iter(|| once(*route, black_box(body), &policy, &ps))
        });
    }
    g.finish();
    c.final_summary();
}
