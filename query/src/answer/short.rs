//! The direct answer: the sources' sentences ranked against the question (encoder cosine plus
//! the share of the question's content terms each holds, weighted by their rarity among the
//! sources' sentences), then the decoder picks a few words
//! from the best two with decoding constrained to copy from them, and the words are chosen
//! among the runs of the kind asked for in those sentences (cut to its numbers or names where
//! those are asked for; `span`: closeness to the question's terms and the noun its question
//! word asks about, names, the decoder's pick and its likelihood of each run as the whole
//! answer, scored in the same decoder job, and the rank of the run's sentence), so the short answer exists
//! verbatim in a cited sentence by construction. Words the question itself supplies (or stop
//! words alone) are not an answer.

use super::likely::Likelihood;
use super::numeric;
use super::passages::{dot, Passage};
use super::prompt::defuse;
use super::span;
use super::terms::{bare, terms};
use super::verify::negations;
use super::{AnswerEvent, AnswerParams};
use crate::Result;
use sousuo_decoder::{Decoder, GenerateOptions, Message};
use std::collections::HashSet;

const SYSTEM: &str = "You answer a question with the shortest phrase from the text that answers it: \
a name, a number, a date, or a few words. Copy the words exactly. Do not write a sentence.";

/// How much a sentence's share of the question's terms (each weighted by its rarity among the
/// sources' sentences) adds to its cosine when ranking.
const TERM_WEIGHT: f32 = 0.5;
/// How much the share of the question's terms only the sentence before holds adds, when the
/// sentence opens by referring back to it.
const PREVIOUS: f32 = 0.2;
/// A second sentence is quoted beside the short answer's own when its rank score is within
/// this of the best.
const QUOTE_MARGIN: f32 = 0.3;
/// How much a sentence's question-likelihood gain (nats per token) adds to its rank score when
/// the quotes beside the short answer are chosen.
const GAIN_WEIGHT: f32 = 0.4;
/// Below this share of the question's content terms (and below strong evidence in cosine) a
/// sentence does not hold the question's focus.
pub(crate) const FOCUS_SHARE: f32 = 0.5;
/// Sentences weighed (one decoder job each) for the quotes that answer an explanation question.
const EXPLANATION_CANDIDATES: usize = 6;
/// Tokens of the short answer at most.
const MAX_TOKENS: usize = 12;
/// Sentences shown to the decoder (and copied from).
const CONTEXT_SENTENCES: usize = 2;
/// A worked example (text, question, answer), given as an earlier turn.
const EXAMPLE: (&str, &str, &str) = (
    "The bridge, designed by the engineer Maria Costa, opened to traffic in 1932 after six years of work.",
    "Who designed the bridge?",
    "Maria Costa",
);

/// A few words answering the question, and the source sentence they are copied from.
#[derive(Debug, Clone)]
pub(crate) struct Short {
    pub text: String,
    /// The source's number.
    pub n: usize,
    pub sentence: String,
}

/// What the short-answer step found.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Found(Short),
    /// The question asks for a number or a name and the best sentences hold none.
    NoneOfKind(Expect),
    /// No span the question does not already hold.
    Unsure,
    /// None of the best sentences matches the question's focus.
    OffFocus,
    /// The question asks for an explanation: the sentences are the answer.
    Describe,
    /// The question asks about what is not so ("What is not an example of...?") and none of the
    /// best sentences states a negation.
    NegationUnstated,
}

/// A source sentence scored against the question.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked<'a> {
    /// Cosine plus [`TERM_WEIGHT`] times the rarity-weighted share of the question's terms
    /// (plus [`PREVIOUS`] times those only the sentence before holds).
    pub score: f32,
    pub cosine: f32,
    /// Share of the question's content terms the sentence holds.
    pub share: f32,
    /// The source's number.
    pub n: usize,
    pub text: &'a str,
}

