//! Filters on document metadata and ids.
//!
//! A filter is resolved through the collection's in-memory field index (`indexer::fields`)
//! into the set of allowed chunk keys; both retrievers
//! then search inside that set (BM25 with a term-set clause, HNSW with a filter during the
//! graph walk, or exact scoring when the set is small), so a selective filter still returns
//! `limit` hits when that many match.
//!
//! The language (`parse`): conditions `field = v`, `field != v`, `field >= n` (`<=`, `>`, `<`),
//! `field IN [a, b]`, `field NOT IN [a, b]`, joined by `AND`, `OR`, `NOT` and parentheses;
//! values quoted when they hold spaces, commas, operators or keywords. `id` is the document id;
//! other names are metadata fields. A condition on a field a document lacks is false (so
//! `NOT field = v` and `field != v` hold for it); `=` on an array field means "contains".

mod parse;

use crate::Result;
use serde::{Deserialize, Serialize};
use sousuo_indexer::fields::{DocSet, FieldView};
use std::collections::{BTreeMap, HashSet};

/// One condition on a field's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// Equal to this value (or, for an array field, containing it).
    Eq(serde_json::Value),
    /// Equal to one of these values.
    In(Vec<serde_json::Value>),
    /// A numeric range; absent bounds are open.
    Range {
        /// At least.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gte: Option<f64>,
        /// At most.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lte: Option<f64>,
        /// Greater than.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gt: Option<f64>,
        /// Less than.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lt: Option<f64>,
    },
}

/// A boolean expression over conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expr {
    /// Every part holds.
    And(Vec<Expr>),
    /// Some part holds.
    Or(Vec<Expr>),
    /// The part does not hold.
    Not(Box<Expr>),
    /// A condition on one field.
    Cond {
        /// `id` or a metadata field.
        field: String,
        /// What its value must satisfy.
        cond: Condition,
    },
}

/// A parsed filter; the empty filter lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// The expression, if any.
    pub expr: Option<Expr>,
}

impl Filter {
    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.expr.is_none()
    }

    /// Parses filter expressions (the language above); several are AND-ed.
    pub fn parse(exprs: &[String]) -> Result<Filter> {
        let mut parts = Vec::with_capacity(exprs.len());
        for e in exprs.iter().filter(|e| !e.trim().is_empty()) {
            parts.push(parse::parse(e)?);
        }
        Ok(Filter {
            expr: match parts.len() {
                0 => None,
                1 => parts.pop(),
                _ => Some(Expr::And(parts)),
            },
        })
    }

    /// Whether a document (its id and metadata) passes.
    pub fn matches(&self, id: &str, metadata: &BTreeMap<String, serde_json::Value>) -> bool {
        self.expr.as_ref().is_none_or(|e| e.matches(id, metadata))
    }

    /// The chunk keys of the documents that pass, resolved through the collection's in-memory
    /// field index (no stored document is read).
    pub fn allowed_chunks(&self, collection: &sousuo_indexer::Collection) -> Result<HashSet<u64>> {
        Ok(collection.select_chunks(|view| match &self.expr {
            Some(e) => e.eval(view),
            None => view.all(),
        })?)
    }
}

impl Expr {
    fn matches(&self, id: &str, metadata: &BTreeMap<String, serde_json::Value>) -> bool {
        match self {
            Expr::And(parts) => parts.iter().all(|p| p.matches(id, metadata)),
            Expr::Or(parts) => parts.iter().any(|p| p.matches(id, metadata)),
            Expr::Not(part) => !part.matches(id, metadata),
            Expr::Cond { field, cond } => {
                if field == "id" {
                    cond.matches(&serde_json::Value::String(id.to_string()))
                } else {
                    metadata.get(field).is_some_and(|v| cond.matches(v))
                }
            }
        }
    }

