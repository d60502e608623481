//! An index run: files -> parse -> chunk (one thread) -> embed (the encoder's worker) ->
//! write (sled, then tantivy and HNSW), with bounded queues between the stages so parsing,
//! embedding and writing overlap and memory stays bounded.

use crate::chunk::{chunk_document, ChunkParams};
use crate::collection::Collection;
use crate::document::{Chunk, Document};
use crate::formats::{parse, JsonFields};
use crate::sink::Sink;
use crate::sources::{walk, SourceFile};
use crate::store::{Change, DocRecord};
use crate::{Error, Result};
use crossbeam_channel::bounded;
use sousuo_encoder::Encoder;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of an index run.
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    /// Which JSON fields hold the id, title, text and metadata.
    pub fields: JsonFields,
    /// Also delete documents whose source files under the given paths are gone.
    pub sync: bool,
    /// Record sources (and name files in errors) relative to this directory instead of by
    /// their absolute paths: a server's staged uploads, whose paths are the server's business.
    pub source_base: Option<PathBuf>,
    /// Set (by anyone) to stop the run before its next document: it ends with
    /// [`Error::Cancelled`]; documents already stored stay (each is whole).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Bytes to leave free on a collection's file system (`None`:
    /// [`crate::space::DEFAULT_MIN_FREE_BYTES`]): the run stops with [`Error::DiskFull`] before a
    /// write that would pass it, so the collection stays readable.
    pub min_free_bytes: Option<u64>,
}

impl IndexOptions {
    fn reserve(&self) -> u64 {
        self.min_free_bytes.unwrap_or(crate::space::DEFAULT_MIN_FREE_BYTES)
    }
}

/// Events for progress display and for the crash-safety log.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Files found, and an estimate of the documents they hold.
    Planned {
        /// Files to read.
        files: usize,
        /// Documents they are estimated to hold.
        estimated_docs: usize,
    },
    /// Documents parsed and checked (indexed or unchanged).
    Seen {
        /// Documents so far.
        docs: usize,
    },
    /// Chunks embedded.
    Embedded {
        /// Chunks so far.
        chunks: usize,
    },
    /// These documents are durably stored (sled flushed).
    Committed {
        /// Ids of the documents committed.
        doc_ids: Vec<String>,
    },
    /// Something skipped or odd, worth telling the user.
    Warning(String),
    /// An input that failed (the run goes on).
    Error(String),
}

/// What an index run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexSummary {
    /// Documents read.
    pub documents_seen: usize,
    /// Documents new or changed, stored.
    pub documents_indexed: usize,
    /// Documents whose content hash had not changed.
    pub documents_unchanged: usize,
    /// Documents deleted (with `sync`).
    pub documents_deleted: usize,
    /// Chunks embedded and stored.
    pub chunks_embedded: usize,
    /// Files skipped, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Inputs that failed.
    pub errors: Vec<String>,
    /// Warnings raised.
    pub warnings: usize,
    /// Wall time of the run.
    pub seconds: f64,
    /// Time spent waiting on the encoder.
    pub embed_seconds: f64,
    /// Size of the collection's directory after the run.
    pub bytes_on_disk: u64,
}

/// A parsed document with its chunks, ready to embed.
struct Prepared {
    doc: Document,
    hash: String,
    chunks: Vec<Chunk>,
}

/// Documents per write transaction.
const BATCH_DOCS: usize = 64;

/// Text one document may hold: a 2,000-page book is about 5 MB. A larger one is an error for
/// its file (the run goes on): embedding it would take hours and its chunks would swamp every
/// search. A file of one document (txt, md, html) over it is refused before it is read.
pub const MAX_DOCUMENT_BYTES: usize = 32 << 20;

fn over_limit(bytes: u64) -> String {
    format!(
        "{} MiB, more than the {} MiB of text one document may hold; split it into smaller files",
        bytes >> 20,
        MAX_DOCUMENT_BYTES >> 20
    )
}

