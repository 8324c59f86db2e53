//! What identity and limits add to a request, in process: authenticating a key (SHA-256 and a
//! map lookup), the request-rate/concurrency admission (governor), and a token reservation
//! plus its reconciliation. Criterion gives the medians; a second pass over 200,000 calls each
//! prints p50/p99 (the target: < 5 µs in process). Then the same checks against a
//! real `redis-server` on loopback (started here; target < 0.5 ms p99), one script call per
//! check as in the request path. Run with `cargo bench -p gateway --bench access`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::keys::{KeyLimits, KeyStore, KeysFile};
use gateway::limits::{Limiter, LimitsConfig, RateSpec};

fn setup() -> (tempfile::TempDir, KeyStore, String, Limiter) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    let mut f = KeysFile::default();
    for i in 0..1000 {
        f.add(&format!("k{i}"), "acme", None, None, None).unwrap();
    }
    let key = f
        .add(
            "bench",
            "acme",
            None,
            Some(KeyLimits {
                concurrency: Some(1_000_000),
                ..KeyLimits::default()
            }),
            None,
        )
        .unwrap();
    f.write(&path).unwrap();
    let store = KeyStore::load(&path).unwrap();
    let lim = Limiter::new(LimitsConfig {
        per_key: Some(RateSpec {
            per_second: 1e9,
            burst: 1_000_000,
        }),
        per_tenant: Some(RateSpec {
            per_second: 1e9,
            burst: 1_000_000,
        }),
        per_ip: Some(RateSpec {
            per_second: 1e9,
            burst: 1_000_000,
        }),
        key_tokens_per_minute: Some(u64::MAX / 4),
        tenant_tokens_per_day: Some(u64::MAX / 4),
        ..LimitsConfig::default()
    });
    (dir, store, key, lim)
}

fn percentiles(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    (at(0.5), at(0.99))
}

fn access(c: &mut Criterion) {
    let (_d, store, key, lim) = setup();
    let header = format!("Bearer {key}");
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    let k = store.authenticate(Some(&header)).unwrap();
    let mut g = c.benchmark_group("access");
    g.bench_function("authenticate", |b| {
        b.iter(|| black_box(store.authenticate(black_box(Some(&header)))).is_ok())
    });
    g.bench_function("admit_key_tenant_ip_concurrency", |b| {
        b.iter(|| black_box(lim.admit(Some(&k), Some(ip))).is_ok())
    });
    g.bench_function("reserve_and_reconcile_tokens", |b| {
        b.iter(|| {
            let r = lim.reserve_tokens(&k, 600).unwrap();
            lim.reconcile(&r, 120);
        })
    });
    g.bench_function("whole_request_path_share", |b| {
        b.iter(|| {
            let k = store.authenticate(Some(&header)).unwrap();
            let adm = lim.admit(Some(&k), Some(ip)).unwrap();
            let r = lim.reserve_tokens(&k, 600).unwrap();
            lim.reconcile(&r, 120);
            drop(adm);
        })
    });
    g.finish();

    // p50/p99 of the whole share (auth + admit + reserve + reconcile), one call per sample
    let mut samples = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let t = Instant::now();
        let k = store.authenticate(Some(&header)).unwrap();
        let adm = lim.admit(Some(&k), Some(ip)).unwrap();
        let r = lim.reserve_tokens(&k, 600).unwrap();
        lim.reconcile(&r, 120);
        drop(adm);
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let (p50, p99) = percentiles(samples);
    println!("access/whole_request_path_share: p50 {p50:.2} µs, p99 {p99:.2} µs (200000 calls)");
}

/// The shared limiter against a local redis-server: the request-rate check (3 buckets) and a
/// token reservation (2 buckets), sequentially and with 16 concurrent callers.
fn shared(_c: &mut Criterion) {
    use gateway::limits::redis::{OnError, RedisLimiter};
    let redis = match benches::redis::RedisServer::start() {
        Ok(r) => r,
        Err(e) => {
            println!("access/redis: skipped: {e}");
            return;
        }
    };
    let (_d, store, key, lim) = setup();
    let k = store.authenticate(Some(&format!("Bearer {key}"))).unwrap();
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = RedisLimiter::new(
        &redis.url(),
        "bench:",
        std::time::Duration::from_secs(1),
        OnError::Open,
    )
    .unwrap();
    let rates: Vec<_> = lim
        .rate_ops("bench:", Some(&k), Some(ip))
        .into_iter()
        .map(|o| o.op)
        .collect();
    let tokens: Vec<_> = lim
        .token_ops("bench:", &k, 600)
        .into_iter()
        .map(|o| o.op)
        .collect();
    rt.block_on(async {
        for _ in 0..1000 {
            r.apply(&rates).await.unwrap();
        }
        for (name, ops) in [("rate check (3 buckets)", &rates), ("token reservation (2 buckets)", &tokens)] {
            let mut samples = Vec::with_capacity(20_000);
            for _ in 0..20_000 {
                let t = Instant::now();
                black_box(r.apply(ops).await.unwrap());
                samples.push(t.elapsed().as_nanos() as u64);
            }
            let (p50, p99) = percentiles(samples);
            println!("access/redis {name}, sequential: p50 {p50:.1} µs, p99 {p99:.1} µs (20000 calls)");
        }
        // 16 callers at once on one multiplexed connection
        let mut handles = Vec::new();
        for _ in 0..16 {
            let (r, rates) = (r.clone(), rates.clone());
            handles.push(tokio::spawn(async move {
                let mut s = Vec::with_capacity(2000);
                for _ in 0..2000 {
                    let t = Instant::now();
                    black_box(r.apply(&rates).await.unwrap());
                    s.push(t.elapsed().as_nanos() as u64);
                }
                s
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        let (p50, p99) = percentiles(all);
        println!("access/redis rate check, 16 concurrent callers: p50 {p50:.1} µs, p99 {p99:.1} µs (32000 calls)");
    });
    drop(redis);
}

criterion_group!(benches, access, shared);
criterion_main!(benches);
