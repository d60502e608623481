use crate::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tokenizers::{PaddingParams, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the attention mask (sentence-transformers' default, MiniLM's).
    Mean,
    /// The first ([CLS]) token's vector.
    Cls,
}

/// A Hugging Face style BERT-family model directory, checked and parsed.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory.
    pub dir: PathBuf,
    /// Its name (the directory's last component).
    pub name: String,
    /// The BERT configuration (`config.json`).
    pub config: candle_transformers::models::bert::Config,
    /// How token vectors become one sentence vector.
    pub pooling: Pooling,
    /// Longest input in tokens, special tokens included.
    pub max_len: usize,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl ModelDir {
    /// Reads and validates a model directory.
    pub fn open(dir: &Path) -> Result<Self> {
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            if !dir.join(file).is_file() {
                return Err(Error::MissingModelFile { dir: dir.to_path_buf(), file });
            }
        }
        let config: candle_transformers::models::bert::Config = read_json(&dir.join("config.json"))?;
        let pooling = match read_optional_json::<PoolingConfig>(&dir.join("1_Pooling/config.json"))? {
            Some(p) if p.pooling_mode_cls_token && !p.pooling_mode_mean_tokens => Pooling::Cls,
            _ => Pooling::Mean,
        };
        let st_max = read_optional_json::<SentenceBertConfig>(&dir.join("sentence_bert_config.json"))?
            .and_then(|c| c.max_seq_length);
        // sentence-transformers' max_seq_length wins; otherwise what the position table allows.
        let max_len = st_max.unwrap_or(config.max_position_embeddings).min(config.max_position_embeddings).max(2);
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "encoder".to_string());
        Ok(ModelDir { dir: dir.to_path_buf(), name, config, pooling, max_len })
    }

    /// The path of the weights file.
    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    /// SHA-256 of the weights file: the encoder's identity in a collection's manifest.
    /// Cached beside the weights (`.sousuo-weights.json`, keyed by size and modification time)
    /// when the directory is writable, so opening a collection does not rehash 90 MB.
    pub fn weights_sha256(&self) -> Result<String> {
        #[derive(serde::Serialize, Deserialize)]
        struct Cached {
            size: u64,
            mtime: u64,
            sha256: String,
        }
        let weights = self.weights();
        let meta = std::fs::metadata(&weights).map_err(|e| Error::io(&weights, e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let sidecar = self.dir.join(".sousuo-weights.json");
        if let Some(c) = read_optional_json::<Cached>(&sidecar).ok().flatten() {
            if c.size == meta.len() && c.mtime == mtime {
                return Ok(c.sha256);
            }
        }
        let sha256 = crate::models::sha256_file(&weights)?;
        let cached = Cached { size: meta.len(), mtime, sha256: sha256.clone() };
        if let Ok(bytes) = serde_json::to_vec(&cached) {
            let _ = sousuo_common::fs::atomic_write(&sidecar, &bytes); // a read-only model directory just rehashes
        }
        Ok(sha256)
    }

    /// Loads the tokenizer with truncation at `max_len` and no padding: a model's shipped
    /// `tokenizer.json` may pin both (MiniLM's says truncate at 128, pad to a fixed 128),
    /// and the batcher pads each batch to its own longest sequence instead.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let path = self.dir.join("tokenizer.json");
        let mut tok = Tokenizer::from_file(&path)
            .map_err(|e| Error::BadModelFile { path: path.clone(), reason: e.to_string() })?;
        tok.with_padding(None::<PaddingParams>);
        tok.with_truncation(Some(TruncationParams {
            max_length: self.max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| Error::BadModelFile { path, reason: e.to_string() })?;
        Ok(tok)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::BadModelFile { path: path.to_path_buf(), reason: e.to_string() })
}

fn read_optional_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_weights_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        let err = ModelDir::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }

    #[test]
    fn a_broken_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(dir.path().join(f), "not json").unwrap();
        }
        let err = ModelDir::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
