//! `sousuo ask` and `sousuo bench answer`.

use crate::cli::{AskArgs, BenchAnswerArgs, Global};
use crate::paths::{load_decoder, load_encoder};
use crate::util::{human_bytes, peak_rss_bytes};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sousuo_decoder::{Decoder, Event, GenerateOptions, Message};
use sousuo_encoder::{Encoder, EncoderOptions};
use sousuo_indexer::{index_paths, ChunkParams, Collection, EncoderInfo, IndexOptions, OpenMode};
use sousuo_query::{answer, Answer, AnswerEvent, AnswerKind, AnswerParams, Filter, SearchParams, Turn};
use std::io::Write;
use std::time::Instant;

pub fn ask(g: &Global, args: AskArgs) -> Result<()> {
    if args.question.trim().is_empty() {
        bail!("the question is empty");
    }
    let history: Vec<Turn> = match &args.history {
        Some(h) => serde_json::from_str(h)
            .context("--history takes a JSON array of {\"question\": .., \"answer\": ..} objects")?,
        None => Vec::new(),
    };
    let filter = Filter::parse(&args.filter)?;
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let target = crate::remote::Target::open(g, &args.collection, &encoder, args.nats.as_deref())?;
    let decoder = if args.extractive { None } else { Some(load_decoder(g, &args.decoder, 4)?) };
    let p = AnswerParams {
        search: SearchParams { limit: args.passages.clamp(1, 20), filter, ..SearchParams::default() },
        generate: GenerateOptions {
            max_tokens: args.max_tokens.clamp(1, 2048),
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
            ..GenerateOptions::default()
        },
        history,
        ..AnswerParams::default()
    };
    let stream = !args.json;
    let mut out = std::io::stdout();
    let a = answer(target.retriever(), &encoder, decoder.as_ref(), &args.question, &p, &mut |e| {
        if !stream {
            return;
        }
        match e {
            AnswerEvent::Rewritten(q) => eprintln!("(searching for: {q})"),
            AnswerEvent::Sources(_) => {}
            AnswerEvent::Token(t) => {
                let _ = out.write_all(t.as_bytes());
                let _ = out.flush();
            }
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(());
    }
    print_checked(&a);
    Ok(())
}

/// After the streamed draft: the checked answer, then the numbered sources.
fn print_checked(a: &Answer) {
    if a.generated_text.is_some() {
        println!("\n");
    }
    match a.kind {
        AnswerKind::Generated => {
            println!("Answer (checked against the sources):");
            for s in &a.sentences {
                let marks: String = s.citations.iter().map(|n| format!("[{n}]")).collect();
                let flag = if s.supported { "" } else { "  (not supported by the sources)" };
                println!("  {} {marks}{flag}", s.text);
            }
        }
        AnswerKind::Extractive => {
            println!("Answer (quoted from the sources: {}):", a.reason);
            println!("  {}", a.text);
        }
        AnswerKind::InsufficientEvidence => {
            println!("insufficient_evidence: the sources do not say ({}).", a.reason);
            if !a.sources.is_empty() {
                println!("The closest passages found:");
            }
        }
    }
    if !a.invalid_citations.is_empty() {
        println!("  (removed citations to sources that do not exist: {:?})", a.invalid_citations);
    }
    println!("\nSources:");
    for s in &a.sources {
        let page = s.page.map(|p| format!(", page {p}")).unwrap_or_default();
        println!("  [{}] {}{page}\n      {}", s.n, s.title, s.uri);
    }
    let t = &a.timings;
    eprintln!(
        "retrieval {:.0} ms, first token {} ms, generation {:.0} ms{}, total {:.0} ms",
        t.retrieval_ms,
        t.first_token_ms.map(|f| format!("{f:.0}")).unwrap_or_else(|| "-".into()),
        t.generation_ms,
        a.generation.as_ref().map(|g| format!(" ({:.1} tokens/s)", g.decode_tokens_per_s)).unwrap_or_default(),
        t.total_ms
    );
}

#[derive(Deserialize)]
struct Question {
    question: String,
    answerable: bool,
    #[serde(default)]
    key: Vec<String>,
}

#[derive(Serialize)]
struct SpeedFigures {
    prompt_tokens: usize,
    decode_tokens: usize,
    threads: String,
    time_to_first_token_ms: f64,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
    prefill_tokens_per_cpu_s: f64,
    decode_tokens_per_cpu_s: f64,
    peak_rss_bytes: u64,
}

#[derive(Serialize)]
struct CitationFigures {
    questions: usize,
    answerable: usize,
    unanswerable: usize,
    /// Answerable questions whose answer carries at least one citation.
    answers_with_citation: f64,
    /// Citations whose passage holds the question's key fact.
    citations_to_key_fact: f64,
    /// Unanswerable questions answered with insufficient_evidence.
    abstention_correct: f64,
    /// Answerable questions wrongly answered with insufficient_evidence.
    false_abstentions: f64,
    kinds: std::collections::BTreeMap<String, usize>,
    mean_answer_ms: f64,
}

pub fn bench(g: &Global, args: BenchAnswerArgs) -> Result<()> {
    if let Some(dir) = &args.qa {
        let encoder = load_encoder(g, EncoderOptions::default())?;
        let decoder = load_decoder(g, &args.decoder, 4)?;
        return crate::bench_qa::run(g, &args, dir, &encoder, &decoder);
    }
    let questions: Vec<Question> = std::fs::read_to_string(&args.questions)
        .with_context(|| format!("cannot read {}", args.questions.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()
        .with_context(|| {
            format!("{}: each line must be {{\"question\", \"answerable\", \"key\"}}", args.questions.display())
        })?;
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let decoder = load_decoder(g, &args.decoder, 4)?;

    let speed = speed(g, &decoder, &args)?;
    let citations = citations(&encoder, &decoder, &questions, &args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"speed": speed, "citations": citations}))?);
        return Ok(());
    }
    print_figures(&decoder, &speed, &citations);
    Ok(())
}

