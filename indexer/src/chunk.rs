//! Splitting documents into passages of at most the encoder's token budget, preferring
//! paragraph, then sentence boundaries, with an overlap carried between neighbours.

use crate::document::{Chunk, Document, PART_SEPARATOR};
use crate::Result;
use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

/// Chunking parameters, recorded in the collection's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    /// Most tokens of passage text in one chunk (without special tokens or the title).
    pub max_tokens: usize,
    /// Tokens of trailing sentences repeated at the start of the next chunk.
    pub overlap_tokens: usize,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams { max_tokens: 254, overlap_tokens: 32 }
    }
}

impl ChunkParams {
    /// The default for `encoder`: chunks as long as its input (two tokens left for `[CLS]` and
    /// `[SEP]`), the default overlap.
    pub fn for_encoder(encoder: &sousuo_encoder::Encoder) -> Self {
        ChunkParams { max_tokens: encoder.max_len().saturating_sub(2), ..ChunkParams::default() }
    }
}

/// Counts tokens of many texts at once (the encoder's tokenizer, no special tokens).
pub trait TokenCounter {
    /// Token counts of `texts`, in order.
    fn count(&self, texts: &[&str]) -> Result<Vec<usize>>;
}

impl TokenCounter for sousuo_encoder::Encoder {
    fn count(&self, texts: &[&str]) -> Result<Vec<usize>> {
        Ok(self.count_tokens_batch(texts)?)
    }
}

/// A sentence-like unit: byte span in the document text, its tokens, whether a paragraph ends with it.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
    paragraph_end: bool,
}

/// Splits `doc` into chunks. A document that fits stays one chunk; longer ones are cut per
/// part (a Markdown section or PDF page never shares a chunk with another).
pub fn chunk_document(doc: &Document, params: &ChunkParams, counter: &dyn TokenCounter) -> Result<Vec<Chunk>> {
    let text = doc.text();
    let max = params.max_tokens.max(8);
    let first = doc.parts.first();
    // Pages stay apart even in a short document, so that citations can name the page.
    let paged = doc.parts.len() > 1 && doc.parts.iter().any(|p| p.page.is_some());
    // Cheap pre-check: a text of many bytes per allowed token cannot fit; skip counting it whole.
    if !paged && text.len() <= max * 12 && counter.count(&[&text])?[0] <= max {
        if text.trim().is_empty() && doc.title.trim().is_empty() {
            return Ok(Vec::new());
        }
        return Ok(vec![Chunk {
            doc_id: doc.id.clone(),
            ordinal: 0,
            text: text.clone(),
            start: 0,
            end: text.len(),
            heading: first.and_then(|p| p.heading.clone()),
            page: first.and_then(|p| p.page),
        }]);
    }
    let mut chunks = Vec::new();
    let mut offset = 0;
    for part in &doc.parts {
        let units = units(&text, offset, offset + part.text.len(), max, counter)?;
        for (start, end) in pack(&units, max, params.overlap_tokens) {
            chunks.push(Chunk {
                doc_id: doc.id.clone(),
                ordinal: chunks.len() as u32,
                text: text[start..end].to_string(),
                start,
                end,
                heading: part.heading.clone(),
                page: part.page,
            });
        }
        offset += part.text.len() + PART_SEPARATOR.len();
    }
    Ok(chunks)
}

/// Sentences of `text[from..to]` with token counts; a sentence over `max` is cut further.
fn units(text: &str, from: usize, to: usize, max: usize, counter: &dyn TokenCounter) -> Result<Vec<Unit>> {
    let mut spans: Vec<(usize, usize, bool)> = Vec::new();
    let part = &text[from..to];
    let mut para_start = 0;
    for para in part.split("\n\n") {
        let base = from + para_start;
        let sentences: Vec<(usize, &str)> =
            para.split_sentence_bound_indices().filter(|(_, s)| !s.trim().is_empty()).collect();
        let n = sentences.len();
        for (k, (i, s)) in sentences.into_iter().enumerate() {
            let lead = s.len() - s.trim_start().len();
            let trail = s.len() - s.trim_end().len();
            spans.push((base + i + lead, base + i + s.len() - trail, k + 1 == n));
        }
        para_start += para.len() + 2;
    }
    let texts: Vec<&str> = spans.iter().map(|&(a, b, _)| &text[a..b]).collect();
    let counts = counter.count(&texts)?;
    let mut out = Vec::with_capacity(spans.len());
    for ((a, b, pe), tokens) in spans.into_iter().zip(counts) {
        if tokens <= max {
            out.push(Unit { start: a, end: b, tokens, paragraph_end: pe });
        } else {
            let mut pieces = split_long(text, a, b, max, counter)?;
            if let Some(last) = pieces.last_mut() {
                last.paragraph_end = pe;
            }
            out.extend(pieces);
        }
    }
    Ok(out)
}

/// Halves an over-long span at a whitespace (else a character) boundary until each piece fits.
fn split_long(text: &str, a: usize, b: usize, max: usize, counter: &dyn TokenCounter) -> Result<Vec<Unit>> {
    let mut todo = vec![(a, b)];
    let mut done = Vec::new();
    while let Some((a, b)) = todo.pop() {
        let tokens = counter.count(&[&text[a..b]])?[0];
        if tokens <= max || b - a <= 4 {
            done.push(Unit { start: a, end: b, tokens: tokens.min(max), paragraph_end: false });
            continue;
        }
        let mid = split_point(text, a, b);
        // Pushed in reverse so pieces come out in order.
        todo.push((mid, b));
        todo.push((a, mid));
    }
    Ok(done)
}

