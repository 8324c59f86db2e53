//! `upstreams:` and `default_upstream`: checked, paths (TLS files, tokenizers) resolved. The
//! settings types belong to the pools (`crate::upstream::settings`).

use std::collections::BTreeMap;

use super::Check;
use crate::upstream::UpstreamSection;

/// The pools, resolved, and the default one.
pub(super) struct Checked {
    pub upstreams: BTreeMap<String, UpstreamSection>,
    pub default_upstream: String,
}

pub(super) fn check(cx: &mut Check<'_>) -> Checked {
    let c = cx.file();
    let base = cx.base();
    if c.upstreams.is_empty() {
        cx.err("upstreams", "at least one upstream pool is required");
    }
    let mut resolved = BTreeMap::new();
    for (name, u) in &c.upstreams {
        let at = format!("upstreams.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            cx.err(
                &at,
                format!("upstream name `{name}` must use only letters, digits, `-` and `_`"),
            );
        }
        if u.max_total_tokens == Some(0) {
            cx.err(
                &format!("{at}.max_total_tokens"),
                "must be at least 1 (or left out)",
            );
        }
        if u.backends.is_empty() {
            cx.err(
                &format!("{at}.backends"),
                "at least one backend is required",
            );
        }
        for (i, b) in u.backends.iter().enumerate() {
            let p = format!("{at}.backends[{i}]");
            if let Err(m) = check_backend_addr(b) {
                cx.err(&p, m);
            }
            if u.backends[..i].contains(b) {
                cx.err(&p, format!("backend `{b}` is listed twice"));
            }
        }
        for (field, d) in [
            ("connect", u.timeouts.connect),
            ("read", u.timeouts.read),
            ("write", u.timeouts.write),
            ("idle", u.timeouts.idle),
        ] {
            if d.is_zero() {
                cx.err(
                    &format!("{at}.timeouts.{field}"),
                    "timeouts must be greater than zero",
                );
            }
        }
        if u.retries > 10 {
            cx.err(
                &format!("{at}.retries"),
                format!("at most 10 retries, got {}", u.retries),
            );
        }
        let h = &u.health_check;
        if h.enabled {
            if !h.path.starts_with('/') {
                cx.err(
                    &format!("{at}.health_check.path"),
                    format!("path `{}` must start with `/`", h.path),
                );
            }
            if h.interval.is_zero() {
                cx.err(
                    &format!("{at}.health_check.interval"),
                    "interval must be greater than zero",
                );
            }
            if h.timeout.is_zero() || h.timeout > h.interval {
                cx.err(
                    &format!("{at}.health_check.timeout"),
                    format!(
                        "timeout must be greater than zero and at most the interval ({})",
                        humantime::format_duration(h.interval)
                    ),
                );
            }
            if h.unhealthy_after == 0 {
                cx.err(
                    &format!("{at}.health_check.unhealthy_after"),
                    "must be at least 1",
                );
            }
            if h.healthy_after == 0 {
                cx.err(
                    &format!("{at}.health_check.healthy_after"),
                    "must be at least 1",
                );
            }
        }
        let b = &u.circuit_breaker;
        if b.enabled {
            if b.failure_threshold == 0 {
                cx.err(
                    &format!("{at}.circuit_breaker.failure_threshold"),
                    "must be at least 1",
                );
            }
            if b.open_for.is_zero() {
                cx.err(
                    &format!("{at}.circuit_breaker.open_for"),
                    "must be greater than zero",
                );
            }
        }
        if let Some(a) = &u.auth
            && let Err(e) = a.resolve()
        {
            cx.err(&format!("{at}.auth"), e);
        }
        let mut u = u.clone();
        if let Some(t) = &u.tokenizer {
            let path = base.join(t);
            match tokenizers::Tokenizer::from_file(&path) {
                Ok(_) => u.tokenizer = Some(path),
                Err(e) => cx.err(
                    &format!("{at}.tokenizer"),
                    format!("cannot load {}: {e}", path.display()),
                ),
            }
        }
        if let Some(t) = &mut u.tls {
            for p in [&mut t.ca, &mut t.client_cert, &mut t.client_key]
                .into_iter()
                .flatten()
            {
                *p = base.join(&*p);
            }
            if t.client_cert.is_some() != t.client_key.is_some() {
                cx.err(
                    &format!("{at}.tls"),
                    "client_cert and client_key go together",
                );
            }
            for (field, p) in [
                ("ca", &t.ca),
                ("client_cert", &t.client_cert),
                ("client_key", &t.client_key),
            ] {
                if let Some(p) = p
                    && !super::readable(p)
                {
                    cx.err(
                        &format!("{at}.tls.{field}"),
                        format!("cannot read {}", p.display()),
                    );
                }
            }
        }
        resolved.insert(name.clone(), u);
    }

    let default_upstream = match (&c.default_upstream, c.upstreams.len()) {
        (Some(d), _) if c.upstreams.contains_key(d) => d.clone(),
        (Some(d), _) => {
            let known: Vec<_> = c.upstreams.keys().map(String::as_str).collect();
            cx.err(
                "default_upstream",
                format!("no upstream named `{d}` (defined: {})", known.join(", ")),
            );
            String::new()
        }
        (None, 1) => c.upstreams.keys().next().cloned().unwrap_or_default(),
        (None, 0) => String::new(),
        (None, _) => {
            cx.err(
                "default_upstream",
                "several upstreams are defined: set `default_upstream` to one of them",
            );
            String::new()
        }
    };
    Checked {
        upstreams: resolved,
        default_upstream,
    }
}

/// A backend address must be `host:port` with a non-zero port (IPv6 in brackets).
pub(super) fn check_backend_addr(s: &str) -> Result<(), String> {
    if s.contains("://") {
        return Err(format!(
            "backend `{s}` must be `host:port`, without a scheme"
        ));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("backend `{s}` must be `host:port`"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("backend `{s}` has an invalid port `{port}`"))?;
    if port == 0 {
        return Err(format!("backend `{s}` must not use port 0"));
    }
    if host.is_empty() {
        return Err(format!("backend `{s}` has an empty host"));
    }
    if host.starts_with('[') != host.ends_with(']') {
        return Err(format!(
            "backend `{s}`: IPv6 addresses go in brackets, e.g. `[::1]:3000`"
        ));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "backend `{s}`: IPv6 addresses go in brackets, e.g. `[::1]:3000`"
        ));
    }
    Ok(())
}
