//! Generation: sampling and stopping options, the events a generation streams, and the loop
//! the worker thread runs for each queued prompt.

use crate::copy::{mask, CopyState};
use crate::model::Model;
use crate::tokenizer::{DecoderTokenizer, TokenStream};
use crate::{Error, Result};
use candle_transformers::generation::LogitsProcessor;
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// Sampling and stopping.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// `None` or 0: greedy.
    pub temperature: Option<f64>,
    /// Nucleus sampling: keep the smallest set of tokens whose probabilities reach this.
    pub top_p: Option<f64>,
    /// Seed of the sampler (generation is deterministic for a seed).
    pub seed: u64,
    /// Penalty on tokens among the last `repeat_last_n` (1.0: none). Small models loop without it.
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: usize,
    /// Keep generating past end-of-turn tokens (benchmarks measure a fixed length).
    pub ignore_stop: bool,
    /// When not empty, decoding may only copy: each token continues a contiguous run of one of
    /// these token sequences, and the generation ends (end of turn) when no token can.
    pub copy_from: Vec<Vec<u32>>,
    /// Continuations whose log-probability after the prompt is computed before generating
    /// ([`Generation::scores`]; with `max_tokens` 0 nothing is generated).
    pub score: Vec<Vec<u32>>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            temperature: None,
            top_p: None,
            seed: 299_792_458,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            ignore_stop: false,
            copy_from: Vec::new(),
            score: Vec::new(),
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model ended its turn.
    EndOfTurn,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The caller cancelled (dropped the stream or asked to stop).
    Cancelled,
}

/// A finished generation.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    /// The generated text.
    pub text: String,
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Why generation stopped.
    pub stop: StopReason,
    /// Time waiting in the queue.
    pub queue_ms: f64,
    /// Prompt processing (and scoring), up to and including the first generated token's logits.
    pub prefill_ms: f64,
    /// Every decode step after the first token.
    pub decode_ms: f64,
    /// Prompt tokens per second of prefill.
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second after the first.
    pub decode_tokens_per_s: f64,
    /// With [`GenerateOptions::score`]: each continuation's log-probability (natural log).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<f32>,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DecoderStats {
    /// Generations started.
    pub requests: u64,
    /// Tokens generated, all requests together.
    pub tokens_generated: u64,
    /// Requests waiting in the queue now.
    pub queued: usize,
}

/// What a running generation reports, in order: tokens, then one `Done`.
#[derive(Debug)]
pub enum Event {
    /// A piece of text (complete UTF-8) as the model produced it.
    Token(String),
    /// The end: the finished generation or why it failed.
    Done(Result<Generation>),
}

/// A running generation: iterate it for [`Event`]s. Dropping it cancels the generation.
pub struct Stream {
    pub(crate) rx: Receiver<Event>,
}

impl Iterator for Stream {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.rx.recv().ok()
    }
}

impl Stream {
    /// Runs to the end, handing each token to `on_token` (return `false` to stop early).
    pub fn finish(self, mut on_token: impl FnMut(&str) -> bool) -> Result<Generation> {
        for event in self.rx.iter() {
            match event {
                Event::Token(t) => {
                    if !on_token(&t) {
                        // Dropping the receiver makes the worker stop at its next token.
                        return Err(Error::Cancelled);
                    }
                }
                Event::Done(r) => return r,
            }
        }
        Err(Error::Stopped)
    }
}

pub(crate) struct Job {
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
    pub events: Sender<Event>,
    pub queued_at: Instant,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub tokens: AtomicU64,
    pub queued: AtomicUsize,
}

pub(crate) fn run_worker(mut model: Model, tokenizer: DecoderTokenizer, rx: Receiver<Job>, counters: &Counters) {
    for mut job in rx {
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let result = generate(&mut model, &tokenizer, &mut job, counters);
        model.clear();
        let _ = job.events.send(Event::Done(result));
    }
}

/// Prompt tokens per forward call while prefilling (bounds the attention mask's size).
const PREFILL_CHUNK: usize = 512;

