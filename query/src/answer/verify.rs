//! Verification of generated text: sentences split, `[n]` citations parsed, each sentence
//! scored against the passages it cites (best sentence cosine and lexical overlap), numbers
//! required to occur in a cited passage.

use super::passages::{dot, looks_like_instruction, sentences, Passage};
use super::terms::lexical_overlap;
use super::{Sentence, SUPPORT_THRESHOLD};
use crate::Result;
use sousuo_encoder::Encoder;

/// The outcome of checking generated text.
pub(crate) struct Verdict {
    pub sentences: Vec<Sentence>,
    pub invalid: Vec<usize>,
    pub abstained: bool,
}

impl Verdict {
    pub fn supported(&self) -> usize {
        self.sentences.iter().filter(|s| s.supported).count()
    }
    /// At least one sentence and at least half of them supported, and no abstention.
    pub fn accepted(&self) -> bool {
        !self.abstained && self.supported() > 0 && self.supported() * 2 >= self.sentences.len()
    }
}

/// Parses `[n]`, `[n, m]` and `[n][m]` markers out of a sentence: its text without them and
/// the numbers.
fn strip_citations(s: &str) -> (String, Vec<usize>) {
    let mut text = String::with_capacity(s.len());
    let mut nums = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('[') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(']') {
            Some(j)
                if !after[..j].is_empty() && after[..j].chars().all(|c| c.is_ascii_digit() || c == ',' || c == ' ') =>
            {
                nums.extend(after[..j].split(',').filter_map(|n| n.trim().parse::<usize>().ok()));
                rest = &after[j + 1..];
            }
            _ => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.replace(" .", ".").replace(" ,", ",");
    (text, nums)
}

const ABSTAIN: &[&str] =
    &["sources do not say", "sources don't say", "do not contain the answer", "not mentioned in the sources"];

/// Splits generated text into sentences, parses their citations, and checks each against the
/// sentences of the sources it cites (all sources when it cites none).
pub(crate) fn verify(
    encoder: &Encoder,
    question: &str,
    text: &str,
    passages: &[Passage],
    threshold: f32,
) -> Result<Verdict> {
    let lower = text.to_lowercase();
    let abstained = ABSTAIN.iter().any(|a| lower.contains(a));
    // Citation markers that open a sentence belong to the one before it.
    let mut raw: Vec<String> = Vec::new();
    for s in sentences(text) {
        let lead: String = s.chars().take_while(|c| c.is_ascii_digit() || matches!(c, '[' | ']' | ',' | ' ')).collect();
        match raw.last_mut() {
            Some(prev) if !lead.trim().is_empty() && lead.contains(']') => {
                prev.push(' ');
                prev.push_str(lead.trim());
                let rest = s[lead.len()..].trim();
                if !rest.is_empty() {
                    raw.push(rest.to_string());
                }
            }
            _ => raw.push(s),
        }
    }
    let mut invalid = Vec::new();
    let mut parsed: Vec<(String, Vec<usize>)> = Vec::new();
    for s in raw {
        let (t, nums) = strip_citations(&s);
        let mut valid = Vec::new();
        for n in nums {
            if n >= 1 && n <= passages.len() {
                if !valid.contains(&n) {
                    valid.push(n);
                }
            } else if !invalid.contains(&n) {
                invalid.push(n);
            }
        }
        // Drop fragments with no words (a bare marker, "Sources:") and prompt markup the
        // model echoed.
        let markup = t.contains("<source") || t.contains("</source") || t.contains("<|");
        if !markup && t.chars().filter(|c| c.is_alphanumeric()).count() >= 2 {
            parsed.push((t, valid));
        }
    }
    let texts: Vec<&str> = parsed.iter().map(|(t, _)| t.as_str()).collect();
    let vecs = if texts.is_empty() { None } else { Some(encoder.encode(&texts)?) };
    let mut out = Vec::with_capacity(parsed.len());
    for (i, (t, cites)) in parsed.into_iter().enumerate() {
        let v = vecs.as_ref().map(|e| e.row(i)).unwrap_or(&[]);
        let best_in = |n: usize| -> f32 {
            let p = &passages[n - 1];
            let cos = p.vectors.iter().map(|pv| dot(pv, v)).fold(f32::MIN, f32::max);
            combine(cos, lexical_overlap(&t, &p.source.passage))
        };
        // Too short to check ("Yes.", "HACKED") or an echoed instruction: never supported.
        // A lead-in ("The answer is:") says nothing to check either.
        let checkable = (t.split_whitespace().count() >= 3 || t.chars().filter(|c| !c.is_ascii()).count() >= 6)
            && !t.trim_end().ends_with(':')
            && !looks_like_instruction(&t);
        let (support, citations, added) = if cites.is_empty() {
            let best = (1..=passages.len()).map(|n| (n, best_in(n))).max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((n, s)) if s >= threshold && checkable => (s, vec![n], true),
                Some((_, s)) => (s, Vec::new(), false),
                None => (0.0, Vec::new(), false),
            }
        } else {
            (cites.iter().map(|&n| best_in(n)).fold(f32::MIN, f32::max), cites, false)
        };
        // Small models invent numbers and names and flip claims: every number, and every
        // capitalised word the question does not supply, must occur in a cited passage, and a
        // negation must be in the passage sentence the claim rests on.
        let grounded = citations.iter().any(|&n| {
            let p = &passages[n - 1];
            numbers_grounded(&t, &p.source.passage)
                && names_grounded(&t, &p.source.passage, question)
                && negation_grounded(&t, &p.sentences)
        });
        // A link or contact detail the question did not ask for is how a planted document
        // steers readers: never shown as checked (it stays visible, flagged, with its source).
        let unasked_contact = carries_contact(&t) && !asks_for_contact(question);
        out.push(Sentence {
            supported: checkable && grounded && support >= threshold && !unasked_contact,
            note: unasked_contact.then_some("holds a link or contact detail the question did not ask for"),
            support,
            citations,
            citation_added: added,
            text: t,
        });
    }
    Ok(Verdict { sentences: out, invalid, abstained })
}

