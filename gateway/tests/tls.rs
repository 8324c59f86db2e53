//! TLS end to end: the gateway terminates TLS (optionally requiring client certificates) and
//! speaks TLS, with a custom CA and a client certificate (mTLS), to its upstream. Certificates
//! are made here with the `openssl` command; clients are curl and the gateway itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian package openssl) is needed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all P-256.
fn make_pki(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend_from_slice(&ec);
    a.extend_from_slice(&[
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Portcullis test CA",
    ]);
    openssl(dir, &a);
    for (name, cn, ext) in [
        (
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "gateway-client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let mut a = vec!["req"];
        a.extend_from_slice(&ec);
        let (key, csr, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("/CN={cn}"),
        );
        a.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &a);
        let (pem, ext) = (format!("{name}.pem"), format!("{name}.ext"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// curl, without blocking the test's runtime (the mock backend runs on it).
async fn curl(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn p(dir: &Path, f: &str) -> String {
    dir.join(f).display().to_string()
}

#[tokio::test]
async fn tls_on_the_listener_and_mutual_tls_to_the_upstream() {
    let mock = MockTgi::echo().await;
    let d = tempfile::tempdir().unwrap();
    let dir: PathBuf = d.path().to_path_buf();
    make_pki(&dir);
    // B: terminates TLS and requires a client certificate from our CA
    let b = Gateway::start_full(
        &upstream_yaml(&[mock.addr], ""),
        true,
        &[],
        &format!(
            "  tls: {{cert: {}, key: {}, client_ca: {}}}\n",
            p(&dir, "server.pem"),
            p(&dir, "server.key"),
            p(&dir, "ca.pem")
        ),
    )
    .await;
    let url = format!("https://localhost:{}/generate", b.addr.port());
    let body = json!({"inputs": "over tls", "parameters": {"max_new_tokens": 5}}).to_string();
    let resolve = format!("localhost:{}:127.0.0.1", b.addr.port());
    let base = [
        "--resolve",
        &resolve,
        "--cacert",
        &p(&dir, "ca.pem"),
        "-H",
        "content-type: application/json",
        "-d",
        &body,
    ];
    // without a client certificate the handshake is refused
    let (ok, out) = curl(&[&base[..], &[url.as_str()]].concat()).await;
    assert!(!ok, "a client without a certificate got in: {out}");
    // with one, the request goes through
    let (cert, key) = (p(&dir, "client.pem"), p(&dir, "client.key"));
    let (ok, out) =
        curl(&[&base[..], &["--cert", &cert, "--key", &key, url.as_str()]].concat()).await;
    assert!(ok, "{out}");
    assert!(out.contains("over tls"), "{out}");
    // plain HTTP to the TLS listener is not served
    let (ok, _) = curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        &body,
        &format!("http://127.0.0.1:{}/generate", b.addr.port()),
    ])
    .await;
    assert!(!ok);

    // A: plain listener, mutual TLS to B with our CA and the client certificate
    let upstream = |client: bool| {
        format!(
            "upstreams:\n  tgi:\n    backends: [\"127.0.0.1:{}\"]\n    health_check: {{interval: 500ms, timeout: 500ms}}\n    tls:\n      sni: localhost\n      ca: {}\n{}",
            b.addr.port(),
            p(&dir, "ca.pem"),
            if client {
                format!(
                    "      client_cert: {}\n      client_key: {}\n",
                    p(&dir, "client.pem"),
                    p(&dir, "client.key")
                )
            } else {
                String::new()
            }
        )
    };
    let a = Gateway::start(&upstream(true)).await;
    let c = client();
    let r = post_json(&c, a.url("/generate"), body.clone(), &[]).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("over tls"));
    // C: same, without the client certificate: B refuses the handshake, C says it failed
    let cc = Gateway::start_opts(&upstream(false), false).await;
    let r = post_json(&c, cc.url("/generate"), body, &[]).await;
    assert!(matches!(r.status().as_u16(), 502 | 503), "{}", r.status());
    assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
}

#[tokio::test]
async fn unreadable_tls_files_are_config_errors() {
    let out = Command::new(gateway_bin())
        .args(["validate", "--config"])
        .arg({
            let d = tempfile::tempdir().unwrap().keep();
            let f = d.join("c.yaml");
            std::fs::write(
                &f,
                "server:\n  tls: {cert: nope.pem, key: nope.key}\nupstreams:\n  tgi:\n    backends: [\"127.0.0.1:1\"]\n    tls: {client_cert: c.pem}\n",
            )
            .unwrap();
            f
        })
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "server.tls.cert",
        "server.tls.key",
        "client_cert and client_key go together",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
}
