use std::path::PathBuf;

/// Errors from loading models, fetching them and encoding text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model directory lacks a file the loader needs.
    #[error("model directory {dir} has no {file}: a model directory needs config.json, tokenizer.json and model.safetensors (run `sousuo models fetch` for the default model)")]
    MissingModelFile {
        /// The model directory.
        dir: PathBuf,
        /// The missing file's name.
        file: &'static str,
    },
    /// A model file exists but cannot be read or parsed.
    #[error("cannot read model file {path}: {reason}")]
    BadModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The tokenizer failed on an input.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The transformer forward pass failed.
    #[error("model error: {0}")]
    Model(String),
    /// The encoder's worker thread is gone (it panicked or was shut down).
    #[error("the encoder worker has stopped")]
    WorkerGone,
    /// A vector had another width than expected.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The width expected.
        expected: usize,
        /// The width found.
        got: usize,
    },
    /// The model cache failed (fetching, verifying, reading a model file).
    #[error(transparent)]
    Models(#[from] sousuo_common::Error),
    /// No such device or device support.
    #[error("{0}")]
    Device(String),
    /// A kernel failed.
    #[error(transparent)]
    Kernel(#[from] sousuo_kernels::Error),
    /// An I/O error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Model(e.to_string())
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
