//! Documents and chunks: what the parsers produce and the stores keep.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A run of a document's text with its place in the document: a Markdown section under its
/// heading path, or one PDF page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Part {
    /// The part's text.
    pub text: String,
    /// The heading it sits under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// Its page (PDF), 1-based.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

/// One parsed document, before chunking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Stable identifier: given by the source (JSON id field, BEIR `_id`) or the file's path
    /// relative to the indexed directory.
    pub id: String,
    /// The title (file name or the format's title field when absent).
    pub title: String,
    /// Where it came from: a file path, with `#L<line>` for one line of a JSONL file.
    pub source: String,
    /// Scalar fields kept for filters and display.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// The text in parts that chunks never cross.
    pub parts: Vec<Part>,
}

/// The separator placed between parts when a document's text is read as one string.
pub const PART_SEPARATOR: &str = "\n\n";

impl Document {
    /// The whole text, parts joined by a blank line (chunk spans index into this string).
    pub fn text(&self) -> String {
        self.parts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join(PART_SEPARATOR)
    }

    /// A hash of everything that affects the indexes: re-indexing an unchanged document is free.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.title.as_bytes());
        h.update([0]);
        h.update(self.source.as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(&self.metadata).unwrap_or_default());
        for p in &self.parts {
            h.update([0]);
            h.update(p.text.as_bytes());
            h.update(p.heading.as_deref().unwrap_or("").as_bytes());
            h.update(p.page.unwrap_or(0).to_le_bytes());
        }
        hex::encode(h.finalize())
    }

    /// Whether the document has any text to index.
    pub fn is_empty(&self) -> bool {
        self.title.trim().is_empty() && self.parts.iter().all(|p| p.text.trim().is_empty())
    }
}

/// A passage of a document: the unit both indexes store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Its document's id.
    pub doc_id: String,
    /// Position in the document, from 0.
    pub ordinal: u32,
    /// The chunk's text.
    pub text: String,
    /// Byte span of the chunk in [`Document::text`].
    pub start: usize,
    /// Byte offset of its end in the part it came from.
    pub end: usize,
    /// The heading of its part, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// The page of its part, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}
