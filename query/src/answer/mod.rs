//! Grounded answers: retrieval -> passages that fit the decoder's context -> a prompt that
//! numbers them -> generation -> citations parsed and every sentence verified against what it
//! cites -> the generated answer, an extractive answer quoted from the sources, or an explicit
//! `insufficient_evidence` result.
//!
//! - `passages`: the sources (trimmed, instruction-like sentences withheld, embedded once).
//! - `prompt`: the chat given to the decoder; `rewrite`: follow-ups made standalone.
//! - `verify`: citations and support of each generated sentence; `terms`: the lexical side.
//! - `decide`: which answer to give (generated, extractive, or none) and its text.
//!
//! The thresholds are calibrated on committed sets (docs/answers.md says how); the verifier
//! uses the collection's own encoder, so it runs wherever search runs.

mod decide;
pub(crate) mod likely;
mod mention;
mod numeric;
mod passages;
mod prompt;
mod rewrite;
mod short;
mod span;
mod terms;
mod verify;

pub use passages::{looks_like_instruction, sentences};
pub use rewrite::rewrite;
pub use terms::lexical_overlap;
pub use verify::{is_supported, names_grounded, negation_grounded, numbers_grounded, support_score};

use crate::retriever::Retriever;
use crate::search::SearchParams;
use crate::{Error, Result};
use decide::Decision;
use passages::{select_passages, Passage};
use serde::{Deserialize, Serialize};
use short::Outcome;
use sousuo_decoder::{Decoder, GenerateOptions, Generation};
use sousuo_encoder::Encoder;
use std::time::Instant;

/// A sentence is `supported` when its support score against a cited passage (mean of best
/// sentence cosine and lexical overlap) reaches this (calibrated on
/// query/tests/fixtures/support.jsonl: docs/answers.md).
pub const SUPPORT_THRESHOLD: f32 = 0.58;
/// Below this best query-passage cosine, the collection is taken not to cover the question
/// (calibrated on corpora/sample/questions.jsonl).
pub const EVIDENCE_FLOOR: f32 = 0.46;
/// With a decoder, the lowest evidence at which the question-likelihood gain is measured; above
/// it the gain, weighed with the evidence, decides (`likely`).
pub const LOWEST_EVIDENCE: f32 = 0.40;
/// Question-likelihood gain (nats per token, at evidence 0.6; `likely::grounded`) below which
/// the best passage is taken not to answer the question (docs/answers.md).
pub const GAIN_FLOOR: f32 = 0.2;
/// At or above this, retrieval is strong enough to answer by quoting when generation fails.
pub const STRONG_EVIDENCE: f32 = 0.50;
/// Turns of history kept for rewriting follow-up questions.
pub const MAX_HISTORY: usize = 4;

/// One earlier question and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Turn {
    /// The question asked.
    pub question: String,
    /// The answer's text as shown.
    pub answer: String,
}

/// Answer options.
#[derive(Debug, Clone)]
pub struct AnswerParams {
    /// Retrieval (its `limit` is how many hits are considered for the prompt).
    pub search: SearchParams,
    /// Decoder tokens for all passages together.
    pub context_tokens: usize,
    /// Decoder tokens for one passage before it is trimmed to its best sentences.
    pub passage_tokens: usize,
    /// Decoder sampling and length.
    pub generate: GenerateOptions,
    /// Support score a sentence needs against its cited sources to count as supported.
    pub support_threshold: f32,
    /// Best question-passage cosine below which the collection does not cover the question.
    pub evidence_floor: f32,
    /// Evidence above which an extractive answer stands even when generation fails.
    pub strong_evidence: f32,
    /// With a decoder: the question-likelihood gain the best passage must reach (weighed with
    /// the evidence) for the question to count as covered; `evidence_floor` then gives way to
    /// [`LOWEST_EVIDENCE`]. `None`: the evidence floor alone decides.
    pub gain_floor: Option<f32>,
    /// Earlier turns of the conversation, oldest first (only the last [`MAX_HISTORY`] count).
    pub history: Vec<Turn>,
    /// Wait for a decoder queue slot (`false`: fail with `Busy` (decoder) when it is full).
    pub wait_for_decoder: bool,
    /// Answer first with a few words copied from the best-matching source sentence (and quote
    /// that sentence); `false`: the decoder writes the whole answer, then it is checked.
    pub direct: bool,
    /// Set (by anyone) to stop the generation at its next token: the client that asked has
    /// gone. The answer then fails with the decoder's `Cancelled`.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// The caller's own instructions (an OpenAI client's system message), added to the
    /// decoder's system turn after Sousuo's rules.
    pub instructions: Option<String>,
}

