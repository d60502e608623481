//! Follow-up questions rewritten into standalone queries: by the decoder, checked, else by
//! appending the last turn's salient terms.

use super::prompt::defuse;
use super::terms::{terms, STOPWORDS};
use super::{Turn, MAX_HISTORY};
use crate::Result;
use sousuo_decoder::{Decoder, GenerateOptions, Message, StopReason};

/// Rewrites a follow-up into a standalone query: by the decoder, or by appending the last
/// turn's salient terms when the rewrite is empty, too long, or no decoder runs.
pub fn rewrite(decoder: Option<&Decoder>, history: &[Turn], question: &str) -> Result<String> {
    let history = &history[history.len().saturating_sub(MAX_HISTORY)..];
    let Some(last) = history.last() else { return Ok(question.to_string()) };
    if let Some(d) = decoder {
        let mut convo = String::new();
        for t in history {
            // Clipped: one huge earlier turn must not overflow the decoder's context.
            convo.push_str(&format!("Q: {}\nA: {}\n", defuse(&clip(&t.question, 300)), defuse(&clip(&t.answer, 300))));
        }
        let msgs = [
            Message::system(
                "Rewrite the follow-up question as one standalone search query that names its subject. \
Reply with the query only.",
            ),
            Message::user(format!("{convo}Follow-up: {}", defuse(question))),
        ];
        let prompt = d.chat_prompt(&msgs)?;
        let g = d.generate(prompt, &GenerateOptions { max_tokens: 32, ..Default::default() }, |_| true)?;
        let q = g.text.lines().next().unwrap_or("").trim().trim_matches('"').trim().to_string();
        if usable(&q, question, last) && g.stop != StopReason::MaxTokens {
            return Ok(q);
        }
    }
    Ok(rule_rewrite(last, question))
}

/// A usable rewrite is short, is not an answer (no citations, no "A:" or other lead-in, not a
/// repeat of the previous answer), keeps at least one term of the conversation's questions,
/// and keeps the follow-up's own subject: one of its terms that the earlier question lacks
/// ("deletions" in "and how does it handle deletions?"), when it has one.
fn usable(q: &str, question: &str, last: &Turn) -> bool {
    let words = q.split_whitespace().count();
    if words == 0 || words > question.split_whitespace().count() * 3 + 12 {
        return false;
    }
    let lead_in = q.split_once(':').is_some_and(|(head, _)| head.split_whitespace().count() <= 2);
    if q.contains('[') || q.ends_with(':') || lead_in {
        return false;
    }
    let (own, before) = (terms(question), terms(&last.question));
    let mine: std::collections::HashSet<String> = terms(q).into_iter().collect();
    let on_topic = own.iter().chain(&before).any(|t| mine.contains(t));
    let new_terms: Vec<&String> = own.iter().filter(|t| !before.contains(t)).collect();
    let keeps_subject = new_terms.is_empty() || new_terms.iter().any(|t| mine.contains(*t));
    // Most of its terms found only in the previous answer (not the questions): a repeat.
    let answer_only: std::collections::HashSet<String> =
        terms(&last.answer).into_iter().filter(|t| !own.contains(t) && !before.contains(t)).collect();
    let repeats = !mine.is_empty()
        && mine.iter().filter(|t| answer_only.contains(*t)).count() * 4 >= mine.len() * 3
        && !new_terms.iter().any(|t| mine.contains(*t));
    on_topic && keeps_subject && !repeats
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The question plus up to four salient terms of the last turn's question that it lacks.
fn rule_rewrite(last: &Turn, question: &str) -> String {
    let have: Vec<String> = question.split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).collect();
    let mut extra: Vec<String> = Vec::new();
    for w in last.question.split(|c: char| !c.is_alphanumeric() && c != '-') {
        let lw = w.to_lowercase();
        let salient = (w.chars().count() >= 4 || w.chars().any(|c| c.is_uppercase() || !c.is_ascii()))
            && !STOPWORDS.contains(&lw.as_str());
        if salient && !have.contains(&lw) && !extra.iter().any(|e| e.to_lowercase() == lw) {
            extra.push(w.to_string());
        }
        if extra.len() == 4 {
            break;
        }
    }
    if extra.is_empty() {
        question.to_string()
    } else {
        format!("{question} {}", extra.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_that_repeats_the_answer_or_drops_the_subject_is_refused() {
        let last = Turn {
            question: "what is HNSW?".into(),
            answer: "HNSW is a graph index for approximate nearest neighbour search.".into(),
        };
        let follow = "and how does it handle deletions?";
        for bad in [
            "A: HNSW is a graph index for approximate nearest neighbour search.",
            "HNSW is a graph index for approximate nearest neighbour search.",
            "HNSW graph index",
            "Answer: HNSW deletions",
            "see [1] for HNSW deletions",
        ] {
            assert!(!usable(bad, follow, &last), "{bad:?} was accepted");
        }
        for good in ["How does HNSW handle deletions?", "HNSW deletions"] {
            assert!(usable(good, follow, &last), "{good:?} was refused");
        }
        // A follow-up with no term of its own ("and why?") may take the subject from before.
        assert!(usable("why is HNSW a graph index", "and why?", &last));
    }

    #[test]
    fn rule_rewrite_appends_salient_terms() {
        let last = Turn { question: "How does HNSW find neighbours?".into(), answer: String::new() };
        assert_eq!(rule_rewrite(&last, "Is it exact?"), "Is it exact? HNSW find neighbours");
        let same = Turn { question: "what about it".into(), answer: String::new() };
        assert_eq!(rule_rewrite(&same, "and then?"), "and then?");
    }
}
