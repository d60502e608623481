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
            convo.push_str(&format!("Q: {}\nA: {}\n", defuse(&t.question), defuse(&clip(&t.answer, 300))));
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
        let words = q.split_whitespace().count();
        // A usable rewrite is short, is not an answer (no citations, no lead-in), and keeps at
        // least one term of the conversation's questions.
        let asked: std::collections::HashSet<String> =
            terms(question).into_iter().chain(terms(&last.question)).collect();
        let on_topic = terms(&q).iter().any(|t| asked.contains(t));
        if words > 0
            && words <= question.split_whitespace().count() * 3 + 12
            && g.stop != StopReason::MaxTokens
            && !q.contains('[')
            && !q.ends_with(':')
            && on_topic
        {
            return Ok(q);
        }
    }
    Ok(rule_rewrite(last, question))
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
    fn rule_rewrite_appends_salient_terms() {
        let last = Turn { question: "How does HNSW find neighbours?".into(), answer: String::new() };
        assert_eq!(rule_rewrite(&last, "Is it exact?"), "Is it exact? HNSW find neighbours");
        let same = Turn { question: "what about it".into(), answer: String::new() };
        assert_eq!(rule_rewrite(&same, "and then?"), "and then?");
    }
}
