//! The decision: which kind of answer to give and its text.
//!
//! A generated answer is kept when at least half its sentences are supported (its text is the
//! supported ones); otherwise, with strong retrieval (or no decoder), the best-matching source
//! sentences are quoted; otherwise the answer says the sources do not say.

use super::passages::{dot, Passage};
use super::short::{Expect, Ranked, Short};
use super::verify::carries_contact;
use super::verify::Verdict;
use super::{AnswerKind, AnswerParams, Sentence};

/// Why a quoted sentence with a link is not shown as checked: the link is the source's, quoted.
const LINK_IN_QUOTE: &str = "holds a link or contact detail: quoted from its source, not checked";

const NOT_SAID: &str = "The sources do not say.";

/// What the answer says and why.
pub(crate) struct Decision {
    pub kind: AnswerKind,
    pub text: String,
    pub sentences: Vec<Sentence>,
    pub invalid_citations: Vec<usize>,
    pub reason: String,
}

impl Decision {
    /// Retrieval found nothing close enough: no generation ran.
    pub fn not_covered(evidence: f32, floor: f32) -> Self {
        Decision {
            kind: AnswerKind::InsufficientEvidence,
            text: NOT_SAID.into(),
            sentences: Vec::new(),
            invalid_citations: Vec::new(),
            reason: format!("no passage is close enough to the question (best {evidence:.2} < {floor:.2})"),
        }
    }

    /// The passage the answer would rest on does not make the question likelier.
    pub fn not_answered(gain: f32, evidence: f32) -> Self {
        Decision {
            kind: AnswerKind::InsufficientEvidence,
            text: NOT_SAID.into(),
            sentences: Vec::new(),
            invalid_citations: Vec::new(),
            reason: format!(
                "the closest passage is on the topic but does not answer the question \
                 (question-likelihood gain {gain:.2} at evidence {evidence:.2})"
            ),
        }
    }

    /// The decoder's short answer, then the sentence it is copied from and the sentences quoted
    /// beside it (`short::quotes`: none, one or two), all cited.
    pub fn direct(s: &Short, ranked: &[Ranked<'_>], quotes: &[&Ranked<'_>]) -> Self {
        let link = carries_contact(&s.text);
        let mut sentences = vec![Sentence {
            supported: !link,
            note: link.then_some(LINK_IN_QUOTE),
            text: s.text.clone(),
            citations: vec![s.n],
            support: 1.0,
            citation_added: false,
        }];
        let own = ranked.iter().find(|r| r.text == s.sentence);
        for r in own.into_iter().chain(quotes.iter().copied()) {
            sentences.push(quote(r.text, r.n, r.cosine));
        }
        let quoted: Vec<String> = sentences[1..].iter().map(|q| format!("{} [{}]", q.text, q.citations[0])).collect();
        Decision {
            kind: AnswerKind::Generated,
            text: format!("{} [{}]. {}", s.text, s.n, quoted.join(" ")),
            sentences,
            invalid_citations: Vec::new(),
            reason: format!("a short answer copied from source {}, and the sentences it rests on", s.n),
        }
    }

    /// The question names something no source mentions.
    pub fn unmentioned(name: &str) -> Self {
        Decision {
            kind: AnswerKind::InsufficientEvidence,
            text: NOT_SAID.into(),
            sentences: Vec::new(),
            invalid_citations: Vec::new(),
            reason: format!("no source mentions \"{name}\", which the question names"),
        }
    }

    /// The short answer's sentence does not match the question's focus.
    pub fn off_focus() -> Self {
        Decision {
            kind: AnswerKind::InsufficientEvidence,
            text: NOT_SAID.into(),
            sentences: Vec::new(),
            invalid_citations: Vec::new(),
            reason: "the sentences closest to the question do not match its focus".into(),
        }
    }

    /// The question asks about what is not so, and the closest sentences negate nothing.
    pub fn negation_unstated() -> Self {
        Decision {
            kind: AnswerKind::InsufficientEvidence,
            text: NOT_SAID.into(),
            sentences: Vec::new(),
            invalid_citations: Vec::new(),
            reason: "the question asks what is not so, and the sentences closest to it state no negation".into(),
        }
    }

    /// The question asks for a number or a name that the best-matching sentences lack.
    pub fn none_of_kind(kind: Expect) -> Self {
        let what = if kind == Expect::Number { "number or date" } else { "name" };
        Decision {
            kind: AnswerKind::InsufficientEvidence,
            text: NOT_SAID.into(),
            sentences: Vec::new(),
            invalid_citations: Vec::new(),
            reason: format!("the question asks for a {what} and the best-matching sentences hold none"),
        }
    }

