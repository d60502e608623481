//! `sousuo bench answer --qa DIR --follow-ups`: the rewrite of follow-up questions, measured on
//! two-turn conversations built from a SQuAD-style set. For a paragraph's answerable question
//! that names the paragraph's article (its title or a capitalised title word), the follow-up is
//! that question with the name replaced by a pronoun; the first turn is another question on
//! the same paragraph with its gold answer as the answer. Reported: how often the gold
//! paragraph is in the top 5 for the original question, the rewritten follow-up, and the
//! pronoun question alone (the floor).

use anyhow::Result;
use sousuo_decoder::Decoder;
use sousuo_encoder::Encoder;
use sousuo_indexer::Collection;
use sousuo_query::answer::rewrite;
use sousuo_query::{search, SearchParams, Turn};
use std::collections::BTreeMap;

/// One built conversation.
pub struct Conversation {
    pub first: Turn,
    pub original: String,
    pub follow_up: String,
    pub doc: String,
}

/// Conversations from `(question, doc, gold answers)` triples and the paragraphs' titles, at
/// most `limit` (0: all), in the file's order.
pub fn build(
    questions: &[(String, String, Vec<String>)],
    titles: &BTreeMap<String, String>,
    limit: usize,
) -> Vec<Conversation> {
    let mut out = Vec::new();
    for (i, (q, doc, _)) in questions.iter().enumerate() {
        let Some(title) = titles.get(doc) else { continue };
        let Some(follow_up) = pronoun_for(q, title) else { continue };
        let first = questions.iter().enumerate().find(|(j, (_, d, a))| *j != i && d == doc && !a.is_empty());
        let Some((_, (fq, _, fa))) = first else { continue };
        out.push(Conversation {
            first: Turn { question: fq.clone(), answer: fa[0].clone() },
            original: q.clone(),
            follow_up,
            doc: doc.clone(),
        });
        if limit > 0 && out.len() >= limit {
            break;
        }
    }
    out
}

/// `question` with the article's name (its whole title, or one capitalised title word of 4+
/// letters) replaced by "it" ("its" for a possessive); `None` when it names neither.
pub fn pronoun_for(question: &str, title: &str) -> Option<String> {
    let title = title.replace('_', " ");
    // The whole title in any case; one of its words only as a proper name: capitalised in the
    // title and in the question ("Harvard" of "Harvard University", not "steam" of "Steam
    // engine").
    let mut names: Vec<(String, bool)> = vec![(title.clone(), false)];
    let words = title.split_whitespace().filter(|w| w.len() >= 4 && w.starts_with(char::is_uppercase));
    names.extend(words.filter(|_| title.contains(' ')).map(|w| (w.to_string(), true)));
    for (name, proper) in names {
        for (from, to) in [
            (format!("the {name}'s"), "its"),
            (format!("{name}'s"), "its"),
            (format!("the {name}"), "it"),
            (format!("a {name}"), "it"),
            (format!("an {name}"), "it"),
            (name.clone(), "it"),
        ] {
            let Some(at) = find_word(question, &from) else { continue };
            if proper && !question[at..].contains(name.as_str()) {
                continue;
            }
            return Some(format!("{}{to}{}", &question[..at], &question[at + from.len()..]));
        }
    }
    None
}

/// The byte offset of `needle` in `hay` as whole words (case-insensitive on ASCII).
fn find_word(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.to_ascii_lowercase(), needle.to_ascii_lowercase());
    let mut from = 0;
    while let Some(i) = h[from..].find(&n).map(|i| i + from) {
        let before = h[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
        let after = h[i + n.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric());
        if before && after {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// Top-5 hits of the gold paragraph: (original, rewritten, pronoun alone) counts, and the
/// conversations' rewrites for display.
pub fn measure(
    collection: &Collection,
    encoder: &Encoder,
    decoder: &Decoder,
    convos: &[Conversation],
    verbose: bool,
) -> Result<[usize; 3]> {
    let p = SearchParams { limit: 5, ..SearchParams::default() };
    let hit = |q: &str, doc: &str| -> Result<bool> {
        Ok(search(collection, encoder, q, &p)?.hits.iter().any(|h| h.doc_id == doc))
    };
    let bar = crate::util::progress(convos.len() as u64, "follow-ups");
    let mut counts = [0usize; 3];
    for c in convos {
        let rewritten = rewrite(Some(decoder), std::slice::from_ref(&c.first), &c.follow_up)?;
        for (k, q) in [&c.original, &rewritten, &c.follow_up].into_iter().enumerate() {
            counts[k] += usize::from(hit(q, &c.doc)?);
        }
        if verbose {
            bar.suspend(|| eprintln!("{:?} -> {:?} (original {:?})", c.follow_up, rewritten, c.original));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_article_name_becomes_a_pronoun() {
        assert_eq!(
            pronoun_for("When did Harvard's undergraduate program become coeducational?", "Harvard University")
                .as_deref(),
            Some("When did its undergraduate program become coeducational?")
        );
        assert_eq!(
            pronoun_for("What river flows through Warsaw?", "Warsaw").as_deref(),
            Some("What river flows through it?")
        );
        assert_eq!(pronoun_for("What is the Rankine cycle?", "Steam engine"), None);
        assert_eq!(pronoun_for("Who was Warsawski?", "Warsaw"), None);
        assert_eq!(pronoun_for("What does a steam turbine do?", "Steam engine"), None);
        assert_eq!(pronoun_for("How does a steam engine work?", "Steam engine").as_deref(), Some("How does it work?"));
    }
}