/// Whether text carries a link or a contact detail: a URL, a bare domain with a path, an email
/// address, a phone number.
pub fn carries_contact(text: &str) -> bool {
    let l = text.to_lowercase();
    if l.contains("http://") || l.contains("https://") || l.contains("www.") {
        return true;
    }
    l.split_whitespace().any(|w| {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric());
        let domain_path = w.split_once('/').is_some_and(|(host, _)| {
            host.contains('.')
                && host.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '-'))
        });
        let bare_domain = w.rsplit_once('.').is_some_and(|(head, tld)| {
            head.contains('.') && (2..=6).contains(&tld.len()) && tld.chars().all(|c| c.is_ascii_lowercase())
        });
        let email = w.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.'));
        domain_path || bare_domain || email
    }) || phone_number(&l)
}

/// Seven or more digits in a run of digits, spaces, dashes, dots and parentheses after a `+` or
/// a digit: a phone number ("+1 (555) 010-9999").
fn phone_number(text: &str) -> bool {
    let mut digits = 0;
    for c in text.chars() {
        match c {
            '0'..='9' => digits += 1,
            ' ' | '-' | '(' | ')' | '+' | '.' if digits > 0 || c == '+' => {}
            _ => {
                if digits >= 7 {
                    return true;
                }
                digits = 0;
            }
        }
    }
    digits >= 7
}

/// Whether the question asks for a link or a way to get in touch.
fn asks_for_contact(question: &str) -> bool {
    let q = question.to_lowercase();
    [
        "url",
        "link",
        "website",
        "web site",
        "site",
        "email",
        "e-mail",
        "contact",
        "phone",
        "call",
        "address",
        "reach",
        "where can i",
    ]
    .iter()
    .any(|w| q.contains(w))
}

/// The support of a sentence by a passage: the mean of its best cosine against the passage's
/// sentences (meaning) and its lexical overlap with the passage (the facts' own words). The
/// two fail differently: a fabricated claim about the passage's topic is close in meaning but
/// brings words the passage lacks; a paraphrase changes words but keeps the meaning.
fn combine(cosine: f32, overlap: f32) -> f32 {
    0.5 * cosine + 0.5 * overlap
}

/// Whether every number written in `sentence` also occurs in `passage`.
pub fn numbers_grounded(sentence: &str, passage: &str) -> bool {
    let nums = |t: &str| -> Vec<String> {
        t.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
            .map(|n| n.trim_matches(|c: char| c == '.' || c == ','))
            .filter(|n| n.chars().any(|c| c.is_ascii_digit()))
            .map(str::to_string)
            .collect()
    };
    let have = nums(passage);
    nums(sentence).iter().all(|n| have.contains(n))
}

