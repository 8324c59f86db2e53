//! HTML/JS injection in answers: script-capable tags, inline event handlers and `javascript:`
//! URLs, which a client rendering the answer as HTML would execute.

use super::B;
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// HTML injection detector.
pub struct Html;

impl Detector for Html {
    fn name(&self) -> &'static str {
        "html"
    }
    fn types(&self) -> &'static [&'static str] {
        &["html_injection"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        vec![
            Pattern::regex(
                ViewKind::Raw,
                format!(
                    r"(?i)<\s*/?\s*(?:script|iframe|object|embed|applet|base|meta|form|svg|math|frameset|frame|link|style){B}[^>]{{0,1024}}>?"
                ),
                0,
                "html_injection",
            ),
            Pattern::regex(
                ViewKind::Raw,
                format!(
                    r#"(?i)<[a-z][a-z0-9]*{B}[^>]{{0,1024}}?{B}on[a-z]{{3,24}}\s*=[^>]{{0,1024}}>?"#
                ),
                1,
                "html_injection",
            ),
            Pattern::regex(
                ViewKind::Raw,
                r"(?i)(?:javascript|vbscript|data\s*:\s*text/html)\s*:[^\s)>]{0,1024}".to_string(),
                2,
                "html_injection",
            )
            // a stream holds `java`, `d` only at the start of a word (not the last letter of
            // every `word`); inside a word (`xjavascript:`) the scheme may go out before the
            // rest is redacted, the payload after `:` never does
            .hold_from(format!(
                r"(?i){B}(?:javascript|vbscript|data\s*:\s*text/html)\s*:[^\s)>]{{0,1024}}"
            )),
        ]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let rule = match hit.tag {
            0 => "output.html.tag",
            1 => "output.html.event_handler",
            _ => "output.html.script_url",
        };
        out.push(hit.whole("html_injection", 0.9, rule));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;

    fn f(t: &str) -> Vec<&str> {
        found(Box::new(Html), "html_injection", t)
    }

    #[test]
    fn catches_scripts_handlers_and_urls() {
        assert_eq!(f("hi <script>alert(1)</script>"), ["<script>", "</script>"]);
        assert_eq!(
            f(r#"<img src=x onerror="fetch('//e')">"#),
            [r#"<img src=x onerror="fetch('//e')">"#]
        );
        assert_eq!(f("[a](javascript:alert(1))"), ["javascript:alert(1"]);
    }

    #[test]
    fn plain_markup_passes() {
        assert!(f("<b>bold</b> and <p>text</p>, a < b > c, once upon a time").is_empty());
    }
}
