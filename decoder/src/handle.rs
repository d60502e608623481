//! [`Decoder`]: a cheap, cloneable handle on one model owned by its worker thread.

use crate::generate::{run_worker, Counters, DecoderStats, GenerateOptions, Generation, Job, Stream};
use crate::model::{self, Backend, Loaded};
use crate::template::{ChatTemplate, Message};
use crate::tokenizer::DecoderTokenizer;
use crate::{Error, Result};
use crossbeam_channel::{unbounded, TrySendError};
use sousuo_common::Worker;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

struct Inner {
    worker: Worker<Job>,
    tokenizer: DecoderTokenizer,
    template: ChatTemplate,
    context_length: usize,
    path: PathBuf,
    backend: &'static str,
    counters: Arc<Counters>,
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
        let Loaded { model, tokenizer, template, context_length } = model::load(path, backend, requant_dir)?;
        let backend = model.name();
        tracing::debug!(
            "decoder {} loaded ({backend}) in {:.0} ms",
            path.display(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let tok = tokenizer.clone();
        let worker = Worker::spawn("sousuo-decoder", Some(queue_depth), move |rx| run_worker(model, tok, rx, &c))
            .map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
        Ok(Decoder {
            inner: Arc::new(Inner {
                worker,
                tokenizer,
                template,
                context_length,
                path: path.to_path_buf(),
                backend,
                counters,
            }),
        })
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &DecoderTokenizer {
        &self.inner.tokenizer
    }

    /// The model's chat template.
    pub fn template(&self) -> &ChatTemplate {
        &self.inner.template
    }

    /// The context window in tokens (prompt and generation together).
    pub fn context_length(&self) -> usize {
        self.inner.context_length
    }

    /// The GGUF file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The forward pass in use: "native" or "candle".
    pub fn backend(&self) -> &'static str {
        self.inner.backend
    }

    /// Counters for metrics.
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
        // Message contents are text: a control token spelled inside one (a document's
        // `<file_sep>`, a user's `<|im_start|>`) must not become the token.
        let t = &self.inner.tokenizer;
        let messages: Vec<Message> =
            messages.iter().map(|m| Message { role: m.role.clone(), content: t.defuse(&m.content) }).collect();
        let text = self.inner.template.render(&messages)?;
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
        self.inner.worker.send(job).map_err(|_| Error::Stopped)?;
        Ok(stream)
    }

    /// Like [`Self::start`], but fails at once with [`Error::Busy`] when the queue is full.
    pub fn try_start(&self, prompt: Vec<u32>, options: &GenerateOptions) -> Result<Stream> {
        let (job, stream) = self.job(prompt, options)?;
        match self.inner.worker.try_send(job) {
            Ok(()) => Ok(stream),
            Err(TrySendError::Full(_)) => {
                self.inner.counters.queued.fetch_sub(1, Ordering::Relaxed);
                Err(Error::Busy)
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::Stopped),
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

    fn job(&self, prompt: Vec<u32>, options: &GenerateOptions) -> Result<(Job, Stream)> {
        if prompt.is_empty() {
            return Err(Error::BadParameter { name: "prompt", reason: "empty".into() });
        }
        // Scored continuations and the generation each follow the prompt, one after the other.
        let after = options.score.iter().map(Vec::len).fold(options.max_tokens, usize::max);
        if prompt.len() + after > self.inner.context_length {
            return Err(Error::BadParameter {
                name: "prompt",
                reason: format!(
                    "{} prompt tokens + {after} to generate or score exceed the model's context of {}",
                    prompt.len(),
                    self.inner.context_length
                ),
            });
        }
        let (events, rx) = unbounded();
        self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
        Ok((Job { prompt, options: options.clone(), events, queued_at: Instant::now() }, Stream { rx }))
    }
}
