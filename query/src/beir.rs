//! BEIR data sets, read in one place: `corpus.jsonl`, `queries.jsonl` and
//! `qrels/<split>.tsv` (<https://github.com/beir-cellar/beir>). Indexing a BEIR corpus needs
//! nothing from here: the indexer reads `corpus.jsonl` as JSON lines (`_id`, `title`, `text`).

use crate::{Error, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

/// A corpus document or a query: BEIR's `{"_id", "title", "text"}` line.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Record {
    /// The id (a number in some data sets, kept as its text).
    #[serde(rename = "_id", default, deserialize_with = "id_text")]
    pub id: String,
    /// The title (empty for queries and some corpora).
    #[serde(default)]
    pub title: String,
    /// The text.
    #[serde(default)]
    pub text: String,
}

fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

/// Judged queries of one split.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// (query id, text), in file order, only those with judgements.
    pub queries: Vec<(String, String)>,
    /// query id -> doc id -> relevance.
    pub qrels: HashMap<String, HashMap<String, i32>>,
}

fn dataset_error(path: &Path, line: Option<usize>, what: impl std::fmt::Display) -> Error {
    match line {
        Some(n) => Error::Dataset(format!("{}:{n}: {what}", path.display())),
        None => Error::Dataset(format!("{}: {what}", path.display())),
    }
}

/// The first `limit` records (all with `None`) of a JSON-lines file; blank lines are skipped.
pub fn read_records(path: &Path, limit: Option<usize>) -> Result<Vec<Record>> {
    let file = std::fs::File::open(path).map_err(|e| dataset_error(path, None, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let line = line.map_err(|e| dataset_error(path, None, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| dataset_error(path, Some(i + 1), e))?);
    }
    Ok(out)
}

/// The corpus of a BEIR directory (its first `limit` documents).
pub fn read_corpus(dir: &Path, limit: Option<usize>) -> Result<Vec<Record>> {
    read_records(&dir.join("corpus.jsonl"), limit)
}

/// The queries of a BEIR directory (its first `limit`).
pub fn read_queries(dir: &Path, limit: Option<usize>) -> Result<Vec<Record>> {
    read_records(&dir.join("queries.jsonl"), limit)
}

/// Query texts from a file that is either BEIR queries (`{"text": ...}` lines) or one query a
/// line; empty queries are dropped.
pub fn read_query_lines(path: &Path, limit: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| dataset_error(path, None, e))?;
    let texts = text.lines().filter(|l| !l.trim().is_empty()).take(limit).map(|line| {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => v["text"].as_str().unwrap_or_default().to_string(),
            _ => line.to_string(),
        }
    });
    Ok(texts.filter(|q| !q.trim().is_empty()).collect())
}

/// The relevance judgements of a split: `qrels/<split>.tsv` (query id, doc id, score; an
/// optional header line).
pub fn read_qrels(dir: &Path, split: &str) -> Result<HashMap<String, HashMap<String, i32>>> {
    let path = dir.join("qrels").join(format!("{split}.tsv"));
    let file = std::fs::File::open(&path).map_err(|e| dataset_error(&path, None, e))?;
    let mut qrels: HashMap<String, HashMap<String, i32>> = HashMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| dataset_error(&path, None, e))?;
        let cols: Vec<&str> = line.split('\t').collect();
        if i == 0 && cols.first().is_some_and(|c| c.contains("query")) {
            continue; // header
        }
        let [query, doc, score, ..] = cols[..] else { continue };
        let rel: i32 = score.trim().parse().map_err(|_| dataset_error(&path, Some(i + 1), "bad score"))?;
        qrels.entry(query.to_string()).or_default().insert(doc.to_string(), rel);
    }
    Ok(qrels)
}

/// The judged queries of a split: `queries.jsonl` joined with `qrels/<split>.tsv`.
pub fn load_judged(dir: &Path, split: &str) -> Result<Judged> {
    let qrels = read_qrels(dir, split)?;
    let queries =
        read_queries(dir, None)?.into_iter().filter(|q| qrels.contains_key(&q.id)).map(|q| (q.id, q.text)).collect();
    Ok(Judged { queries, qrels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_data_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("qrels")).unwrap();
        std::fs::write(
            dir.path().join("queries.jsonl"),
            "{\"_id\": 1, \"text\": \"one\"}\n\n{\"_id\": \"2\", \"text\": \"two\"}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\n2\td7\t1\n2\td8\t0\n").unwrap();
        let j = load_judged(dir.path(), "test").unwrap();
        assert_eq!(j.queries, vec![("2".to_string(), "two".to_string())]);
        assert_eq!(j.qrels["2"]["d7"], 1);
        std::fs::write(dir.path().join("qrels/bad.tsv"), "2\td7\tx\n").unwrap();
        assert!(matches!(load_judged(dir.path(), "bad"), Err(Error::Dataset(m)) if m.contains(":1: bad score")));
    }

    #[test]
    fn query_lines_take_beir_or_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.txt");
        std::fs::write(&p, "{\"_id\": \"a\", \"text\": \"first\"}\nsecond query\n\nthird\n").unwrap();
        assert_eq!(read_query_lines(&p, 2).unwrap(), vec!["first", "second query"]);
    }
}
