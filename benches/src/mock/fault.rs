//! Per-request fault injection, chosen by the `x-mock-fault` request header.
//!
//! The header holds `key=value` directives separated by `;` or `,`, for example
//! `x-mock-fault: status=503` or `x-mock-fault: ttft_ms=200; drop_after=3`. One server can then
//! serve every test case. Unknown keys are rejected with a 400 so that a typo in a test never
//! silently turns a fault test into a happy-path test.

use std::time::Duration;

/// Name of the request header that carries fault directives.
pub const HEADER: &str = "x-mock-fault";

/// Faults and timing overrides for one request. All fields are optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fault {
    /// Answer with this HTTP status and a TGI error body instead of generating.
    pub status: Option<u16>,
    /// Wait this long before sending anything (response headers included).
    pub delay: Option<Duration>,
    /// Override the server's time to first token for this request.
    pub ttft: Option<Duration>,
    /// Override the server's token rate (tokens per second; 0 = as fast as possible).
    pub tokens_per_second: Option<f64>,
    /// Drop the connection after this many stream events (or, for a non-streamed answer, after
    /// half of the body), without a clean end of the HTTP message.
    pub drop_after: Option<usize>,
    /// Send a TGI generation-error event after this many tokens and end the stream.
    pub error_after: Option<usize>,
    /// Compress the answer with gzip whatever the request's `Accept-Encoding` says (a backend,
    /// or a proxy in front of it, that ignores it).
    pub gzip: bool,
}

/// A malformed fault header.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    /// A directive without `=`.
    #[error("fault directive `{0}` is not of the form key=value")]
    NotKeyValue(String),
    /// An unknown key.
    #[error(
        "unknown fault directive `{0}` (known: status, delay_ms, ttft_ms, tps, drop_after, error_after)"
    )]
    UnknownKey(String),
    /// A value that does not parse.
    #[error("fault directive `{key}` has an invalid value `{value}`")]
    BadValue {
        /// The directive's key.
        key: String,
        /// The value that failed to parse.
        value: String,
    },
}

impl Fault {
    /// Parse the header's value. An empty value means no fault.
    pub fn parse(value: &str) -> Result<Fault, FaultError> {
        let mut f = Fault::default();
        for part in value.split([';', ',']) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, val) = part
                .split_once('=')
                .ok_or_else(|| FaultError::NotKeyValue(part.to_string()))?;
            let (key, val) = (key.trim(), val.trim());
            let bad = || FaultError::BadValue {
                key: key.to_string(),
                value: val.to_string(),
            };
            match key {
                "status" => {
                    let code: u16 = val.parse().map_err(|_| bad())?;
                    if !(100..=599).contains(&code) {
                        return Err(bad());
                    }
                    f.status = Some(code);
                }
                "delay_ms" => {
                    f.delay = Some(Duration::from_millis(val.parse().map_err(|_| bad())?))
                }
                "ttft_ms" => f.ttft = Some(Duration::from_millis(val.parse().map_err(|_| bad())?)),
                "tps" => {
                    let tps: f64 = val.parse().map_err(|_| bad())?;
                    if !tps.is_finite() || tps < 0.0 {
                        return Err(bad());
                    }
                    f.tokens_per_second = Some(tps);
                }
                "drop_after" => f.drop_after = Some(val.parse().map_err(|_| bad())?),
                "error_after" => f.error_after = Some(val.parse().map_err(|_| bad())?),
                "gzip" => f.gzip = matches!(val, "1" | "true"),
                other => return Err(FaultError::UnknownKey(other.to_string())),
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_directive() {
        let f =
            Fault::parse("status=503; delay_ms=10, ttft_ms=20;tps=5.5;drop_after=3;error_after=4")
                .unwrap();
        assert_eq!(f.status, Some(503));
        assert_eq!(f.delay, Some(Duration::from_millis(10)));
        assert_eq!(f.ttft, Some(Duration::from_millis(20)));
        assert_eq!(f.tokens_per_second, Some(5.5));
        assert_eq!(f.drop_after, Some(3));
        assert_eq!(f.error_after, Some(4));
    }

    #[test]
    fn empty_means_no_fault() {
        assert_eq!(Fault::parse("").unwrap(), Fault::default());
        assert_eq!(Fault::parse(" ; ").unwrap(), Fault::default());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_header(s in "\\PC{0,80}") {
            let _ = Fault::parse(&s);
        }

        #[test]
        fn well_formed_directives_round_trip(status in 100u16..600, delay in 0u64..100_000, drop in proptest::option::of(0usize..1000)) {
            let mut h = format!("status={status}; delay_ms={delay}");
            if let Some(d) = drop {
                h.push_str(&format!(",drop_after={d}"));
            }
            let f = Fault::parse(&h).unwrap();
            proptest::prop_assert_eq!(f.status, Some(status));
            proptest::prop_assert_eq!(f.delay, Some(Duration::from_millis(delay)));
            proptest::prop_assert_eq!(f.drop_after, drop);
        }
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        assert!(matches!(
            Fault::parse("stauts=500"),
            Err(FaultError::UnknownKey(_))
        ));
        assert!(matches!(
            Fault::parse("status"),
            Err(FaultError::NotKeyValue(_))
        ));
        assert!(matches!(
            Fault::parse("status=99"),
            Err(FaultError::BadValue { .. })
        ));
        assert!(matches!(
            Fault::parse("tps=-1"),
            Err(FaultError::BadValue { .. })
        ));
        assert!(matches!(
            Fault::parse("delay_ms=soon"),
            Err(FaultError::BadValue { .. })
        ));
    }
}
