//! Test harness: mock TGI backends (in-process, real sockets) and the real `gateway` binary on
//! ephemeral ports.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared helpers; unwraps fail tests

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::mock::{self, Mock, MockConfig};

/// A mock TGI server running on this test's runtime.
pub struct MockTgi {
    pub addr: SocketAddr,
    pub mock: Arc<Mock>,
    task: tokio::task::JoinHandle<()>,
}

impl MockTgi {
    pub async fn start(config: MockConfig) -> MockTgi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Mock::new(config);
        let served = m.clone();
        let task = tokio::spawn(async move {
            let _ = mock::serve(listener, served).await;
        });
        MockTgi {
            addr,
            mock: m,
            task,
        }
    }

    pub async fn echo() -> MockTgi {
        Self::start(MockConfig::default()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests this mock recorded with the given request id.
    pub fn requests_with_id(&self, id: &str) -> Vec<mock::record::Recorded> {
        self.mock.recorder.list(Some(id))
    }

    pub fn api_requests(&self) -> usize {
        self.mock
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed) as usize
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.mock
            .healthy
            .store(healthy, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stop serving (the port closes).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for MockTgi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An address on which nothing listens. A privileged port, because the kernel never hands
/// those out as ephemeral ports: a bound-then-released ephemeral port can be given to the
/// gateway under test a moment later, turning the "dead" backend into the gateway itself.
pub fn dead_addr() -> SocketAddr {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "something listens on {addr}; the dead-backend tests need it closed"
    );
    addr
}

/// The gateway binary under test: this build's, or `PORTCULLIS_GATEWAY_BIN` (to replay the
/// suite against another build, e.g. to see a regression test fail on an older commit).
pub fn gateway_bin() -> PathBuf {
    std::env::var_os("PORTCULLIS_GATEWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gateway")))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every audit file of a folder, in order, as one text (empty when there is none yet).
pub fn audit_text(dir: &Path) -> String {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return String::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect()
}

/// The public half of this machine's model signing key (scripts/setup.sh makes it and signs
/// the bundles it builds with it).
pub fn model_public_key() -> PathBuf {
    let p = repo_root().join(".deps/model-signing/public.pem");
    assert!(p.is_file(), "run scripts/setup.sh first (make test does)");
    p
}

/// The private half, to sign test versions of a bundle the way setup and the sidecar do.
pub fn model_signing_key() -> signing::SigningKey {
    signing::read_private_key(&repo_root().join(".deps/model-signing/private.pem")).unwrap()
}

/// A `models:` section over `dir` that trusts this machine's model key.
pub fn models_yaml(dir: &Path) -> String {
    format!(
        "models:\n  dir: {}\n  trust:\n    keys: [{}]\n",
        dir.display(),
        model_public_key().display()
    )
}

/// The real gateway binary, started on ephemeral ports.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
    pub log_path: PathBuf,
}

/// Quick health checks so tests run fast, with enough slack (250 ms, two misses) that a
/// loaded CI machine does not take a healthy backend out.
pub fn upstream_yaml(backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("      - {b}\n")).collect();
    format!(
        "upstreams:\n  tgi:\n    backends:\n{}    health_check: {{interval: 250ms, timeout: 250ms, unhealthy_after: 2, healthy_after: 1}}\n{extra}",
        list.concat()
    )
}

impl Gateway {
    /// The default set-up: one pool with `mock` as its only backend, fast health checks.
    pub async fn in_front_of(mock: &MockTgi) -> Gateway {
        Self::start(&upstream_yaml(&[mock.addr], "")).await
    }

    /// Start with `body` as the config (the listen/admin/log sections are added here).
    pub async fn start(body: &str) -> Gateway {
        Self::start_opts(body, true).await
    }

    /// Start; with `wait_ready`, wait until `/readyz` says 200 (else only `/healthz`).
    pub async fn start_opts(body: &str, wait_ready: bool) -> Gateway {
        Self::start_env(body, wait_ready, &[]).await
    }

    /// Start with extra environment variables.
    pub async fn start_env(body: &str, wait_ready: bool, env: &[(&str, &str)]) -> Gateway {
        Self::start_full(body, wait_ready, env, "").await
    }

    /// Start with extra environment variables and extra lines in the `server:` section
    /// (indented by two spaces, e.g. `  tls: {...}\n`).
    pub async fn start_full(
        body: &str,
        wait_ready: bool,
        env: &[(&str, &str)],
        server_extra: &str,
    ) -> Gateway {
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let config = format!(
                "server:\n  listen: {addr}\n  threads: 2\n  shutdown_grace: 1s\n{server_extra}admin:\n  listen: {admin}\nlog:\n  level: info\n  format: json\n{body}"
            );
            let cfg_path = dir.path().join("gateway.yaml");
            std::fs::File::create(&cfg_path)
                .unwrap()
                .write_all(config.as_bytes())
                .unwrap();
            let log_path = dir.path().join("gateway.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(gateway_bin())
                .args(["serve", "--config"])
                .arg(&cfg_path)
                .env_remove("RUST_LOG")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn gateway");
            let mut gw = Gateway {
                addr,
                admin,
                child,
                dir,
                log_path,
            };
            if gw.wait_up(wait_ready).await {
                return gw;
            }
            last_log = gw.logs();
            // most likely a port race: try again on new ports
        }
        panic!("gateway did not start; last log:\n{last_log}");
    }

    async fn wait_up(&mut self, ready: bool) -> bool {
        let client = reqwest::Client::new();
        let path = if ready { "/readyz" } else { "/healthz" };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(r) = client
                .get(format!("http://{}{path}", self.admin))
                .timeout(Duration::from_millis(500))
                .send()
                .await
            {
                // pingora may start the admin service before the proxy's listener is bound
                if r.status() == 200 && std::net::TcpStream::connect(self.addr).is_ok() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The metrics once every request so far is accounted for: the gateway records them in its
    /// logging phase, just after the client got the last byte.
    pub async fn settled_metrics(&self) -> String {
        wait_until("in-flight requests back to 0", || async {
            self.metric("portcullis_in_flight_requests").await == 0.0
        })
        .await;
        self.metrics().await
    }

    /// The gateway's Prometheus text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample (`name{labels}`) in the metrics, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        metric_value(&text, series)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Find `series` (exact name and label set as Prometheus prints it) in a metrics text.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- gateway log ----\n{}", self.logs());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Parse an SSE body into the data payloads of its events.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// Replace fields that differ between two calls (timestamps) so answers can be compared.
pub fn normalize(mut v: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if m.contains_key("created") {
                    m.insert("created".into(), serde_json::Value::from(0));
                }
                for (_, x) in m.iter_mut() {
                    walk(x);
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// `POST url` with a JSON body and extra headers.
pub async fn post_json(
    c: &reqwest::Client,
    url: String,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = c
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

/// Assert that `r` is the gateway's TGI-shaped policy refusal (403, error source `gateway`,
/// `error_type` `policy_violation`) and return its message.
pub async fn tgi_policy_refusal(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "policy_violation");
    v["error"].as_str().unwrap().to_string()
}

/// `GET url` and parse the JSON answer.
pub async fn get_json(c: &reqwest::Client, url: String) -> serde_json::Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// Poll `cond` every 20 ms until it holds; fail the test with `what` after 10 s.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl MockTgi {
    /// An echo mock that generates `tps` tokens per second.
    pub async fn paced(tps: f64) -> MockTgi {
        Self::start(MockConfig {
            tokens_per_second: tps,
            ..Default::default()
        })
        .await
    }
}
