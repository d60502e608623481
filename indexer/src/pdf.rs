//! PDF text by page, as a reader sees it. pdf-extract follows the text-positioning operators
//! (`Td`, `Tm`, `TJ` offsets) and the fonts' ToUnicode maps, so words placed by position come
//! out separated and a page's lines stay apart; lopdf's plain extraction reads a page pdf-extract
//! cannot. Both run behind a panic guard: a malformed PDF fails alone and never ends the run.

use crate::document::{Document, Part};
use crate::formats::file_stem;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Text one PDF may yield. Pages can share one compressed stream, so a small file can inflate
/// to hundreds of megabytes of text (a decompression bomb); such a file is refused whole, before
/// any of it is indexed. A 2,000-page book holds about 5 MB of text.
pub const MAX_PDF_TEXT_BYTES: usize = 32 << 20;

/// One part per page, with its page number (1-based) for citations, and the warnings to show
/// (pages read by the fallback).
pub(crate) fn parse(bytes: &[u8], id: &str, source: &str) -> Result<(Document, Vec<String>)> {
    let fail = |reason: String| Error::Parse { path: source.to_string(), reason };
    let (title, parts, fallback) = match catch_unwind(|| pages(bytes)) {
        Ok(Ok(v)) => v,
        Ok(Err(reason)) => return Err(fail(reason)),
        Err(_) => return Err(fail("the PDF parser failed on this file".into())),
    };
    let mut warnings = Vec::new();
    if !fallback.is_empty() {
        let list = fallback.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        warnings.push(format!(
            "{source}: page(s) {list} read without text positions (the positioned extractor failed): \
             some words may run together"
        ));
    }
    let doc = Document {
        id: id.into(),
        title: title.unwrap_or_else(|| file_stem(id)),
        source: source.into(),
        metadata: BTreeMap::from([("format".into(), "pdf".into()), ("pages".into(), parts.len().into())]),
        parts,
    };
    Ok((doc, warnings))
}

/// The title, each page's text, and the pages the fallback read.
type Pages = (Option<String>, Vec<Part>, Vec<u32>);

fn pages(bytes: &[u8]) -> std::result::Result<Pages, String> {
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| format!("not a readable PDF: {e}"))?;
    let (mut parts, mut fallback, mut total) = (Vec::new(), Vec::new(), 0usize);
    for number in doc.get_pages().into_keys() {
        let text = match positioned_text(&doc, number) {
            Some(text) => text,
            None => {
                fallback.push(number);
                doc.extract_text(&[number]).map_err(|e| format!("page {number}: {e}"))?
            }
        };
        total += text.len();
        if total > MAX_PDF_TEXT_BYTES {
            return Err(format!(
                "its text passes {} MiB by page {number} (of a {} KiB file): a decompression bomb, or more \
                 text than one document should hold; skipped whole",
                MAX_PDF_TEXT_BYTES >> 20,
                bytes.len() >> 10
            ));
        }
        let text = unligate(&text).split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() {
            parts.push(Part { text, heading: None, page: Some(number) });
        }
    }
    Ok((title(&doc), parts, fallback))
}

/// One page through pdf-extract's plain-text device: a space where the next glyph starts past
/// the last one's end, a line break where it moves down. None when it fails or panics.
fn positioned_text(doc: &lopdf::Document, number: u32) -> Option<String> {
    let mut text = String::new();
    let read = catch_unwind(AssertUnwindSafe(|| {
        let mut device = pdf_extract::PlainTextOutput::new(&mut text);
        pdf_extract::output_doc_page(doc, &mut device, number).is_ok()
    }));
    matches!(read, Ok(true)).then_some(text)
}

