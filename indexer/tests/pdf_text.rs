//! PDFs from real producers (tests/fixtures/pdf, written by scripts/pdf-fixtures with ReportLab
//! and Chromium) read as a reader sees them: word agreement with the text each was made from,
//! side by side with poppler's `pdftotext` (Debian's poppler-utils) and lopdf's plain extraction
//! (the parser before pdf-extract). Figures in docs/benchmarks.md.

#[path = "../../tests/support/words.rs"]
mod words;

use sousuo_indexer::formats::{parse, Format, JsonFields};
use std::path::{Path, PathBuf};
use std::process::Command;
use words::{agreement, bigrams, words};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/pdf");
    let mut pdfs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .collect();
    pdfs.sort();
    pdfs
}

fn pdftotext(pdf: &Path) -> String {
    let out = Command::new("pdftotext").args(["-enc", "UTF-8"]).arg(pdf).arg("-").output().unwrap_or_else(|e| {
        panic!(
            "pdftotext ({e}) is the peer of this test: install Debian's poppler-utils \
             (scripts/ensure-chromium does, as root)"
        )
    });
    assert!(out.status.success(), "pdftotext {}: {}", pdf.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// lopdf's extract_text page by page: what the parser read before it followed positions.
fn lopdf_plain(bytes: &[u8]) -> String {
    let doc = lopdf::Document::load_mem(bytes).unwrap();
    let pages: Vec<u32> = doc.get_pages().into_keys().collect();
    pages.iter().map(|&n| doc.extract_text(&[n]).unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

#[test]
fn pdf_text_agrees_with_its_source_at_least_as_well_as_pdftotext() {
    let pdfs = fixtures();
    assert!(pdfs.len() >= 4, "{pdfs:?}");
    let mut low = Vec::new();
    println!("| fixture | lopdf plain | sousuo | pdftotext | order: sousuo | order: pdftotext |");
    for pdf in &pdfs {
        let name = pdf.file_stem().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(pdf.with_extension("txt")).unwrap();
        let bytes = std::fs::read(pdf).unwrap();
        let parsed = parse(Format::Pdf, &bytes, &name, &name, &JsonFields::default()).unwrap();
        assert!(parsed.warnings.is_empty(), "{name}: {:?}", parsed.warnings);
        let ours: Vec<&str> = parsed.docs[0].parts.iter().map(|p| p.text.as_str()).collect();
        let ours = ours.join("\n");
        let peer = pdftotext(pdf);
        let (src_words, src_pairs) = (words(&source), bigrams(&source));
        let f = |text: &str| (agreement(&words(text), &src_words), agreement(&bigrams(text), &src_pairs));
        let (before, _) = f(&lopdf_plain(&bytes));
        let ((w, o), (pw, po)) = (f(&ours), f(&peer));
        println!("| {name} | {before:.4} | {w:.4} | {pw:.4} | {o:.4} | {po:.4} |");
        if w + 1e-9 < pw || o + 1e-9 < po || w < 0.97 {
            low.push(format!("{name}: words {w:.4} (pdftotext {pw:.4}), order {o:.4} (pdftotext {po:.4})"));
        }
    }
    assert!(low.is_empty(), "PDF text below the peer's or below 0.97: {low:?}");
}

#[test]
fn titles_in_utf16_and_page_numbers_come_through() {
    let read = |name: &str| {
        let path = fixtures().into_iter().find(|p| p.file_stem().is_some_and(|s| s == name)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        parse(Format::Pdf, &bytes, name, name, &JsonFields::default()).unwrap().docs.remove(0)
    };
    assert_eq!(read("reportlab-cjk").title, "搜索引擎简介 — 混合检索");
    assert_eq!(read("chromium-article").title, "混合检索 — Hybrid retrieval");
    let columns = read("reportlab-two-columns");
    let pages: Vec<Option<u32>> = columns.parts.iter().map(|p| p.page).collect();
    assert_eq!(pages, vec![Some(1), Some(2)], "one part per page, numbered");
}
