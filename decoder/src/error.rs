//! The decoder's errors.

use std::path::PathBuf;

/// Errors from loading a decoder model and generating with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a usable model: unreadable GGUF, metadata missing or inconsistent,
    /// tensors of the wrong size.
    #[error("decoder model: {0}")]
    Model(String),
    /// The model uses something this build does not implement (another architecture, mixture
    /// of experts, partial RoPE, another tokenizer model).
    #[error("decoder model: {0} is not supported")]
    Unsupported(String),
    /// The requantised-weights cache is damaged (it is rebuilt when this happens on load).
    #[error("corrupt requantised-weights cache: {0}")]
    CorruptCache(String),
    /// Tokenising or detokenising failed.
    #[error("decoder tokenizer: {0}")]
    Tokenizer(String),
    /// The model's chat template does not render.
    #[error("chat template: {0}")]
    Template(String),
    /// A forward pass failed.
    #[error("generation failed: {0}")]
    Generation(String),
    /// A request the model cannot take (empty prompt, prompt longer than the context).
    #[error("invalid {name}: {reason}")]
    BadParameter {
        /// What was wrong.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// The decoder's queue is full: retry later.
    #[error("the answer model is busy: too many questions are waiting, retry shortly")]
    Busy,
    /// The decoder's thread has stopped (shut down, or it panicked).
    #[error("the decoder thread has stopped")]
    Stopped,
    /// The caller stopped reading the generation.
    #[error("generation was cancelled")]
    Cancelled,
    /// A kernel refused its operands.
    #[error("decoder kernel: {0}")]
    Kernel(#[from] sousuo_kernels::Error),
    /// A durable write of a cache file failed.
    #[error(transparent)]
    Files(#[from] sousuo_common::Error),
    /// An I/O error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
