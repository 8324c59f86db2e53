//! A deterministic toy tokenizer for the mock backend.
//!
//! Real TGI tokenizes with the model's tokenizer; the mock only needs something stable that
//! splits text into plausible pieces with byte offsets: a token is an optional run of whitespace
//! followed by either a run of alphanumerics or a single other character. Concatenating the
//! tokens gives back the text exactly, so echo mode streams the prompt unchanged.

/// One token of a text: its id, its text and its byte span in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tok {
    /// Stable id derived from the token text (never 0, 1 or 2, which are special).
    pub id: u32,
    /// The token's text, leading whitespace included.
    pub text: String,
    /// Byte offset of the token's first byte.
    pub start: usize,
    /// Byte offset one past the token's last byte.
    pub stop: usize,
}

/// Id of the end-of-sequence token the mock emits when a generation ends naturally.
pub const EOS_ID: u32 = 2;
/// Text of the end-of-sequence token.
pub const EOS_TEXT: &str = "</s>";
const VOCAB: u32 = 32_000;

/// Split `text` into tokens. `tokenize(t).iter().map(|t| t.text).collect() == t` always.
pub fn tokenize(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.char_indices().peekable();
    let mut chars = bytes;
    while let Some(&(i, _)) = chars.peek() {
        debug_assert_eq!(i, start);
        // leading whitespace
        let mut end = i;
        while let Some(&(j, c)) = chars.peek() {
            if c.is_whitespace() {
                end = j + c.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        // body: a run of alphanumerics, or one other character
        match chars.peek().copied() {
            Some((j, c)) if c.is_alphanumeric() => {
                end = j + c.len_utf8();
                chars.next();
                while let Some(&(k, c)) = chars.peek() {
                    if c.is_alphanumeric() {
                        end = k + c.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            Some((j, c)) => {
                end = j + c.len_utf8();
                chars.next();
            }
            None => {}
        }
        let piece = &text[start..end];
        out.push(Tok {
            id: token_id(piece),
            text: piece.to_string(),
            start,
            stop: end,
        });
        start = end;
    }
    out
}

/// Number of tokens in `text`.
pub fn count(text: &str) -> usize {
    tokenize(text).len()
}

fn token_id(piece: &str) -> u32 {
    // FNV-1a: stable across runs and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in piece.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    3 + h % (VOCAB - 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_words_punctuation_and_spaces() {
        let toks: Vec<_> = tokenize("Hello, world!  Bye")
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(toks, vec!["Hello", ",", " world", "!", "  Bye"]);
    }

    #[test]
    fn offsets_are_byte_offsets() {
        let toks = tokenize("héllo wörld");
        assert_eq!(toks[0].stop, "héllo".len());
        assert_eq!(toks[1].start, "héllo".len());
        assert_eq!(toks[1].stop, "héllo wörld".len());
    }

    #[test]
    fn trailing_whitespace_is_its_own_token() {
        let toks = tokenize("a \n");
        assert_eq!(toks.len(), 2);
        assert_eq!(toks[1].text, " \n");
    }

    #[test]
    fn ids_are_stable_and_not_special() {
        let a = tokenize("same same");
        assert_eq!(a[0].id, tokenize("same")[0].id);
        assert!(a.iter().all(|t| t.id > EOS_ID));
    }

    proptest! {
        #[test]
        fn tokens_reassemble_the_text(s in "\\PC{0,200}") {
            let toks = tokenize(&s);
            let joined: String = toks.iter().map(|t| t.text.as_str()).collect();
            prop_assert_eq!(&joined, &s);
            let mut pos = 0;
            for t in &toks {
                prop_assert_eq!(t.start, pos);
                prop_assert!(t.stop > t.start);
                prop_assert_eq!(&s[t.start..t.stop], t.text.as_str());
                pos = t.stop;
            }
        }
    }
}