/// The sources' sentences, best match to the question first.
pub(crate) fn rank_sentences<'a>(question: &str, qv: &[f32], passages: &'a [Passage]) -> Vec<Ranked<'a>> {
    let q: HashSet<String> = terms(question).into_iter().collect();
    let sets: Vec<Vec<HashSet<String>>> =
        passages.iter().map(|p| p.sentences.iter().map(|s| terms(s).into_iter().collect()).collect()).collect();
    let n = sets.iter().map(Vec::len).sum::<usize>() as f32;
    // Each question term weighed once: one rare among the sources' sentences says more about
    // which one answers.
    let weights: Vec<(&String, f32)> = q
        .iter()
        .map(|t| {
            let df = sets.iter().flatten().filter(|s| s.contains(t)).count() as f32;
            (t, ((n + 1.0) / (df + 0.5)).ln().max(0.1))
        })
        .collect();
    let total: f32 = weights.iter().map(|(_, w)| w).sum();
    let mut all = Vec::new();
    for (p, ps) in passages.iter().zip(&sets) {
        for (i, (s, v)) in p.sentences.iter().zip(&p.vectors).enumerate() {
            let have = &ps[i];
            let share =
                if q.is_empty() { 0.0 } else { q.iter().filter(|t| have.contains(*t)).count() as f32 / q.len() as f32 };
            let weighted = if q.is_empty() {
                0.0
            } else {
                weights.iter().filter(|(t, _)| have.contains(*t)).map(|(_, w)| w).sum::<f32>() / total
            };
            // Terms the sentence lacks but the source's sentence before it holds, when it refers
            // back to that one ("It stands on the Vistula" after one naming Warsaw).
            let previous = if i > 0 && !q.is_empty() && refers_back(s) {
                let before = &ps[i - 1];
                weights.iter().filter(|(t, _)| !have.contains(*t) && before.contains(*t)).map(|(_, w)| w).sum::<f32>()
                    / total
            } else {
                0.0
            };
            let cosine = dot(v, qv);
            all.push(Ranked {
                score: cosine + TERM_WEIGHT * weighted + PREVIOUS * previous,
                cosine,
                share,
                n: p.source.n,
                text: s.as_str(),
            });
        }
    }
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    all
}

/// The sentences quoted beside the short answer's own. The first: among the sentences ranked
/// within [`QUOTE_MARGIN`] of the best (from the answer's source or retrieval's first, or holding
/// the question's focus: a lower source's sentence sharing one of its words, "BM25", but not
/// what it asks about is no support), the one that most raises the decoder's likelihood of the
/// question (`likely`; read after the sentence before it in its passage, which one opening
/// "It..." refers back to), weighed with its rank score. The sentence a question was asked
/// about predicts its wording; one that only shares its topic words does not. The runner-up is
/// quoted too when it raises that likelihood more than the short answer's own sentence does:
/// the decoder then reads it as the likelier answer, and the short answer may be the wrong
/// sentence's. Without a decoder, or with one candidate, the best-ranked alone.
pub(crate) fn quotes<'a>(
    likely: Option<&Likelihood<'_>>,
    s: &Short,
    ranked: &'a [Ranked<'a>],
    passages: &[Passage],
) -> Result<Vec<&'a Ranked<'a>>> {
    let best = ranked.first().map_or(0.0, |r| r.score);
    let eligible: Vec<&Ranked> = ranked
        .iter()
        .filter(|r| {
            r.text != s.sentence
                && r.score >= best - QUOTE_MARGIN
                && (r.n == s.n || r.n == 1 || r.share >= FOCUS_SHARE)
                && r.text.split_whitespace().count() >= 4
        })
        .collect();
    let Some(likely) = likely.filter(|_| eligible.len() > 1) else {
        return Ok(eligible.into_iter().take(1).collect());
    };
    let scored = by_gain(likely, eligible, passages)?;
    let mut chosen: Vec<&Ranked> = scored.iter().take(1).map(|x| x.2).collect();
    if let Some(&(_, gain, r)) = scored.get(1) {
        let own = match ranked.iter().find(|r| r.text == s.sentence) {
            Some(o) => sentence_gain(likely, o, passages)?,
            None => f32::NEG_INFINITY,
        };
        if gain > own {
            chosen.push(r);
        }
    }
    Ok(chosen)
}

