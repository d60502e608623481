//! The encoder handle and the worker thread that owns the model.

use crate::batch::{plan_batches, Batching};
use crate::bert::{Backend, Model};
use crate::model_dir::ModelDir;
use crate::native::{Parallelism, Precision};
use crate::{Device, Error, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use sousuo_common::Worker;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokenizers::Tokenizer;

/// Tuning of an [`Encoder`].
#[derive(Debug, Clone)]
pub struct EncoderOptions {
    /// How sequences are grouped into batches.
    pub batching: Batching,
    /// Requests that may wait for the worker before callers block.
    pub queue_depth: usize,
    /// How many waiting tokens the worker gathers from several callers into one planning round.
    pub gather_tokens: usize,
    /// Where the model runs.
    pub device: Device,
    /// Which CPU forward pass runs the model.
    pub backend: Backend,
    /// Threads of rayon's pool one batch may use (0: all of them).
    pub threads: usize,
    /// How the native forward pass spreads a batch over those threads.
    pub parallelism: Parallelism,
    /// The arithmetic of the dense layers (int8 needs the native backend).
    pub precision: Precision,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            batching: Batching::default(),
            queue_depth: 64,
            gather_tokens: 65_536,
            device: Device::Cpu,
            backend: Backend::Auto,
            threads: 0,
            parallelism: Parallelism::Sequences,
            precision: Precision::F32,
        }
    }
}

/// A contiguous `n x dim` matrix of L2-normalised sentence vectors, one row per input.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// Rows of width `dim` laid end to end (`data.len()` must be a multiple of `dim`).
    pub fn new(dim: usize, data: Vec<f32>) -> Result<Self> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch { expected: dim, got: data.len() });
        }
        Ok(Embeddings { dim, data })
    }
    /// Width of one vector.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }
    /// Whether there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Row `i`; panics when `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    /// The vectors, in input order.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim)
    }
    /// All vectors laid end to end.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
    /// All vectors laid end to end, owned.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
}

/// Counters of the work the worker did, for benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncoderStats {
    /// Sequences encoded.
    pub sequences: u64,
    /// Real tokens encoded.
    pub tokens: u64,
    /// Tokens including padding.
    pub padded_tokens: u64,
    /// Forward passes run.
    pub batches: u64,
}

#[derive(Default)]
struct Counters {
    sequences: AtomicU64,
    tokens: AtomicU64,
    padded_tokens: AtomicU64,
    batches: AtomicU64,
}

struct Job {
    seqs: Vec<Vec<u32>>,
    reply: Sender<Result<Vec<f32>>>,
}

/// Embeddings being computed by the encoder's worker ([`Encoder::submit`]).
pub struct Pending {
    dim: usize,
    answer: Receiver<Result<Vec<f32>>>,
}

impl Pending {
    /// Waits for the embeddings.
    pub fn wait(self) -> Result<Embeddings> {
        let data = self.answer.recv().map_err(|_| Error::WorkerGone)??;
        Embeddings::new(self.dim, data)
    }
}

/// A handle on one model. Clones share the model and its worker; the worker stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Encoder {
    inner: Arc<Inner>,
}

struct Inner {
    worker: Worker<Job>,
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, for counting the tokens of long texts.
    counter: Tokenizer,
    model: ModelDir,
    dim: usize,
    precision: Precision,
    counters: Arc<Counters>,
}

impl Encoder {
    /// Loads the model (errors surface here, on the caller's thread) and starts its worker.
    pub fn load(model: &ModelDir, options: EncoderOptions) -> Result<Self> {
        let device = options.device.resolve()?;
        let mut options = options;
        if matches!(device, Device::Cuda(_)) && options.batching == Batching::default() {
            options.batching = Batching::gpu();
        }
        let tokenizer = model.tokenizer()?;
        let mut counter = tokenizer.clone();
        counter.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let bert =
            Model::load(model, device, options.backend, options.threads, options.parallelism, options.precision)?;
        let precision = options.precision;
        let dim = bert.dim();
        let counters = Arc::new(Counters::default());
        let worker_counters = counters.clone();
        let worker = Worker::spawn("sousuo-encoder", Some(options.queue_depth), move |rx| {
            run_worker(bert, rx, options, &worker_counters)
        })
        .map_err(|e| Error::Model(format!("cannot start the encoder thread: {e}")))?;
        tracing::debug!(model = %model.name, dim, max_len = model.max_len, "encoder loaded");
        Ok(Encoder {
            inner: Arc::new(Inner { worker, tokenizer, counter, model: model.clone(), dim, precision, counters }),
        })
    }

    /// Embeds `texts`; row `i` of the result belongs to `texts[i]`.
    pub fn encode(&self, texts: &[&str]) -> Result<Embeddings> {
        let seqs = self.tokenize(texts)?;
        self.encode_ids(seqs)
    }

