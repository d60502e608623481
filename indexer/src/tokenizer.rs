//! The BM25 analyzer: English words with stemming, Chinese by words (jieba), in one pass.
//!
//! tantivy's default tokenizer makes a whole CJK run one token, and its long-token filter then
//! drops runs over 13 characters silently, so Chinese text would be unsearchable. This
//! tokenizer splits alphanumeric runs like tantivy's `SimpleTokenizer`, and cuts runs of Han
//! characters into words with jieba's search mode (which also emits the shorter words inside
//! long ones). The filters after it (lower-casing, English stemming, long-token removal) are
//! tantivy's own.

use jieba_rs::Jieba;
use std::sync::{Arc, OnceLock};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The name the analyzer is registered under in every collection's index.
pub const ANALYZER: &str = "sousuo";

/// The analyzer for title and body text.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(MixedTokenizer::new())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(Stemmer::new(Language::English))
        .build()
}

fn jieba() -> Arc<Jieba> {
    // Loading the dictionary takes ~100 ms: once per process.
    static JIEBA: OnceLock<Arc<Jieba>> = OnceLock::new();
    JIEBA.get_or_init(|| Arc::new(Jieba::new())).clone()
}

/// Splits text into alphanumeric words and jieba-segmented Chinese words.
#[derive(Clone)]
pub struct MixedTokenizer {
    jieba: Arc<Jieba>,
}

impl MixedTokenizer {
    /// A tokenizer with jieba's default dictionary.
    pub fn new() -> Self {
        MixedTokenizer { jieba: jieba() }
    }
}

impl Default for MixedTokenizer {
    fn default() -> Self {
        Self::new()
    }
}

fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2A6DF | 0x2A700..=0x2EBEF | 0x30000..=0x3134F)
}

/// Byte spans of the words of `text`.
fn split(jieba: &Jieba, text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if is_han(c) {
            let mut end = start + c.len_utf8();
            while let Some(&(i, c2)) = chars.peek() {
                if !is_han(c2) {
                    break;
                }
                end = i + c2.len_utf8();
                chars.next();
            }
            han_words(jieba, text, start, end, &mut spans);
        } else if c.is_alphanumeric() {
            let mut end = start + c.len_utf8();
            while let Some(&(i, c2)) = chars.peek() {
                if !c2.is_alphanumeric() || is_han(c2) {
                    break;
                }
                end = i + c2.len_utf8();
                chars.next();
            }
            spans.push((start, end));
        }
    }
    spans
}

fn han_words(jieba: &Jieba, text: &str, start: usize, end: usize, spans: &mut Vec<(usize, usize)>) {
    let run = &text[start..end];
    // jieba's offsets are in characters: map them back to bytes.
    let byte_at: Vec<usize> = run.char_indices().map(|(i, _)| i).chain(std::iter::once(run.len())).collect();
    for t in jieba.cut_for_search(run, true) {
        if let (Some(&a), Some(&b)) = (byte_at.get(t.start), byte_at.get(t.end)) {
            if b > a {
                spans.push((start + a, start + b));
            }
        }
    }
}

/// The tokens of one text: jieba's words for CJK runs, lowercased words for the rest.
pub struct MixedTokenStream<'a> {
    text: &'a str,
    spans: Vec<(usize, usize)>,
    next: usize,
    token: Token,
}

impl Tokenizer for MixedTokenizer {
    type TokenStream<'a> = MixedTokenStream<'a>;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> MixedTokenStream<'a> {
        MixedTokenStream { text, spans: split(&self.jieba, text), next: 0, token: Token::default() }
    }
}

impl TokenStream for MixedTokenStream<'_> {
    fn advance(&mut self) -> bool {
        let Some(&(a, b)) = self.spans.get(self.next) else { return false };
        self.token.text.clear();
        self.token.text.push_str(&self.text[a..b]);
        self.token.offset_from = a;
        self.token.offset_to = b;
        self.token.position = self.next;
        self.token.position_length = 1;
        self.next += 1;
        true
    }
    fn token(&self) -> &Token {
        &self.token
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        let mut a = analyzer();
        let mut s = a.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
    }

    #[test]
    fn english_is_lowercased_and_stemmed() {
        assert_eq!(terms("Running, DOGS! C++ v2"), vec!["run", "dog", "c", "v2"]);
    }

    #[test]
    fn chinese_is_cut_into_words() {
        let t = terms("搜索引擎使用倒排索引和向量检索");
        for w in ["搜索", "引擎", "索引", "向量", "检索"] {
            assert!(t.iter().any(|x| x == w), "{w} missing from {t:?}");
        }
    }

    #[test]
    fn mixed_text_keeps_both() {
        let t = terms("BM25 是一种排序函数");
        assert!(t.contains(&"bm25".to_string()));
        assert!(t.contains(&"排序".to_string()), "{t:?}");
    }
}
