//! `sousuo bench answer --qa DIR`: the answer pipeline over a question-answering set laid out
//! as ../shared/corpora/squad2-qa (corpus.jsonl, questions.jsonl with `q`, `kind`, `doc`,
//! `answers`), indexed into a temporary collection. Per question kind: the answer's text holds
//! a gold answer (SQuAD normalisation), the short answer's exact match and token F1, the gold
//! paragraph cited, abstention, answer kinds, answers shown as supported but wrong, and time
//! per answer.

use crate::cli::{BenchAnswerArgs, Global};
use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sousuo_decoder::Decoder;
use sousuo_encoder::Encoder;
use sousuo_indexer::Collection;
use sousuo_query::qa::{contains_answer, exact_match, f1};
use sousuo_query::{answer, Answer, AnswerKind, AnswerParams};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Deserialize, Clone)]
struct QaQuestion {
    q: String,
    kind: String,
    doc: Option<String>,
    #[serde(default)]
    answers: Vec<String>,
}

/// The figures of one question kind.
#[derive(Serialize, Default)]
struct KindFigures {
    questions: usize,
    /// The answer's text contains a gold answer (answerable only).
    contains_gold: f64,
    /// Short answer against the gold answers (0 when there is none).
    short_exact: f64,
    short_f1: f64,
    /// A short answer was given.
    short_given: f64,
    /// Some citation names the gold paragraph.
    cites_gold: f64,
    abstained: f64,
    /// Answers (not abstaining) with a sentence shown as supported that do not contain a gold
    /// answer; for questions without one, every such answer.
    supported_but_wrong: f64,
    kinds: BTreeMap<String, usize>,
    mean_answer_ms: f64,
}

pub fn run(g: &Global, args: &BenchAnswerArgs, dir: &Path, encoder: &Encoder, decoder: &Decoder) -> Result<()> {
    let path = dir.join("questions.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut questions: Vec<QaQuestion> = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        questions.push(serde_json::from_str(line).with_context(|| {
            format!("{}:{}: expected {{\"q\", \"kind\", \"doc\", \"answers\"}}", path.display(), i + 1)
        })?);
    }
    let corpus = dir.join("corpus.jsonl");
    let (_tmp, collection) = crate::ask::temp_collection(encoder, &corpus)?;
    if args.follow_ups {
        return follow_ups(g, args, &corpus, &questions, &collection, encoder, decoder);
    }
    let sample = sample(questions, args.sample, args.seed);
    let runs: &[(&str, bool)] =
        if args.baseline { &[("baseline", false), ("direct", true)] } else { &[("direct", true)] };
    let mut all = BTreeMap::new();
    let mut log = match &args.per_question {
        Some(f) => Some(std::io::BufWriter::new(
            std::fs::File::create(f).with_context(|| format!("cannot create {}", f.display()))?,
        )),
        None => None,
    };
    for &(name, direct) in runs {
        // The baseline is the pipeline before direct answers and the likelihood gate.
        let gain_floor = if direct { args.gain_floor.or(AnswerParams::default().gain_floor) } else { None };
        let p = AnswerParams { direct, gain_floor, ..AnswerParams::default() };
        let answers = ask_all(g, &collection, encoder, decoder, &sample, &p)?;
        if let Some(w) = log.as_mut() {
            for (q, a) in answers.values().flatten() {
                let line = serde_json::json!({"run": name, "q": q.q, "kind": q.kind, "doc": q.doc,
                    "answers": q.answers, "short_f1": f1(a.short_answer.as_deref().unwrap_or_default(), &q.answers),
                    "answer": a});
                writeln!(w, "{line}")?;
            }
        }
        let figures: BTreeMap<String, KindFigures> = answers.iter().map(|(k, v)| (k.clone(), figures(v))).collect();
        if !args.json {
            println!(
                "{name} ({} questions, {})",
                sample.len(),
                if direct { "direct short answer first" } else { "the decoder writes the answer" }
            );
            print(&figures);
        }
        all.insert(name, figures);
    }
    if let Some(mut w) = log {
        w.flush()?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

/// The follow-up measurement (`--follow-ups`, src/bench_followup.rs).
fn follow_ups(
    g: &Global,
    args: &BenchAnswerArgs,
    corpus: &Path,
    questions: &[QaQuestion],
    collection: &Collection,
    encoder: &Encoder,
    decoder: &Decoder,
) -> Result<()> {
    #[derive(Deserialize)]
    struct Paragraph {
        id: String,
        title: String,
    }
    let mut titles = BTreeMap::new();
    let text = std::fs::read_to_string(corpus).with_context(|| format!("cannot read {}", corpus.display()))?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let p: Paragraph =
            serde_json::from_str(line).with_context(|| format!("{}: a line without id and title", corpus.display()))?;
        titles.insert(p.id, p.title);
    }
    let answerable: Vec<(String, String, Vec<String>)> = questions
        .iter()
        .filter(|q| !q.answers.is_empty())
        .filter_map(|q| Some((q.q.clone(), q.doc.clone()?, q.answers.clone())))
        .collect();
    let convos = crate::bench_followup::build(&answerable, &titles, args.sample);
    let [original, rewritten, pronoun] =
        crate::bench_followup::measure(collection, encoder, decoder, &convos, g.verbose > 0)?;
    let share = |n: usize| n as f64 / convos.len().max(1) as f64;
    if args.json {
        let v = serde_json::json!({"conversations": convos.len(), "original": share(original),
            "rewritten": share(rewritten), "pronoun_only": share(pronoun)});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} two-turn conversations: the gold paragraph in the top 5 for the original question {:.1}%, \
             the rewritten follow-up {:.1}%, the pronoun question alone {:.1}%",
            convos.len(),
            share(original) * 100.0,
            share(rewritten) * 100.0,
            share(pronoun) * 100.0
        );
    }
    Ok(())
}