/// The sentences quoted when the question asks for an explanation: the two best of those ranked
/// within [`QUOTE_MARGIN`] of the best (4+ words; from the best's source or retrieval's first, or
/// holding the question's focus), by rank score plus [`GAIN_WEIGHT`] times their question
/// likelihood gain, as the quotes beside a short answer are chosen. Without a decoder, the two
/// best-ranked.
pub(crate) fn explanation<'a>(
    likely: Option<&Likelihood<'_>>,
    ranked: &'a [Ranked<'a>],
    passages: &[Passage],
) -> Result<Vec<&'a Ranked<'a>>> {
    let Some(first) = ranked.first() else { return Ok(Vec::new()) };
    let eligible: Vec<&Ranked> = ranked
        .iter()
        .filter(|r| {
            r.score >= first.score - QUOTE_MARGIN
                && (r.n == first.n || r.n == 1 || r.share >= FOCUS_SHARE)
                && r.text.split_whitespace().count() >= 4
        })
        .take(EXPLANATION_CANDIDATES)
        .collect();
    let Some(likely) = likely.filter(|_| eligible.len() > 2) else {
        return Ok(eligible.into_iter().take(2).collect());
    };
    Ok(by_gain(likely, eligible, passages)?.into_iter().take(2).map(|x| x.2).collect())
}