    /// The question asks for an explanation: quote the sentences chosen for it
    /// (`short::explanation`).
    pub fn described(chosen: &[&Ranked<'_>]) -> Self {
        Self::chosen("the question asks for an explanation".into(), Vec::new(), chosen)
    }

    /// The sentences chosen by `short::explanation`, quoted (none: insufficient evidence).
    fn chosen(why: String, invalid_citations: Vec<usize>, chosen: &[&Ranked<'_>]) -> Self {
        let sentences = chosen.iter().map(|r| quote(r.text, r.n, r.cosine)).collect();
        Self::quotes(format!("{why}: quoting the sentences that answer it best"), invalid_citations, sentences)
    }

    /// No decoder runs: quote the sources.
    pub fn without_decoder(qv: &[f32], passages: &[Passage]) -> Self {
        Self::quoted("no answer model is running".into(), Vec::new(), qv, passages)
    }

    /// The generated text, checked.
    /// A failed check falls back to quoting: the sentences in `fallback` (`short::explanation`,
    /// when the sentences were ranked), else the closest in cosine.
    pub fn from_verdict(
        v: Verdict,
        evidence: f32,
        fallback: &[&Ranked<'_>],
        qv: &[f32],
        passages: &[Passage],
        p: &AnswerParams,
    ) -> Self {
        if v.accepted() {
            // The text says only what the sources support; `sentences` keeps every generated
            // sentence with its flag, for display with a mark.
            let supported: Vec<Sentence> = v.sentences.iter().filter(|s| s.supported).cloned().collect();
            return Decision {
                kind: AnswerKind::Generated,
                text: render(&supported),
                reason: format!("{} of {} sentences supported by their sources", v.supported(), v.sentences.len()),
                sentences: v.sentences,
                invalid_citations: v.invalid,
            };
        }
        let why = if v.abstained {
            "the model said the sources do not say".to_string()
        } else {
            format!("only {} of {} generated sentences are supported", v.supported(), v.sentences.len())
        };
        if evidence >= p.strong_evidence {
            if !fallback.is_empty() {
                return Self::chosen(why, v.invalid, fallback);
            }
            return Self::quoted(why, v.invalid, qv, passages);
        }
        Decision {
            kind: AnswerKind::InsufficientEvidence,
            text: NOT_SAID.into(),
            sentences: Vec::new(),
            invalid_citations: v.invalid,
            reason: format!("{why}, and retrieval is weak ({evidence:.2} < {:.2})", p.strong_evidence),
        }
    }

    /// The best-matching source sentences, quoted (none: insufficient evidence).
    fn quoted(why: String, invalid_citations: Vec<usize>, qv: &[f32], passages: &[Passage]) -> Self {
        let sentences = extract(qv, passages, 2);
        Self::quotes(format!("{why}: quoting the best-matching sentences instead"), invalid_citations, sentences)
    }

    /// Quoted sentences as the answer (none: insufficient evidence).
    fn quotes(reason: String, invalid_citations: Vec<usize>, sentences: Vec<Sentence>) -> Self {
        let kind = if sentences.is_empty() { AnswerKind::InsufficientEvidence } else { AnswerKind::Extractive };
        Decision {
            kind,
            text: if sentences.is_empty() { NOT_SAID.into() } else { render(&sentences) },
            sentences,
            invalid_citations,
            reason,
        }
    }
}

/// The `n` sentences closest to the question among the passages, quoted and cited.
fn extract(qv: &[f32], passages: &[Passage], n: usize) -> Vec<Sentence> {
    let mut all: Vec<(f32, usize, &String)> = Vec::new();
    for p in passages.iter().take(3) {
        for (s, v) in p.sentences.iter().zip(&p.vectors) {
            if s.split_whitespace().count() >= 4 || s.chars().count() >= 12 {
                all.push((dot(v, qv), p.source.n, s));
            }
        }
    }
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    // Only sentences about as close to the question as the best one.
    let floor = all.first().map(|a| a.0 - 0.15).unwrap_or(0.0);
    all.into_iter().take_while(|a| a.0 >= floor).take(n).map(|(score, src, s)| quote(s, src, score)).collect()
}

/// A source sentence quoted and cited (not shown as checked when it holds a link).
fn quote(s: &str, n: usize, support: f32) -> Sentence {
    let link = carries_contact(s);
    Sentence {
        text: format!("“{}”", s.trim()),
        citations: vec![n],
        supported: !link,
        support,
        citation_added: false,
        note: link.then_some(LINK_IN_QUOTE),
    }
}

/// The answer text: each sentence followed by its markers.
fn render(sentences: &[Sentence]) -> String {
    sentences
        .iter()
        .map(|s| {
            let marks: String = s.citations.iter().map(|n| format!("[{n}]")).collect();
            if marks.is_empty() {
                s.text.clone()
            } else {
                format!("{} {marks}", s.text)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