    /// The documents that pass, as the field index finds them (the twin of [`Self::matches`]).
    fn eval(&self, view: &FieldView<'_>) -> DocSet {
        match self {
            Expr::And(parts) => {
                let mut sets = parts.iter().map(|p| p.eval(view));
                let first = sets.next().unwrap_or_else(|| view.all());
                sets.fold(first, |acc, s| acc.and(&s))
            }
            Expr::Or(parts) => {
                let mut sets = parts.iter().map(|p| p.eval(view));
                let first = sets.next().unwrap_or_default();
                sets.fold(first, |acc, s| acc.or(&s))
            }
            Expr::Not(part) => view.all().minus(&part.eval(view)),
            Expr::Cond { field, cond } => match cond {
                Condition::Eq(v) => view.eq(field, v),
                Condition::In(list) => list.iter().fold(DocSet::default(), |acc, v| acc.or(&view.eq(field, v))),
                Condition::Range { gte, lte, gt, lt } => view.range(field, *gte, *lte, *gt, *lt),
            },
        }
    }
}

impl Condition {
    fn matches(&self, v: &serde_json::Value) -> bool {
        if let serde_json::Value::Array(items) = v {
            return items.iter().any(|item| self.matches(item));
        }
        match self {
            Condition::Eq(want) => loose_eq(v, want),
            Condition::In(list) => list.iter().any(|w| loose_eq(v, w)),
            Condition::Range { gte, lte, gt, lt } => {
                let Some(x) = as_f64(v) else { return false };
                gte.is_none_or(|b| x >= b)
                    && lte.is_none_or(|b| x <= b)
                    && gt.is_none_or(|b| x > b)
                    && lt.is_none_or(|b| x < b)
            }
        }
    }
}

/// Equality that lets `year=2020` match a number and `id=7` match a string "7".
fn loose_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    if a == b {
        return true;
    }
    match (as_f64(a), as_f64(b)) {
        (Some(x), Some(y)) => x == y,
        _ => as_text(a) == as_text(b),
    }
}

