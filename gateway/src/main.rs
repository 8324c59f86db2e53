//! `gateway`: the Portcullis gateway's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::config::GatewayConfig;

// The proxy allocates per request (headers, bodies, tasks); glibc's malloc showed up at ~7% of
// the proxy's CPU under load. mimalloc measured faster (benches/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Portcullis: a guardrail gateway for TGI and OpenAI-compatible LLM servers.
#[derive(Parser)]
#[command(name = "gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file (and the policy it names) and exit: 0 if valid, 1 if not,
    /// with one `file:line:column: path: problem` line per problem on stderr.
    Validate {
        /// The configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the JSON Schema of the configuration file.
    Schema,
    /// Print the JSON Schema of policy files (checked in as `policies/schema.json`).
    PolicySchema,
    /// Try a policy offline: read text on stdin, print the decision as JSON:
    /// `{"action", "findings": [{"type","start","end","rule","action"}], "text"}` (`text` is what
    /// would be sent on, null when blocked; offsets are UTF-8 bytes). Exit 0, or 1 on a bad policy.
    Check {
        /// The policy file.
        #[arg(long, short)]
        policy: PathBuf,
        /// Which rules to apply: those for prompts or those for answers.
        #[arg(long, value_enum, default_value = "input")]
        direction: DirectionArg,
        /// Tenant whose key derives pseudonyms (the master key comes from
        /// PORTCULLIS_PSEUDONYM_KEY; unset, an empty key is used and a warning printed).
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Read one JSON object per line (`{"id": .., "text": .., "role": ..}`, `role`
        /// optional) and print one result per line, with the `id`, instead of reading all of
        /// stdin as one text.
        #[arg(long)]
        jsonl: bool,
        /// Who wrote the text (`user`, `system`, `tool`, `document`, ...): decides which
        /// injection operating point scores it (`classifiers.supplied_roles`: a tool result or
        /// document is scored for indirect injection). A `--jsonl` line's `role` overrides it.
        #[arg(long, default_value = "user", value_parser = parse_role)]
        role: filters::protocol::Role,
        /// Model bundles for a policy with `classifiers:` (default: `models/` beside the
        /// policy's folder). The scores are printed under `scores`.
        #[arg(long)]
        models: Option<PathBuf>,
        /// Read stdin as a request body for this route (`chat_completions`, `messages`,
        /// `generate`, ...) and print what the route's API family reads in it: every text that
        /// reaches the model with its role, the decision, the body as it would be forwarded, or
        /// the field the gateway would refuse (input rules only; no classifiers).
        #[arg(long, conflicts_with_all = ["jsonl", "models"])]
        route: Option<String>,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Audit trail tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The models a running gateway serves (through its admin API).
    #[command(subcommand)]
    Models(ModelsCommand),
}

/// Where a running gateway's admin API is.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin listener.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    admin: String,
    /// The environment variable holding the admin token (`admin.token_env`).
    #[arg(long, default_value = "PORTCULLIS_ADMIN_TOKEN")]
    token_env: String,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every model serving: version, versions on disk, signer, signed ε and provenance (JSON).
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Serve an older version of NAME (verified like any other) and hold it there until a
    /// newer version is published.
    Rollback {
        /// The model (bundle) name.
        name: String,
        /// The version (default: the newest older than the one serving that verifies).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key: prints it once (only its SHA-256 is stored) and adds it to the file.
    Add {
        /// The keys file (created if missing).
        #[arg(long, short)]
        file: PathBuf,
        /// The key's id (what logs and audit records name).
        #[arg(long)]
        id: String,
        /// Its tenant.
        #[arg(long)]
        tenant: String,
        /// Its policy (a name the gateway config knows).
        #[arg(long)]
        policy: Option<String>,
        /// Expiry: RFC 3339 (`2027-01-01T00:00:00Z`) or a duration from now (`30d`, `12h`).
        #[arg(long)]
        expires: Option<String>,
        /// Request rate of this key (`10/s`, `600/m`).
        #[arg(long)]
        rate: Option<String>,
        /// Burst of this key's rate.
        #[arg(long)]
        burst: Option<u32>,
        /// LLM tokens per minute.
        #[arg(long)]
        tokens_per_minute: Option<u64>,
        /// LLM tokens per day.
        #[arg(long)]
        tokens_per_day: Option<u64>,
        /// Requests in flight at once.
        #[arg(long)]
        concurrency: Option<u32>,
        /// Print only the key (for scripts).
        #[arg(long)]
        quiet: bool,
    },
    /// List keys as JSON (ids, tenants, limits, expiry; never hashes).
    List {
        /// The keys file.
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Revoke a key by id (it stays in the file, refused).
    Revoke {
        /// The keys file.
        #[arg(long, short)]
        file: PathBuf,
        /// The key's id.
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check audit files (or a folder of them, with its `audit.head`): prints JSON and exits 1
    /// at the first broken, edited, removed, reordered or truncated record.
    Verify {
        /// Files in order, or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The key file the gateway signs with (`audit.key_file`): the head and checkpoints
        /// must carry its MAC.
        #[arg(long, conflicts_with = "key_env")]
        key_file: Option<PathBuf>,
        /// Or the environment variable holding that key.
        #[arg(long)]
        key_env: Option<String>,
        /// Accept a folder without `audit.head` (else its absence fails: records at the end
        /// may have been removed with it).
        #[arg(long)]
        allow_missing_head: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DirectionArg {
    Input,
    Output,
}

/// A role named on the command line or in a `check --jsonl` line.
fn parse_role(s: &str) -> Result<filters::protocol::Role, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        "roles are system, developer, user, assistant, tool, tool_definition, document, unknown"
            .to_string()
    })
}

fn check(
    policy: &std::path::Path,
    direction: DirectionArg,
    tenant: &str,
    (jsonl, default_role): (bool, filters::protocol::Role),
    models: Option<PathBuf>,
) -> ExitCode {
    use std::io::{BufRead, Read, Write};
    let p = match filters::Policy::load(policy) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // The model classifiers score prompts only.
    let model = match (&p.classifiers, direction) {
        (Some(plan), DirectionArg::Input) => {
            let dir = models.unwrap_or_else(|| {
                policy
                    .parent()
                    .and_then(std::path::Path::parent)
                    .unwrap_or(std::path::Path::new("."))
                    .join("models")
            });
            // a local tool reading bundles it was handed: digests are checked, signatures are
            // the serving gateway's business (`models.trust`)
            let reg = filters::classify::ModelRegistry::new(
                &dir,
                filters::classify::EncoderOptions::default(),
                None,
                None,
            )
            .with_trust(signing::Trust::signatures_ignored());
            let loaded = reg
                .get(&plan.model, plan.version.as_deref())
                .map(|s| s.current())
                .and_then(|c| c.example_embeddings(&plan.examples()).map(|_| c));
            match loaded {
                Ok(c) => Some((plan, c)),
                Err(e) => {
                    eprintln!(
                        "error: policy `{}` needs the model `{}`: {e} (pass --models DIR)",
                        p.name, plan.model
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let key = std::env::var("PORTCULLIS_PSEUDONYM_KEY").unwrap_or_else(|_| {
        eprintln!("warning: PORTCULLIS_PSEUDONYM_KEY is not set; pseudonyms use an empty key");
        String::new()
    });
    let pseudo = filters::Pseudonymizer::new(key.as_bytes(), tenant);
    let side = match direction {
        DirectionArg::Input => &p.input,
        DirectionArg::Output => &p.output,
    };
    let decide = |text: &str, role: filters::protocol::Role| {
        let mut vault = filters::Vault::default();
        // Person names and street addresses come from the bundle's entity head.
        let mut tag_failed = false;
        let entities = match &model {
            Some((_, m))
                if m.entities
                    .as_ref()
                    .is_some_and(|h| side.wants_entities(h.types())) =>
            {
                match m.entities_blocking(&[text]) {
                    Ok(mut v) => v.pop().unwrap_or_default(),
                    Err(e) => {
                        eprintln!("warning: entity tagging failed: {e}");
                        tag_failed = true;
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        let mut d = side.evaluate_as(text, role, &entities, &mut vault, &pseudo);
        if tag_failed && let Some((plan, _)) = &model {
            d.findings.push(plan.unavailable());
        }
        let mut scores = serde_json::Map::new();
        if let Some((plan, model)) = &model
            && plan.scores_anything()
            && plan.scores(role)
        {
            match model.classify_blocking(&[text]) {
                Ok(s) => {
                    let v = plan.decide(model, &s, &[role]);
                    for (k, x) in &v.scores {
                        scores.insert(k.clone(), serde_json::json!((x * 1e4).round() / 1e4));
                    }
                    d.findings.extend(v.findings);
                }
                Err(e) => {
                    eprintln!("warning: classification failed: {e}");
                    d.findings.push(plan.unavailable());
                }
            }
            d.action = d
                .findings
                .iter()
                .map(|f| f.action)
                .max()
                .unwrap_or(filters::Action::Allow);
        }
        let out_text = match d.action {
            filters::Action::Block => serde_json::Value::Null,
            _ => serde_json::Value::String(d.text.clone().unwrap_or_else(|| text.to_string())),
        };
        let mut r =
            serde_json::json!({"action": d.action, "findings": d.findings, "text": out_text});
        if model.is_some() {
            r["scores"] = serde_json::Value::Object(scores);
        }
        r
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if jsonl {
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: reading stdin: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("error: line {}: not JSON: {e}", n + 1);
                    return ExitCode::FAILURE;
                }
            };
            let Some(text) = v.get("text").and_then(|t| t.as_str()) else {
                eprintln!("error: line {}: no string field `text`", n + 1);
                return ExitCode::FAILURE;
            };
            let role = match v.get("role").filter(|r| !r.is_null()) {
                None => default_role,
                Some(r) => match parse_role(r.as_str().unwrap_or_default()) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("error: line {}: `role`: {e}", n + 1);
                        return ExitCode::FAILURE;
                    }
                },
            };
            let mut r = decide(text, role);
            r["id"] = v.get("id").cloned().unwrap_or(serde_json::Value::Null);
            if writeln!(out, "{r}").is_err() {
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("error: stdin is not UTF-8 text: {e}");
        return ExitCode::FAILURE;
    }
    match serde_json::to_string_pretty(&decide(&text, default_role)) {
        Ok(s) if writeln!(out, "{s}").is_ok() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// `check --route`: a request body through the route's API family and the policy's input rules.
fn check_body(policy: &std::path::Path, route: &str, tenant: &str) -> ExitCode {
    use std::io::Read;
    let p = match filters::Policy::load(policy) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let Some(r) = gateway::routes::Route::by_label(route) else {
        return fail(format!(
            "no route `{route}`; routes are {}",
            gateway::routes::Route::all()
                .map(|r| r.label())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut raw) {
        return fail(format!("reading stdin: {e}"));
    }
    let mut body = match filters::protocol::parse_strict(&raw) {
        Ok(v) => v,
        Err(e) => return fail(format!("the body is not JSON the gateway accepts: {e}")),
    };
    let Some(proto) = r.protocol(&body) else {
        return fail(format!("route `{route}` has no request body"));
    };
    let key = std::env::var("PORTCULLIS_PSEUDONYM_KEY").unwrap_or_default();
    let pseudo = filters::Pseudonymizer::new(key.as_bytes(), tenant);
    let units = match filters::protocol::unit_texts(proto, &body, &p) {
        Ok(u) => u,
        Err(e) => {
            return print_json(&serde_json::json!({
                "family": proto.name(),
                "action": "refuse",
                "refused": {"path": e.path, "reason": e.reason},
            }));
        }
    };
    let mut vault = filters::Vault::default();
    let out = filters::protocol::inspect(proto, &mut body, &p, &mut vault, &pseudo, false);
    let out = match out {
        Ok(o) => o,
        Err(filters::protocol::InspectError::Shape(e)) => {
            return print_json(&serde_json::json!({
                "family": proto.name(),
                "action": "refuse",
                "refused": {"path": e.path, "reason": e.reason},
            }));
        }
    };
    let action = out
        .findings
        .iter()
        .map(|f| f.action)
        .max()
        .unwrap_or(filters::Action::Allow);
    print_json(&serde_json::json!({
        "family": proto.name(),
        "action": action,
        "findings": out.findings,
        "texts": units.iter().map(|(role, t)| serde_json::json!({"role": role, "text": t})).collect::<Vec<_>>(),
        "body": if out.blocked.is_some() { serde_json::Value::Null } else { body },
    }))
}

/// Print a value as pretty JSON on stdout.
fn print_json(v: &impl serde::Serialize) -> ExitCode {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn keys(cmd: KeysCommand) -> ExitCode {
    use gateway::keys::{KeyLimits, KeysFile};
    match cmd {
        KeysCommand::Add {
            file,
            id,
            tenant,
            policy,
            expires,
            rate,
            burst,
            tokens_per_minute,
            tokens_per_day,
            concurrency,
            quiet,
        } => {
            let mut f = match KeysFile::read(&file) {
                Ok(f) => f,
                Err(e) => return fail(e),
            };
            let expires = match expires.as_deref().map(|e| {
                humantime::parse_rfc3339(e).or_else(|_| {
                    humantime::parse_duration(e).map(|d| std::time::SystemTime::now() + d)
                })
            }) {
                None => None,
                Some(Ok(t)) => Some(t),
                Some(Err(_)) => {
                    return fail(
                        "--expires: give RFC 3339 (2027-01-01T00:00:00Z) or a duration (30d)",
                    );
                }
            };
            let limits = KeyLimits {
                rate,
                burst,
                tokens_per_minute,
                tokens_per_day,
                concurrency,
            };
            let limits = (limits != KeyLimits::default()).then_some(limits);
            let key = match f.add(&id, &tenant, policy, limits, expires) {
                Ok(k) => k,
                Err(e) => return fail(e),
            };
            if let Err(e) = f.write(&file) {
                return fail(e);
            }
            if quiet {
                println!("{key}");
            } else {
                println!("{key}");
                eprintln!(
                    "key `{id}` (tenant `{tenant}`) added to {}; this is the only time the key is shown",
                    file.display()
                );
            }
            ExitCode::SUCCESS
        }
        KeysCommand::List { file } => match KeysFile::read(&file) {
            Ok(f) => print_json(
                &serde_json::json!({"keys": f.keys.iter().map(|k| serde_json::json!({
                "id": k.id, "tenant": k.tenant, "policy": k.policy, "limits": k.limits,
                "expires": k.expires, "created": k.created, "revoked": k.revoked,
            })).collect::<Vec<_>>()}),
            ),
            Err(e) => fail(e),
        },
        KeysCommand::Revoke { file, id } => {
            let mut f = match KeysFile::read(&file) {
                Ok(f) => f,
                Err(e) => return fail(e),
            };
            if let Err(e) = f.revoke(&id) {
                return fail(e);
            }
            match f.write(&file) {
                Ok(()) => {
                    eprintln!(
                        "key `{id}` revoked; running gateways refuse it after `POST /admin/reload`"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

fn models_command(cmd: ModelsCommand) -> anyhow::Result<()> {
    use anyhow::Context;
    let (admin, method, path) = match &cmd {
        ModelsCommand::List { admin } => (admin, reqwest::Method::GET, "/admin/models".to_string()),
        ModelsCommand::Rollback { name, to, admin } => (
            admin,
            reqwest::Method::POST,
            format!(
                "/admin/models/{name}/rollback{}",
                to.as_ref().map(|v| format!("?to={v}")).unwrap_or_default()
            ),
        ),
    };
    let token = std::env::var(&admin.token_env)
        .with_context(|| format!("{} is not set (the gateway's admin token)", admin.token_env))?;
    let url = format!("{}{path}", admin.admin.trim_end_matches('/'));
    let resp = reqwest::blocking::Client::new()
        .request(method, &url)
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(120))
        .send()
        .with_context(|| format!("{url}: is the gateway running?"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .with_context(|| format!("{url}: the answer is not JSON"))?;
    if !status.is_success() {
        anyhow::bail!(
            "{status}: {}",
            body["error"].as_str().unwrap_or(&body.to_string())
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&body).unwrap_or_default()
    );
    Ok(())
}

fn audit(cmd: AuditCommand) -> ExitCode {
    match cmd {
        AuditCommand::Verify {
            paths,
            key_file,
            key_env,
            allow_missing_head,
        } => {
            let bytes = match (key_file, key_env) {
                (Some(f), _) => match std::fs::read(&f) {
                    Ok(b) => Some(b),
                    Err(e) => return fail(format!("reading the key file {}: {e}", f.display())),
                },
                (None, Some(env)) => match std::env::var(&env) {
                    Ok(v) => Some(v.into_bytes()),
                    Err(_) => return fail(format!("the environment variable `{env}` is not set")),
                },
                (None, None) => None,
            };
            let key = match bytes.map(|b| gateway::audit::AuditKey::new(&b)).transpose() {
                Ok(k) => k,
                Err(e) => return fail(e),
            };
            let opts = gateway::audit::VerifyOptions {
                key,
                allow_missing_head,
            };
            verify_audit(&paths, &opts)
        }
    }
}

fn verify_audit(paths: &[PathBuf], opts: &gateway::audit::VerifyOptions) -> ExitCode {
    match gateway::audit::verify(paths, opts) {
        Ok(v) => {
            let ok = v.ok;
            let code = print_json(&v);
            if ok { code } else { ExitCode::FAILURE }
        }
        Err(e) => fail(format!("reading the audit files: {e}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => match GatewayConfig::load(&config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} upstream(s), default `{}`, listen {}, admin {}{})",
                    config.display(),
                    c.upstreams.len(),
                    c.default_upstream,
                    c.listen,
                    c.admin_listen,
                    c.guard
                        .policies
                        .iter()
                        .map(|(n, _, p)| format!(", policy {n} = `{}` v{}", p.name, p.version))
                        .collect::<String>()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                for err in &e.errors {
                    eprintln!("{err}");
                }
                eprintln!("{}: {} problem(s) found", config.display(), e.errors.len());
                ExitCode::FAILURE
            }
        },
        Command::Keys(k) => keys(k),
        Command::Audit(a) => audit(a),
        Command::Models(m) => match models_command(m) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Schema => print_json(&gateway::config::json_schema()),
        Command::PolicySchema => print_json(&filters::Policy::json_schema()),
        Command::Check {
            policy,
            tenant,
            route: Some(route),
            ..
        } => check_body(&policy, &route, &tenant),
        Command::Check {
            policy,
            direction,
            tenant,
            jsonl,
            role,
            models,
            route: None,
        } => check(&policy, direction, &tenant, (jsonl, role), models),
        Command::Serve { config } => {
            let c = match GatewayConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    for err in &e.errors {
                        eprintln!("{err}");
                    }
                    eprintln!("error: the configuration is invalid; nothing was started");
                    return ExitCode::FAILURE;
                }
            };
            let _log_guard = match gateway::telemetry::init(&c.log) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            match gateway::server::run(c) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
