//! `sousuo bench verifier CORPUS.jsonl...`: the support check calibrated on real text. From
//! each corpus (JSONL with `text`: SQuAD paragraphs, SciFact abstracts), a seeded sample of
//! paragraphs gives one sentence each: the sentence as written (supported), and the same
//! sentence with a swapped number, a swapped name (a capitalised word from another paragraph)
//! or an added negation (not supported), each checked against its paragraph by the verifier
//! the answers use (`is_supported`). Reports precision and recall of `supported`, and the
//! share of each kind of change caught.

use crate::cli::{BenchVerifierArgs, Global};
use crate::paths::load_encoder;
use anyhow::{Context, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use sousuo_encoder::EncoderOptions;
use sousuo_query::answer::{is_supported, sentences};
use std::collections::BTreeMap;

pub fn run(g: &Global, args: BenchVerifierArgs) -> Result<()> {
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut pairs: Vec<(String, String, &'static str)> = Vec::new();
    for path in &args.corpora {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut paragraphs: Vec<String> = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{}: a line is not JSON", path.display()))?;
            if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
                paragraphs.push(t.to_string());
            }
        }
        paragraphs.shuffle(&mut rng);
        let names: Vec<String> = paragraphs.iter().take(500).flat_map(|p| capitalised(p)).collect();
        for p in paragraphs.iter().take(args.paragraphs) {
            let sents: Vec<String> = sentences(p).into_iter().filter(|s| s.split_whitespace().count() >= 8).collect();
            let Some(s) = sents.choose(&mut rng) else { continue };
            pairs.push((s.clone(), p.clone(), "true"));
            for (kind, changed) in
                [("number", swap_number(s)), ("name", swap_name(s, p, &names, &mut rng)), ("negation", negate(s))]
            {
                if let Some(c) = changed {
                    pairs.push((c, p.clone(), kind));
                }
            }
        }
    }
    let bar = crate::util::progress(pairs.len() as u64, "sentences");
    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (sentence, passage, kind) in &pairs {
        let ok = is_supported(&encoder, sentence, passage, "")?;
        let e = by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 += usize::from(ok);
        if g.verbose > 0 && (ok != (*kind == "true")) {
            bar.suspend(|| eprintln!("{kind} judged {}: {sentence}", if ok { "supported" } else { "unsupported" }));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (t_n, t_ok) = by_kind.get("true").copied().unwrap_or_default();
    let false_ok: usize = by_kind.iter().filter(|(k, _)| **k != "true").map(|(_, v)| v.1).sum();
    let precision = t_ok as f64 / (t_ok + false_ok).max(1) as f64;
    let recall = t_ok as f64 / t_n.max(1) as f64;
    println!(
        "{} sentences from {} corpora: `supported` precision {precision:.3}, recall {recall:.3}",
        pairs.len(),
        args.corpora.len()
    );
    for (kind, (n, ok)) in &by_kind {
        let what = if *kind == "true" { "judged supported" } else { "caught (judged unsupported)" };
        let share = if *kind == "true" { *ok } else { n - ok };
        println!("  {kind:<9} {n:>5}  {what} {:.1}%", share as f64 * 100.0 / (*n).max(1) as f64);
    }
    Ok(())
}

/// Capitalised words after a sentence's first word (names, mostly).
fn capitalised(text: &str) -> Vec<String> {
    sentences(text)
        .iter()
        .flat_map(|s| s.split_whitespace().skip(1).map(String::from).collect::<Vec<_>>())
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
        .filter(|w| w.len() >= 4 && w.starts_with(char::is_uppercase) && w.chars().skip(1).all(char::is_lowercase))
        .collect()
}

/// The sentence with its first number's last digit changed.
fn swap_number(s: &str) -> Option<String> {
    let at = s.char_indices().find(|(_, c)| c.is_ascii_digit())?.0;
    let end = s[at..].find(|c: char| !c.is_ascii_digit()).map_or(s.len(), |e| at + e);
    let last = s[..end].chars().next_back()?.to_digit(10)?;
    Some(format!("{}{}{}", &s[..end - 1], (last + 3) % 10, &s[end..]))
}

/// The sentence with one of its names replaced by a name its paragraph lacks.
fn swap_name(s: &str, paragraph: &str, names: &[String], rng: &mut impl Rng) -> Option<String> {
    let own = capitalised(s);
    let from = own.choose(rng)?;
    let lower = paragraph.to_lowercase();
    let to = (0..20).filter_map(|_| names.choose(rng)).find(|n| !lower.contains(&n.to_lowercase()))?;
    Some(s.replacen(from.as_str(), to, 1))
}

/// The sentence with "not" after its first auxiliary verb.
fn negate(s: &str) -> Option<String> {
    const AUX: &[&str] = &[
        "is", "are", "was", "were", "can", "could", "will", "would", "has", "have", "had", "does", "did", "should",
        "may", "must",
    ];
    let words: Vec<&str> = s.split(' ').collect();
    let i = words.iter().position(|w| AUX.contains(&w.to_lowercase().as_str()))?;
    if words.get(i + 1).is_some_and(|w| w.eq_ignore_ascii_case("not")) {
        return None;
    }
    let mut out: Vec<&str> = words[..=i].to_vec();
    out.push("not");
    out.extend(&words[i + 1..]);
    Some(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_made_as_described() {
        assert_eq!(swap_number("It opened in 1932 after work.").as_deref(), Some("It opened in 1935 after work."));
        assert_eq!(swap_number("No digits."), None);
        assert_eq!(negate("The bridge was opened in 1932.").as_deref(), Some("The bridge was not opened in 1932."));
        assert_eq!(negate("It was not opened."), None);
        assert_eq!(capitalised("The bridge by Maria Costa opened."), vec!["Maria", "Costa"]);
    }
}