/// Whether every name in `sentence` (a capitalised word after its first word, or a word with
/// a capital inside: "Jean-Baptiste", "iPhone") occurs in `passage` or `question`.
pub fn names_grounded(sentence: &str, passage: &str, question: &str) -> bool {
    let known = format!("{} {}", passage.to_lowercase(), question.to_lowercase());
    let known: std::collections::HashSet<&str> =
        known.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    sentence
        .split_whitespace()
        .skip(1)
        .flat_map(|w| w.split(|c: char| !c.is_alphanumeric()))
        .filter(|w| w.chars().skip(1).any(char::is_uppercase) || w.chars().next().is_some_and(char::is_uppercase))
        .all(|w| known.contains(w.to_lowercase().as_str()))
}

/// Checks one sentence against one passage text (for calibration and tests).
pub fn support_score(encoder: &Encoder, sentence: &str, passage: &str) -> Result<f32> {
    let sents = sentences(passage);
    let mut texts: Vec<&str> = vec![sentence];
    texts.extend(sents.iter().map(String::as_str));
    let e = encoder.encode(&texts)?;
    let cos = (1..e.len()).map(|i| dot(e.row(0), e.row(i))).fold(f32::MIN, f32::max);
    Ok(combine(cos, lexical_overlap(sentence, passage)))
}

/// Whether `sentence` is supported by `passage` at the calibrated threshold, with the checks
/// a generated sentence gets: its numbers, its names (those not in `question`) and its
/// negations must be the passage's.
pub fn is_supported(encoder: &Encoder, sentence: &str, passage: &str, question: &str) -> Result<bool> {
    Ok(sentence.split_whitespace().count() >= 3
        && numbers_grounded(sentence, passage)
        && names_grounded(sentence, passage, question)
        && negation_grounded(sentence, &sentences(passage))
        && support_score(encoder, sentence, passage)? >= SUPPORT_THRESHOLD)
}

const NEGATIONS: &[&str] = &["not", "no", "never", "none", "neither", "nor", "cannot", "without"];

/// How many negation words `text` holds ("not", "never", "doesn't"...).
pub(crate) fn negations(text: &str) -> usize {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(str::to_lowercase)
        .filter(|w| NEGATIONS.contains(&w.as_str()) || w.ends_with("n't"))
        .count()
}

/// Whether the sentence negates no more than the passage sentence closest to it in words does:
/// "the engine was not patented" against "the engine was patented" fails.
pub fn negation_grounded(sentence: &str, passage_sentences: &[String]) -> bool {
    let own = negations(sentence);
    if own == 0 {
        return true;
    }
    let mine: std::collections::HashSet<String> = super::terms::terms(sentence).into_iter().collect();
    let closest =
        passage_sentences.iter().max_by_key(|p| super::terms::terms(p).iter().filter(|t| mine.contains(*t)).count());
    closest.is_some_and(|p| negations(p) >= own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_parsed_in_all_spellings() {
        assert_eq!(strip_citations("BM25 ranks by terms [1]."), ("BM25 ranks by terms.".into(), vec![1]));
        assert_eq!(strip_citations("A [1, 3] b [2][4]").1, vec![1, 3, 2, 4]);
        assert_eq!(strip_citations("arrays like [x] stay").0, "arrays like [x] stay");
        assert_eq!(strip_citations("unclosed [12").0, "unclosed [12");
    }

    #[test]
    fn added_negations_are_caught() {
        let p = vec!["The engine was patented in 1781.".to_string(), "It did not sell.".to_string()];
        assert!(negation_grounded("The engine was patented.", &p));
        assert!(!negation_grounded("The engine was not patented.", &p));
        assert!(negation_grounded("It did not sell well.", &p));
        assert!(!negation_grounded("The engine wasn't patented in 1781.", &p));
    }

    #[test]
    fn invented_names_are_caught() {
        let p = "Farel, a student of Lefevre, went on to lead the Swiss Reformation.";
        let q = "What leader of the Swiss reformation was a student of Lefevre?";
        assert!(names_grounded("The leader was Farel.", p, q));
        assert!(names_grounded("Farel studied under Lefevre.", p, q));
        assert!(!names_grounded("It was translated by Jean-Baptiste Lully in 1523.", p, q));
    }

    #[test]
    fn invented_numbers_are_caught() {
        let p = "The encoder has 6 layers with a hidden size of 384.";
        assert!(numbers_grounded("It has 6 layers.", p));
        assert!(!numbers_grounded("It has 3 layers.", p));
        assert!(numbers_grounded("No numbers here.", p));
    }
}
