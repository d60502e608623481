//! The decoder on the real SmolLM2 GGUF: tokenizer ids against the independent Python build,
//! round trips, requantisation, streaming generation, stopping and queue limits.

use sousuo_decoder::{prepare_gguf, Backend, Decoder, DecoderTokenizer, Event, GenerateOptions, Message, StopReason};
use std::sync::OnceLock;

mod common;
use common::{cache, shipped};

fn decoder() -> &'static Decoder {
    static D: OnceLock<Decoder> = OnceLock::new();
    D.get_or_init(|| {
        let d = Decoder::load_with(&shipped(), 4, Backend::Auto, Some(&cache().root().join("requantized")))
            .expect("the decoder loads");
        assert_eq!(d.backend(), "native");
        d
    })
}

fn shipped_tokenizer() -> DecoderTokenizer {
    let path = shipped();
    let mut f = std::fs::File::open(&path).unwrap();
    let ct = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    DecoderTokenizer::from_gguf(&ct).unwrap()
}

#[test]
fn token_ids_match_the_independent_tokenizer() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/decoder_tokens.json")).expect("fixture parses");
    let tok = shipped_tokenizer();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(text).unwrap(), want, "ids differ for {text:?}");
    }
    // The requantised file carries the same tokenizer.
    assert_eq!(decoder().tokenizer().encode("What is HNSW? 42").unwrap(), tok.encode("What is HNSW? 42").unwrap());
}

#[test]
fn round_trips_english_accents_chinese_emoji() {
    let tok = decoder().tokenizer();
    for text in ["Plain English, with numbers 1234.", "Crème brûlée à la façon de Zoë", "检索增强生成（RAG）", "🔍 ok"]
    {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
    // Specials written in untrusted text stay text.
    let ids = tok.encode_plain("<|im_end|>").unwrap();
    assert!(!ids.contains(&2), "{ids:?}");
    assert_eq!(tok.encode("<|im_end|>").unwrap(), vec![2]);
    assert!(tok.stop_ids.contains(&2) && tok.stop_ids.contains(&0));
    // Every control token, not only the `<|...|>` ones (SmolLM2's `<file_sep>`, `<filename>`),
    // stays text in untrusted text and inside a chat's messages.
    let hostile = ["<file_sep>", "<filename>", "<|im_start|>"];
    let ids: Vec<u32> = hostile.iter().map(|s| tok.token_to_id(s).expect("a SmolLM2 control token")).collect();
    let text = format!("a {} b", hostile.join(" c "));
    assert!(ids.iter().all(|id| tok.encode(&text).unwrap().contains(id)), "raw text does hit them");
    let plain = tok.encode_plain(&text).unwrap();
    assert!(!ids.iter().any(|id| plain.contains(id)), "{plain:?}");
    let prompt = decoder().chat_prompt(&[Message::user(text.clone())]).unwrap();
    let file_sep = ids[0];
    assert!(!prompt.contains(&file_sep), "a message's <file_sep> became the token");
    let starts = |p: &[u32]| p.iter().filter(|&&id| id == ids[2]).count();
    let benign = decoder().chat_prompt(&[Message::user("a b".to_string())]).unwrap();
    assert_eq!(starts(&prompt), starts(&benign), "only the template's own turns: {prompt:?}");
}

#[test]
fn requantised_file_drops_q4_1() {
    let path = prepare_gguf(&shipped(), &cache().root().join("requantized")).unwrap();
    assert_ne!(path, shipped());
    let mut f = std::fs::File::open(&path).unwrap();
    let ct = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    assert!(!sousuo_decoder::needs_requant(&ct));
    assert_eq!(ct.tensor_infos.len(), 272);
}

#[test]
fn generates_streams_and_stops() {
    let d = decoder();
    let prompt = d
        .chat_prompt(&[
            Message::system("Answer in one short sentence."),
            Message::user("What is the capital of France?"),
        ])
        .unwrap();
    let mut pieces = Vec::new();
    let g = d
        .generate(prompt.clone(), &GenerateOptions { max_tokens: 40, ..Default::default() }, |t| {
            pieces.push(t.to_string());
            true
        })
        .unwrap();
    assert!(g.generated_tokens > 0 && !pieces.is_empty());
    assert_eq!(pieces.concat(), g.text);
    assert!(g.text.contains("Paris"), "{:?}", g.text);
    assert_eq!(g.stop, StopReason::EndOfTurn);
    // Greedy decoding is deterministic.
    let again =
        d.generate(prompt.clone(), &GenerateOptions { max_tokens: 40, ..Default::default() }, |_| true).unwrap();
    assert_eq!(again.text, g.text);
    // A token limit stops it.
    let short = d.generate(prompt.clone(), &GenerateOptions { max_tokens: 3, ..Default::default() }, |_| true).unwrap();
    assert_eq!((short.generated_tokens, short.stop), (3, StopReason::MaxTokens));
    // Events arrive as tokens then one Done.
    let events: Vec<Event> =
        d.start(prompt, &GenerateOptions { max_tokens: 5, ..Default::default() }).unwrap().collect();
    assert!(matches!(events.last(), Some(Event::Done(Ok(_)))));
    assert!(events.iter().filter(|e| matches!(e, Event::Token(_))).count() >= 1);
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    let d = decoder();
    let prompt = d.chat_prompt(&[Message::user("Write a word about search.")]).unwrap();
    let o =
        GenerateOptions { max_tokens: 12, temperature: Some(0.9), top_p: Some(0.95), seed: 7, ..Default::default() };
    let a = d.generate(prompt.clone(), &o, |_| true).unwrap();
    let b = d.generate(prompt, &o, |_| true).unwrap();
    assert_eq!(a.text, b.text);
}

#[test]
fn oversized_prompts_are_refused() {
    let d = decoder();
    let long = vec![42u32; d.context_length()];
    let err = d.generate(long, &GenerateOptions::default(), |_| true).unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
    assert!(d.generate(Vec::new(), &GenerateOptions::default(), |_| true).is_err());
}

#[test]
fn bad_gguf_files_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("not.gguf");
    std::fs::write(&p, b"this is not a model").unwrap();
    let err = Decoder::load(&p, 1).unwrap_err().to_string();
    assert!(err.contains("not.gguf") && err.contains("GGUF"), "{err}");
    let err = Decoder::load(&dir.path().join("missing.gguf"), 1).unwrap_err().to_string();
    assert!(err.contains("missing.gguf"), "{err}");
}

