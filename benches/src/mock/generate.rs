//! What the mock "generates": the plan of tokens for one request, and TGI's validation rules.

use super::tokens::{self, EOS_ID, EOS_TEXT, Tok};

/// Why a generation ended, in TGI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// `max_new_tokens` reached.
    Length,
    /// The model produced its end-of-sequence token.
    EosToken,
    /// A stop sequence appeared in the output.
    StopSequence,
}

impl Finish {
    /// TGI's `FinishReason` string (`/generate`, `/generate_stream`).
    pub fn tgi(self) -> &'static str {
        match self {
            Finish::Length => "length",
            Finish::EosToken => "eos_token",
            Finish::StopSequence => "stop_sequence",
        }
    }

    /// The OpenAI `finish_reason` TGI reports on its OpenAI routes.
    pub fn openai(self) -> &'static str {
        match self {
            Finish::Length => "length",
            Finish::EosToken | Finish::StopSequence => "stop",
        }
    }
}

/// A token as TGI reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GenToken {
    /// Token id.
    pub id: u32,
    /// Token text.
    pub text: String,
    /// Log-probability (the mock reports a fixed plausible value).
    pub logprob: f32,
    /// Whether the token is special (only the EOS token here).
    pub special: bool,
}

/// The full answer to one request, decided before the first byte is sent.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Generated tokens, in order; an EOS token is last when `finish` is `EosToken`.
    pub tokens: Vec<GenToken>,
    /// Why the generation ends.
    pub finish: Finish,
    /// Number of prompt tokens.
    pub input_length: usize,
    /// The generated text (special tokens excluded), as TGI's `generated_text`.
    pub text: String,
}

impl Plan {
    /// `details.generated_tokens`.
    pub fn generated_tokens(&self) -> usize {
        self.tokens.len()
    }
}

/// Limits the mock enforces like TGI's router does.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_input_tokens` of `/info`.
    pub max_input_tokens: usize,
    /// `max_total_tokens` of `/info`.
    pub max_total_tokens: usize,
    /// `max_stop_sequences` of `/info`.
    pub max_stop_sequences: usize,
}

/// A request TGI's validation would refuse (answered with 422, `error_type: validation`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// Empty prompt.
    #[error("Input validation error: `inputs` cannot be empty")]
    EmptyInput,
    /// `max_new_tokens: 0`.
    #[error("Input validation error: `max_new_tokens` must be strictly positive")]
    NegativeMaxNewTokens,
    /// Prompt too long.
    #[error("Input validation error: `inputs` must have less than {max} tokens. Given: {given}")]
    InputLength {
        /// The limit.
        max: usize,
        /// The prompt's length.
        given: usize,
    },
    /// Prompt plus generation too long.
    #[error(
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= {max}. Given: {input} `inputs` tokens and {new} `max_new_tokens`"
    )]
    MaxTotalTokens {
        /// The limit.
        max: usize,
        /// Prompt tokens.
        input: usize,
        /// Requested new tokens.
        new: usize,
    },
    /// Too many stop sequences.
    #[error("Input validation error: `stop` supports up to {max} stop sequences. Given: {given}")]
    StopSequence {
        /// The limit.
        max: usize,
        /// Number given.
        given: usize,
    },
}

/// Plan the generation: `answer` is what the "model" would say given unlimited tokens (the
/// prompt in echo mode, the scripted reply in script mode); `prompt` is what TGI counts as
/// input.
pub fn plan(
    prompt: &str,
    answer: &str,
    max_new_tokens: Option<u32>,
    stop: &[String],
    limits: Limits,
) -> Result<Plan, Invalid> {
    if prompt.is_empty() {
        return Err(Invalid::EmptyInput);
    }
    if stop.len() > limits.max_stop_sequences {
        return Err(Invalid::StopSequence {
            max: limits.max_stop_sequences,
            given: stop.len(),
        });
    }
    let input_length = tokens::count(prompt);
    if input_length > limits.max_input_tokens {
        return Err(Invalid::InputLength {
            max: limits.max_input_tokens,
            given: input_length,
        });
    }
    let max_new = match max_new_tokens {
        Some(0) => return Err(Invalid::NegativeMaxNewTokens),
        Some(n) => n as usize,
        // TGI 3 fills an absent max_new_tokens with what is left of the total budget.
        None => limits.max_total_tokens.saturating_sub(input_length).max(1),
    };
    if input_length + max_new > limits.max_total_tokens {
        return Err(Invalid::MaxTotalTokens {
            max: limits.max_total_tokens,
            input: input_length,
            new: max_new,
        });
    }

    let mut out = Vec::new();
    let mut text = String::new();
    let mut finish = Finish::EosToken;
    for Tok { id, text: t, .. } in tokens::tokenize(answer) {
        if out.len() == max_new {
            finish = Finish::Length;
            break;
        }
        text.push_str(&t);
        out.push(GenToken {
            id,
            text: t,
            logprob: -0.25,
            special: false,
        });
        if stop
            .iter()
            .any(|s| !s.is_empty() && text.ends_with(s.as_str()))
        {
            finish = Finish::StopSequence;
            break;
        }
    }
    if finish == Finish::EosToken {
        if out.len() == max_new {
            finish = Finish::Length;
        } else {
            out.push(GenToken {
                id: EOS_ID,
                text: EOS_TEXT.to_string(),
                logprob: -0.01,
                special: true,
            });
        }
    }
    Ok(Plan {
        tokens: out,
        finish,
        input_length,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_input_tokens: 100,
        max_total_tokens: 200,
        max_stop_sequences: 4,
    };

    #[test]
    fn echo_ends_with_eos() {
        let p = plan("Hello world", "Hello world", Some(10), &[], L).unwrap();
        assert_eq!(p.finish, Finish::EosToken);
        assert_eq!(p.text, "Hello world");
        assert_eq!(p.generated_tokens(), 3);
        assert!(p.tokens.last().unwrap().special);
    }

    #[test]
    fn max_new_tokens_cuts_with_length() {
        let p = plan("a b c d", "a b c d", Some(2), &[], L).unwrap();
        assert_eq!(p.finish, Finish::Length);
        assert_eq!(p.text, "a b");
        assert_eq!(p.generated_tokens(), 2);
        // exactly enough tokens for the answer, none left for EOS: still `length`
        let p = plan("a b", "a b", Some(2), &[], L).unwrap();
        assert_eq!(p.finish, Finish::Length);
    }

    #[test]
    fn stop_sequences_end_the_generation() {
        let p = plan("x", "one two three", None, &[" two".into()], L).unwrap();
        assert_eq!(p.finish, Finish::StopSequence);
        assert_eq!(p.text, "one two");
    }

    #[test]
    fn validation_matches_tgi() {
        assert_eq!(plan("", "", None, &[], L).unwrap_err(), Invalid::EmptyInput);
        assert_eq!(
            plan("a", "a", Some(0), &[], L).unwrap_err(),
            Invalid::NegativeMaxNewTokens
        );
        assert!(matches!(
            plan("a", "a", Some(200), &[], L).unwrap_err(),
            Invalid::MaxTotalTokens {
                input: 1,
                new: 200,
                ..
            }
        ));
        let long = "w ".repeat(150);
        assert!(matches!(
            plan(&long, "a", None, &[], L).unwrap_err(),
            Invalid::InputLength { .. }
        ));
        let stops: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        assert!(matches!(
            plan("a", "a", None, &stops, L).unwrap_err(),
            Invalid::StopSequence { given: 5, .. }
        ));
    }
}
