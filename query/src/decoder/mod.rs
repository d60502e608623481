//! The decoder: a GGUF llama-family model on a worker thread, with its tokenizer and chat
//! template read from the same file. The forward pass is Sousuo's own ([`NativeLlama`], int8
//! kernels) where the model fits it, candle-transformers' quantized llama otherwise
//! ([`Backend`]).
//!
//! Callers send a prompt through a bounded queue and read a [`Stream`] of events; the worker prefills the
//! prompt, then decodes one token at a time reusing the KV cache, handing each completed piece
//! of text to the stream (dropping the stream stops generation). A full queue is
//! reported as [`Error::Busy`] by [`Decoder::try_start`], so servers can shed load.

mod llama;
mod requant;
mod template;
mod tokenizer;

pub use llama::{LlamaConfig, NativeLlama};

pub use requant::{needs_requant, prepare_gguf, requantize_q8};
pub use template::{ChatTemplate, Message};
pub use tokenizer::{defuse_specials, DecoderTokenizer, TokenStream};

use crate::{Error, Result};
use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::ModelWeights;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Which forward pass runs the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Sousuo's own pass when the model fits it (llama without experts), else candle.
    #[default]
    Auto,
    /// Sousuo's own pass ([`NativeLlama`]); an error for models it does not implement.
    Native,
    /// candle-transformers' quantized llama (slow Q4/Q5 types converted to Q8_0 first).
    Candle,
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Backend::Auto),
            "native" => Ok(Backend::Native),
            "candle" => Ok(Backend::Candle),
            other => Err(Error::BadParameter {
                name: "decoder backend",
                reason: format!("{other:?} is not one of auto, native, candle"),
            }),
        }
    }
}

/// The loaded model, as the worker thread runs it.
enum Model {
    Native(Box<NativeLlama>, Vec<f32>),
    Candle(Box<ModelWeights>),
}

impl Model {
    /// Runs `tokens` at `pos` (tokens already cached) and returns the last position's logits.
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor> {
        let err = |e: candle_core::Error| Error::Decoder(format!("generation failed: {e}"));
        match self {
            Model::Native(m, logits) => {
                m.forward(tokens, pos, logits)?;
                Tensor::from_slice(logits, logits.len(), &Device::Cpu).map_err(err)
            }
            Model::Candle(m) => {
                let input = Tensor::new(tokens, &Device::Cpu).and_then(|t| t.unsqueeze(0)).map_err(err)?;
                m.forward(&input, pos)
                    .and_then(|l| l.squeeze(0))
                    .and_then(|l| l.to_dtype(candle_core::DType::F32))
                    .map_err(err)
            }
        }
    }

    fn reserve(&mut self, positions: usize) {
        if let Model::Native(m, _) = self {
            m.reserve(positions);
        }
    }

    fn clear(&mut self) {
        match self {
            Model::Native(m, _) => m.clear(),
            Model::Candle(m) => m.clear_kv_cache(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Model::Native(..) => "native",
            Model::Candle(_) => "candle",
        }
    }
}

/// Sampling and stopping.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// `None` or 0: greedy.
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: u64,
    /// Penalty on tokens among the last `repeat_last_n` (1.0: none). Small models loop without it.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// Keep generating past end-of-turn tokens (benchmarks measure a fixed length).
    pub ignore_stop: bool,
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
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfTurn,
    MaxTokens,
    Cancelled,
}

/// A finished generation.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub stop: StopReason,
    /// Time waiting in the queue.
    pub queue_ms: f64,
    /// Prompt processing, up to and including the first generated token's logits.
    pub prefill_ms: f64,
    /// Every decode step after the first token.
    pub decode_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DecoderStats {
    pub requests: u64,
    pub tokens_generated: u64,
    pub queued: usize,
}

/// What a running generation reports, in order: tokens, then one `Done`.
#[derive(Debug)]
pub enum Event {
    /// A piece of text (complete UTF-8) as the model produced it.
    Token(String),
    Done(Result<Generation>),
}

/// A running generation: iterate it for [`Event`]s. Dropping it cancels the generation.
pub struct Stream {
    rx: Receiver<Event>,
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
                        return Err(Error::Decoder("generation was cancelled".into()));
                    }
                }
                Event::Done(r) => return r,
            }
        }
        Err(Error::Decoder("the decoder thread stopped during generation".into()))
    }
}

struct Job {
    prompt: Vec<u32>,
    options: GenerateOptions,
    events: Sender<Event>,
    queued_at: Instant,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    tokens: AtomicU64,
    queued: AtomicUsize,
}

