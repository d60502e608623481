//! Content terms of a text (the lexical side of the support check, and the rewrite's topic
//! check): lower-cased words outside a stop list, crudely stemmed, and CJK bigrams.

pub(crate) const STOPWORDS: &[&str] = &[
    "what", "which", "when", "where", "does", "have", "with", "that", "this", "from", "they", "their", "there",
    "about", "into", "than", "then", "them", "these", "those", "would", "could", "should", "how", "why", "who", "whom",
    "your", "more", "most", "also", "such", "some", "much", "many", "very", "just", "like", "only", "over", "other",
    "each", "were", "been", "being", "will", "shall", "what's", "it's", "sources", "say",
];

/// A word lower-cased, without the punctuation around it.
pub(crate) fn bare(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()
}

/// Content terms of a text for the lexical check: lower-cased words of three or more
/// characters outside a stop list, cut to five characters (a crude stem), and character
/// bigrams of CJK runs.
pub(crate) fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for run in text.split(|c: char| !c.is_alphanumeric() && c != '_') {
        // Split mixed runs ("HNSW可以") into their ASCII and CJK parts.
        let mut parts: Vec<(bool, String)> = Vec::new();
        for c in run.chars() {
            match parts.last_mut() {
                Some((ascii, s)) if *ascii == c.is_ascii() => s.push(c),
                _ => parts.push((c.is_ascii(), c.to_string())),
            }
        }
        for (ascii, w) in parts {
            if !ascii {
                let cjk: Vec<char> = w.chars().collect();
                if cjk.len() == 1 {
                    out.push(w);
                }
                out.extend(cjk.windows(2).map(|p| p.iter().collect::<String>()));
                continue;
            }
            let lw = w.to_lowercase();
            if lw.len() >= 3 && !STOPWORDS.contains(&lw.as_str()) && !LEX_STOPWORDS.contains(&lw.as_str()) {
                out.push(lw.chars().take(5).collect());
            } else if lw.chars().any(|c| c.is_ascii_digit()) {
                out.push(lw);
            }
        }
    }
    out
}

const LEX_STOPWORDS: &[&str] = &["the", "and", "for", "are", "was", "its", "has", "not", "can", "but", "all", "any"];

/// Share of the sentence's content terms that occur in the passage.
pub fn lexical_overlap(sentence: &str, passage: &str) -> f32 {
    let s = terms(sentence);
    if s.is_empty() {
        return 0.0;
    }
    let p: std::collections::HashSet<String> = terms(passage).into_iter().collect();
    // At least four terms in the denominator: "The answer is" (one term, found everywhere)
    // must not count as fully supported.
    s.iter().filter(|t| p.contains(*t)).count() as f32 / s.len().max(4) as f32
}
