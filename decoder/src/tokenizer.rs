//! The decoder's tokenizer, built from the GGUF metadata: byte-level BPE from
//! `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, control tokens (token type 3) as
//! special tokens, and the pre-tokenizer that `tokenizer.ggml.pre` names (`pretok`; an unknown
//! one is an error).
//!
//! candle's own GGUF tokenizer maps `smollm` to plain GPT-2 and gives different ids (it misses
//! SmolLM's one-digit split); this build follows the model's `tokenizer.json`.

use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF token type of control tokens (`<|im_start|>` and friends).
const CONTROL: i32 = 3;

/// A decoder tokenizer and the ids the generation loop needs.
#[derive(Clone)]
pub struct DecoderTokenizer {
    pub(crate) inner: Tokenizer,
    /// Tokens that end a turn (`eos` and `<|endoftext|>`, `<|im_end|>` when present).
    pub stop_ids: Vec<u32>,
    /// The beginning-of-sequence token, when the model has one.
    pub bos_id: Option<u32>,
    /// Whether prompts start with `bos_id`.
    pub add_bos: bool,
    /// The spellings of the control tokens (`<|im_start|>`, `<file_sep>`, ...): any of them in
    /// untrusted text would become the token itself.
    specials: Vec<String>,
}

fn md<'a>(ct: &'a Content, key: &str) -> Result<&'a Value> {
    ct.metadata.get(key).ok_or_else(|| Error::Model(format!("the GGUF file has no {key} metadata")))
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>> {
    let bad = |e: candle_core::Error| Error::Model(format!("GGUF {key}: {e}"));
    v.to_vec().map_err(bad)?.iter().map(|s| s.to_string().cloned().map_err(bad)).collect()
}

fn opt_u32(ct: &Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

impl DecoderTokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(ct: &Content) -> Result<Self> {
        let model = md(ct, "tokenizer.ggml.model")?.to_string().map_err(|e| Error::Model(e.to_string()))?;
        if model != "gpt2" {
            return Err(Error::Unsupported(format!(
                "tokenizer model {model:?} (Sousuo reads byte-level BPE, gpt2, GGUF tokenizers)"
            )));
        }
        let pre = ct.metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok().cloned()).unwrap_or_default();
        let tokens = strings(md(ct, "tokenizer.ggml.tokens")?, "tokenizer.ggml.tokens")?;
        let merges = strings(md(ct, "tokenizer.ggml.merges")?, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => {
                v.to_vec().map_err(|e| Error::Model(e.to_string()))?.iter().map(|t| t.to_i32().unwrap_or(1)).collect()
            }
            None => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::Model(format!("bad merge {m:?} in the GGUF tokenizer")))
            })
            .collect::<Result<_>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| Error::Model(format!("cannot build the BPE model: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        let (pre_tokenizer, normalizer) = crate::pretok::for_name(&pre)?;
        if let Some(n) = normalizer {
            inner.with_normalizer(Some(n)).map_err(|e| Error::Model(format!("cannot set the normaliser: {e}")))?;
        }
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let spellings: Vec<String> =
            tokens.iter().zip(&types).filter(|(_, &t)| t == CONTROL).map(|(tok, _)| tok.clone()).collect();
        let specials: Vec<AddedToken> = spellings.iter().map(|tok| AddedToken::from(tok.clone(), true)).collect();
        inner.add_special_tokens(specials).map_err(|e| Error::Model(format!("cannot add the special tokens: {e}")))?;
        let eos = opt_u32(ct, "tokenizer.ggml.eos_token_id");
        let mut stop_ids: Vec<u32> = eos.into_iter().collect();
        for name in ["<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>"] {
            if let Some(id) = inner.token_to_id(name) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        let add_bos = ct.metadata.get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
        let bos_id = opt_u32(ct, "tokenizer.ggml.bos_token_id");
        Ok(DecoderTokenizer { inner, stop_ids, bos_id, add_bos, specials: spellings })
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(format!("cannot tokenise: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of untrusted text: special-token spellings inside it are tokenised as plain
    /// text, so a document cannot open or close a chat turn.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        self.encode(&self.defuse(text))
    }

    /// `text` with every control token's spelling broken by a zero-width space after its first
    /// character (and every `<|`, as [`defuse_specials`] does), so that it stays text.
    pub fn defuse(&self, text: &str) -> String {
        let mut out = defuse_specials(text);
        for s in &self.specials {
            if out.contains(s.as_str()) {
                let mut chars = s.chars();
                let first = chars.next().map(String::from).unwrap_or_default();
                out = out.replace(s.as_str(), &format!("{first}\u{200b}{}", chars.as_str()));
            }
        }
        out
    }

    /// Counts the tokens of `text` (as plain text).
    pub fn count(&self, text: &str) -> Result<usize> {
        Ok(self.encode_plain(text)?.len())
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| Error::Tokenizer(format!("cannot decode: {e}")))
    }

    /// Tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token, when it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// Breaks special-token spellings (`<|...|>`) in untrusted text with a zero-width space, so the
/// tokenizer's added-token matcher cannot see them.
pub fn defuse_specials(text: &str) -> String {
    if text.contains("<|") {
        text.replace("<|", "<\u{200b}|")
    } else {
        text.to_string()
    }
}

/// Turns a stream of token ids into text pieces, emitting only complete UTF-8 (a multi-byte
/// character can span tokens). Each step decodes only the tokens since the last emitted piece,
/// so streaming stays linear in the answer's length.
pub struct TokenStream<'a> {
    tokenizer: &'a DecoderTokenizer,
    ids: Vec<u32>,
    /// Start of the window whose text was emitted last, and where the unemitted tokens begin.
    prev: usize,
    current: usize,
}

impl<'a> TokenStream<'a> {
    /// An empty stream over `tokenizer`.
    pub fn new(tokenizer: &'a DecoderTokenizer) -> Self {
        TokenStream { tokenizer, ids: Vec::new(), prev: 0, current: 0 }
    }

    /// Adds a token; returns the new text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        let before = self.tokenizer.decode(&self.ids[self.prev..self.current])?;
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids[self.prev..])?;
        if text.len() > before.len() && !text.ends_with('\u{fffd}') && text.is_char_boundary(before.len()) {
            let piece = text[before.len()..].to_string();
            self.prev = self.current;
            self.current = self.ids.len();
            return Ok(Some(piece));
        }
        Ok(None)
    }

    /// All the text so far.
    pub fn text(&self) -> Result<String> {
        self.tokenizer.decode(&self.ids)
    }
}
