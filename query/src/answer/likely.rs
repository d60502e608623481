//! Whether a passage answers the question, not only shares its topic: how much more likely the
//! decoder finds the question's words after reading the passage than without it (pointwise
//! mutual information per token, the question-likelihood relevance of Sachan et al.'s
//! unsupervised passage reranking). A passage that holds the answer predicts the question's
//! wording; a neighbouring article's passage on a similar subject ("Harvard's library" for a
//! question on Chicago's) does not, however close its embedding comes.
//!
//! Weighed with retrieval evidence in [`grounded`]: the weaker the embedding match, the more
//! the passage must raise the question's likelihood. Calibrated on SQuAD 2.0's answerable and
//! off-corpus questions (docs/answers.md, "Does the passage answer it").

use super::prompt::defuse;
use crate::Result;
use sousuo_decoder::{Decoder, GenerateOptions, Message};

const SYSTEM: &str = "Write the question that the text answers.";
/// Stands for the text when the question's own likelihood is measured.
const NO_TEXT: &str = "(none)";
/// Evidence at which the gain needs to reach `AnswerParams::gain_floor` exactly.
const PIVOT: f32 = 0.6;
/// Gain (nats per token) that each unit of evidence above [`PIVOT`] stands in for.
const SLOPE: f32 = 4.0;

/// For each of `passages`, the question's log-likelihood per token after it, less its
/// log-likelihood per token after no text (measured once).
pub(crate) fn gains(d: &Decoder, question: &str, passages: &[&str], wait: bool) -> Result<Vec<f32>> {
    let l = Likelihood::new(d, question, wait)?;
    passages.iter().map(|x| l.gain(x)).collect()
}

/// The decoder's likelihood of one question after a text, against its likelihood after no
/// text (measured once, when made).
pub(crate) struct Likelihood<'a> {
    d: &'a Decoder,
    options: GenerateOptions,
    tokens: f32,
    without: f32,
    wait: bool,
}

impl<'a> Likelihood<'a> {
    pub(crate) fn new(d: &'a Decoder, question: &str, wait: bool) -> Result<Self> {
        let tok = d.tokenizer();
        let mut ids = tok.encode_plain(&defuse(question))?;
        ids.extend(tok.stop_ids.first().copied());
        let tokens = ids.len().max(1) as f32;
        let options = GenerateOptions { max_tokens: 0, score: vec![ids], ..GenerateOptions::default() };
        let mut l = Likelihood { d, options, tokens, without: 0.0, wait };
        l.without = l.log_likelihood(NO_TEXT)?;
        Ok(l)
    }

    /// The question's log-likelihood per token after `text`, less its log-likelihood per token
    /// after no text.
    pub(crate) fn gain(&self, text: &str) -> Result<f32> {
        Ok((self.log_likelihood(&defuse(text))? - self.without) / self.tokens)
    }

    fn log_likelihood(&self, text: &str) -> Result<f32> {
        let d = self.d;
        let prompt = d.chat_prompt(&[Message::system(SYSTEM), Message::user(format!("Text: {text}"))])?;
        let stream = if self.wait { d.start(prompt, &self.options)? } else { d.try_start(prompt, &self.options)? };
        let g = stream.finish(|_| true)?;
        Ok(g.scores.first().copied().unwrap_or(f32::NEG_INFINITY))
    }
}

/// Whether the passage's gain, weighed with the retrieval evidence, says it answers the question.
pub(crate) fn grounded(gain: f32, evidence: f32, floor: f32) -> bool {
    gain + SLOPE * (evidence - PIVOT) >= floor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weaker_evidence_needs_more_gain() {
        assert!(grounded(0.3, 0.6, 0.2));
        assert!(!grounded(0.3, 0.5, 0.2));
        assert!(grounded(-0.1, 0.7, 0.2));
        assert!(!grounded(f32::NEG_INFINITY, 0.9, 0.2));
    }
}