    /// Embeds already tokenised sequences (each at most [`Self::max_len`] ids, specials included).
    pub fn encode_ids(&self, seqs: Vec<Vec<u32>>) -> Result<Embeddings> {
        self.submit_ids(seqs)?.wait()
    }

    /// Hands `texts` to the encoder's worker and returns at once: the caller does other work
    /// (a query's BM25 list) while the forward pass runs, then [`Pending::wait`]s.
    pub fn submit(&self, texts: &[&str]) -> Result<Pending> {
        let seqs = self.tokenize(texts)?;
        self.submit_ids(seqs)
    }

    fn submit_ids(&self, seqs: Vec<Vec<u32>>) -> Result<Pending> {
        let (reply, answer) = bounded(1);
        if seqs.is_empty() {
            let _ = reply.send(Ok(Vec::new()));
        } else {
            self.inner.worker.send(Job { seqs, reply }).map_err(|_| Error::WorkerGone)?;
        }
        Ok(Pending { dim: self.inner.dim, answer })
    }

    /// Token ids for each text, truncated to the model's maximum length.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings =
            self.inner.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Tokens in `text` without special tokens and without truncation (for chunking).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        let enc = self.inner.counter.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.len())
    }

    /// Token counts of many texts (no special tokens, no truncation), in parallel where the
    /// tokenizer can.
    pub fn count_tokens_batch(&self, texts: &[&str]) -> Result<Vec<usize>> {
        let encs =
            self.inner.counter.encode_batch(texts.to_vec(), false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encs.iter().map(|e| e.len()).collect())
    }

    /// The tokenizer, configured with the model's truncation and no padding.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.inner.dim
    }

    /// The arithmetic of the dense layers (part of a collection's encoder identity).
    pub fn precision(&self) -> Precision {
        self.inner.precision
    }

    /// Longest input in tokens, special tokens included.
    pub fn max_len(&self) -> usize {
        self.inner.model.max_len
    }

    /// The model directory.
    pub fn model(&self) -> &ModelDir {
        &self.inner.model
    }

    /// Counters of the work done so far.
    pub fn stats(&self) -> EncoderStats {
        let c = &self.inner.counters;
        EncoderStats {
            sequences: c.sequences.load(Ordering::Relaxed),
            tokens: c.tokens.load(Ordering::Relaxed),
            padded_tokens: c.padded_tokens.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
        }
    }
}

fn run_worker(bert: Model, rx: Receiver<Job>, options: EncoderOptions, counters: &Counters) {
    while let Ok(first) = rx.recv() {
        let mut tokens: usize = first.seqs.iter().map(Vec::len).sum();
        let mut jobs = vec![first];
        while tokens < options.gather_tokens {
            match rx.try_recv() {
                Ok(job) => {
                    tokens += job.seqs.iter().map(Vec::len).sum::<usize>();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        match run_jobs(&bert, &jobs, options.batching, counters) {
            Ok(outputs) => {
                for (job, out) in jobs.iter().zip(outputs) {
                    let _ = job.reply.send(Ok(out));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "encoder batch failed");
                for job in &jobs {
                    let _ = job.reply.send(Err(Error::Model(e.to_string())));
                }
            }
        }
    }
}

/// Runs every sequence of `jobs` through the model in planned batches; returns each job's
/// rows in its own order.
fn run_jobs(bert: &Model, jobs: &[Job], batching: Batching, counters: &Counters) -> Result<Vec<Vec<f32>>> {
    let dim = bert.dim();
    let flat: Vec<(usize, usize)> =
        jobs.iter().enumerate().flat_map(|(j, job)| (0..job.seqs.len()).map(move |s| (j, s))).collect();
    let lengths: Vec<usize> = flat.iter().map(|&(j, s)| jobs[j].seqs[s].len()).collect();
    let mut outputs: Vec<Vec<f32>> = jobs.iter().map(|j| vec![0f32; j.seqs.len() * dim]).collect();
    let plan = plan_batches(&lengths, batching);
    let batches: Vec<Vec<&[u32]>> =
        plan.iter().map(|b| b.members.iter().map(|&i| jobs[flat[i].0].seqs[flat[i].1].as_slice()).collect()).collect();
    bert.forward_batches(&batches, |b, rows| {
        let batch = &plan[b];
        for (k, &i) in batch.members.iter().enumerate() {
            let (j, s) = flat[i];
            outputs[j][s * dim..(s + 1) * dim].copy_from_slice(&rows[k * dim..(k + 1) * dim]);
        }
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.sequences.fetch_add(batch.members.len() as u64, Ordering::Relaxed);
        counters.tokens.fetch_add(batches[b].iter().map(|s| s.len() as u64).sum(), Ordering::Relaxed);
        counters.padded_tokens.fetch_add(batch.padded_tokens() as u64, Ordering::Relaxed);
    })?;
    Ok(outputs)
}
