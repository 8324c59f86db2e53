//! E-mail addresses.

use super::B;
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// E-mail detector.
pub struct Email;

/// Image file extensions: `icon@2x.png` is a file name, not an address.
const FILE_TLDS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "avif",
];

impl Detector for Email {
    fn name(&self) -> &'static str {
        "email"
    }
    fn types(&self) -> &'static [&'static str] {
        &["email"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        vec![Pattern::regex(
            ViewKind::Raw,
            format!(
                r"{B}[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+'-]{{0,62}}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+[A-Za-z]{{2,24}}{B}"
            ),
            0,
            "email",
        )]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let m = hit.as_str();
        let Some((local, domain)) = m.rsplit_once('@') else {
            return;
        };
        if local.contains("..") || domain.contains("..") {
            return;
        }
        // `scheme://user:password@host` is a URL's authority, not an address; in a URL's path
        // or query (`https://x/send?to=jane@example.com`) it is one
        let before = &hit.raw[..hit.start];
        let segment = before.rsplit(char::is_whitespace).next().unwrap_or(before);
        if let Some((_, authority)) = segment.rsplit_once("://")
            && !authority.contains(['/', '?', '#'])
        {
            return;
        }
        let tld = domain.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
        if FILE_TLDS.contains(&tld.as_str()) {
            return;
        }
        out.push(hit.whole("email", 1.0, "pii.email"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;
    use proptest::prelude::*;

    fn f(t: &str) -> Vec<&str> {
        found(Box::new(Email), "email", t)
    }

    #[test]
    fn positives() {
        assert_eq!(
            f("mail jane.doe+tag@mail.example.co.uk now"),
            ["jane.doe+tag@mail.example.co.uk"]
        );
        assert_eq!(f("<o'brien@example.ie>"), ["o'brien@example.ie"]);
        assert_eq!(f("Grüße an k.mueller@web.de."), ["k.mueller@web.de"]);
        // in a URL's path or query, not its authority
        assert_eq!(
            f("![](https://x.io/log?to=jane@example.com)"),
            ["jane@example.com"]
        );
        assert_eq!(f("https://x.io/u/jane@example.com"), ["jane@example.com"]);
    }

    #[test]
    fn negatives() {
        assert!(f("logo icon@2x.png and @mention and user@localhost").is_empty());
        assert!(f("postgres://app:S3cr3t!pw@db.example.com:5432/app").is_empty());
        assert!(f("a..b@example.com").is_empty() || f("a..b@example.com") == ["b@example.com"]);
    }

    proptest! {
        #[test]
        fn generated_addresses_are_found(local in "[a-z][a-z0-9._]{0,20}[a-z0-9]", dom in "[a-z]{2,12}", tld in "(com|org|de|io|fr)") {
            prop_assume!(!local.contains(".."));
            let e = format!("{local}@{dom}.{tld}");
            let t = format!("write to {e}, thanks");
            prop_assert_eq!(f(&t), vec![e.as_str()]);
        }
    }
}
