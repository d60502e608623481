//! The filterable fields of the live documents, indexed in memory: for every field (and the
//! document id, as `id`), value -> documents, and for numeric values an ordered map for ranges.
//! A filter is resolved through it ([`FieldView`]) into a [`DocSet`] of document slots (see
//! `live`), never by reading or decoding the stored documents.
//!
//! Values are compared loosely, as the filter language does: a number and a string that reads
//! as the same number are equal (`year = 2020` matches `"2020"`), anything else by its text; an
//! array matches when one of its elements does.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

/// A value as the index compares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Num(u64),
    Text(String),
}

/// A number as an order-preserving integer (negative zero is zero; NaN sorts last).
fn ordered(x: f64) -> u64 {
    let x = if x == 0.0 { 0.0 } else { x };
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// The number a value reads as, if any.
pub fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn key(v: &Value) -> Key {
    match as_number(v) {
        Some(x) => Key::Num(ordered(x)),
        None => Key::Text(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    }
}

/// The scalar values of a field (an array's elements).
fn scalars(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// The documents holding one value. Most values (every id, to begin with) belong to one
/// document, kept inline: a set per value cost ~150 bytes per document at a million.
#[derive(Debug)]
enum Slots {
    One(u32),
    Many(HashSet<u32>),
}

impl Slots {
    fn insert(&mut self, slot: u32) {
        match self {
            Slots::One(s) if *s == slot => {}
            Slots::One(s) => *self = Slots::Many(HashSet::from([*s, slot])),
            Slots::Many(set) => {
                set.insert(slot);
            }
        }
    }

    /// Removes `slot`; true when no document is left.
    fn remove(&mut self, slot: u32) -> bool {
        match self {
            Slots::One(s) => *s == slot,
            Slots::Many(set) => {
                set.remove(&slot);
                set.is_empty()
            }
        }
    }

    fn add_to(&self, set: &mut DocSet) {
        match self {
            Slots::One(s) => set.insert(*s),
            Slots::Many(slots) => slots.iter().for_each(|&s| set.insert(s)),
        }
    }
}

/// Adds `slot` to a value's documents; the new entry when the value had none.
fn add_slot(slots: Option<&mut Slots>, slot: u32) -> Option<Slots> {
    match slots {
        Some(s) => {
            s.insert(slot);
            None
        }
        None => Some(Slots::One(slot)),
    }
}

#[derive(Default)]
pub(crate) struct FieldIndex {
    eq: HashMap<String, HashMap<Key, Slots>>,
    num: HashMap<String, BTreeMap<u64, Slots>>,
}

impl FieldIndex {
    /// Indexes document `slot`: its id and its metadata.
    pub(crate) fn add(&mut self, slot: u32, id: &str, metadata: &BTreeMap<String, Value>) {
        let id = Value::String(id.to_string());
        for (field, value) in std::iter::once(("id", &id)).chain(metadata.iter().map(|(f, v)| (f.as_str(), v))) {
            for v in scalars(value) {
                let values = self.eq.entry(field.to_string()).or_default();
                let k = key(v);
                if let Some(new) = add_slot(values.get_mut(&k), slot) {
                    values.insert(k, new);
                }
                if let Some(x) = as_number(v) {
                    let values = self.num.entry(field.to_string()).or_default();
                    if let Some(new) = add_slot(values.get_mut(&ordered(x)), slot) {
                        values.insert(ordered(x), new);
                    }
                }
            }
        }
    }

    /// Forgets document `slot` (given what [`Self::add`] was given).
    pub(crate) fn remove(&mut self, slot: u32, id: &str, metadata: &BTreeMap<String, Value>) {
        let id = Value::String(id.to_string());
        for (field, value) in std::iter::once(("id", &id)).chain(metadata.iter().map(|(f, v)| (f.as_str(), v))) {
            for v in scalars(value) {
                if let Some(values) = self.eq.get_mut(field) {
                    let k = key(v);
                    if values.get_mut(&k).is_some_and(|slots| slots.remove(slot)) {
                        values.remove(&k);
                    }
                }
                if let (Some(x), Some(values)) = (as_number(v), self.num.get_mut(field)) {
                    if values.get_mut(&ordered(x)).is_some_and(|slots| slots.remove(slot)) {
                        values.remove(&ordered(x));
                    }
                }
            }
        }
    }
}

/// A set of documents (their slots), as a bitset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocSet(Vec<u64>);

impl DocSet {
    fn with_len(slots: usize) -> Self {
        DocSet(vec![0; slots.div_ceil(64)])
    }

    pub(crate) fn insert(&mut self, slot: u32) {
        let (w, b) = (slot as usize / 64, slot % 64);
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << b;
    }

    pub(crate) fn remove(&mut self, slot: u32) {
        if let Some(w) = self.0.get_mut(slot as usize / 64) {
            *w &= !(1 << (slot % 64));
        }
    }

    pub(crate) fn contains(&self, slot: u32) -> bool {
        self.0.get(slot as usize / 64).is_some_and(|w| w >> (slot % 64) & 1 == 1)
    }

    /// Documents in both.
    pub fn and(mut self, other: &DocSet) -> DocSet {
        for (i, w) in self.0.iter_mut().enumerate() {
            *w &= other.0.get(i).copied().unwrap_or(0);
        }
        self
    }

    /// Documents in either.
    pub fn or(mut self, other: &DocSet) -> DocSet {
        if other.0.len() > self.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (w, o) in self.0.iter_mut().zip(&other.0) {
            *w |= o;
        }
        self
    }

    /// Documents in this one and not in `other`.
    pub fn minus(mut self, other: &DocSet) -> DocSet {
        for (w, o) in self.0.iter_mut().zip(&other.0) {
            *w &= !o;
        }
        self
    }
}

/// Read access to the field index and the live documents, for resolving one filter under one
/// lock ([`crate::Collection::select_chunks`]).
pub struct FieldView<'a> {
    pub(crate) index: &'a FieldIndex,
    pub(crate) all: &'a DocSet,
    pub(crate) slots: usize,
}

impl FieldView<'_> {
    /// Every live document.
    pub fn all(&self) -> DocSet {
        self.all.clone()
    }

    /// Documents whose `field` equals `value` (or, for an array, holds it).
    pub fn eq(&self, field: &str, value: &Value) -> DocSet {
        let mut set = DocSet::with_len(self.slots);
        if let Some(slots) = self.index.eq.get(field).and_then(|m| m.get(&key(value))) {
            slots.add_to(&mut set);
        }
        set
    }

    /// Documents whose `field` holds a number within the bounds (absent bounds are open).
    pub fn range(&self, field: &str, gte: Option<f64>, lte: Option<f64>, gt: Option<f64>, lt: Option<f64>) -> DocSet {
        let mut set = DocSet::with_len(self.slots);
        let Some(values) = self.index.num.get(field) else { return set };
        // The tighter of each side's bounds.
        let lower = match (gte, gt) {
            (Some(a), Some(b)) if b >= a => Bound::Excluded(ordered(b)),
            (Some(a), _) => Bound::Included(ordered(a)),
            (None, Some(b)) => Bound::Excluded(ordered(b)),
            (None, None) => Bound::Unbounded,
        };
        let upper = match (lte, lt) {
            (Some(a), Some(b)) if b <= a => Bound::Excluded(ordered(b)),
            (Some(a), _) => Bound::Included(ordered(a)),
            (None, Some(b)) => Bound::Excluded(ordered(b)),
            (None, None) => Bound::Unbounded,
        };
        let empty = match (lower, upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
            _ => false,
        };
        if empty {
            return set;
        }
        for (&k, slots) in values.range((lower, upper)) {
            if k == ordered(f64::NAN) {
                continue;
            }
            slots.add_to(&mut set);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_order_as_keys() {
        let xs = [-1e9, -2.5, -0.0, 0.0, 1e-9, 3.0, 7e12];
        for w in xs.windows(2) {
            assert!(ordered(w[0]) <= ordered(w[1]), "{} {}", w[0], w[1]);
        }
        assert_eq!(ordered(-0.0), ordered(0.0));
    }
}
