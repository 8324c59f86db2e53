//! IPv4 and IPv6 addresses (parsed by the standard library), not version strings.

use std::net::Ipv6Addr;

use super::B;
use crate::engine::util::{Keywords, before, char_at, char_before};
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// IP address detector.
pub struct Ip;

static VERSION_WORDS: Keywords = Keywords::new(&[
    "version", "ver.", "build", "release", "v.", "firmware", "chrome/", "version:",
]);

impl Detector for Ip {
    fn name(&self) -> &'static str {
        "ip_address"
    }
    fn types(&self) -> &'static [&'static str] {
        &["ip_address"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        vec![
            Pattern::regex(
                ViewKind::Raw,
                format!(r"{B}(?:[0-9]{{1,3}}\.){{3}}[0-9]{{1,3}}{B}"),
                4,
                "ip_address",
            ),
            Pattern::regex(
                ViewKind::Raw,
                r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[0-9A-Za-z]+)?".to_string(),
                6,
                "ip_address",
            ),
        ]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let m = hit.as_str();
        let raw = hit.raw;
        if hit.tag == 4 {
            if !m.split('.').all(|p| {
                p.parse::<u16>().is_ok_and(|v| v <= 255) && (p.len() == 1 || !p.starts_with('0'))
            }) {
                return;
            }
            // part of a longer dotted run, or a version string
            let prev = char_before(raw, hit.start);
            if matches!(prev, Some('.') | Some('v') | Some('V'))
                || raw[hit.end..].starts_with('.')
                    && char_at(raw, hit.end + 1).is_some_and(|c| c.is_ascii_digit())
                || VERSION_WORDS.in_text(before(raw, hit.start, 12))
            {
                return;
            }
            out.push(hit.whole("ip_address", 1.0, "pii.ip.v4"));
            return;
        }
        // IPv6: must be glued to nothing alphanumeric, parse, and not look like a time or MAC
        if char_before(raw, hit.start).is_some_and(|c| c.is_ascii_alphanumeric() || c == ':')
            || char_at(raw, hit.end).is_some_and(|c| c.is_ascii_alphanumeric())
        {
            return;
        }
        let addr = m.split('%').next().unwrap_or(m);
        if addr.parse::<Ipv6Addr>().is_err() {
            return;
        }
        let groups = addr.split(':').filter(|g| !g.is_empty()).count();
        let first_full = addr.split(':').next().is_some_and(|g| g.len() == 4);
        if !(groups >= 3 || addr == "::1" || groups == 2 && addr.contains("::") && first_full) {
            return;
        }
        out.push(hit.whole("ip_address", 1.0, "pii.ip.v6"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;
    use proptest::prelude::*;

    fn f(t: &str) -> Vec<&str> {
        found(Box::new(Ip), "ip_address", t)
    }

    #[test]
    fn positives() {
        for a in [
            "192.168.1.20",
            "8.8.8.8",
            "2001:db8::1",
            "fe80::1ff:fe23:4567:890a",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "::1",
        ] {
            assert_eq!(f(&format!("host {a}, ok")), [a], "{a}");
        }
    }

    #[test]
    fn negatives() {
        for t in [
            "version 10.0.19045.3693",
            "v1.2.3.4",
            "1.2.3.4.5",
            "999.1.1.1",
            "at 10:22:31",
            "mac 00:1a:2b:3c:4d:5e",
            "std::vector",
            "a::b",
            "build 4.2.0.1",
        ] {
            assert!(f(t).is_empty(), "{t}: {:?}", f(t));
        }
    }

    proptest! {
        #[test]
        fn every_v4_is_found(a in 0u8..=255, b in 0u8..=255, c in 0u8..=255, d in 0u8..=255) {
            let ip = format!("{a}.{b}.{c}.{d}");
            let t = format!("from {ip} at noon");
            prop_assert_eq!(f(&t), vec![ip.as_str()]);
        }

        #[test]
        fn every_v6_is_found(segs in proptest::array::uniform8(1u16..)) {
            let ip = Ipv6Addr::from(segs).to_string();
            let t = format!("from {ip} at noon");
            prop_assert_eq!(f(&t), vec![ip.as_str()]);
        }
    }
}