impl Default for AnswerParams {
    fn default() -> Self {
        AnswerParams {
            search: SearchParams { limit: 5, ..SearchParams::default() },
            context_tokens: 900,
            passage_tokens: 260,
            generate: GenerateOptions { max_tokens: 160, ..GenerateOptions::default() },
            support_threshold: SUPPORT_THRESHOLD,
            evidence_floor: EVIDENCE_FLOOR,
            strong_evidence: STRONG_EVIDENCE,
            gain_floor: Some(GAIN_FLOOR),
            history: Vec::new(),
            wait_for_decoder: true,
            direct: true,
            cancel: None,
            instructions: None,
        }
    }
}

/// How the answer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// Written by the decoder; each sentence verified.
    Generated,
    /// Quoted from the sources, because the generated text failed verification (or no
    /// decoder runs).
    Extractive,
    /// The sources do not cover the question.
    InsufficientEvidence,
}

/// A numbered source given to the model.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// Its number in the prompt (cited as `[n]`).
    pub n: usize,
    /// Its document's id.
    pub doc_id: String,
    /// Its document's title.
    pub title: String,
    /// Where the document came from (file path, URL or id).
    pub uri: String,
    /// The passage as given to the model (possibly trimmed to its best sentences).
    pub passage: String,
    /// Highlighted HTML snippet from search.
    pub snippet: String,
    /// Its page, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Its retrieval score.
    pub score: f32,
    /// Cosine between the question and the passage.
    pub relevance: f32,
    /// Sentences of the passage not shown to the model because they read as instructions to
    /// it (prompt injection).
    #[serde(skip_serializing_if = "is_zero")]
    pub withheld: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One sentence of the answer.
#[derive(Debug, Clone, Serialize)]
pub struct Sentence {
    /// The sentence, citation markers included.
    pub text: String,
    /// Source numbers this sentence cites (valid ones only).
    pub citations: Vec<usize>,
    /// Whether the sentence's support score against its cited sources reached the threshold.
    pub supported: bool,
    /// That score: mean of best sentence cosine and lexical overlap.
    pub support: f32,
    /// The model gave no citation; the verifier attached the source that supports it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub citation_added: bool,
    /// Why the sentence is not shown as supported whatever its score, when a rule decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// Timings in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Rewriting a follow-up into a standalone query.
    pub rewrite_ms: f64,
    /// Retrieval.
    pub retrieval_ms: f64,
    /// Selecting passages and rendering the prompt.
    pub prompt_ms: f64,
    /// Measuring whether the best passages answer the question (the decoder's question
    /// likelihood with and without them).
    pub gain_ms: f64,
    /// Generation.
    pub generation_ms: f64,
    /// Until the first generated token, from the start.
    pub first_token_ms: Option<f64>,
    /// Verifying citations and support.
    pub verify_ms: f64,
    /// The whole answer.
    pub total_ms: f64,
}

/// A finished answer.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The question asked.
    pub question: String,
    /// The query retrieval ran (the question, or its standalone rewrite in a conversation).
    pub query: String,
    /// Generated, extractive, or a refusal, and why.
    pub kind: AnswerKind,
    /// The answer's text: its supported sentences (all of them when extractive) with their
    /// citation markers. Unsupported generated sentences are left out here and kept, flagged,
    /// in `sentences`.
    pub text: String,
    /// The answer's sentences with their citations and support.
    pub sentences: Vec<Sentence>,
    /// A few words that answer the question, copied from the cited source sentence (the
    /// answer's first sentence), when the decoder found them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_answer: Option<String>,
    /// The numbered sources given to the model.
    pub sources: Vec<Source>,
    /// Citation numbers the model wrote that name no source (removed from the text).
    pub invalid_citations: Vec<usize>,
    /// The model's raw text, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_text: Option<String>,
    /// Why the answer is of its kind, in a few words.
    pub reason: String,
    /// The best question-passage cosine of the retrieved passages.
    pub evidence: f32,
    /// How much the passage the answer would rest on raised the decoder's likelihood of the
    /// question (nats per token), when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gain: Option<f32>,
    /// Where the time went.
    pub timings: Timings,
    /// The decoder's own report, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
}

