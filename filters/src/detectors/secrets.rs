//! Credentials: provider tokens with fixed shapes, JWTs, PEM private keys, passwords in URLs and
//! connection strings, and high-entropy values next to key words.

use super::B;
use crate::engine::util::entropy;
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// Secrets detector.
pub struct Secrets;

const AWS: u32 = 0;
const GITHUB: u32 = 1;
const GITLAB: u32 = 2;
const SLACK: u32 = 3;
const STRIPE: u32 = 4;
const OPENAI: u32 = 5;
const JWT: u32 = 6;
const PEM: u32 = 7;
const URL_PW: u32 = 8;
const CONN_PW: u32 = 9;
const GENERIC: u32 = 10;
const SLACK_HOOK: u32 = 11;
const CLI_FLAG: u32 = 12;

/// Values that are obviously examples, not secrets.
fn placeholder_value(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    l.contains("xxxx")
        || l.contains("your")
        || l.contains("example")
        || l.contains("changeme")
        || l.contains("placeholder")
        || l.contains("<")
        || l.contains("redacted")
        || l.contains("****")
        || l.contains("${")
        || l.contains("{{")
        || env_reference(v)
        || l.starts_with("%(")
        || l.bytes().all(|b| b == l.as_bytes()[0])
}

/// `$DB_PASSWORD`, `${DB_PASSWORD}`, `$env:TOKEN`: a reference to a variable, not a value
/// (`$L_p2jf0uOk` with lower-case letters is a value).
fn env_reference(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('$') else {
        return false;
    };
    let rest = rest.strip_prefix("env:").unwrap_or(rest);
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A secret's key word: a stream sends it and holds only what may follow it.
const GENERIC_KEY: &str = r"(?i)(?:api[_\-]?key|apikey|secret(?:[_\-]?(?:key|token|access[_\-]?key))?|access[_\-]?(?:key|token)|auth[_\-]?token|token|client[_\-]?secret|private[_\-]?key|(?:encryption|signing|master|session)[_\-]?(?:key|secret)|bearer)";
/// What follows the key word: the value (group 1).
const GENERIC_VALUE: &str =
    r#"["']?\s*(?:[:=]|=>|\s)\s*["']?([A-Za-z0-9_\-+/=.~!@#$%^&*()?]{12,256})"#;
/// A credential flag of a command line.
const CLI_KEY: &str = r"(?i)(?:^|[ \t\n])--(?:password|passwd|pass|pwd|token|api[_\-]?key|secret|client[_\-]?secret|access[_\-]?token|auth[_\-]?token)";
/// What follows the flag: its value (group 1).
const CLI_VALUE: &str = r#"(?:=|[ \t]+)("[ !#-~]{1,128}"|'[ -&(-~]{1,128}'|[!#-&(-_a-~]{1,128})"#;

impl Detector for Secrets {
    fn name(&self) -> &'static str {
        "secrets"
    }
    fn types(&self) -> &'static [&'static str] {
        &[
            "aws_key",
            "github_token",
            "gitlab_token",
            "slack_token",
            "stripe_key",
            "openai_key",
            "jwt",
            "private_key",
            "url_password",
            "generic_secret",
        ]
    }
    fn patterns(&self) -> Vec<Pattern> {
        let r = |re: String, tag, ty| Pattern::regex(ViewKind::Raw, re, tag, ty);
        vec![
            r(format!(r"{B}(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[A-Z0-9]{{16}}{B}"), AWS, "aws_key"),
            r(format!(r"{B}(?:gh[pousr]_[A-Za-z0-9]{{36,251}}|github_pat_[A-Za-z0-9_]{{22,255}}){B}"), GITHUB, "github_token"),
            r(format!(r"{B}gl(?:pat|dt|rt|ptt|cbt|oas)-[A-Za-z0-9_\-]{{20,64}}"), GITLAB, "gitlab_token"),
            r(format!(r"{B}xox[abposre]-[A-Za-z0-9\-]{{10,250}}"), SLACK, "slack_token"),
            // streams hold `h` only at the start of a word, not the last letter of `with`
            r(r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+".to_string(), SLACK_HOOK, "slack_token")
                .hold_from(format!(r"{B}https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+")),
            r(format!(r"{B}(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{{16,247}}{B}"), STRIPE, "stripe_key"),
            r(format!(r"{B}sk-(?:(?:proj|svcacct|admin|ant-api03)-)?[A-Za-z0-9_\-]{{20,200}}"), OPENAI, "openai_key"),
            r(format!(r"{B}eyJ[A-Za-z0-9_\-]{{8,}}\.eyJ[A-Za-z0-9_\-]{{8,}}\.[A-Za-z0-9_\-]{{8,}}"), JWT, "jwt"),
            r(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=:,\-\s]*)".to_string(), PEM, "private_key"),
            // a stream sends the scheme (any word may be one) and holds what follows `://`
            r(format!(r"{B}[A-Za-z][A-Za-z0-9+.\-]{{1,20}}://[^\s:/@]{{0,64}}:([^\s@/]{{1,128}})@[A-Za-z0-9.\-\[\]]+"), URL_PW, "url_password")
                .hold_after(format!(r"{B}[A-Za-z][A-Za-z0-9+.\-]{{1,20}}://"), r"[^\s:/@]{0,64}:[^\s@/]{1,128}@"),
            // ... and the key word, holding what follows it
            r(r#"(?i)(?:password|passwd|pwd)["']?\s*[=:]\s*("[^"]{1,128}"|'[^']{1,128}'|[^;'"`\s]{1,128})"#.to_string(), CONN_PW, "url_password")
                .hold_after(r"(?i)(?:password|passwd|pwd)", r#"["']?\s*[=:]\s*(?:"[^"]{1,128}"|'[^']{1,128}'|[^;'"`\s]{1,128})"#),
            r(
                format!(r#"{GENERIC_KEY}{GENERIC_VALUE}"#),
                GENERIC,
                "generic_secret",
            )
            .hold_after(GENERIC_KEY, GENERIC_VALUE),
            // `mycli login --password VALUE`: whatever follows a credential flag is the credential
            r(
                format!(r#"{CLI_KEY}{CLI_VALUE}"#),
                CLI_FLAG,
                "generic_secret",
            )
            .hold_after(CLI_KEY, CLI_VALUE),
        ]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let m = hit.as_str();
        let (ty, rule): (&'static str, &'static str) = match hit.tag {
            AWS => ("aws_key", "secrets.aws_access_key"),
            GITHUB => ("github_token", "secrets.github"),
            GITLAB => ("gitlab_token", "secrets.gitlab"),
            SLACK => ("slack_token", "secrets.slack"),
            SLACK_HOOK => ("slack_token", "secrets.slack_webhook"),
            STRIPE => ("stripe_key", "secrets.stripe"),
            OPENAI => ("openai_key", "secrets.openai"),
            JWT => ("jwt", "secrets.jwt"),
            PEM => ("private_key", "secrets.pem_private_key"),
            URL_PW | CONN_PW | GENERIC | CLI_FLAG => {
                // a `--token VALUE` flag is the CLI rule's
                if hit.tag == GENERIC && hit.text[..hit.start].ends_with("--") {
                    return;
                }
                let Some(c) = hit
                    .regex
                    .and_then(|r| r.captures_at(hit.text, hit.start))
                    .and_then(|c| c.get(1))
                else {
                    return;
                };
                let mut v = (c.start(), c.end());
                let s = c.as_str();
                if (s.starts_with('"') && s.ends_with('"')
                    || s.starts_with('\'') && s.ends_with('\''))
                    && s.len() >= 2
                {
                    v = (v.0 + 1, v.1 - 1);
                }
                let val = &hit.text[v.0..v.1];
                let val = val.trim_end_matches(['.', ',', ')']);
                let v = (v.0, v.0 + val.len());
                if val.is_empty() || placeholder_value(val) {
                    return;
                }
                // `SMTP_PASSWORD=...`: an identifier's value (an environment variable or config
                // key), not a connection string's field
                let in_identifier = hit.tag == CONN_PW
                    && crate::engine::util::char_before(hit.text, hit.start)
                        .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric());
                let (ty, rule, score) = match hit.tag {
                    CONN_PW if in_identifier => {
                        ("generic_secret", "secrets.password_assignment", 0.9)
                    }
                    URL_PW => ("url_password", "secrets.url_password", 1.0),
                    CONN_PW => ("url_password", "secrets.connection_string_password", 0.95),
                    CLI_FLAG => {
                        if val.len() < 6 || val.starts_with('-') {
                            return;
                        }
                        ("generic_secret", "secrets.cli_flag", 0.9)
                    }
                    _ => {
                        // high entropy, several character classes, not a word or a path
                        let classes = [
                            val.bytes().any(|b| b.is_ascii_lowercase()),
                            val.bytes().any(|b| b.is_ascii_uppercase()),
                            val.bytes().any(|b| b.is_ascii_digit()),
                        ]
                        .iter()
                        .filter(|x| **x)
                        .count();
                        if val.len() < 16 || entropy(val) < 3.3 || classes < 2 {
                            return;
                        }
                        ("generic_secret", "secrets.generic_high_entropy", 0.8)
                    }
                };
                out.push(hit.finding(ty, v.0, v.1, score, rule));
                return;
            }
            _ => return,
        };
        if placeholder_value(m) && ty != "private_key" {
            return;
        }
        if hit.tag == OPENAI
            && (m.bytes().filter(u8::is_ascii_digit).count() == 0 || entropy(m) < 3.5)
        {
            return;
        }
        out.push(hit.whole(ty, 1.0, rule));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::scan;
    use proptest::prelude::*;

    fn f(t: &str) -> Vec<(&'static str, &str)> {
        scan(Box::new(Secrets), t)
            .into_iter()
            .map(|x| (x.ty, &t[x.start..x.end]))
            .collect()
    }

    #[test]
    fn provider_tokens() {
        let cases = [
            ("aws_key", "AKIAIOSFODNN7EXAMPLE".replace("EXAMPLE", "Q7LMZ2X")),
            ("github_token", format!("ghp_{}", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6")),
            ("gitlab_token", "glpat-Ab3De6Gh9Jk2Mn5Pq8St".to_string()),
            ("slack_token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx".to_string()),
            ("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc".to_string()),
            ("openai_key", "sk-proj-Ab3De6Gh9Jk2Mn5Pq8St1Vw4Yz7Bc0Ef3Hj6Km9Np2Qs5".to_string()),
            ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".to_string()),
        ];
        for (ty, tok) in cases {
            let t = format!("use {tok} here");
            assert_eq!(f(&t), [(ty, tok.as_str())], "{ty}");
        }
    }

    #[test]
    fn pem_blocks_and_passwords() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc+/=\n-----END RSA PRIVATE KEY-----";
        assert_eq!(f(&format!("key:\n{pem}\nthanks")), [("private_key", pem)]);
        assert_eq!(
            f("postgres://app:S3cr3t!pw@db.example.com:5432/app"),
            [("url_password", "S3cr3t!pw")]
        );
        assert_eq!(
            f("Server=db;User Id=sa;Password=Tr0ub4dor&3;"),
            [("url_password", "Tr0ub4dor&3")]
        );
        assert_eq!(
            f("api_key = \"9f8aQ2Lx7Rt4Vb1Nz6Kc3Hw8Jm5Pd0Ys\""),
            [("generic_secret", "9f8aQ2Lx7Rt4Vb1Nz6Kc3Hw8Jm5Pd0Ys")]
        );
    }

    #[test]
    fn passwords_in_every_shape() {
        for (t, want) in [
            (
                "redis://:k7DtPjIPK1c2g@cache:6379/0",
                ("url_password", "k7DtPjIPK1c2g"),
            ),
            (
                "mongodb+srv://app:$A4LV8LX-FFEX$u-Sbkc@c0.mongodb.net/db",
                ("url_password", "$A4LV8LX-FFEX$u-Sbkc"),
            ),
            (
                "mycli login --password 23c5c3d4689929795cc9cb4f632e7a04",
                ("generic_secret", "23c5c3d4689929795cc9cb4f632e7a04"),
            ),
            (
                "mycli login --token mw19hiTtnYDO&?rWr",
                ("generic_secret", "mw19hiTtnYDO&?rWr"),
            ),
            (
                "mycli login --api-key ?RfXYe_j#?-NhVG_EF3&Nfl",
                ("generic_secret", "?RfXYe_j#?-NhVG_EF3&Nfl"),
            ),
            (
                "\"SMTP_PASSWORD\": \"071d5dkgtWU#ni8Jahj3LAGOTO\"",
                ("generic_secret", "071d5dkgtWU#ni8Jahj3LAGOTO"),
            ),
            (
                "ENCRYPTION_KEY=rZUVSNvtVLH8uKMJCEa3OWK9KlNBXSdV5d5vOyvoIlI=",
                (
                    "generic_secret",
                    "rZUVSNvtVLH8uKMJCEa3OWK9KlNBXSdV5d5vOyvoIlI=",
                ),
            ),
            (
                "DJANGO_SECRET_KEY=mx@em+w6l(1p5=s277-7jtv(%h#758h=nn!h5jm)i97k&)o%l_",
                (
                    "generic_secret",
                    "mx@em+w6l(1p5=s277-7jtv(%h#758h=nn!h5jm)i97k&)o%l_",
                ),
            ),
        ] {
            assert_eq!(f(t), [want], "{t}");
        }
        for t in [
            "mycli login --password $DB_PASSWORD",
            "mycli login --token --verbose",
            "postgres://app:${DB_PASSWORD}@db:5432/app",
        ] {
            assert!(f(t).is_empty(), "{t}: {:?}", f(t));
        }
    }

    #[test]
    fn negatives() {
        for t in [
            "set api_key = YOUR_API_KEY",
            "token: xxxxxxxxxxxxxxxxxxxx",
            "sk-xxxxxxxxxxxxxxxxxxxxxxxx",
            "the password=changeme default",
            "secret: the-quick-brown-fox",
            "see https://example.com/a:b@c",
            "postgres://app:${DB_PASSWORD}@db:5432/app",
            "commit 3f9a1c2b7d4e5f60718293a4b5c6d7e8f9012345",
        ] {
            assert!(f(t).is_empty(), "{t}: {:?}", f(t));
        }
    }

    proptest! {
        #[test]
        fn aws_keys(body in "[A-Z0-9]{16}") {
            prop_assume!(!placeholder_value(&body));
            let k = format!("AKIA{body}");
            let t = format!("key={k}");
            prop_assert!(f(&t).iter().any(|(ty, v)| *ty == "aws_key" && *v == k));
        }
    }
}
