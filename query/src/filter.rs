//! Filters on document metadata and ids.
//!
//! A filter is resolved against the sled store into the set of allowed chunk keys; both
//! retrievers then search inside that set (BM25 with a term-set clause, HNSW with a filter
//! during the graph walk, or exact scoring when the set is small), so a selective filter still
//! returns `limit` hits when that many match.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// One condition on a field. `id` is the document id; other names are metadata fields.
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

/// All conditions must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Metadata field to condition; every condition must hold.
    pub conditions: BTreeMap<String, Condition>,
}

impl Filter {
    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Parses CLI expressions: `field=value`, `field!=`-free forms `field>=n`, `field<=n`,
    /// `field>n`, `field<n`, `field in [a, b]`. Several expressions are AND-ed.
    pub fn parse(exprs: &[String]) -> Result<Filter> {
        let mut f = Filter::default();
        for e in exprs {
            let (field, cond) = parse_one(e)?;
            match (f.conditions.remove(&field), cond) {
                (
                    Some(Condition::Range { gte, lte, gt, lt }),
                    Condition::Range { gte: g2, lte: l2, gt: gt2, lt: lt2 },
                ) => {
                    f.conditions.insert(
                        field,
                        Condition::Range { gte: gte.or(g2), lte: lte.or(l2), gt: gt.or(gt2), lt: lt.or(lt2) },
                    );
                }
                (_, c) => {
                    f.conditions.insert(field, c);
                }
            }
        }
        Ok(f)
    }

    /// Whether a document (its id and metadata) passes.
    pub fn matches(&self, id: &str, metadata: &BTreeMap<String, serde_json::Value>) -> bool {
        self.conditions.iter().all(|(field, cond)| {
            let id_value = serde_json::Value::String(id.to_string());
            let value = if field == "id" { Some(&id_value) } else { metadata.get(field) };
            value.is_some_and(|v| cond.matches(v))
        })
    }

    /// The chunk keys of the documents that pass.
    pub fn allowed_chunks(&self, collection: &sousuo_indexer::Collection) -> Result<HashSet<u64>> {
        let mut keys = HashSet::new();
        if let Some(Condition::Eq(serde_json::Value::String(id))) = self.conditions.get("id") {
            // A lookup by id needs no scan.
            if let Some(d) = collection.get_doc(id)? {
                if self.matches(&d.id, &d.metadata) {
                    keys.extend(d.chunk_keys);
                }
            }
            return Ok(keys);
        }
        for d in collection.store().docs() {
            let d = d?;
            if self.matches(&d.id, &d.metadata) {
                keys.extend(d.chunk_keys);
            }
        }
        Ok(keys)
    }
}

impl Condition {
    fn matches(&self, v: &serde_json::Value) -> bool {
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

fn parse_value(s: &str) -> serde_json::Value {
    let s = s.trim();
    let unquoted = s
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')));
    if let Some(u) = unquoted {
        return serde_json::Value::String(u.to_string());
    }
    serde_json::from_str::<serde_json::Value>(s)
        .ok()
        .filter(|v| !v.is_object() && !v.is_array())
        .unwrap_or_else(|| serde_json::Value::String(s.to_string()))
}

fn parse_one(expr: &str) -> Result<(String, Condition)> {
    let bad = |reason: &str| Error::BadFilter { filter: expr.to_string(), reason: reason.to_string() };
    if let Some((field, rest)) = expr.split_once(" in ") {
        let list = rest
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or_else(|| bad("write lists as [a, b]"))?;
        let values = list.split(',').map(parse_value).filter(|v| v.as_str() != Some("")).collect();
        return Ok((field_name(field, expr)?, Condition::In(values)));
    }
    for (op, make) in [
        (">=", (|n| Condition::Range { gte: Some(n), lte: None, gt: None, lt: None }) as fn(f64) -> Condition),
        ("<=", |n| Condition::Range { gte: None, lte: Some(n), gt: None, lt: None }),
        (">", |n| Condition::Range { gte: None, lte: None, gt: Some(n), lt: None }),
        ("<", |n| Condition::Range { gte: None, lte: None, gt: None, lt: Some(n) }),
    ] {
        if let Some((field, value)) = expr.split_once(op) {
            let n: f64 = value.trim().parse().map_err(|_| bad("a range needs a number"))?;
            return Ok((field_name(field, expr)?, make(n)));
        }
    }
    if let Some((field, value)) = expr.split_once('=') {
        return Ok((field_name(field, expr)?, Condition::Eq(parse_value(value))));
    }
    Err(bad("use field=value, field>=n, field<=n, field>n, field<n or field in [a, b]"))
}

fn field_name(field: &str, expr: &str) -> Result<String> {
    let f = field.trim();
    if f.is_empty() || f.contains(char::is_whitespace) {
        return Err(Error::BadFilter { filter: expr.to_string(), reason: "missing or malformed field name".into() });
    }
    Ok(f.to_string())
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
}