/// Streamed progress of an answer.
#[derive(Debug)]
pub enum AnswerEvent<'a> {
    /// The standalone query, when a follow-up was rewritten.
    Rewritten(&'a str),
    /// The numbered sources, before generation starts.
    Sources(&'a [Source]),
    /// A piece of generated text.
    Token(&'a str),
}

/// Answers `question` from `collection`. `decoder: None` answers extractively.
pub fn answer(
    collection: &dyn Retriever,
    encoder: &Encoder,
    decoder: Option<&Decoder>,
    question: &str,
    p: &AnswerParams,
    on: &mut dyn FnMut(AnswerEvent),
) -> Result<Answer> {
    let started = Instant::now();
    let question = question.trim();
    if question.is_empty() {
        return Err(Error::EmptyQuery);
    }
    let mut timings = Timings::default();
    let query = standalone_query(decoder, question, p, &mut timings, on)?;
    let (qv, passages) = retrieve(collection, encoder, decoder, &query, p, &mut timings)?;
    let evidence = passages.iter().map(|x| x.source.relevance).fold(0.0f32, f32::max);
    let sources: Vec<Source> = passages.iter().map(|x| x.source.clone()).collect();
    on(AnswerEvent::Sources(&sources));
    let judged = decoder.zip(p.gain_floor);
    let floor = if judged.is_some() { LOWEST_EVIDENCE.min(p.evidence_floor) } else { p.evidence_floor };
    let close = !passages.is_empty() && evidence >= floor;
    // A name the question holds that no source mentions: the sources are not about it.
    let whole: Vec<&str> = passages.iter().map(|x| x.whole.as_str()).collect();
    let unnamed = if close { mention::unmentioned(&query, &whole) } else { None };
    let named = close && unnamed.is_none();
    let ranked = if named && decoder.is_some() { short::rank_sentences(&query, &qv, &passages) } else { Vec::new() };
    // The question's likelihood without a text, measured once for the passages and sentences.
    let t = Instant::now();
    let likely = match decoder {
        Some(d) if named => Some(likely::Likelihood::new(d, &query, p.wait_for_decoder)?),
        _ => None,
    };
    // Does the passage the answer would rest on (the best sentence's, or retrieval's first)
    // answer the question? The better of the two.
    let gain = match (&likely, judged) {
        (Some(l), Some(_)) => {
            let mut judge = vec![passages[0].source.passage.as_str()];
            let own = ranked.first().and_then(|r| passages.iter().find(|x| x.source.n == r.n));
            if let Some(own) = own.filter(|o| o.source.n != passages[0].source.n) {
                judge.push(own.source.passage.as_str());
            }
            let mut g = f32::NEG_INFINITY;
            for x in judge {
                g = g.max(l.gain(x)?);
            }
            Some(g)
        }
        _ => None,
    };
    let ungrounded = match (gain, judged) {
        (Some(g), Some((_, floor))) => !likely::grounded(g, evidence, floor),
        _ => false,
    };
    let covered = named && !ungrounded;
    let direct = covered && p.direct && decoder.is_some();
    timings.gain_ms = ms(t);
    let outcome = match decoder {
        Some(d) if direct => {
            let t = Instant::now();
            let s = short::short_answer(d, &query, &ranked, p, on)?;
            timings.generation_ms = ms(t);
            s
        }
        _ => Outcome::Unsure,
    };
    let generation = match decoder {
        Some(d) if covered && matches!(outcome, Outcome::Unsure) => {
            Some(generate(d, &query, &passages, p, &mut timings, on)?)
        }
        _ => None,
    };
    // The sentences quoted beside a short answer's own.
    let t = Instant::now();
    let quotes = match &outcome {
        Outcome::Found(s) => short::quotes(likely.as_ref(), s, &ranked, &passages)?,
        Outcome::Describe => short::explanation(likely.as_ref(), &ranked, &passages)?,
        _ => Vec::new(),
    };
    timings.gain_ms += ms(t);
    let t = Instant::now();
    let decision = match (&generation, &outcome) {
        _ if !covered => match (&unnamed, gain) {
            (Some(name), _) => Decision::unmentioned(name),
            (None, Some(g)) if close => Decision::not_answered(g, evidence),
            _ => Decision::not_covered(evidence, floor),
        },
        (_, Outcome::Found(s)) => Decision::direct(s, &ranked, &quotes),
        (_, Outcome::NoneOfKind(kind)) => Decision::none_of_kind(*kind),
        (_, Outcome::OffFocus) => Decision::off_focus(),
        (_, Outcome::NegationUnstated) => Decision::negation_unstated(),
        (_, Outcome::Describe) => Decision::described(&quotes),
        (Some(g), _) => {
            let verdict = verify::verify(encoder, &query, &g.text, &passages, p.support_threshold)?;
            // Should the check fail with strong retrieval, the quotes are chosen as for an
            // explanation.
            let fallback = if verdict.accepted() || evidence < p.strong_evidence {
                Vec::new()
            } else {
                short::explanation(likely.as_ref(), &ranked, &passages)?
            };
            Decision::from_verdict(verdict, evidence, &fallback, &qv, &passages, p)
        }
        (None, _) => Decision::without_decoder(&qv, &passages),
    };
    timings.verify_ms = ms(t);
    timings.total_ms = ms(started);
    Ok(Answer {
        question: question.to_string(),
        query,
        kind: decision.kind,
        text: decision.text,
        sentences: decision.sentences,
        short_answer: match outcome {
            Outcome::Found(s) => Some(s.text),
            _ => None,
        },
        sources,
        invalid_citations: decision.invalid_citations,
        generated_text: generation.as_ref().map(|g| g.text.clone()),
        reason: decision.reason,
        evidence,
        gain,
        timings,
        generation,
    })
}

/// The question, or in a conversation its standalone rewrite.
fn standalone_query(
    decoder: Option<&Decoder>,
    question: &str,
    p: &AnswerParams,
    timings: &mut Timings,
    on: &mut dyn FnMut(AnswerEvent),
) -> Result<String> {
    if p.history.is_empty() {
        return Ok(question.to_string());
    }
    let t = Instant::now();
    let q = rewrite(decoder, &p.history, question)?;
    timings.rewrite_ms = ms(t);
    on(AnswerEvent::Rewritten(&q));
    Ok(q)
}

/// Hybrid search, then the hits' passages trimmed to the decoder's budget; also the query's
/// vector (the passages are scored and quoted against it).
fn retrieve(
    collection: &dyn Retriever,
    encoder: &Encoder,
    decoder: Option<&Decoder>,
    query: &str,
    p: &AnswerParams,
    timings: &mut Timings,
) -> Result<(Vec<f32>, Vec<Passage>)> {
    let t = Instant::now();
    let results = collection.search(encoder, query, &p.search)?;
    timings.retrieval_ms = ms(t);
    let t = Instant::now();
    let qv = encoder.encode(&[query])?.row(0).to_vec();
    let passages = select_passages(collection, encoder, decoder, &qv, &results.hits, p)?;
    timings.prompt_ms = ms(t);
    Ok((qv, passages))
}

/// The decoder's reply to the prompt over `passages`, streamed token by token to `on`.
fn generate(
    d: &Decoder,
    query: &str,
    passages: &[Passage],
    p: &AnswerParams,
    timings: &mut Timings,
    on: &mut dyn FnMut(AnswerEvent),
) -> Result<Generation> {
    let t = Instant::now();
    let prompt = d.chat_prompt(&prompt::prompt_messages(query, passages, p.instructions.as_deref()))?;
    let mut first = None;
    let stream = if p.wait_for_decoder { d.start(prompt, &p.generate)? } else { d.try_start(prompt, &p.generate)? };
    let g = stream.finish(|tok| {
        first.get_or_insert_with(|| ms(t));
        on(AnswerEvent::Token(tok));
        !p.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    })?;
    timings.generation_ms = ms(t);
    timings.first_token_ms = first;
    Ok(g)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
