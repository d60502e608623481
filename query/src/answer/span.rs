//! The short answer's words within the best sentences. Candidates are the runs of words the
//! question lacks (cut at the question's own terms and at clause punctuation); the chosen one
//! sits closest to the question's terms in its sentence (the answer to "In what unit is the
//! size of the input measured?" follows "input" in "...the size of the input in bits"), holds
//! a name where one can, agrees with the words the decoder picked, is likely as the whole
//! answer to the decoder (its log-probability with the end of the turn after it), and comes
//! from the sentence closest to the question unless another nearly as close holds a clearly
//! better run.
//!
//! The weights were chosen by coordinate ascent on the answerable questions of one seeded
//! sample of SQuAD 2.0 and checked on the questions of another sample outside it
//! (docs/answers.md); the rules are the classic sliding-window ones of extractive question
//! answering, not fitted per question type.

use super::terms::{bare, terms};
use crate::qa::normalize;
use std::collections::HashSet;

/// Words that neither begin nor end a short answer.
const EDGE_WORDS: &[&str] = &[
    "the", "a", "an", "of", "in", "on", "at", "to", "for", "by", "with", "and", "or", "but", "is", "was", "were",
    "are", "be", "been", "being", "as", "that", "which", "who", "whom", "whose", "it", "its", "their", "his", "her",
    "from", "after", "before", "during", "this", "these", "those", "has", "had", "have", "than", "then", "also",
    "into", "over", "under", "about", "such", "there", "they", "he", "she", "we", "not", "can", "could", "would",
];

/// Sentence adverbs and connectives: they link a sentence to the text around it and answer
/// nothing ("Thus", "However", "as well"), so they neither begin nor end a short answer.
#[rustfmt::skip]
const CONNECTIVES: &[&str] = &[
    "thus", "however", "therefore", "hence", "moreover", "furthermore", "indeed", "instead", "nonetheless",
    "nevertheless", "similarly", "likewise", "otherwise", "meanwhile", "besides", "since", "although", "though",
    "because", "while", "whereas", "yet", "still", "well", "so", "even", "just", "only", "too", "either", "neither",
    "nor", "rather", "namely", "especially", "particularly", "respectively", "eventually", "finally", "subsequently",
    "consequently", "accordingly", "additionally", "alternatively", "conversely", "notably",
];

/// Words that end a clause inside a sentence: an answer is a phrase, not a predicate.
const CLAUSE_WORDS: &[&str] = &[
    "is", "was", "are", "were", "be", "been", "being", "has", "had", "have", "which", "that", "who", "whom", "whose",
    "when", "where", "while", "because", "although", "though",
];

/// Closeness to one question term counts 1 / distance in words, times this.
const PROXIMITY: f32 = 0.5;
/// A run holding a capitalised word (not the sentence's first) gains this.
const NAME: f32 = 0.3;
/// A run gains this times the share of the decoder's words it holds.
const DECODER: f32 = 0.25;
/// A run loses this times how far (in nats) the decoder's log-probability of it as the whole
/// answer (its tokens, then the end of the turn) falls below the likeliest candidate's.
const LIKELY: f32 = 0.06;
/// A run starting just after the question's last term before its question word gains this
/// over the gap in words ("bind to what" -> "bind to specific immune receptors"), up to
/// [`ANCHOR_GAP`].
const ANCHOR: f32 = 3.0;
const ANCHOR_GAP: usize = 3;
/// A run of a sentence ranked below the first with candidates loses this times how far its
/// sentence's rank score falls below that one's: a clearly better run in a sentence nearly as
/// close to the question wins over the first sentence's best.
const SENTENCE: f32 = 10.0;
/// The noun a question word asks about ("what river", "which treaty"): a run just before its
/// occurrence in the sentence ("the Vistula River") gains this, one starting within two words
/// after it ("the theorem of Blum") [`HEAD_AFTER`].
const HEAD_BEFORE: f32 = 1.0;
const HEAD_AFTER: f32 = 0.5;
const AUXILIARIES: &[&str] = &["did", "does", "do", "can", "may", "might", "must", "should", "will", "would"];
/// Words between a question word and the noun it asks about.
const HEAD_SKIP: &[&str] = &["type", "kind", "sort", "form", "of", "the", "a", "an"];

