//! Word-level agreement of two texts, for the parsers' fixtures (HTML against the browser, PDF
//! against its source text): multisets of words, CJK characters counted one by one, and F1.
//! Each test binary uses part of it.

#![allow(dead_code)]

use std::collections::HashMap;

fn cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xff00..=0xffef)
}

/// The words of a text in order: whitespace-separated, CJK characters one by one.
pub fn sequence(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in text.split_whitespace() {
        let mut run = String::new();
        for ch in w.chars() {
            if cjk(ch) {
                if !run.is_empty() {
                    out.push(std::mem::take(&mut run));
                }
                out.push(ch.to_string());
            } else {
                run.push(ch);
            }
        }
        if !run.is_empty() {
            out.push(run);
        }
    }
    out
}

/// The multiset of a text's words.
pub fn words(text: &str) -> HashMap<String, usize> {
    count(sequence(text))
}

/// The multiset of a text's adjacent word pairs: agreement on them measures reading order.
pub fn bigrams(text: &str) -> HashMap<String, usize> {
    let seq = sequence(text);
    count(seq.windows(2).map(|w| format!("{} {}", w[0], w[1])))
}

fn count(items: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for item in items {
        *out.entry(item).or_default() += 1;
    }
    out
}

/// F1 of two multisets.
pub fn agreement(a: &HashMap<String, usize>, b: &HashMap<String, usize>) -> f64 {
    let common: usize = a.iter().map(|(w, n)| (*n).min(b.get(w).copied().unwrap_or(0))).sum();
    let (na, nb): (usize, usize) = (a.values().sum(), b.values().sum());
    if common == 0 {
        return 0.0;
    }
    let (p, r) = (common as f64 / na as f64, common as f64 / nb as f64);
    2.0 * p * r / (p + r)
}