fn generate(model: &mut Model, tok: &DecoderTokenizer, job: &mut Job, counters: &Counters) -> Result<Generation> {
    let err = |e: candle_core::Error| Error::Generation(e.to_string());
    let started = Instant::now();
    let queue_ms = started.duration_since(job.queued_at).as_secs_f64() * 1000.0;
    let o = &job.options;
    let temperature = o.temperature.filter(|t| *t > 0.0);
    let mut sampler = LogitsProcessor::new(o.seed, temperature, o.top_p);
    let mut logits = None;
    let mut pos = 0;
    model.reserve(job.prompt.len() + o.max_tokens);
    for piece in job.prompt.chunks(PREFILL_CHUNK) {
        logits = Some(model.forward(piece, pos)?);
        pos += piece.len();
    }
    let mut logits = logits.ok_or_else(|| Error::BadParameter { name: "prompt", reason: "empty".into() })?;
    // Continuations to score run after the prompt and are overwritten by the generation.
    let mut scores = Vec::with_capacity(o.score.len());
    if !o.score.is_empty() {
        let last = logits.to_vec1::<f32>().map_err(err)?;
        for c in &o.score {
            scores.push(model.log_prob(&last, c, pos)?);
        }
    }
    let mut stream = TokenStream::new(tok);
    let mut generated: Vec<u32> = Vec::new();
    let mut stop = StopReason::MaxTokens;
    let mut prefill_ms = 0.0;
    let mut decode_started = Instant::now();
    let word_start = |t: u32| tok.decode(&[t]).is_ok_and(|s| s.starts_with(char::is_whitespace));
    let mut copy = (!o.copy_from.is_empty()).then(|| CopyState::new(&o.copy_from, word_start));
    while generated.len() < o.max_tokens {
        let mut l = if o.repeat_penalty != 1.0 && !generated.is_empty() {
            let start = generated.len().saturating_sub(o.repeat_last_n);
            candle_transformers::utils::apply_repeat_penalty(&logits, o.repeat_penalty, &generated[start..])
                .map_err(err)?
        } else {
            logits.clone()
        };
        if let Some(c) = &copy {
            let mut allowed = c.allowed();
            if allowed.is_empty() {
                stop = StopReason::EndOfTurn;
                break;
            }
            if c.can_end() {
                allowed.extend(tok.stop_ids.iter().copied());
            }
            let v = mask(&l.to_vec1::<f32>().map_err(err)?, &allowed);
            l = candle_core::Tensor::from_vec(v, l.dims(), l.device()).map_err(err)?;
        }
        let next = sampler.sample(&l).map_err(err)?;
        if generated.is_empty() {
            prefill_ms = started.elapsed().as_secs_f64() * 1000.0;
            decode_started = Instant::now();
        }
        if !o.ignore_stop && tok.stop_ids.contains(&next) {
            stop = StopReason::EndOfTurn;
            break;
        }
        if let Some(c) = &mut copy {
            c.push(next);
        }
        generated.push(next);
        counters.tokens.fetch_add(1, Ordering::Relaxed);
        if let Some(piece) = stream.push(next)? {
            if job.events.send(Event::Token(piece)).is_err() {
                stop = StopReason::Cancelled;
                break;
            }
        }
        if generated.len() >= o.max_tokens {
            break;
        }
        logits = model.forward(&[next], pos)?;
        pos += 1;
    }
    if prefill_ms == 0.0 {
        // Nothing was generated (scoring only, or no token could be copied).
        prefill_ms = started.elapsed().as_secs_f64() * 1000.0;
    }
    let decode_ms = decode_started.elapsed().as_secs_f64() * 1000.0;
    let decoded_steps = generated.len().saturating_sub(1);
    Ok(Generation {
        text: stream.text()?,
        prompt_tokens: job.prompt.len(),
        generated_tokens: generated.len(),
        stop,
        queue_ms,
        prefill_ms,
        decode_ms,
        prefill_tokens_per_s: if prefill_ms > 0.0 { job.prompt.len() as f64 / (prefill_ms / 1000.0) } else { 0.0 },
        decode_tokens_per_s: if decode_ms > 0.0 { decoded_steps as f64 / (decode_ms / 1000.0) } else { 0.0 },
        scores,
    })
}
