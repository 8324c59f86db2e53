//! Who may call and how much, in the request path: the parts shared by the phases, kept apart
//! from the phase code in `mod.rs`.
//!
//! * [`Access`]: the key store, which routes are anonymous, the limiter and the audit log.
//! * [`UsageMeter`]: the answer's real token counts, from TGI's `x-prompt-tokens` /
//!   `x-generated-tokens` headers or read off the bytes as they stream by, at the members the
//!   request's API family names ([`filters::protocol::UsageKeys`]: TGI's
//!   `details.generated_tokens`, OpenAI's `usage`, Anthropic's and Responses' `input_tokens` /
//!   `output_tokens`), or counted from stream events when the backend reports none of them.

use std::sync::Arc;

use pingora::prelude::Session;

use super::{Gateway, RequestCtx, route_label};
use crate::audit::{AuditLog, FindingCount, Record, TokenCounts};
use crate::error::{ErrorKind, GatewayError};
use crate::keys::{Caller, KeyStore};
use crate::limits::{Admission, Decision, Limits, Refusal};
use crate::routes::Route;
use filters::protocol::UsageKeys;

/// Identity, limits and audit for the proxy.
#[derive(Debug, Clone)]
pub struct Access {
    /// The keys.
    pub keys: Arc<KeyStore>,
    /// Whether routes need a key (a keys file is configured).
    pub required: bool,
    /// Routes callable without a key.
    pub anonymous: Vec<Route>,
    /// Limits (in process, and in Redis when configured).
    pub limits: Arc<Limits>,
    /// The audit trail, when configured.
    pub audit: Option<AuditLog>,
    /// Samples the log lines of unidentified refusals.
    pub flood_log: Arc<FloodLog>,
}