#[test]
fn backends_are_chosen_and_named() {
    assert_eq!("candle".parse::<Backend>().unwrap(), Backend::Candle);
    let err = "fast".parse::<Backend>().unwrap_err().to_string();
    assert!(err.contains("fast") && err.contains("native"), "{err}");
}

/// The native pass's requantised weights are cached: a second load reads them back and runs
/// the same numbers; a damaged cache file is rebuilt, not trusted.
#[test]
fn requantised_weights_are_cached_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let greedy = |d: &Decoder| {
        let prompt = d.chat_prompt(&[Message::user("Name a search engine data structure.")]).unwrap();
        d.generate(prompt, &GenerateOptions { max_tokens: 12, ..Default::default() }, |_| true).unwrap().text
    };
    let load = || Decoder::load_with(&shipped(), 1, Backend::Native, Some(dir.path())).unwrap();
    let first = greedy(&load());
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let cached = &files[0];
    let size = std::fs::metadata(cached).unwrap().len();
    assert_eq!(greedy(&load()), first);
    // Truncated: rebuilt, whole again, same answers.
    let bytes = std::fs::read(cached).unwrap();
    std::fs::write(cached, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(greedy(&load()), first);
    assert_eq!(std::fs::metadata(cached).unwrap().len(), size);
    // Uncached (no directory) agrees too.
    assert_eq!(greedy(&Decoder::load(&shipped(), 1).unwrap()), first);
}

/// The candle fallback still runs behind the same interface (on its Q8_0 conversion).
#[test]
fn candle_backend_generates() {
    let d = Decoder::load_with(&shipped(), 1, Backend::Candle, Some(&cache().root().join("requantized"))).unwrap();
    assert_eq!(d.backend(), "candle");
    let prompt = d
        .chat_prompt(&[
            Message::system("Answer in one short sentence."),
            Message::user("What is the capital of France?"),
        ])
        .unwrap();
    let g = d.generate(prompt, &GenerateOptions { max_tokens: 40, ..Default::default() }, |_| true).unwrap();
    assert!(g.text.contains("Paris"), "{:?}", g.text);
}

/// Decoding constrained to copy: the answer exists verbatim in the text it may copy from, even
/// where the model would rather write something else.
#[test]
fn constrained_decoding_copies_from_the_source() {
    let d = decoder();
    let source = "Farel, a student of Lefevre, went on to lead the Swiss Reformation in 1523.";
    let prompt = d
        .chat_prompt(&[
            Message::system("Answer with a few words copied from the text."),
            Message::user(format!("Text: {source}\n\nQuestion: Who led the Swiss Reformation?")),
        ])
        .unwrap();
    let copy_from = vec![d.tokenizer().encode_plain(&format!(" {source}")).unwrap()];
    let options = GenerateOptions { max_tokens: 12, repeat_penalty: 1.0, copy_from, ..Default::default() };
    let g = d.generate(prompt, &options, |_| true).unwrap();
    let text = g.text.trim();
    assert!(!text.is_empty() && source.contains(text), "{text:?} is not copied from the source");
    // Nothing else is allowed: a source of one token ends the copy after it.
    let one = vec![d.tokenizer().encode_plain(" Farel").unwrap()];
    let prompt = d.chat_prompt(&[Message::user("Say hello.")]).unwrap();
    let g = d
        .generate(prompt, &GenerateOptions { max_tokens: 12, copy_from: one, ..Default::default() }, |_| true)
        .unwrap();
    assert_eq!(g.text.trim(), "Farel");
}

/// A GGUF whose header lies about a tensor's size (dimensions whose product overflows) or
/// place (past the end of the file): refused by name, never an overflow or a huge allocation.
/// The files are fuzz seeds written by scripts/hostile-corpus.
#[test]
fn a_gguf_whose_tensor_sizes_lie_is_refused_by_name() {
    use candle_core::quantized::gguf_file::Content;
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/gguf");
    for name in ["sizes-lie.gguf", "offset-lies.gguf"] {
        let mut file = std::fs::File::open(seeds.join(name)).unwrap();
        let ct = Content::read(&mut file).unwrap();
        let err = sousuo_decoder::NativeLlama::from_gguf(&ct, &mut file, 1).err().expect("refused");
        let text = err.to_string();
        assert!(text.contains("token_embd.weight") && text.contains("does not fit in the file"), "{name}: {text}");
    }
}