/// Decoding speed on a fixed 600-token prompt built from the corpus text.
fn speed(g: &Global, decoder: &Decoder, args: &BenchAnswerArgs) -> Result<SpeedFigures> {
    let mut text = String::new();
    for entry in walk_texts(&args.corpus)? {
        text.push_str(&entry);
        text.push('\n');
    }
    let tok = decoder.tokenizer();
    let overhead = decoder.chat_prompt(&[Message::user("")])?.len();
    let ids = tok.encode_plain(&text)?;
    if ids.len() + overhead < 600 {
        bail!("{} holds too little text for a 600-token prompt", args.corpus.display());
    }
    let body = tok.decode(&ids[..600 - overhead - 8])?;
    let mut prompt = decoder.chat_prompt(&[Message::user(format!("Summarise:\n{body}"))])?;
    prompt.truncate(600);
    let options = GenerateOptions { max_tokens: args.decode_tokens.max(2), ignore_stop: true, ..Default::default() };
    // Warm-up (page in the weights).
    decoder.generate(prompt[..32].to_vec(), &GenerateOptions { max_tokens: 2, ..Default::default() }, |_| true)?;
    let (wall, cpu) = (Instant::now(), cpu_time::ProcessTime::now());
    let mut first: Option<(f64, f64)> = None;
    let mut done = None;
    for event in decoder.start(prompt.clone(), &options)? {
        match event {
            Event::Token(_) => {
                first.get_or_insert_with(|| (wall.elapsed().as_secs_f64(), cpu.elapsed().as_secs_f64()));
            }
            Event::Done(r) => done = Some(r?),
        }
    }
    let (wall_s, cpu_s) = (wall.elapsed().as_secs_f64(), cpu.elapsed().as_secs_f64());
    let gen = done.context("the decoder stopped without finishing")?;
    let (first_wall, first_cpu) = first.context("no token was generated")?;
    let steps = gen.generated_tokens.saturating_sub(1) as f64;
    Ok(SpeedFigures {
        prompt_tokens: prompt.len(),
        decode_tokens: gen.generated_tokens,
        threads: g.threads.map(|t| t.to_string()).unwrap_or_else(|| "default".into()),
        time_to_first_token_ms: first_wall * 1000.0,
        prefill_tokens_per_s: prompt.len() as f64 / first_wall,
        decode_tokens_per_s: steps / (wall_s - first_wall).max(1e-9),
        prefill_tokens_per_cpu_s: prompt.len() as f64 / first_cpu.max(1e-9),
        decode_tokens_per_cpu_s: steps / (cpu_s - first_cpu).max(1e-9),
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
    })
}