/// The noun a question word asks about ("river" in "On what river does Warsaw stand?"),
/// lower-cased, when one follows the question word directly (or after "type of").
pub(crate) fn head(question: &str) -> Option<String> {
    let words: Vec<String> = question.split_whitespace().map(bare).collect();
    let at = words.iter().position(|w| w == "what" || w == "which" || w == "whose")?;
    let next = words[at + 1..].iter().find(|w| !HEAD_SKIP.contains(&w.as_str()))?;
    // "What is", "which did": a verb, not a noun.
    let verb = AUXILIARIES.contains(&next.as_str()) || EDGE_WORDS.contains(&next.as_str());
    (!verb && !terms(next).is_empty()).then(|| next.clone())
}

/// Whether a sentence's word is the question's noun, or its plural or singular (the whole
/// word: the five-letter stems make "theory" one with "theorem").
fn same_noun(word: &str, noun: &str) -> bool {
    let word = bare(word);
    [word.as_str(), word.strip_suffix("es").unwrap_or(""), word.strip_suffix('s').unwrap_or("")].contains(&noun)
        || [noun.strip_suffix("es"), noun.strip_suffix('s')].contains(&Some(word.as_str()))
}
/// Question words: the answer stands where the question has one of these.
const QUESTION_WORDS: &[&str] = &["what", "which", "who", "whom", "whose", "where", "when", "how"];

/// The question's words, to tell a sentence's word the question holds ("rivers" for "river")
/// from one that only shares the crude stem's five letters with one of them ("theory" for
/// "theoretical", "computational" for "computer"): such a word is part of the answer
/// ("Computational complexity theory"), not the question's.
struct Asked {
    terms: HashSet<String>,
    words: Vec<String>,
}

impl Asked {
    fn new(question: &str) -> Self {
        Asked { terms: terms(question).into_iter().collect(), words: question.split_whitespace().map(bare).collect() }
    }

    /// Whether the sentence's word (without punctuation) is one of the question's, up to one
    /// letter at its end (a word of a script without spaces, as Chinese, by its terms alone).
    fn holds(&self, word: &str) -> bool {
        if !terms(word).iter().any(|t| self.terms.contains(t)) {
            return false;
        }
        if word.chars().any(is_cjk) {
            return true;
        }
        let w = word.to_lowercase();
        self.words.iter().any(|q| q.chars().take(5).eq(w.chars().take(5)) && q.len().abs_diff(w.len()) <= 1)
    }
}

/// Letters of scripts written without spaces between words (Chinese, Japanese, Korean).
fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30ff}' | '\u{3400}'..='\u{9fff}' | '\u{ac00}'..='\u{d7af}' | '\u{f900}'..='\u{faff}')
}

/// A run of a sentence's words: its first and last word's index, and its text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    pub first: usize,
    pub last: usize,
    pub text: String,
}