fn split_point(text: &str, a: usize, b: usize) -> usize {
    let mut mid = a + (b - a) / 2;
    while !text.is_char_boundary(mid) {
        mid += 1;
    }
    let window = &text[a..mid];
    match window.rfind(char::is_whitespace) {
        Some(i) if i > (mid - a) / 2 => a + i + 1,
        _ => mid,
    }
}

/// Packs units greedily into spans of at most `max` tokens. When a chunk overflows, it ends
/// at its last paragraph boundary if that keeps at least half of it; the next chunk starts
/// with trailing units worth at most `overlap` tokens.
fn pack(units: &[Unit], max: usize, overlap: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let mut j = i;
        let mut tokens = 0;
        let mut last_para: Option<usize> = None;
        while j < units.len() && (j == i || tokens + units[j].tokens <= max) {
            tokens += units[j].tokens;
            if units[j].paragraph_end {
                last_para = Some(j);
            }
            j += 1;
        }
        let end = match last_para {
            Some(p) if j < units.len() && units[i..=p].iter().map(|u| u.tokens).sum::<usize>() * 2 >= tokens => p + 1,
            _ => j,
        };
        out.push((units[i].start, units[end - 1].end));
        if end >= units.len() {
            break;
        }
        // Overlap: step back over trailing units, never to the chunk's own start.
        let mut next = end;
        let mut carried = 0;
        while next > i + 1 && carried + units[next - 1].tokens <= overlap {
            carried += units[next - 1].tokens;
            next -= 1;
        }
        i = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Part;

    /// One token per whitespace-separated word: enough to test the packing.
    struct Words;
    impl TokenCounter for Words {
        fn count(&self, texts: &[&str]) -> Result<Vec<usize>> {
            Ok(texts.iter().map(|t| t.split_whitespace().count()).collect())
        }
    }

    fn doc(parts: Vec<Part>) -> Document {
        Document { id: "d".into(), title: "T".into(), source: "s".into(), metadata: Default::default(), parts }
    }

    fn part(text: &str) -> Part {
        Part { text: text.into(), heading: None, page: None }
    }

    #[test]
    fn a_short_document_stays_one_chunk() {
        let d = doc(vec![part("One sentence. Two sentences.")]);
        let c = chunk_document(&d, &ChunkParams { max_tokens: 50, overlap_tokens: 5 }, &Words).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, d.text());
    }

    #[test]
    fn long_documents_respect_the_budget_and_spans() {
        let para = (0..30).map(|i| format!("Sentence number {i} has six words.")).collect::<Vec<_>>().join(" ");
        let d = doc(vec![part(&format!("{para}\n\n{para}"))]);
        let p = ChunkParams { max_tokens: 40, overlap_tokens: 8 };
        let chunks = chunk_document(&d, &p, &Words).unwrap();
        assert!(chunks.len() > 5);
        let text = d.text();
        for (k, c) in chunks.iter().enumerate() {
            assert_eq!(c.ordinal as usize, k);
            assert!(c.text.split_whitespace().count() <= 40, "{}", c.text);
            assert_eq!(&text[c.start..c.end], c.text);
            assert!(c.text.ends_with('.'), "ends at a sentence boundary: {:?}", c.text);
        }
        // Overlap: each chunk starts before the previous one ended.
        for w in chunks.windows(2) {
            assert!(w[1].start < w[0].end, "overlap expected");
            assert!(w[1].start > w[0].start, "progress expected");
        }
        assert_eq!(chunks.last().unwrap().end, text.len());
    }

    #[test]
    fn pages_are_kept_and_never_mixed() {
        let long = "word ".repeat(30) + ".";
        let d = doc(vec![
            Part { text: long.clone(), heading: None, page: Some(1) },
            Part { text: long, heading: None, page: Some(2) },
        ]);
        let c = chunk_document(&d, &ChunkParams { max_tokens: 40, overlap_tokens: 0 }, &Words).unwrap();
        assert_eq!(c.iter().map(|c| c.page).collect::<Vec<_>>(), vec![Some(1), Some(2)]);
    }

    #[test]
    fn a_sentence_without_boundaries_is_cut_to_fit() {
        let d = doc(vec![part(&"x ".repeat(1000))]);
        let c = chunk_document(&d, &ChunkParams { max_tokens: 64, overlap_tokens: 0 }, &Words).unwrap();
        assert!(c.len() >= 16);
        assert!(c.iter().all(|c| c.text.split_whitespace().count() <= 64));
        let words: usize = c.iter().map(|c| c.text.split_whitespace().count()).sum();
        assert_eq!(words, 1000);
    }

    #[test]
    fn paragraph_boundaries_are_preferred() {
        let a = "Alpha one two three. Alpha four five six.";
        let b = "Beta one two three. Beta four five six. Beta seven eight nine.";
        let d = doc(vec![part(&format!("{a}\n\n{b}"))]);
        let c = chunk_document(&d, &ChunkParams { max_tokens: 12, overlap_tokens: 0 }, &Words).unwrap();
        assert_eq!(c[0].text, a);
    }
}