/// Citations and abstentions: the questions over the corpus, indexed into a temporary collection.
fn citations(
    encoder: &Encoder,
    decoder: &Decoder,
    questions: &[Question],
    args: &BenchAnswerArgs,
) -> Result<CitationFigures> {
    let (_tmp, collection) = temp_collection(encoder, &args.corpus)?;
    let mut kinds = std::collections::BTreeMap::new();
    let (mut with_cite, mut cites, mut good_cites, mut abstain_ok, mut false_abstain) = (0, 0, 0, 0, 0);
    let mut total_ms = 0.0;
    for q in questions {
        let a = answer(&collection, encoder, Some(decoder), &q.question, &AnswerParams::default(), &mut |_| {})?;
        total_ms += a.timings.total_ms;
        *kinds.entry(format!("{:?}", a.kind)).or_insert(0) += 1;
        if !args.json {
            eprintln!("{:?} {:?}: {}", a.kind, q.question, a.text);
        }
        if q.answerable {
            let cited: Vec<usize> = a.sentences.iter().flat_map(|s| s.citations.iter().copied()).collect();
            with_cite += usize::from(!cited.is_empty());
            false_abstain += usize::from(a.kind == AnswerKind::InsufficientEvidence);
            for n in cited {
                cites += 1;
                let passage = a.sources.get(n - 1).map(|s| s.passage.to_lowercase()).unwrap_or_default();
                good_cites += usize::from(q.key.iter().any(|k| passage.contains(&k.to_lowercase())));
            }
        } else {
            abstain_ok += usize::from(a.kind == AnswerKind::InsufficientEvidence);
        }
    }
    let answerable = questions.iter().filter(|q| q.answerable).count();
    let unanswerable = questions.len() - answerable;
    let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(CitationFigures {
        questions: questions.len(),
        answerable,
        unanswerable,
        answers_with_citation: share(with_cite, answerable),
        citations_to_key_fact: share(good_cites, cites),
        abstention_correct: share(abstain_ok, unanswerable),
        false_abstentions: share(false_abstain, answerable),
        kinds,
        mean_answer_ms: total_ms / questions.len().max(1) as f64,
    })
}

fn print_figures(decoder: &Decoder, speed: &SpeedFigures, citations: &CitationFigures) {
    let s = speed;
    println!("decoder {} ({} threads)", decoder.path().display(), s.threads);
    println!(
        "prompt {} tokens, decode {} tokens: time to first token {:.0} ms",
        s.prompt_tokens, s.decode_tokens, s.time_to_first_token_ms
    );
    println!(
        "prefill {:.1} tokens/s ({:.1} per CPU-s), decode {:.1} tokens/s ({:.1} per CPU-s), peak RSS {}",
        s.prefill_tokens_per_s,
        s.prefill_tokens_per_cpu_s,
        s.decode_tokens_per_s,
        s.decode_tokens_per_cpu_s,
        human_bytes(s.peak_rss_bytes)
    );
    let c = citations;
    println!(
        "{} questions ({} answerable): answers with a citation {:.0}%, citations to the key fact {:.0}%, \
         correct abstentions {:.0}%, false abstentions {:.0}%, mean {:.0} ms; kinds {:?}",
        c.questions,
        c.answerable,
        c.answers_with_citation * 100.0,
        c.citations_to_key_fact * 100.0,
        c.abstention_correct * 100.0,
        c.false_abstentions * 100.0,
        c.mean_answer_ms,
        c.kinds
    );
}

/// `corpus` (a directory or file) indexed with the defaults into a collection in a temporary
/// directory, which goes when the returned guard drops.
pub(crate) fn temp_collection(encoder: &Encoder, corpus: &std::path::Path) -> Result<(tempfile::TempDir, Collection)> {
    let tmp = tempfile::Builder::new().prefix("sousuo-bench-answer-").tempdir()?;
    let info = EncoderInfo::of(encoder)?;
    let collection = Collection::open(tmp.path(), "bench", &info, OpenMode::Create(ChunkParams::for_encoder(encoder)))?;
    index_paths(&collection, encoder, &[corpus.to_path_buf()], &IndexOptions::default(), &|_| {})?;
    Ok((tmp, collection))
}

/// The text of every .md/.txt file under `dir`, sorted by path (for a reproducible prompt).
fn walk_texts(dir: &std::path::Path) -> Result<Vec<String>> {
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|x| x.to_str()), Some("md" | "txt")) {
                files.push(p);
            }
        }
    }
    files.sort();
    files.iter().map(|f| std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))).collect()
}