/// Why a file of one document is refused unread, if it is.
fn too_large(file: &SourceFile) -> Option<String> {
    use crate::formats::Format;
    // HTML's markup is most of its bytes: its file may be four times the text limit.
    let limit = match file.format {
        Format::Text | Format::Markdown => MAX_DOCUMENT_BYTES as u64,
        Format::Html => 4 * MAX_DOCUMENT_BYTES as u64,
        Format::Pdf | Format::Json | Format::JsonLines => return None,
    };
    let len = std::fs::metadata(&file.path).map(|m| m.len()).unwrap_or(0);
    (len > limit).then(|| over_limit(len))
}

/// Indexes `paths` into `collection` (with `options.sync`, deleting the documents of files
/// that are gone), then commits it.
pub fn index_paths(
    collection: &Collection,
    encoder: &Encoder,
    paths: &[PathBuf],
    options: &IndexOptions,
    on: &(dyn Fn(Progress) + Sync),
) -> Result<IndexSummary> {
    let dir = collection.dir();
    let (mut summary, seen_ids) = run(collection, encoder, paths, options, on).map_err(|e| e.in_dir(dir))?;
    if options.sync {
        summary.documents_deleted = sync_deletes(collection, paths, &seen_ids).map_err(|e| e.in_dir(dir))?;
    }
    // The commit writes a new copy of the graph beside the old one.
    let graph = crate::collection::dir_size(&dir.join("hnsw"));
    crate::space::ensure_free(dir, graph, options.reserve())?;
    collection.commit().map_err(|e| e.in_dir(dir))?;
    summary.bytes_on_disk = crate::collection::dir_size(collection.dir());
    Ok(summary)
}

/// Indexes `paths` into any [`Sink`] (`options.sync` is for collections: see [`index_paths`]).
pub fn index_into(
    sink: &dyn Sink,
    encoder: &Encoder,
    paths: &[PathBuf],
    options: &IndexOptions,
    on: &(dyn Fn(Progress) + Sync),
) -> Result<IndexSummary> {
    run(sink, encoder, paths, options, on).map(|(summary, _)| summary)
}

/// The pipeline: the summary and the ids of the documents seen.
fn run(
    sink: &dyn Sink,
    encoder: &Encoder,
    paths: &[PathBuf],
    options: &IndexOptions,
    on: &(dyn Fn(Progress) + Sync),
) -> Result<(IndexSummary, HashSet<String>)> {
    let started = Instant::now();
    let found = walk(paths);
    if let Some(p) = found.missing.first() {
        return Err(Error::NoSuchPath(p.clone()));
    }
    let mut summary = IndexSummary { skipped: found.skipped.iter().cloned().collect(), ..Default::default() };
    on(Progress::Planned { files: found.files.len(), estimated_docs: estimate_docs(&found.files) });
    let chunking = sink.chunking();
    let (tx, rx) = bounded::<Vec<Prepared>>(4);
    let seen_ids = std::thread::scope(|s| -> Result<HashSet<String>> {
        let files = &found.files;
        let parser = s.spawn(move || parse_stage(sink, encoder, files, options, &chunking, &tx, on));
        let mut embed_time = Duration::ZERO;
        for batch in rx {
            let (changes, unchanged) = embed_batch(sink, encoder, batch, &mut embed_time, &mut summary, on)?;
            summary.documents_unchanged += unchanged;
            summary.documents_seen += unchanged + changes.len();
            if !changes.is_empty() {
                let ids: Vec<String> = changes
                    .iter()
                    .filter_map(|c| match c {
                        Change::Upsert { doc, .. } => Some(doc.id.clone()),
                        Change::Delete { .. } => None,
                    })
                    .collect();
                if let Some(dir) = sink.local_dir() {
                    crate::space::ensure_free(dir, write_bytes(&changes), options.reserve())?;
                }
                sink.store(&changes)?;
                summary.documents_indexed += ids.len();
                on(Progress::Committed { doc_ids: ids });
            }
            on(Progress::Seen { docs: summary.documents_seen });
        }
        summary.embed_seconds = embed_time.as_secs_f64();
        let (seen, parse_summary) = parser.join().map_err(|_| Error::Store("the parser thread panicked".into()))??;
        for (k, v) in parse_summary.skipped {
            *summary.skipped.entry(k).or_default() += v;
        }
        summary.errors.extend(parse_summary.errors);
        summary.warnings += parse_summary.warnings;
        Ok(seen)
    })?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok((summary, seen_ids))
}