struct Inner {
    tx: Option<Sender<Job>>,
    tokenizer: DecoderTokenizer,
    template: ChatTemplate,
    context_length: usize,
    path: PathBuf,
    backend: &'static str,
    counters: Arc<Counters>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.take();
        if let Ok(mut h) = self.handle.lock() {
            if let Some(h) = h.take() {
                let _ = h.join();
            }
        }
    }
}

/// A cheap, cloneable handle on one decoder model owned by a worker thread.
#[derive(Clone)]
pub struct Decoder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("path", &self.inner.path).finish()
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Decoder(format!("{}: {e}", path.display()))
}

impl Decoder {
    /// Loads a GGUF decoder with the [`Backend::Auto`] forward pass; `queue_depth` requests
    /// may wait before [`Self::try_start`] reports [`Error::Busy`].
    pub fn load(path: &Path, queue_depth: usize) -> Result<Self> {
        Self::load_with(path, queue_depth, Backend::Auto, None)
    }

    /// Loads a GGUF decoder on a chosen backend. The requantised weights are cached under
    /// `requant_dir`, made on first use: the native pass's 8-bit blocks, or, when candle runs a
    /// file with types it runs without SIMD, its Q8_0 conversion. Without a directory the
    /// native pass requantises at every load and candle runs such files slowly.
    pub fn load_with(path: &Path, queue_depth: usize, backend: Backend, requant_dir: Option<&Path>) -> Result<Self> {
        let started = Instant::now();
        let mut file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
        let ct = Content::read(&mut file).map_err(|e| io_err(path, format!("not a readable GGUF file: {e}")))?;
        let arch =
            ct.metadata.get("general.architecture").and_then(|v| v.to_string().ok().cloned()).unwrap_or_default();
        if arch != "llama" {
            return Err(Error::Decoder(format!(
                "{}: architecture {arch:?} is not supported (Sousuo runs llama-family GGUF decoders)",
                path.display()
            )));
        }
        let native = match backend {
            Backend::Candle => false,
            Backend::Native => {
                LlamaConfig::from_gguf(&ct).map_err(|e| io_err(path, e))?;
                true
            }
            Backend::Auto => match LlamaConfig::from_gguf(&ct) {
                Ok(_) => true,
                Err(e) => {
                    tracing::info!("{}: {e}; running it through candle", path.display());
                    false
                }
            },
        };
        // The tokenizer first: loading the weights consumes the metadata.
        let tokenizer = DecoderTokenizer::from_gguf(&ct)?;
        let name = |id: Option<u32>| id.and_then(|i| tokenizer.inner.id_to_token(i)).unwrap_or_default();
        let template = ChatTemplate::new(
            ct.metadata.get("tokenizer.chat_template").and_then(|v| v.to_string().ok().cloned()),
            name(tokenizer.bos_id),
            name(tokenizer.stop_ids.first().copied()),
        );
        let context_length =
            ct.metadata.get("llama.context_length").and_then(|v| v.to_u32().ok()).unwrap_or(2048) as usize;
        let model = if native {
            let threads = rayon::current_num_threads();
            let m = NativeLlama::load(path, &ct, &mut file, threads, requant_dir).map_err(|e| io_err(path, e))?;
            Model::Native(Box::new(m), Vec::new())
        } else {
            let (ct, mut file, from) = match requant_dir.filter(|_| needs_requant(&ct)) {
                Some(dir) => {
                    let q8 = prepare_gguf(path, dir)?;
                    let mut f = std::fs::File::open(&q8).map_err(|e| io_err(&q8, e))?;
                    let ct = Content::read(&mut f).map_err(|e| io_err(&q8, e))?;
                    (ct, f, q8)
                }
                None => {
                    if needs_requant(&ct) {
                        tracing::warn!("{} holds Q4/Q5 weights, which candle runs without SIMD: slow", path.display());
                    }
                    (ct, file, path.to_path_buf())
                }
            };
            Model::Candle(Box::new(
                ModelWeights::from_gguf(ct, &mut file, &Device::Cpu)
                    .map_err(|e| io_err(&from, format!("cannot load the weights: {e}")))?,
            ))
        };
        let backend = model.name();
        tracing::debug!(
            "decoder {} loaded ({backend}) in {:.0} ms",
            path.display(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let (tx, rx) = bounded::<Job>(queue_depth.max(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let tok = tokenizer.clone();
        let handle = std::thread::Builder::new()
            .name("sousuo-decoder".into())
            .spawn(move || run_worker(model, tok, rx, &c))
            .map_err(|e| Error::Decoder(format!("cannot start the decoder thread: {e}")))?;
        Ok(Decoder {
            inner: Arc::new(Inner {
                tx: Some(tx),
                tokenizer,
                template,
                context_length,
                path: path.to_path_buf(),
                backend,
                counters,
                handle: Mutex::new(Some(handle)),
            }),
        })
    }

    pub fn tokenizer(&self) -> &DecoderTokenizer {
        &self.inner.tokenizer
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.inner.template
    }

    pub fn context_length(&self) -> usize {
        self.inner.context_length
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The forward pass in use: "native" or "candle".
    pub fn backend(&self) -> &'static str {
        self.inner.backend
    }

    pub fn stats(&self) -> DecoderStats {
        let c = &self.inner.counters;
        DecoderStats {
            requests: c.requests.load(Ordering::Relaxed),
            tokens_generated: c.tokens.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
        }
    }

    /// The prompt token ids of a chat.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let text = self.inner.template.render(messages)?;
        let mut ids = self.inner.tokenizer.encode(&text)?;
        if self.inner.tokenizer.add_bos {
            if let Some(b) = self.inner.tokenizer.bos_id {
                ids.insert(0, b);
            }
        }
        Ok(ids)
    }

    /// Starts generating a reply to `prompt`, waiting for a queue slot.
    pub fn start(&self, prompt: Vec<u32>, options: &GenerateOptions) -> Result<Stream> {
        let (job, stream) = self.job(prompt, options)?;
        self.sender()?.send(job).map_err(|_| Error::Decoder("the decoder thread has stopped".into()))?;
        Ok(stream)
    }

    /// Like [`Self::start`], but fails at once with [`Error::Busy`] when the queue is full.
    pub fn try_start(&self, prompt: Vec<u32>, options: &GenerateOptions) -> Result<Stream> {
        let (job, stream) = self.job(prompt, options)?;
        match self.sender()?.try_send(job) {
            Ok(()) => Ok(stream),
            Err(TrySendError::Full(_)) => {
                self.inner.counters.queued.fetch_sub(1, Ordering::Relaxed);
                Err(Error::Busy)
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::Decoder("the decoder thread has stopped".into())),
        }
    }

    /// Generates a whole reply, handing each piece of text to `on_token`.
    pub fn generate(
        &self,
        prompt: Vec<u32>,
        options: &GenerateOptions,
        on_token: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.start(prompt, options)?.finish(on_token)
    }

    fn sender(&self) -> Result<&Sender<Job>> {
        self.inner.tx.as_ref().ok_or_else(|| Error::Decoder("the decoder is shut down".into()))
    }

    fn job(&self, prompt: Vec<u32>, options: &GenerateOptions) -> Result<(Job, Stream)> {
        if prompt.is_empty() {
            return Err(Error::BadParameter { name: "prompt", reason: "empty".into() });
        }
        if prompt.len() + options.max_tokens > self.inner.context_length {
            return Err(Error::BadParameter {
                name: "prompt",
                reason: format!(
                    "{} prompt tokens + {} to generate exceed the model's context of {}",
                    prompt.len(),
                    options.max_tokens,
                    self.inner.context_length
                ),
            });
        }
        let (events, rx) = unbounded();
        self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
        Ok((Job { prompt, options: options.clone(), events, queued_at: Instant::now() }, Stream { rx }))
    }
}

fn run_worker(mut model: Model, tokenizer: DecoderTokenizer, rx: Receiver<Job>, counters: &Counters) {
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
    let err = |e: candle_core::Error| Error::Decoder(format!("generation failed: {e}"));
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
    let mut stream = TokenStream::new(tok);
    let mut generated: Vec<u32> = Vec::new();
    let mut stop = StopReason::MaxTokens;
    let mut prefill_ms = 0.0;
    let mut decode_started = Instant::now();
    while generated.len() < o.max_tokens {
        let l = if o.repeat_penalty != 1.0 && !generated.is_empty() {
            let start = generated.len().saturating_sub(o.repeat_last_n);
            candle_transformers::utils::apply_repeat_penalty(&logits, o.repeat_penalty, &generated[start..])
                .map_err(err)?
        } else {
            logits.clone()
        };
        let next = sampler.sample(&l).map_err(err)?;
        if generated.is_empty() {
            prefill_ms = started.elapsed().as_secs_f64() * 1000.0;
            decode_started = Instant::now();
        }
        if !o.ignore_stop && tok.stop_ids.contains(&next) {
            stop = StopReason::EndOfTurn;
            break;
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
    })
}