/// Typographic ligatures (U+FB00-FB06: "ﬁ", "ﬂ", "ﬀ", ...) as their letters: fonts map one
/// glyph to the ligature's code point, and "ﬁnds" must be found by "finds". Only that block is
/// decomposed, so full-width CJK punctuation stays as written.
fn unligate(text: &str) -> std::borrow::Cow<'_, str> {
    let ligature = |c: char| ('\u{FB00}'..='\u{FB06}').contains(&c);
    if !text.chars().any(ligature) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if ligature(c) {
            unicode_normalization::char::decompose_compatible(c, |d| out.push(d));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// The document's Title, decoded as PDF text strings are (UTF-16BE or UTF-8 after a byte
/// order mark, else PDFDocEncoding): a CJK title in UTF-16 comes out as its characters.
fn title(doc: &lopdf::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let info = doc.dereference(info).ok()?.1.as_dict().ok()?;
    let title = lopdf::decode_text_string(info.get(b"Title").ok()?).ok()?;
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    use crate::formats::{parse, Format, JsonFields};

    /// A one-page PDF written with lopdf: `text` on the page, `title` in the Info dictionary.
    fn pdf(title: &str, text: &str) -> Vec<u8> {
        pdf_with(title, text, true)
    }

    fn pdf_with(title: &str, text: &str, media_box: bool) -> Vec<u8> {
        use lopdf::content::{Content, Operation};
        use lopdf::{dictionary, Object, Stream};
        let mut doc = lopdf::Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font = doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"});
        let resources = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font}});
        let ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 12.into()]),
            Operation::new("Td", vec![72.into(), 700.into()]),
            Operation::new("Tj", vec![Object::string_literal(text)]),
            Operation::new("ET", vec![]),
        ];
        let content = doc.add_object(Stream::new(dictionary! {}, Content { operations: ops }.encode().unwrap()));
        let page = doc.add_object(dictionary! {"Type" => "Page", "Parent" => pages_id, "Contents" => content});
        let mut pages = dictionary! {
            "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1, "Resources" => resources,
        };
        if media_box {
            pages.set("MediaBox", vec![0.into(), 0.into(), 595.into(), 842.into()]);
        }
        doc.objects.insert(pages_id, Object::Dictionary(pages));
        let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
        doc.trailer.set("Root", catalog);
        let info = doc.add_object(dictionary! {"Title" => lopdf::text_string(title)});
        doc.trailer.set("Info", info);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn a_pdf_title_in_utf16_is_decoded_and_pages_are_numbered() {
        let bytes = pdf("搜索引擎 — Suchmaschine", "Hybrid retrieval fuses two lists.");
        let parsed = parse(Format::Pdf, &bytes, "t.pdf", "t.pdf", &JsonFields::default()).unwrap();
        let d = &parsed.docs[0];
        assert_eq!(d.title, "搜索引擎 — Suchmaschine");
        assert_eq!(d.parts[0].page, Some(1));
        assert!(d.parts[0].text.contains("Hybrid retrieval fuses two lists."), "{:?}", d.parts);
        let latin = pdf("Plain title", "x");
        let parsed = parse(Format::Pdf, &latin, "l.pdf", "l.pdf", &JsonFields::default()).unwrap();
        assert_eq!(parsed.docs[0].title, "Plain title");
    }

    #[test]
    fn a_pdf_whose_pages_inflate_past_the_limit_is_refused_whole() {
        use lopdf::content::{Content, Operation};
        use lopdf::{dictionary, Object, Stream};
        // One compressed content stream of ~1 MiB of text, shared by 40 pages: a few KiB on disk.
        let mut doc = lopdf::Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font = doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"});
        let resources = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font}});
        let mut ops = vec![Operation::new("BT", vec![]), Operation::new("Tf", vec!["F1".into(), 12.into()])];
        for _ in 0..4096 {
            ops.push(Operation::new("Tj", vec![Object::string_literal("bomb ".repeat(50))]));
        }
        ops.push(Operation::new("ET", vec![]));
        let mut stream = Stream::new(dictionary! {}, Content { operations: ops }.encode().unwrap());
        stream.compress().unwrap();
        let content = doc.add_object(stream);
        let kids: Vec<Object> = (0..40)
            .map(|_| doc.add_object(dictionary! {"Type" => "Page", "Parent" => pages_id, "Contents" => content}).into())
            .collect();
        let pages = dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => 40, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        };
        doc.objects.insert(pages_id, Object::Dictionary(pages));
        let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
        doc.trailer.set("Root", catalog);
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        assert!(bytes.len() < 64 << 10, "a small file: {} bytes", bytes.len());
        let err = parse(Format::Pdf, &bytes, "bomb.pdf", "bomb.pdf", &JsonFields::default()).unwrap_err().to_string();
        assert!(err.contains("bomb.pdf") && err.contains("decompression bomb"), "{err}");
    }

    #[test]
    fn a_page_the_positioned_extractor_cannot_read_comes_from_lopdf_with_a_warning() {
        // No MediaBox: pdf-extract panics on it, lopdf reads the text.
        let bytes = pdf_with("t", "Fallback text.", false);
        let parsed = parse(Format::Pdf, &bytes, "m.pdf", "m.pdf", &JsonFields::default()).unwrap();
        assert!(parsed.docs[0].parts[0].text.contains("Fallback text."), "{:?}", parsed.docs[0].parts);
        assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
        assert!(parsed.warnings[0].contains("m.pdf: page(s) 1 read without text positions"), "{:?}", parsed.warnings);
    }

    #[test]
    fn ligatures_become_letters_and_cjk_punctuation_stays() {
        assert_eq!(super::unligate("ﬁnds the ﬂow, ﬃ"), "finds the flow, ffi");
        assert_eq!(super::unligate("段落，再"), "段落，再");
    }

    #[test]
    fn a_corrupt_pdf_fails_with_its_path() {
        let err = parse(Format::Pdf, b"%PDF-1.4 garbage", "x.pdf", "/data/x.pdf", &JsonFields::default()).unwrap_err();
        assert!(err.to_string().contains("/data/x.pdf"), "{err}");
    }
}