/// The runs of `sentence`'s words a short answer may copy: broken at the question's own
/// content terms and at clause punctuation (", ", ";", ":", brackets, quotes), and with
/// `clauses` also at auxiliary verbs and relative words; stop words trimmed from both ends.
pub(crate) fn runs(sentence: &str, question: &str, clauses: bool) -> Vec<Run> {
    let asked = Asked::new(question);
    let mut runs: Vec<Vec<(usize, &str)>> = vec![Vec::new()];
    for (i, w) in sentence.split_whitespace().enumerate() {
        let bare = w.trim_matches(|c: char| !c.is_alphanumeric());
        let clause = clauses && CLAUSE_WORDS.contains(&bare.to_lowercase().as_str());
        if clause || asked.holds(bare) {
            runs.push(Vec::new());
            continue;
        }
        if w.starts_with(['(', '"', '“', '‘', '\'', '[']) {
            runs.push(Vec::new());
        }
        if let Some(run) = runs.last_mut() {
            run.push((i, w));
        }
        if w.ends_with([',', ';', ':', ')', '"', '”', '’', ']', '.']) || w.ends_with("'") {
            runs.push(Vec::new());
        }
    }
    let edge = |w: &str| {
        let w = bare(w);
        w.is_empty() || EDGE_WORDS.contains(&w.as_str()) || CONNECTIVES.contains(&w.as_str())
    };
    runs.into_iter()
        .filter_map(|run| {
            let start = run.iter().position(|(_, w)| !edge(w))?;
            let end = run.iter().rposition(|(_, w)| !edge(w))?;
            let words = &run[start..=end];
            Some(Run {
                first: words[0].0,
                last: words[words.len() - 1].0,
                text: words.iter().map(|(_, w)| *w).collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

/// Lower-case words that join the capitalised words of one name ("Kingdom of Prussia",
/// "Ludwig van Beethoven").
const NAME_JOINERS: &[&str] =
    &["of", "the", "de", "del", "della", "der", "den", "van", "von", "la", "le", "du", "di", "da", "bin", "ibn", "al"];

/// Each run cut to the names in it: its longest sequences of capitalised words (joined by
/// [`NAME_JOINERS`]), for a question asking "who" ("James Clerk Maxwell", not "James Clerk
/// Maxwell unified a number of earlier theories").
pub(crate) fn names(sentence: &str, runs: &[Run]) -> Vec<Run> {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let capital = |w: &str| w.trim_start_matches(|c: char| !c.is_alphanumeric()).starts_with(char::is_uppercase);
    let mut out = Vec::new();
    for run in runs {
        let last = run.last.min(words.len().saturating_sub(1));
        let mut i = run.first;
        while i <= last {
            if !capital(words[i]) {
                i += 1;
                continue;
            }
            let mut end = i;
            let mut j = i + 1;
            while j <= last && !words[j - 1].ends_with([',', ';', ':', ')']) {
                if capital(words[j]) {
                    end = j;
                } else if !NAME_JOINERS.contains(&bare(words[j]).as_str()) {
                    break;
                }
                j += 1;
            }
            out.push(Run { first: i, last: end, text: words[i..=end].join(" ") });
            i = end + 1;
        }
    }
    out
}

/// The content term just before the question word ("location" in "called to a specific
/// location by what?"), when the question word is not the first.
pub(crate) fn anchor(question: &str) -> Option<String> {
    let words: Vec<&str> = question.split_whitespace().collect();
    let at = words.iter().position(|w| QUESTION_WORDS.contains(&bare(w).as_str()))?;
    words[..at].iter().rev().find_map(|w| terms(w).pop())
}

/// One sentence's candidates for [`pick`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidates<'a> {
    pub sentence: &'a str,
    /// The sentence's score in the ranking against the question.
    pub rank: f32,
    pub runs: &'a [Run],
    /// The decoder's log-probability of each run as the whole answer (aligned with `runs`;
    /// empty when not scored).
    pub likely: &'a [f32],
}

/// The best run among the `among` sentences' candidates (the first sentence ranked best) as
/// a short answer to `question` (its content terms `question_terms`), given the words the
/// decoder copied (`decoded`, possibly empty): the sentence's index in `among` and the run.
pub(crate) fn pick<'a>(
    question: &str,
    question_terms: &HashSet<String>,
    among: &[Candidates<'a>],
    decoded: &str,
) -> Option<(usize, &'a Run)> {
    let first = among.first()?.rank;
    let top = among.iter().flat_map(|c| c.likely).copied().filter(|l| l.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    let mut best: Option<(f32, usize, &'a Run)> = None;
    for (k, c) in among.iter().enumerate() {
        let scores = scores(c.sentence, question, question_terms, c.runs, decoded);
        for (i, (run, score)) in c.runs.iter().zip(scores).enumerate() {
            let lm = c.likely.get(i).filter(|l| l.is_finite()).map_or(0.0, |l| LIKELY * (l - top));
            let total = score + lm - SENTENCE * (first - c.rank);
            if best.is_none_or(|(b, _, _)| total > b) {
                best = Some((total, k, run));
            }
        }
    }
    best.map(|(_, k, run)| (k, run))
}

/// Each run's score in [`pick`] within its sentence, but for the decoder's likelihood.
fn scores(
    sentence: &str,
    question: &str,
    question_terms: &HashSet<String>,
    candidates: &[Run],
    decoded: &str,
) -> Vec<f32> {
    let anchor = anchor(question);
    let head = head(question);
    let mut heads: Vec<usize> = Vec::new();
    let mut anchors: Vec<usize> = Vec::new();
    // Where each of the question's terms occurs in the sentence.
    let mut at: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, w) in sentence.split_whitespace().enumerate() {
        if head.as_ref().is_some_and(|h| same_noun(w, h)) {
            heads.push(i);
        }
        for t in terms(w) {
            if anchor.as_ref() == Some(&t) {
                anchors.push(i);
            }
            if !question_terms.contains(&t) {
                continue;
            }
            match at.iter_mut().find(|(term, _)| *term == t) {
                Some((_, places)) => places.push(i),
                None => at.push((t, vec![i])),
            }
        }
    }
    let words = |s: &str| normalize(s).split_whitespace().map(str::to_string).collect::<HashSet<String>>();
    let decoded = words(decoded);
    let score = |r: &Run| {
        let proximity: f32 = at
            .iter()
            .filter_map(|(_, places)| places.iter().map(|&p| p.abs_diff(r.first).min(p.abs_diff(r.last))).min())
            .map(|d| 1.0 / d.max(1) as f32)
            .sum();
        let skip = usize::from(r.first == 0);
        let name = r.text.split_whitespace().skip(skip).any(|w| w.chars().next().is_some_and(char::is_uppercase));
        let agree = if decoded.is_empty() {
            0.0
        } else {
            words(&r.text).intersection(&decoded).count() as f32 / decoded.len() as f32
        };
        let after = anchors
            .iter()
            .filter_map(|&a| r.first.checked_sub(a).filter(|gap| (1..=ANCHOR_GAP).contains(gap)))
            .map(|gap| 1.0 / gap as f32)
            .fold(0.0, f32::max);
        let before = heads.iter().any(|&h| r.last + 1 == h);
        let after_head = heads.iter().any(|&h| r.first > h && r.first - h <= 2);
        let headed = if before {
            HEAD_BEFORE
        } else if after_head {
            HEAD_AFTER
        } else {
            0.0
        };
        PROXIMITY * proximity + headed + ANCHOR * after + if name { NAME } else { 0.0 } + DECODER * agree
    };
    candidates.iter().map(score).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> HashSet<String> {
        terms(text).into_iter().collect()
    }

    /// [`pick`] within one sentence.
    fn one(
        sentence: &str,
        question: &str,
        qt: &HashSet<String>,
        runs: &[Run],
        decoded: &str,
        likely: &[f32],
    ) -> Option<String> {
        pick(question, qt, &[Candidates { sentence, rank: 1.0, runs, likely }], decoded).map(|(_, r)| r.text.clone())
    }

    #[test]
    fn runs_stop_at_the_question_terms_and_clauses() {
        let text = |r: Vec<Run>| r.into_iter().map(|r| r.text).collect::<Vec<_>>();
        let s = "Farel, a student of Lefevre, went on to lead the Swiss Reformation in 1523.";
        let question = "Who led the Swiss Reformation?";
        assert_eq!(text(runs(s, question, false)), vec!["Farel,", "student of Lefevre,", "went on to lead", "1523."]);
        let s = "P is strictly contained in EXPTIME";
        assert_eq!(text(runs(s, "What constrains P?", true)), vec!["P", "strictly contained in EXPTIME"]);
        // A word sharing only the crude stem with one of the question's stays in the answer.
        let s = "Computational complexity theory is a branch of the theory of computation.";
        let question = "What branch of theoretical computer science classifies problems?";
        assert_eq!(text(runs(s, question, true))[0], "Computational complexity theory");
        let s = "It stands on the Vistula rivers.";
        assert_eq!(text(runs(s, "On what river does it stand?", true)), vec!["Vistula"]);
        // Text without spaces is no run when it holds any of the question's terms.
        assert!(text(runs("向量检索很快。", "什么是向量检索？", true)).is_empty());
    }

    #[test]
    fn names_are_cut_from_their_runs() {
        let s = "It was explained in 1864 when James Clerk Maxwell unified the theories of the Kingdom of Prussia.";
        let found: Vec<String> =
            names(s, &runs(s, "Who explained it first?", true)).into_iter().map(|r| r.text).collect();
        assert_eq!(found, vec!["James Clerk Maxwell", "Kingdom of Prussia."]);
    }

    #[test]
    fn connectives_are_no_answer() {
        let s = "Thus, in an Aristotelian universe, the cannonball would land behind the foot of the mast.";
        let found: Vec<String> =
            runs(s, "Where would the cannonball land?", true).into_iter().map(|r| r.text).collect();
        assert!(!found.iter().any(|r| r.starts_with("Thus")), "{found:?}");
    }

    #[test]
    fn the_noun_a_question_word_asks_about() {
        assert_eq!(head("On what river does Warsaw stand?").as_deref(), Some("river"));
        assert_eq!(head("What type of vote must the Parliament have?").as_deref(), Some("vote"));
        assert_eq!(head("What is the capital of Poland?"), None);
        assert_eq!(head("Which did they build first?"), None);
        assert_eq!(head("Who built it?"), None);
        assert!(same_noun("Rivers,", "river") && same_noun("river", "rivers") && !same_noun("theory", "theorem"));
        // The run just before that noun in the sentence is the answer ("the Vistula River").
        let question = "On what river does Warsaw stand?";
        let s = "It stands on the Vistula River in east-central Poland, 260 kilometres from the Baltic Sea.";
        let (qt, c) = (q(question), runs(s, question, true));
        assert_eq!(one(s, question, &qt, &c, "", &[]).as_deref(), Some("Vistula"));
    }

    #[test]
    fn the_run_next_to_the_question_terms_wins() {
        let s = "This is usually taken to be the size of the input in bits.";
        let question = "In what unit is the size of the input measured?";
        let (qt, c) = (q(question), runs(s, question, true));
        assert_eq!(one(s, "", &qt, &c, "", &[]).as_deref(), Some("bits."));
        // The decoder's words break a tie in their favour.
        let s = "Around 1800 Richard Trevithick and, separately, Oliver Evans in 1801 introduced engines.";
        let question = "Who introduced engines around 1800?";
        let (qt, c) = (q(question), runs(s, question, true));
        assert_eq!(one(s, "", &qt, &c, "Oliver Evans", &[]).as_deref(), Some("Oliver Evans in 1801"));
        assert_eq!(one(s, "", &qt, &c, "Richard Trevithick", &[]).as_deref(), Some("Richard Trevithick"));
        // The words right after the question's term before "what" win over closer ones.
        let s = "Phagocytes generally patrol the body searching for pathogens, but can be called to specific locations by cytokines.";
        let question = "Phagocytes can be called to a specific location by what?";
        let (qt, c) = (q(question), runs(s, question, true));
        assert_eq!(anchor(question).as_deref(), Some("locat"));
        assert_eq!(one(s, question, &qt, &c, "", &[]).as_deref(), Some("cytokines."));
        assert_eq!(one(s, "", &qt, &c, "", &[]).as_deref(), Some("generally patrol the body searching for pathogens,"));
        // The decoder's likelihood of each run as the whole answer weighs in: far less likely
        // (40 nats) outweighs the anchor, a small gap (2 nats) does not.
        let ranked = |likely: &[f32]| one(s, question, &qt, &c, "", likely);
        let at = |text: &str| c.iter().position(|r| r.text == text).expect("a candidate");
        let mut likely = vec![0.0; c.len()];
        likely[at("cytokines.")] = -40.0;
        assert_ne!(ranked(&likely).as_deref(), Some("cytokines."));
        likely[at("cytokines.")] = -2.0;
        assert_eq!(ranked(&likely).as_deref(), Some("cytokines."));
    }

    #[test]
    fn a_sentence_nearly_as_close_may_give_the_run() {
        let question = "Phagocytes can be called to a specific location by what?";
        let qt = q(question);
        let first = "Phagocytes generally patrol the body searching for pathogens.";
        let second = "Phagocytes can be called to specific locations by cytokines.";
        let (a, b) = (runs(first, question, true), runs(second, question, true));
        let among = |rank: f32| {
            let c = [
                Candidates { sentence: first, rank: 1.0, runs: &a, likely: &[] },
                Candidates { sentence: second, rank, runs: &b, likely: &[] },
            ];
            pick(question, &qt, &c, "").map(|(k, r)| (k, r.text.clone()))
        };
        // The second sentence's run follows the question's anchor; its sentence ranks a
        // little lower: it wins. Far lower, the first sentence's run stands.
        assert_eq!(among(0.95), Some((1, "cytokines.".to_string())));
        assert_eq!(among(0.5).map(|(k, _)| k), Some(0));
    }
}