/// Every question of the sample answered with `p`, by kind.
type ByKind = BTreeMap<String, Vec<(QaQuestion, Answer)>>;

fn ask_all(
    g: &Global,
    collection: &Collection,
    encoder: &Encoder,
    decoder: &Decoder,
    sample: &[QaQuestion],
    p: &AnswerParams,
) -> Result<ByKind> {
    let bar = crate::util::progress(sample.len() as u64, "questions");
    let mut by_kind = ByKind::new();
    for q in sample {
        let a = answer(collection, encoder, Some(decoder), &q.q, p, &mut |_| {})?;
        if g.verbose > 0 {
            bar.suspend(|| eprintln!("{} {:?} {:?} -> {:?}: {}", q.kind, q.q, q.answers, a.kind, a.text));
        }
        bar.inc(1);
        by_kind.entry(q.kind.clone()).or_default().push((q.clone(), a));
    }
    bar.finish_and_clear();
    Ok(by_kind)
}

/// Up to `per_kind` questions of each kind, a seeded sample in the file's order (0: all).
fn sample(questions: Vec<QaQuestion>, per_kind: usize, seed: u64) -> Vec<QaQuestion> {
    if per_kind == 0 {
        return questions;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut by_kind: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, q) in questions.iter().enumerate() {
        by_kind.entry(q.kind.clone()).or_default().push(i);
    }
    let mut keep: Vec<usize> = Vec::new();
    for (_, mut idx) in by_kind {
        idx.shuffle(&mut rng);
        keep.extend(idx.into_iter().take(per_kind));
    }
    keep.sort_unstable();
    keep.into_iter().map(|i| questions[i].clone()).collect()
}

fn figures(answers: &[(QaQuestion, Answer)]) -> KindFigures {
    let n = answers.len().max(1) as f64;
    let share = |f: &dyn Fn(&QaQuestion, &Answer) -> bool| answers.iter().filter(|(q, a)| f(q, a)).count() as f64 / n;
    let mean = |f: &dyn Fn(&QaQuestion, &Answer) -> f64| answers.iter().map(|(q, a)| f(q, a)).sum::<f64>() / n;
    let short = |a: &Answer| a.short_answer.clone().unwrap_or_default();
    let mut kinds = BTreeMap::new();
    for (_, a) in answers {
        *kinds.entry(format!("{:?}", a.kind)).or_insert(0) += 1;
    }
    KindFigures {
        questions: answers.len(),
        contains_gold: share(&|q, a| contains_answer(&a.text, &q.answers)),
        short_exact: mean(&|q, a| if q.answers.is_empty() { 0.0 } else { exact_match(&short(a), &q.answers) }),
        short_f1: mean(&|q, a| if q.answers.is_empty() { 0.0 } else { f1(&short(a), &q.answers) }),
        short_given: share(&|_, a| a.short_answer.is_some()),
        cites_gold: share(&|q, a| {
            let cited = a.sentences.iter().flat_map(|s| s.citations.iter());
            cited.filter_map(|&n| a.sources.get(n.wrapping_sub(1))).any(|s| Some(&s.doc_id) == q.doc.as_ref())
        }),
        abstained: share(&|_, a| a.kind == AnswerKind::InsufficientEvidence),
        supported_but_wrong: share(&|q, a| {
            a.kind != AnswerKind::InsufficientEvidence
                && a.sentences.iter().any(|s| s.supported)
                && !contains_answer(&a.text, &q.answers)
        }),
        kinds,
        mean_answer_ms: mean(&|_, a| a.timings.total_ms),
    }
}

fn print(figures: &BTreeMap<String, KindFigures>) {
    println!(
        "{:<12} {:>5} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10} {:>8}  kinds",
        "kind", "n", "contains", "short", "EM", "F1", "cites", "abstain", "supp+wrong", "ms"
    );
    for (k, f) in figures {
        println!(
            "{:<12} {:>5} {:>8.1}% {:>7.1}% {:>8.3} {:>8.3} {:>8.1}% {:>8.1}% {:>9.1}% {:>8.0}  {:?}",
            k,
            f.questions,
            f.contains_gold * 100.0,
            f.short_given * 100.0,
            f.short_exact,
            f.short_f1,
            f.cites_gold * 100.0,
            f.abstained * 100.0,
            f.supported_but_wrong * 100.0,
            f.mean_answer_ms,
            f.kinds
        );
    }
}