/// At most one log line per second for refusals of unidentified clients; the line that goes
/// out says how many were left out before it.
#[derive(Debug, Default)]
pub struct FloodLog {
    second: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl FloodLog {
    /// `Some(left out since the last line)`: log this one; `None`: leave it out.
    pub fn sample(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.second.load(Ordering::Acquire);
        if now != last
            && self
                .second
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

/// Token counts read off an answer's bytes.
#[derive(Debug, Clone)]
pub struct UsageMeter {
    tail: Vec<u8>,
    keys: UsageKeys,
    /// Prompt tokens reported by the backend.
    pub prompt: Option<u64>,
    /// Generated tokens reported by the backend.
    pub generated: Option<u64>,
    /// Stream events that carried a token.
    pub events: u64,
    /// Bytes of the answer.
    pub bytes: u64,
}

impl Default for UsageMeter {
    fn default() -> Self {
        UsageMeter::new(UsageKeys {
            prompt: &[],
            generated: &[],
            events: &[],
        })
    }
}

impl UsageMeter {
    /// A meter reading the members `keys` names.
    pub fn new(keys: UsageKeys) -> UsageMeter {
        UsageMeter {
            tail: Vec::new(),
            keys,
            prompt: None,
            generated: None,
            events: 0,
            bytes: 0,
        }
    }

    /// Feed the next piece of the answer.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        // join the previous tail so that a key split across chunks is still seen
        let mut buf = std::mem::take(&mut self.tail);
        let carried = buf.len();
        buf.extend_from_slice(chunk);
        for m in self.keys.events {
            // count only matches that end in the new bytes (the tail was counted before)
            self.events += memchr::memmem::find_iter(&buf, m)
                .filter(|&i| i + m.len() > carried)
                .count() as u64;
        }
        for (keys, generated) in [(self.keys.generated, true), (self.keys.prompt, false)] {
            for k in keys {
                for i in memchr::memmem::find_iter(&buf, k) {
                    let rest = &buf[i + k.len()..];
                    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                    if n == 0 || n == rest.len() {
                        continue; // no digits yet, or maybe more in the next chunk
                    }
                    let Some(v) = std::str::from_utf8(&rest[..n])
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    if generated {
                        self.generated = Some(v);
                    } else {
                        self.prompt = Some(v);
                    }
                }
            }
        }
        let keep = buf.len().min(48);
        self.tail = buf[buf.len() - keep..].to_vec();
    }

    /// Generated tokens: reported, else counted stream events, else bounded by the size of
    /// a whole answer (one token per byte, as for the prompt) and by `most`, the request's
    /// maximum times its sequences, which the backend enforces.
    pub fn generated_or_counted(&self, most: Option<u64>) -> u64 {
        match (self.generated, self.events) {
            (Some(n), _) => n,
            (None, e) if e > 0 => e,
            (None, _) => {
                let b = crate::limits::token_bound(self.bytes as usize);
                most.map_or(b, |m| b.min(m))
            }
        }
    }
}

impl Gateway {
    /// API key and request-rate/concurrency limits. `Ok(true)`: answered (401/429).
    pub(super) async fn check_access(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: Route,
    ) -> pingora::Result<bool> {
        let a = &self.access;
        // without a keys file there is no key to match (and no hash to compute)
        if a.required {
            let auth = super::client_auth(session);
            match a.keys.authenticate(auth.as_deref()) {
                Ok(k) => ctx.caller = Caller::keyed(k),
                // an anonymous route: a valid key still identifies (its tenant's policy, its
                // limits); an invalid one is ignored, as no key would be
                Err(_) if a.anonymous.contains(&route) => {}
                Err(e) => {
                    self.metrics
                        .auth_failures
                        .with_label_values(&[e.label()])
                        .inc();
                    let err = GatewayError::new(ErrorKind::Unauthorized, e.message());
                    self.respond(session, ctx, err, true).await?;
                    return Ok(true);
                }
            }
        }
        // the per-IP rate was checked before routing (`check_ip`)
        let ip_headroom = ctx.admission.headroom.take();
        match a.limits.admit(ctx.caller.api_key()).await {
            Decision::Granted(mut adm) => {
                if let Some(h) = ip_headroom {
                    crate::limits::tighten(&mut adm.headroom, h);
                }
                ctx.admission = adm;
                Ok(false)
            }
            Decision::Refused(r) => {
                self.refuse(session, ctx, r).await?;
                Ok(true)
            }
            Decision::Unavailable => self.limiter_down(session, ctx).await.map(|()| true),
        }
    }

    /// The per-IP request rate, first of all (before routing and authentication, so a flood
    /// of unknown paths or bad keys is refused before it costs more). `Ok(true)`: answered.
    pub(super) async fn check_ip(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let a = &self.access;
        if !a.limits.limits_ips() {
            return Ok(false);
        }
        let ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        match a.limits.admit_ip(ip).await {
            Decision::Granted(headroom) => {
                ctx.admission.headroom = headroom;
                Ok(false)
            }
            Decision::Refused(r) => {
                self.refuse(session, ctx, r).await?;
                Ok(true)
            }
            Decision::Unavailable => self.limiter_down(session, ctx).await.map(|()| true),
        }
    }

    /// 503: the shared limiter is down and the config says fail closed.
    async fn limiter_down(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        ctx.refused_by = Some("limit_store_unavailable");
        let err = GatewayError::new(
            ErrorKind::LimiterUnavailable,
            "the gateway refused the request: its shared limit store (redis) is unreachable and the configuration says to fail closed",
        );
        self.respond_with(session, ctx, err, true, &[("retry-after", "1".to_string())])
            .await
    }

    /// Reserve the request's LLM tokens, before any rule or model work: an upper bound of
    /// what the backend will count. `Ok(true)`: answered (429, or 422 for a bound the gateway
    /// cannot read).
    ///
    /// * Prompt: the forwarded body's bytes. Byte-level BPE and SentencePiece with byte
    ///   fallback make at most one token per byte, and the JSON framing (quotes, member names)
    ///   outweighs a chat template's markers.
    /// * Generated: the request's own maximum per sequence times its sequences (`n`,
    ///   `best_of`); when it names none, the upstream's `max_total_tokens` per sequence, else
    ///   `limits.default_max_tokens`, which is then written into the request so the backend
    ///   cannot generate more.
    pub(super) async fn reserve_tokens(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        ctx.prompt_bound = crate::limits::token_bound(ctx.body.len());
        let Some(key) = ctx.caller.key.clone() else {
            return Ok(false);
        };
        let l = &self.access.limits;
        if !l.has_token_quota(&key) {
            return Ok(false);
        }
        ctx.prompt_bound = self.prompt_tokens(ctx);
        let default = u64::from(l.config().default_max_tokens);
        let n = match ctx.proto {
            None => ctx.prompt_bound + default,
            Some(p) => {
                // parsed already when a policy reads the body; else here (it was checked)
                let mut parsed = None;
                let body = match ctx.json.as_mut() {
                    Some(v) => v,
                    None => parsed.insert(
                        serde_json::from_slice::<serde_json::Value>(&ctx.body).unwrap_or_default(),
                    ),
                };
                let g = match filters::protocol::generation(p, body) {
                    Ok(g) => g,
                    Err(e) => {
                        let err = GatewayError::new(
                            ErrorKind::UnreadableRequest,
                            format!("the gateway refused the request: {e}"),
                        );
                        self.respond(session, ctx, err, false).await?;
                        return Ok(true);
                    }
                };
                let max_total = ctx.pool.as_ref().and_then(|p| p.settings.max_total_tokens);
                let (n, generated) = match (g.max_new, max_total) {
                    (Some(m), _) => {
                        let g = m.saturating_mul(g.sequences);
                        (ctx.prompt_bound.saturating_add(g), g)
                    }
                    // the backend fills up to its budget: prompt + generated <= budget per sequence
                    (None, Some(t)) => {
                        let g = t.saturating_mul(g.sequences);
                        (g.max(ctx.prompt_bound), g)
                    }
                    (None, None) => {
                        if p.set_max_new_tokens(body, default) {
                            match serde_json::to_vec(body) {
                                Ok(b) => {
                                    ctx.body = bytes::Bytes::from(b);
                                    ctx.prompt_bound = self.prompt_tokens(ctx);
                                }
                                Err(_) => {
                                    let e = GatewayError::new(
                                        ErrorKind::Internal,
                                        "the gateway could not write the request's token maximum",
                                    );
                                    self.respond(session, ctx, e, false).await?;
                                    return Ok(true);
                                }
                            }
                        }
                        let g = default.saturating_mul(g.sequences);
                        (ctx.prompt_bound.saturating_add(g), g)
                    }
                };
                ctx.max_generated = Some(generated);
                n
            }
        };
        match self.access.limits.reserve(&key, n).await {
            Decision::Granted(r) => {
                ctx.admission.tokens = Some(r);
                Ok(false)
            }
            Decision::Refused(r) => {
                self.refuse(session, ctx, r).await?;
                Ok(true)
            }
            Decision::Unavailable => {
                self.limiter_down(session, ctx).await?;
                Ok(true)
            }
        }
    }

    /// What the forwarded body counts as prompt tokens: the upstream's tokenizer's count when
    /// it names one, else one token per byte (an upper bound).
    fn prompt_tokens(&self, ctx: &RequestCtx) -> u64 {
        match ctx.pool.as_ref().and_then(|p| p.tokenizer.as_ref()) {
            Some(t) => crate::limits::token_count(t, &ctx.body),
            None => crate::limits::token_bound(ctx.body.len()),
        }
    }

    /// After the input policy: a rewrite (placeholders, pseudonyms) can make the forwarded
    /// body longer than the one reserved for; reserve the difference too. `Ok(true)`: answered.
    pub(super) async fn top_up_tokens(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let (Some(key), Some(_)) = (ctx.caller.key.clone(), ctx.admission.tokens.as_ref()) else {
            return Ok(false);
        };
        let bound = self.prompt_tokens(ctx);
        if bound <= ctx.prompt_bound {
            return Ok(false);
        }
        let extra = bound - ctx.prompt_bound;
        ctx.prompt_bound = bound;
        let outcome = self.access.limits.reserve(&key, extra).await;
        if let Decision::Granted(more) = outcome {
            if let Some(r) = ctx.admission.tokens.as_mut()
                && r.shared == more.shared
            {
                // the same buckets in the same store: one reservation to settle
                r.reserved += more.reserved;
            }
            // else Redis went down or came back in between: the extra stays taken where it
            // was taken (charged in full, never given back: a rare overcharge, never an
            // overrun), and the first reservation settles on its own
            return Ok(false);
        }
        // give back what was reserved before refusing
        self.settle_tokens(ctx);
        match outcome {
            Decision::Refused(r) => self.refuse(session, ctx, r).await?,
            _ => self.limiter_down(session, ctx).await?,
        }
        Ok(true)
    }

    /// A 429 in the route's shape, saying the gateway refused, with the rate-limit headers.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        r: Refusal,
    ) -> pingora::Result<()> {
        self.metrics
            .limit_refusals
            .with_label_values(&[r.limit])
            .inc();
        ctx.refused_by = Some(r.limit);
        ctx.admission = Admission::default();
        let retry = r.retry_after.to_string();
        let extra = [
            ("retry-after", retry.clone()),
            ("x-ratelimit-limit", r.size.to_string()),
            ("x-ratelimit-remaining", r.remaining.to_string()),
            ("x-ratelimit-reset", retry),
            ("x-portcullis-limit", r.limit.to_string()),
        ];
        let err = GatewayError::new(ErrorKind::RateLimited, r.message);
        // the body may not have been read: do not reuse the connection
        self.respond_with(session, ctx, err, true, &extra).await
    }

    /// Reconcile the token reservation with the answer's real count, once (at the end of the
    /// answer, before its last bytes go out, so the client's next request sees the tokens
    /// given back; or in the logging phase when the answer never ended); the counts for the
    /// audit record.
    pub(super) fn settle_tokens(&self, ctx: &mut RequestCtx) -> Option<TokenCounts> {
        if ctx.tokens.is_some() {
            return ctx.tokens.clone();
        }
        if !ctx.route.is_some_and(Route::has_prompt) || !ctx.body_buffered {
            return None;
        }
        let answered = ctx.upstream_status.is_some_and(|s| s < 400);
        let reported = ctx.usage.generated.is_some();
        let prompt = ctx.usage.prompt.unwrap_or(ctx.prompt_bound);
        let generated = if answered {
            ctx.usage.generated_or_counted(ctx.max_generated)
        } else {
            0
        };
        // a refused or failed request used nothing the backend will bill
        let used = if answered { prompt + generated } else { 0 };
        let reserved = match ctx.admission.tokens.take() {
            Some(r) => {
                self.access.limits.settle(&r, used);
                r.reserved
            }
            None => 0,
        };
        if used > 0 {
            let tenant = &*ctx.caller.tenant;
            let m = &self.metrics.llm_tokens;
            m.with_label_values(&[tenant, "prompt"]).inc_by(prompt);
            m.with_label_values(&[tenant, "generated"])
                .inc_by(generated);
        }
        ctx.tokens = Some(TokenCounts {
            reserved,
            prompt,
            generated,
            reported,
        });
        ctx.tokens.clone()
    }

    /// The request's audit record: ids, counts, types and actions; never content.
    pub(super) fn audit_record(
        &self,
        ctx: &RequestCtx,
        status: u16,
        source: &str,
        total: std::time::Duration,
        tokens: Option<TokenCounts>,
    ) -> Record {
        let mut findings: Vec<FindingCount> = Vec::new();
        if let Some(g) = &ctx.guard {
            count_into(&mut findings, &g.findings);
        }
        Record {
            time: crate::audit::now_rfc3339(),
            request_id: ctx.request_id.clone(),
            key_id: ctx.caller.key_id().map(str::to_string),
            tenant: (ctx.caller.key.is_some() || ctx.guard.is_some())
                .then(|| ctx.caller.tenant.to_string()),
            route: route_label(ctx).to_string(),
            policy: ctx.guard.as_ref().map(|g| g.policy.name.clone()),
            policy_version: ctx.guard.as_ref().map(|g| g.policy.version),
            findings,
            upstream: ctx.pool.as_ref().map(|p| p.name.clone()),
            status,
            error_source: (status >= 400).then(|| source.to_string()),
            latency_ms: (total.as_secs_f64() * 1e6).round() / 1e3,
            upstream_ttfb_ms: ctx
                .first_byte
                .map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
            tokens,
            limit: ctx.refused_by.unwrap_or("pass").to_string(),
            restored: ctx
                .guard
                .as_ref()
                .map(|g| {
                    g.vault
                        .outcomes()
                        .iter()
                        .map(|o| FindingCount {
                            ty: o.ty.to_string(),
                            action: o.how.to_string(),
                            count: o.count,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            adapter: ctx.adapter.clone(),
            ..Record::default()
        }
    }
}

/// Add findings to an audit record's counts (type and action, never values).
pub(super) fn count_into(counts: &mut Vec<FindingCount>, found: &[filters::Applied]) {
    for f in found {
        match counts
            .iter_mut()
            .find(|c| c.ty == f.ty && c.action == f.action.name())
        {
            Some(c) => c.count += 1,
            None => counts.push(FindingCount {
                ty: f.ty.to_string(),
                action: f.action.name().to_string(),
                count: 1,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counts_split_across_chunks() {
        use filters::protocol::Protocol;
        let tgi = b"data:{\"token\":{\"id\":1,\"text\":\"a\"}}\n\ndata:{\"token\":{\"id\":2,\"text\":\"b\"},\"generated_text\":\"ab\",\"details\":{\"finish_reason\":\"length\",\"generated_tokens\":2}}\n\n";
        for cut in 1..tgi.len() {
            let mut m = UsageMeter::new(filters::protocol::tgi::Generate.usage());
            m.feed(&tgi[..cut]);
            m.feed(&tgi[cut..]);
            assert_eq!(m.generated, Some(2), "cut {cut}");
            assert_eq!(m.events, 2, "cut {cut}");
        }
        let mut m = UsageMeter::new(filters::protocol::openai_chat::Chat.usage());
        m.feed(br#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#);
        assert_eq!((m.prompt, m.generated), (Some(12), Some(7)));
        // Anthropic: the last `output_tokens` (message_delta) is the count
        let mut m = UsageMeter::new(filters::protocol::anthropic::Messages.usage());
        m.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n");
        m.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":31}}\n\n");
        assert_eq!((m.prompt, m.generated), (Some(9), Some(31)));
    }
}
