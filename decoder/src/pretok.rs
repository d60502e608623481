//! The pre-tokenizer a GGUF file's `tokenizer.ggml.pre` names, as the model's own
//! `tokenizer.json` defines it. A name Sousuo does not know is an error: falling back to
//! GPT-2's regex would give other token ids than the model was trained on, silently.

use crate::{Error, Result};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{NormalizerWrapper, SplitDelimiterBehavior};

/// Llama 3's split (`tokenizer.json`): numbers in runs of up to three digits.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2 and 3's split: the same, but every digit on its own.
const QWEN2: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The names this build knows, for the error.
pub const KNOWN: &[&str] = &["default", "gpt2", "smollm", "starcoder", "refact", "llama-bpe", "llama3", "qwen2"];

/// The pre-tokenizer (and normaliser, for Qwen: NFC) for `name` (`""` when the file names none:
/// GPT-2's).
pub fn for_name(name: &str) -> Result<(PreTokenizerWrapper, Option<NormalizerWrapper>)> {
    let gpt2 = ByteLevel::new(false, true, true);
    let regex_then_bytes = |pattern: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(SplitPattern::Regex(pattern.into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| Error::Model(format!("the {name} pre-tokenizer's regex: {e}")))?;
        Ok(Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into())
    };
    Ok(match name {
        "" | "default" | "gpt2" => (gpt2.into(), None),
        // SmolLM splits every digit on its own before the GPT-2 regex.
        "smollm" | "starcoder" | "refact" => (Sequence::new(vec![Digits::new(true).into(), gpt2.into()]).into(), None),
        "llama-bpe" | "llama3" => (regex_then_bytes(LLAMA3)?, None),
        "qwen2" => (regex_then_bytes(QWEN2)?, Some(NFC.into())),
        other => {
            return Err(Error::Unsupported(format!(
                "the GGUF file's pre-tokenizer {other:?} (tokenizer.ggml.pre); this build reads {}",
                KNOWN.join(", ")
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    fn pieces(name: &str, text: &str) -> Vec<String> {
        let (pre, _) = for_name(name).unwrap();
        let mut s = PreTokenizedString::from(text);
        pre.pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Byte).into_iter().map(|(p, _, _)| p.to_string()).collect()
    }

    #[test]
    fn digits_split_as_each_family_does() {
        // Byte-level: a leading space shows as Ġ.
        assert_eq!(pieces("llama-bpe", "in 12345"), vec!["in", "Ġ", "123", "45"]);
        assert_eq!(pieces("qwen2", "in 123"), vec!["in", "Ġ", "1", "2", "3"]);
        assert_eq!(pieces("smollm", "in 123"), vec!["in", "Ġ", "1", "2", "3"]);
        assert_eq!(pieces("gpt2", "in 123"), vec!["in", "Ġ123"]);
        assert_eq!(pieces("llama3", "It's"), vec!["It", "'s"]);
    }

    #[test]
    fn unknown_pre_tokenizers_are_refused_by_name() {
        let err = for_name("deepseek-llm").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("deepseek-llm") && err.contains("qwen2"), "{err}");
    }
}