/// What storing `changes` may write (see [`crate::space::batch_bytes`]).
fn write_bytes(changes: &[Change]) -> u64 {
    let (mut text, mut vectors) = (0u64, 0u64);
    for c in changes {
        if let Change::Upsert { chunks, vectors: v, .. } = c {
            text += chunks.iter().map(|c| c.text.len() as u64 + 256).sum::<u64>();
            vectors += v.iter().map(|v| 4 * v.len() as u64).sum::<u64>();
        }
    }
    crate::space::batch_bytes(text, vectors)
}

/// Rough document count for the progress bar: one per file, lines for JSONL.
fn estimate_docs(files: &[SourceFile]) -> usize {
    use crate::formats::Format;
    files
        .iter()
        .map(|f| match f.format {
            Format::JsonLines => std::fs::read(&f.path).map(|b| bytecount_lines(&b)).unwrap_or(1),
            _ => 1,
        })
        .sum()
}

fn bytecount_lines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count().max(1)
}

#[derive(Default)]
struct ParseSummary {
    skipped: BTreeMap<String, usize>,
    errors: Vec<String>,
    warnings: usize,
}

impl ParseSummary {
    /// An input that failed: reported now, counted in the summary; the run goes on.
    fn error(&mut self, on: &(dyn Fn(Progress) + Sync), msg: String) {
        on(Progress::Error(msg.clone()));
        self.errors.push(msg);
    }
}

/// Stage 1: read, parse and chunk every file; send batches of prepared documents.
fn parse_stage(
    sink: &dyn Sink,
    encoder: &Encoder,
    files: &[SourceFile],
    options: &IndexOptions,
    chunking: &ChunkParams,
    tx: &crossbeam_channel::Sender<Vec<Prepared>>,
    on: &(dyn Fn(Progress) + Sync),
) -> Result<(HashSet<String>, ParseSummary)> {
    let mut ps = ParseSummary::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut batch: Vec<Prepared> = Vec::new();
    for file in files {
        for doc in read_documents(file, options, &mut ps, on) {
            if options.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            if doc.is_empty() {
                *ps.skipped.entry("empty".into()).or_default() += 1;
                continue;
            }
            let size = doc.parts.iter().map(|p| p.text.len()).sum::<usize>();
            if size > MAX_DOCUMENT_BYTES {
                ps.error(on, format!("{}: document {:?}: {}", doc.source, doc.id, over_limit(size as u64)));
                continue;
            }
            if !seen.insert(doc.id.clone()) {
                ps.warnings += 1;
                on(Progress::Warning(format!(
                    "duplicate id {:?} in this run ({}): the last one wins",
                    doc.id, doc.source
                )));
            }
            batch.push(prepare(sink, encoder, chunking, doc)?);
            if batch.len() >= BATCH_DOCS && tx.send(std::mem::take(&mut batch)).is_err() {
                return Err(Error::Cancelled);
            }
        }
    }
    if !batch.is_empty() && tx.send(batch).is_err() {
        return Err(Error::Cancelled);
    }
    Ok((seen, ps))
}