/// Sentences with their rank score plus [`GAIN_WEIGHT`] times their gain, and the gain, best first.
fn by_gain<'a>(
    likely: &Likelihood<'_>,
    sentences: Vec<&'a Ranked<'a>>,
    passages: &[Passage],
) -> Result<Vec<(f32, f32, &'a Ranked<'a>)>> {
    let mut scored = Vec::new();
    for r in sentences {
        let gain = sentence_gain(likely, r, passages)?;
        scored.push((r.score + GAIN_WEIGHT * gain, gain, r));
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(scored)
}

/// How much a sentence raises the decoder's likelihood of the question, read after the sentence
/// before it in its passage.
fn sentence_gain(likely: &Likelihood<'_>, r: &Ranked<'_>, passages: &[Passage]) -> Result<f32> {
    let own = passages.iter().find(|p| p.source.n == r.n);
    let at = own.and_then(|p| p.sentences.iter().position(|x| x == r.text));
    let before = own.zip(at.and_then(|i| i.checked_sub(1))).map(|(p, i)| p.sentences[i].as_str());
    match before {
        Some(b) => likely.gain(&format!("{b} {}", r.text)),
        None => likely.gain(r.text),
    }
}

/// Whether a sentence opens by referring back to the one before ("It stands on...", "These
/// were...").
fn refers_back(sentence: &str) -> bool {
    sentence.split_whitespace().next().is_some_and(|w| ANAPHORA.contains(&bare(w).as_str()))
}

/// Words that open a sentence about what the sentence before named.
const ANAPHORA: &[&str] =
    &["it", "its", "they", "their", "them", "he", "his", "she", "her", "this", "these", "those", "such", "there"];

/// A short answer copied from the best-ranked sentences, if one holds words the question does
/// not already hold. The decoder may copy only runs of words between the question's own
/// content words (an answer is what the question lacks; a worked example shows it what a
/// short answer is); its pick then weighs in the choice among the best sentence's runs.
pub(crate) fn short_answer(
    d: &Decoder,
    question: &str,
    ranked: &[Ranked<'_>],
    p: &AnswerParams,
    on: &mut dyn FnMut(AnswerEvent),
) -> Result<Outcome> {
    let top: Vec<&Ranked> = ranked.iter().take(CONTEXT_SENTENCES).collect();
    if top.is_empty() {
        return Ok(Outcome::Unsure);
    }
    // A sentence holds the question's focus when it holds most of its content terms, or is
    // close to it in meaning (cosine at strong evidence).
    let on_focus = |r: &Ranked| r.share >= FOCUS_SHARE || r.cosine >= p.strong_evidence;
    if asks_negated(question) && top.iter().all(|t| negations(t.text) == 0) {
        return Ok(Outcome::NegationUnstated);
    }
    let expect = expected(question);
    if expect == Expect::Description {
        return Ok(if on_focus(top[0]) { Outcome::Describe } else { Outcome::OffFocus });
    }
    let q: HashSet<String> = terms(question).into_iter().collect();
    let runs: Vec<String> =
        top.iter().flat_map(|t| span::runs(&defuse(t.text), question, false)).map(|r| r.text).collect();
    let style = numeric::style(question).filter(|_| expect == Expect::Number);
    // Runs of the kind the question asks for, when there are any (a date for "when").
    let typed: Vec<&String> = runs
        .iter()
        .filter(|r| fits(r, expect) && (style != Some(numeric::Style::Date) || numeric::date_like(r)))
        .collect();
    if runs.is_empty() {
        // Nothing to copy (every word is the question's, or a script without spaces).
        return Ok(Outcome::Unsure);
    }
    if typed.is_empty() {
        // The best sentences hold nothing of the kind asked for (no number for "how many").
        return Ok(Outcome::NoneOfKind(expect));
    }
    // The words will be chosen among the best sentences' runs of the kind asked for (cut finer
    // than the decoder's runs, also at auxiliary verbs and relative words).
    // A number question's runs are cut to their numbers ("1988", not "1988 but ...").
    let of_kind = |t: &Ranked| -> Vec<span::Run> {
        let runs: Vec<span::Run> =
            span::runs(t.text, question, true).into_iter().filter(|r| fits(&r.text, expect)).collect();
        let runs = match style {
            Some(style) => numeric::cores(t.text, &runs, style, &q),
            // A "who" question's runs are cut to the names in them.
            None if expect == Expect::Name => span::names(t.text, &runs),
            None => runs,
        };
        // A run holding nothing the question does not ("the", the question's own words cut
        // apart) is no candidate: choosing it would drop the short answer altogether.
        runs.into_iter().filter(|r| answers(&clean(&r.text), &q)).collect()
    };
    let cuts: Vec<(&Ranked, Vec<span::Run>)> =
        top.iter().map(|t| (*t, of_kind(t))).filter(|(_, cut)| !cut.is_empty()).collect();
    if cuts.is_empty() {
        // Nothing to choose from: no need to run the decoder for a pick.
        return Ok(Outcome::Unsure);
    }
    let text = top.iter().map(|t| defuse(t.text)).collect::<Vec<_>>().join(" ");
    let user = |text: &str, q: &str| format!("Text: {text}\n\nQuestion: {q}");
    let prompt = d.chat_prompt(&[
        Message::system(SYSTEM),
        Message::user(user(EXAMPLE.0, EXAMPLE.1)),
        Message::assistant(EXAMPLE.2),
        Message::user(user(&text, &defuse(question))),
    ])?;
    let tok = d.tokenizer();
    let mut copy_from = Vec::new();
    for run in typed {
        copy_from.push(tok.encode_plain(&format!(" {run}"))?);
    }
    if copy_from.is_empty() {
        return Ok(Outcome::Unsure);
    }
    // Each candidate scored as the whole answer: its words, then the end of the turn.
    let mut score = Vec::new();
    for run in cuts.iter().flat_map(|(_, cut)| cut) {
        let mut ids = tok.encode_plain(&clean(&run.text))?;
        ids.extend(tok.stop_ids.first().copied());
        score.push(ids);
    }
    let options =
        GenerateOptions { max_tokens: MAX_TOKENS, repeat_penalty: 1.0, copy_from, score, ..GenerateOptions::default() };
    let stream = if p.wait_for_decoder { d.start(prompt, &options)? } else { d.try_start(prompt, &options)? };
    let g = stream.finish(|tok| {
        on(AnswerEvent::Token(tok));
        !p.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    })?;
    // The runs scored by closeness to the question's terms, the decoder's pick, its likelihood
    // of each as the answer and their sentence's rank.
    let mut at = 0;
    let among: Vec<span::Candidates> = cuts
        .iter()
        .map(|(t, cut)| {
            let likely = g.scores.get(at..at + cut.len()).unwrap_or_default();
            at += cut.len();
            span::Candidates { sentence: t.text, rank: t.score, runs: cut, likely }
        })
        .collect();
    let Some((k, run)) = span::pick(question, &q, &among, &clean(&g.text)) else {
        return Ok(Outcome::Unsure);
    };
    let best = cuts[k].0;
    let span = clean(&run.text);
    if !best.text.contains(span.as_str()) {
        return Ok(Outcome::Unsure);
    }
    if !on_focus(best) {
        // The span's sentence answers another question on the topic: with the best sentence
        // off the question's focus too, the sources do not answer it; otherwise let the
        // decoder write the answer, checked as usual.
        return Ok(if on_focus(top[0]) { Outcome::Unsure } else { Outcome::OffFocus });
    }
    Ok(Outcome::Found(Short { text: span, n: best.n, sentence: best.text.to_string() }))
}

/// Whether the question asks about a negation: one of its words negates, not just after "or"
/// ("whether or not", "may or may not" ask both ways).
fn asks_negated(question: &str) -> bool {
    let words: Vec<&str> = question.split_whitespace().collect();
    (0..words.len()).any(|i| negations(words[i]) > 0 && !words[i.saturating_sub(2)..i].contains(&"or"))
}

/// What kind of answer the question asks for, from its first words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A number, a quantity or a date ("how many", "when", "what year").
    Number,
    /// A name ("who").
    Name,
    /// An explanation, not a phrase: "what is X?", "how does ...", "why ...".
    Description,
    Any,
}

/// Prepositions that, left at the end of a question, ask for their object.
const STRANDED: &[&str] = &["to", "for", "of", "in", "on", "at", "by", "with", "from", "into", "about", "like", "than"];

pub(crate) fn expected(question: &str) -> Expect {
    let q = question.trim().to_lowercase();
    // "When X happens, what does Y do?": the clause sets the scene, a later question word asks.
    if let Some(rest) = q.strip_prefix("when ") {
        let asks = |w: &str| {
            ["what", "which", "who", "whom", "whose", "how"].contains(&w.trim_matches(|c: char| !c.is_alphanumeric()))
        };
        if let Some(at) = rest.split_whitespace().position(asks) {
            return expected(&rest.split_whitespace().skip(at).collect::<Vec<_>>().join(" "));
        }
    }
    let q = q.as_str();
    const DESCRIPTION: &[&str] = &["how does", "how do", "how is", "how are", "how can", "why", "explain", "describe"];
    // "What is X?" with X a few words: a definition is asked for.
    let definition = ["what is ", "what are ", "what's "].iter().any(|p| {
        q.strip_prefix(p).is_some_and(|rest| rest.trim_end_matches(['?', ' ']).split_whitespace().count() <= 4)
    });
    // "What are stators attached to?", "What is QED short for?": a preposition left at the end
    // asks for its object, a phrase, whatever the question opens with.
    let stranded = q.trim_end_matches(['?', ' ']).rsplit(' ').next().is_some_and(|w| STRANDED.contains(&w));
    // "What does a reranker do?": what something does is explained, not named ("...galvanize
    // them to do?" asks for an action, a phrase).
    let words: Vec<&str> = q.trim_end_matches(['?', ' ']).split_whitespace().collect();
    let does = ["what does ", "what do ", "what did "].iter().any(|p| q.starts_with(p))
        && words.len() >= 4
        && words.last() == Some(&"do")
        && words[words.len() - 2] != "to";
    if numeric::style(q).is_some() {
        Expect::Number
    } else if does || (!stranded && (definition || DESCRIPTION.iter().any(|p| q.starts_with(p)))) {
        Expect::Description
    } else if ["who ", "whom ", "whose "].iter().any(|p| q.starts_with(p)) {
        Expect::Name
    } else {
        Expect::Any
    }
}

/// Whether a run can be the kind of answer asked for.
fn fits(run: &str, expect: Expect) -> bool {
    match expect {
        Expect::Number => run.split_whitespace().any(numeric::is_number),
        Expect::Name => run.split_whitespace().any(|w| w.chars().next().is_some_and(char::is_uppercase)),
        Expect::Description | Expect::Any => true,
    }
}

/// The span without surrounding spaces and trailing punctuation.
fn clean(text: &str) -> String {
    let t = text.trim().trim_end_matches(['.', ',', ';', ':', '!', '?']).trim();
    let t = t.strip_prefix([',', ';', ':', '.']).unwrap_or(t).trim();
    // Brackets or quotes around the whole span go; unbalanced ones at one end too.
    let t = t.trim_start_matches(['(', '[', '"', '“']).trim_end_matches([')', ']', '"', '”']).trim();
    t.to_string()
}

/// Whether a span says something the question does not: at least one of its content terms
/// (or a number) is not among the question's (`question`: its content terms).
pub(crate) fn answers(span: &str, question: &HashSet<String>) -> bool {
    let s = terms(span);
    !s.is_empty() && s.iter().any(|t| !question.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Source;

    fn passage(sentences: &[&str]) -> Passage {
        let source = Source {
            n: 1,
            doc_id: "d".into(),
            title: String::new(),
            uri: String::new(),
            passage: sentences.join(" "),
            snippet: String::new(),
            page: None,
            score: 0.0,
            relevance: 0.0,
            withheld: 0,
        };
        Passage {
            source,
            sentences: sentences.iter().map(|s| s.to_string()).collect(),
            // Orthogonal to the question: only the terms rank.
            vectors: vec![vec![0.0, 1.0]; sentences.len()],
            whole: String::new(),
        }
    }

    #[test]
    fn rare_terms_and_a_sentence_referring_back_rank_first() {
        let qv = [1.0, 0.0];
        let p = [passage(&[
            "Warsaw is large.",
            "Warsaw has many parks.",
            "Warsaw grew fast.",
            "Kronenberg built a palace there.",
        ])];
        // "Warsaw" is in most sentences, "Kronenberg" in one: one term each, but the rare one
        // says more.
        let ranked = rank_sentences("Which palace did Kronenberg have in Warsaw?", &qv, &p);
        assert_eq!(ranked[0].text, "Kronenberg built a palace there.");
        // A sentence opening with "It" carries the terms of the one before it (here "Vistula"),
        // after a sentence without them it does not.
        let it = |sentences: &[&str]| {
            let p = [passage(sentences)];
            let ranked = rank_sentences("How long is the Vistula?", &qv, &p);
            (ranked[0].text.to_string(), ranked.iter().find(|r| r.text.starts_with("It")).map(|r| r.score))
        };
        let (first, after) = it(&["The Vistula crosses Warsaw.", "It is 1,047 km long.", "Poland is large."]);
        assert_eq!(first, "It is 1,047 km long.");
        let (_, apart) = it(&["The Vistula crosses Warsaw.", "Poland is large.", "It is 1,047 km long."]);
        assert!(after > apart, "{after:?} {apart:?}");
    }

    #[test]
    fn without_a_decoder_the_one_quote_beside_the_answer_is_the_best_ranked_that_may_support_it() {
        let r = |score: f32, share: f32, n: usize, text: &'static str| Ranked { score, cosine: 0.5, share, n, text };
        let s = Short { text: "Farel".into(), n: 2, sentence: "Farel, a student of Lefevre, led it.".into() };
        let ranked = [
            r(1.0, 0.6, 2, "Farel, a student of Lefevre, led it."),
            // A lower source's sentence without the question's focus: no support.
            r(0.95, 0.2, 3, "Lefevre taught in Paris for years."),
            r(0.9, 0.2, 2, "Too short here."),
            r(0.85, 0.2, 2, "He preached in Geneva from 1532."),
            r(0.6, 0.9, 1, "Farel was born in Gap in 1489."),
        ];
        let quoted: Vec<&str> = quotes(None, &s, &ranked, &[]).unwrap().iter().map(|r| r.text).collect();
        assert_eq!(quoted, ["He preached in Geneva from 1532."]);
        // Nothing within the margin of the best: no quote beside the answer's own.
        let far = [ranked[0], ranked[4]];
        assert!(quotes(None, &s, &far, &[]).unwrap().is_empty());
    }

    #[test]
    fn without_a_decoder_an_explanation_quotes_the_two_best_ranked_that_may_answer_it() {
        let r = |score: f32, share: f32, n: usize, text: &'static str| Ranked { score, cosine: 0.5, share, n, text };
        let ranked = [
            r(1.0, 0.6, 2, "A cross-encoder reads the query and the passage together."),
            // A heading: too short to explain anything.
            r(0.98, 0.6, 2, "Cross-encoders"),
            // A lower source's sentence without the question's focus.
            r(0.95, 0.2, 3, "Encoders map text to vectors."),
            r(0.9, 0.2, 2, "It costs a forward pass per candidate."),
            r(0.8, 0.9, 4, "Cross-encoders rerank the top results."),
        ];
        let quoted: Vec<&str> = explanation(None, &ranked, &[]).unwrap().iter().map(|r| r.text).collect();
        assert_eq!(
            quoted,
            ["A cross-encoder reads the query and the passage together.", "It costs a forward pass per candidate."]
        );
        // Nothing else within the margin of the best: one quote.
        let far = [ranked[0], r(0.6, 0.9, 1, "Cross-encoders were proposed in 2019.")];
        let quoted: Vec<&str> = explanation(None, &far, &[]).unwrap().iter().map(|r| r.text).collect();
        assert_eq!(quoted, ["A cross-encoder reads the query and the passage together."]);
        assert!(explanation(None, &[], &[]).unwrap().is_empty());
    }

    #[test]
    fn negated_questions() {
        assert!(asks_negated("What machines are not equally powerful in principle?"));
        assert!(asks_negated("Which cells doesn't it attack?"));
        assert!(!asks_negated("Whether or not a problem can be solved is asked by what field?"));
        assert!(!asks_negated("How powerful may or may not a Turing machine be?"));
    }

    #[test]
    fn what_the_question_asks_for() {
        assert_eq!(expected("How many items is the library home to?"), Expect::Number);
        assert_eq!(expected("Who designed it?"), Expect::Name);
        assert_eq!(expected("What is HNSW?"), Expect::Description);
        assert_eq!(expected("What is QED short for?"), Expect::Any);
        assert_eq!(expected("What does a cross-encoder reranker do?"), Expect::Description);
        assert_eq!(expected("What did the conflict galvanize Muslims to do?"), Expect::Any);
        assert_eq!(expected("How are stators attached to?"), Expect::Any);
        assert_eq!(expected("What is the Rankine cycle sometimes called?"), Expect::Any);
        assert_eq!(expected("When was the treaty signed?"), Expect::Number);
        assert_eq!(expected("When a cell is eaten, who eats it?"), Expect::Name);
        assert_eq!(expected("When a pathogen is eaten it becomes trapped in what vesicle?"), Expect::Any);
        assert!(fits("over two million", Expect::Number) && !fits("student of Lefevre", Expect::Number));
    }

    #[test]
    fn the_question_own_words_are_not_an_answer() {
        let q: HashSet<String> = terms("Who led the Swiss Reformation?").into_iter().collect();
        let q = &q;
        assert!(answers("William Farel", q));
        assert!(!answers("the Swiss Reformation", q));
        assert!(!answers("the", q));
        assert!(answers("1523", q));
        assert_eq!(clean(" William Farel. "), "William Farel");
        assert_eq!(clean("(Hierarchical Navigable Small World)"), "Hierarchical Navigable Small World");
    }
}