fn as_f64(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn parses_and_matches() {
        let f =
            Filter::parse(&["year>=2020".into(), "year<2023".into(), "lang=en".into(), "topic in [a, \"b c\"]".into()])
                .unwrap();
        let m = meta(&[("year", json!(2021)), ("lang", json!("en")), ("topic", json!("b c"))]);
        assert!(f.matches("d", &m));
        let m2 = meta(&[("year", json!(2023)), ("lang", json!("en")), ("topic", json!("a"))]);
        assert!(!f.matches("d", &m2));
        assert!(!f.matches("d", &meta(&[("lang", json!("en"))])), "a missing field fails");
        let ids = Filter::parse(&["id in [x, y]".into()]).unwrap();
        assert!(ids.matches("y", &BTreeMap::new()));
        assert!(!ids.matches("z", &BTreeMap::new()));
        let num = Filter::parse(&["n=7".into()]).unwrap();
        assert!(num.matches("d", &meta(&[("n", json!("7"))])));
    }

    #[test]
    fn bad_filters_say_why() {
        for bad in ["year>=soon", "nonsense", "=x", "tags in a,b"] {
            let err = Filter::parse(&[bad.to_string()]).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    struct Doc {
        i: i64,
        id: String,
        meta: BTreeMap<String, serde_json::Value>,
    }

    /// 100 documents with numbers, text with spaces and commas, unicode, arrays, and a field
    /// only half of them have.
    fn docs() -> Vec<Doc> {
        (0..100i64)
            .map(|i| {
                let title = match i {
                    7 => "x, y = z".to_string(),
                    _ if i % 10 == 0 => "made in china".to_string(),
                    _ => "made in japan".to_string(),
                };
                let mut pairs = vec![
                    ("n", json!(i)),
                    ("parity", json!(if i % 2 == 0 { "even" } else { "odd" })),
                    ("tags", json!([format!("t{}", i % 3), "all"])),
                    ("title", json!(title)),
                    ("lang", json!(if i % 4 == 0 { "中文" } else { "en" })),
                ];
                if i % 2 == 0 {
                    pairs.push(("opt", json!(i)));
                }
                Doc { i, id: format!("d{i}"), meta: meta(&pairs) }
            })
            .collect()
    }

    type Oracle = fn(i64) -> bool;

    /// Expressions and hand-written predicates over `docs()`: every operator, quoting,
    /// unicode, several conditions on one field, AND / OR / NOT, selectivities 0 / 1 / 50% /
    /// 100% of the documents.
    fn cases() -> Vec<(&'static str, Oracle)> {
        vec![
            ("n = 5", |i| i == 5),
            ("n != 5", |i| i != 5),
            ("n >= 50", |i| i >= 50),
            ("n > 49", |i| i > 49),
            ("n <= 9", |i| i <= 9),
            ("n < 0", |_| false),
            ("n >= 0", |_| true),
            ("n >= 10 AND n < 20 AND n != 15", |i| (10..20).contains(&i) && i != 15),
            ("n >= 10 and n >= 90", |i| i >= 90),
            ("parity = even OR n = 3", |i| i % 2 == 0 || i == 3),
            ("NOT parity = even", |i| i % 2 == 1),
            ("not (parity = even or n < 50)", |i| i % 2 == 1 && i >= 50),
            ("(parity = odd AND n < 10) OR n > 95", |i| (i % 2 == 1 && i < 10) || i > 95),
            ("tags = t1", |i| i % 3 == 1),
            ("tags = all", |_| true),
            ("tags IN [t0, t2]", |i| i % 3 != 1),
            ("tags in []", |_| false),
            ("n NOT IN [1, 2, 3]", |i| !(1..=3).contains(&i)),
            ("title = \"made in china\"", |i| i % 10 == 0),
            ("title = 'made in japan' AND n < 3", |i| i == 1 || i == 2),
            ("title = \"x, y = z\"", |i| i == 7),
            ("title != \"made in china\"", |i| i % 10 != 0),
            ("lang = 中文", |i| i % 4 == 0),
            ("lang IN [\"中文\", fr]", |i| i % 4 == 0),
            ("opt >= 0", |i| i % 2 == 0),
            ("NOT opt >= 0", |i| i % 2 == 1),
            ("opt != 4", |i| i != 4),
            ("missing = 1", |_| false),
            ("id = d7", |i| i == 7),
            ("id IN [d1, \"d2\"] OR id = d99", |i| i == 1 || i == 2 || i == 99),
            ("n = 5 AND NOT NOT parity = odd", |i| i == 5),
        ]
    }

    /// Every case against its oracle.
    #[test]
    fn the_language_agrees_with_an_oracle() {
        let docs = docs();
        let cases = cases();
        for (expr, oracle) in cases {
            let f = Filter::parse(&[expr.to_string()]).unwrap_or_else(|e| panic!("{expr}: {e}"));
            for d in &docs {
                assert_eq!(f.matches(&d.id, &d.meta), oracle(d.i), "{expr} on d{}", d.i);
            }
        }
        // Several expressions are AND-ed, each on the same field applied.
        let f = Filter::parse(&["n >= 10".into(), "n < 20".into(), "n != 12".into()]).unwrap();
        let hits: Vec<i64> = docs.iter().filter(|d| f.matches(&d.id, &d.meta)).map(|d| d.i).collect();
        assert_eq!(hits, vec![10, 11, 13, 14, 15, 16, 17, 18, 19]);
    }

    /// The field index (`allowed_chunks`) against the oracle on a real collection, then again
    /// after deletes and metadata changes (freed and reused document slots), against a scan of
    /// the stored documents with [`Filter::matches`].
    #[test]
    fn the_field_index_agrees_with_the_oracle_and_with_a_scan() {
        use sousuo_indexer::store::{Change, DocRecord};
        use sousuo_indexer::{Chunk, ChunkParams, Collection, EncoderInfo, OpenMode};
        let dir = tempfile::tempdir().unwrap();
        let info = EncoderInfo { name: "test".into(), dim: 3, weights_sha256: "00".into(), precision: "f32".into() };
        let params = ChunkParams { max_tokens: 64, overlap_tokens: 0 };
        let c = Collection::open(dir.path(), "f", &info, OpenMode::Create(params)).unwrap();
        let upsert = |id: &str, meta: &BTreeMap<String, serde_json::Value>, chunks: u32| {
            let doc = DocRecord {
                id: id.into(),
                title: id.into(),
                source: id.into(),
                metadata: meta.clone(),
                content_hash: format!("{id}{}", meta.len()),
                chunk_keys: vec![],
                seq: 0,
            };
            let texts: Vec<Chunk> = (0..chunks)
                .map(|o| Chunk {
                    doc_id: id.into(),
                    ordinal: o,
                    text: format!("text {o}"),
                    start: 0,
                    end: 6,
                    heading: None,
                    page: None,
                })
                .collect();
            let vectors =
                (0..chunks).map(|o| if o % 2 == 0 { vec![1.0, 0.0, 0.0] } else { vec![0.0, 1.0, 0.0] }).collect();
            Change::Upsert { doc, chunks: texts, vectors }
        };
        let docs = docs();
        let changes: Vec<Change> = docs.iter().map(|d| upsert(&d.id, &d.meta, 1 + (d.i % 3) as u32)).collect();
        c.apply(&changes).unwrap();
        let keys_of = |pass: &dyn Fn(&DocRecord) -> bool| -> HashSet<u64> {
            c.store().docs().map(|d| d.unwrap()).filter(|d| pass(d)).flat_map(|d| d.chunk_keys).collect()
        };
        for (expr, oracle) in cases() {
            let f = Filter::parse(&[expr.to_string()]).unwrap();
            let want = keys_of(&|d: &DocRecord| oracle(d.id[1..].parse().unwrap()));
            assert_eq!(f.allowed_chunks(&c).unwrap(), want, "{expr}");
        }
        // Delete a third, change the metadata of another third (their slots are freed and
        // reused), then compare with a scan of the store.
        let mut changes = Vec::new();
        for d in &docs {
            match d.i % 3 {
                0 => changes.push(Change::Delete { doc_id: d.id.clone() }),
                1 => {
                    let mut meta = d.meta.clone();
                    meta.insert("n".into(), json!(d.i + 1000));
                    meta.remove("opt");
                    meta.insert("parity".into(), json!("odd"));
                    changes.push(upsert(&d.id, &meta, 2));
                }
                _ => {}
            }
        }
        changes.push(upsert("new", &meta(&[("n", json!(5)), ("tags", json!(["t1"]))]), 1));
        c.apply(&changes).unwrap();
        for (expr, _) in cases() {
            let f = Filter::parse(&[expr.to_string()]).unwrap();
            let want = keys_of(&|d: &DocRecord| f.matches(&d.id, &d.metadata));
            assert_eq!(f.allowed_chunks(&c).unwrap(), want, "{expr} after changes");
        }
        assert!(Filter::parse(&["n >= 1000".into()]).unwrap().allowed_chunks(&c).unwrap().len() > 30);
    }

    #[test]
    fn malformed_expressions_say_why() {
        for (bad, why) in [
            ("n = ", "expected a value"),
            ("n = 1 AND", "expected a field name"),
            ("(n = 1", "not closed"),
            ("n = 1 n = 2", "unexpected"),
            ("title = made in china", "unexpected"),
            ("title = \"open", "unclosed"),
            ("n ! 3", "must be followed"),
            ("n >= NaN", "finite"),
            ("tags in [a b]", "lists"),
        ] {
            let err = Filter::parse(&[bad.to_string()]).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