/// The documents of one file; a file that cannot be read or parsed is counted in `ps`,
/// reported, and yields none (the run goes on).
fn read_documents(
    file: &SourceFile,
    options: &IndexOptions,
    ps: &mut ParseSummary,
    on: &(dyn Fn(Progress) + Sync),
) -> Vec<Document> {
    let source = match &options.source_base {
        Some(base) => file.path.strip_prefix(base).unwrap_or(&file.path).to_string_lossy().into_owned(),
        None => std::fs::canonicalize(&file.path).unwrap_or_else(|_| file.path.clone()).to_string_lossy().into_owned(),
    };
    if let Some(reason) = too_large(file) {
        ps.error(on, format!("{source}: {reason}"));
        return Vec::new();
    }
    let bytes = match std::fs::read(&file.path) {
        Ok(b) => b,
        Err(e) => {
            ps.error(on, format!("{source}: {e}"));
            return Vec::new();
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        *ps.skipped.entry("empty".into()).or_default() += 1;
        return Vec::new();
    }
    let parsed = match parse(file.format, &bytes, &file.id, &source, &options.fields) {
        Ok(p) => p,
        Err(Error::Binary { .. }) => {
            *ps.skipped.entry("binary".into()).or_default() += 1;
            return Vec::new();
        }
        Err(e) => {
            ps.error(on, e.to_string());
            return Vec::new();
        }
    };
    for w in parsed.warnings {
        ps.warnings += 1;
        on(Progress::Warning(w));
    }
    for e in parsed.errors {
        ps.error(on, e.to_string());
    }
    parsed.docs
}

/// A document with its content hash and, when it changed since it was stored, its chunks.
fn prepare(sink: &dyn Sink, encoder: &Encoder, chunking: &ChunkParams, doc: Document) -> Result<Prepared> {
    let hash = doc.content_hash();
    let unchanged = sink.stored_hash(&doc.id)?.is_some_and(|h| h == hash);
    let chunks = if unchanged {
        Vec::new()
    } else {
        // Every chunk is embedded after its title: leave the title room in the budget.
        let title_tokens = if doc.title.is_empty() { 0 } else { encoder.count_tokens(&doc.title)? + 1 };
        let budget = ChunkParams {
            max_tokens: chunking.max_tokens.saturating_sub(title_tokens).max(chunking.max_tokens / 2),
            ..*chunking
        };
        chunk_document(&doc, &budget, encoder)?
    };
    Ok(Prepared { doc, hash, chunks })
}

/// Stage 2: embed the chunks of changed documents; unchanged ones cost nothing.
fn embed_batch(
    sink: &dyn Sink,
    encoder: &Encoder,
    batch: Vec<Prepared>,
    embed_time: &mut Duration,
    summary: &mut IndexSummary,
    on: &(dyn Fn(Progress) + Sync),
) -> Result<(Vec<Change>, usize)> {
    let mut unchanged = 0;
    let mut todo = Vec::new();
    for p in batch {
        // Checked again here: an earlier batch of this run may have written the same id.
        if sink.stored_hash(&p.doc.id)?.is_some_and(|h| h == p.hash) {
            unchanged += 1;
        } else {
            todo.push(p);
        }
    }
    let texts: Vec<String> = match sink.embeds() {
        true => todo.iter().flat_map(|p| p.chunks.iter().map(|c| embed_text(&p.doc.title, &c.text))).collect(),
        false => Vec::new(), // embedded by the sink's workers
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    let vectors = encoder.encode(&refs)?;
    *embed_time += t.elapsed();
    summary.chunks_embedded += refs.len();
    on(Progress::Embedded { chunks: refs.len() });
    let mut rows = vectors.rows();
    let mut changes = Vec::with_capacity(todo.len());
    for p in todo {
        let vs: Vec<Vec<f32>> = match sink.embeds() {
            true => rows.by_ref().take(p.chunks.len()).map(<[f32]>::to_vec).collect(),
            false => Vec::new(),
        };
        let doc = DocRecord {
            id: p.doc.id,
            title: p.doc.title,
            source: p.doc.source,
            metadata: p.doc.metadata,
            content_hash: p.hash,
            chunk_keys: Vec::new(),
            seq: 0,
        };
        changes.push(Change::Upsert { doc, chunks: p.chunks, vectors: vs });
    }
    Ok((changes, unchanged))
}

/// The text a chunk is embedded as: its document's title, then the passage.
pub fn embed_text(title: &str, text: &str) -> String {
    if title.is_empty() || text.starts_with(title) {
        text.to_string()
    } else {
        format!("{title}\n{text}")
    }
}

/// Deletes documents whose source lies under one of `paths` and was not seen in this run.
fn sync_deletes(collection: &Collection, paths: &[PathBuf], seen: &HashSet<String>) -> Result<usize> {
    let roots: Vec<String> =
        paths.iter().filter_map(|p| std::fs::canonicalize(p).ok()).map(|p| p.to_string_lossy().into_owned()).collect();
    let mut gone = Vec::new();
    for doc in collection.store().docs() {
        let doc = doc?;
        let file = doc.source.split('#').next().unwrap_or(&doc.source);
        let under = roots.iter().any(|r| file == r || file.starts_with(&format!("{r}/")));
        if under && !seen.contains(&doc.id) {
            gone.push(doc.id);
        }
    }
    collection.delete(&gone)
}
