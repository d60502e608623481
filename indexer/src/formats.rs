//! Parsers: bytes of one file to documents. Each uses a maintained crate (pulldown-cmark,
//! scraper, pdf-extract over lopdf (pdf.rs), serde_json); none of them is hand-written.

use crate::document::{Document, Part};
use crate::{Error, Result};
use std::collections::BTreeMap;

pub use crate::pdf::MAX_PDF_TEXT_BYTES;

/// Which fields of a JSON object hold the id, title and text.
#[derive(Debug, Clone, Default)]
pub struct JsonFields {
    /// Default: `_id` (BEIR), then `id`.
    pub id: Option<String>,
    /// Default: `title`.
    pub title: Option<String>,
    /// Default: `text`, then `body`, then `content`.
    pub text: Option<String>,
}

/// The supported formats, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text.
    Text,
    /// Markdown (headings split parts).
    Markdown,
    /// HTML (the body's text, headings split parts).
    Html,
    /// PDF (one part per page).
    Pdf,
    /// A JSON object or array of objects, one document each.
    Json,
    /// JSON Lines, one document per line.
    JsonLines,
}

impl Format {
    /// The format of a file by its extension, `None` when it is not one of them.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "txt" | "text" => Format::Text,
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" => Format::Html,
            "pdf" => Format::Pdf,
            "json" => Format::Json,
            "jsonl" | "ndjson" => Format::JsonLines,
            _ => return None,
        })
    }
}

/// What parsing one file gave: documents, per-record errors (the other records still count),
/// and warnings.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The documents read.
    pub docs: Vec<Document>,
    /// Records that could not be read (the others still are).
    pub errors: Vec<Error>,
    /// Things worth telling the user (fields missing, text dropped).
    pub warnings: Vec<String>,
}

/// Parses one file's bytes. `id` is the file's stable id (its relative path), `source` its path.
pub fn parse(format: Format, bytes: &[u8], id: &str, source: &str, fields: &JsonFields) -> Result<Parsed> {
    let mut parsed = Parsed::default();
    if format == Format::Pdf {
        let (doc, warnings) = crate::pdf::parse(bytes, id, source)?;
        parsed.docs.push(doc);
        parsed.warnings.extend(warnings);
        return Ok(parsed);
    }
    if looks_binary(bytes) {
        return Err(Error::Binary { path: source.to_string() });
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => {
            parsed.warnings.push(format!("{source}: invalid UTF-8, decoded lossily"));
            String::from_utf8_lossy(bytes)
        }
    };
    match format {
        Format::Text => parsed.docs.push(parse_text(&text, id, source)),
        Format::Markdown => parsed.docs.push(parse_markdown(&text, id, source)),
        Format::Html => parsed.docs.push(parse_html(&text, id, source)),
        Format::Json => parse_json(&text, id, source, fields, &mut parsed)?,
        Format::JsonLines => parse_jsonl(&text, id, source, fields, &mut parsed),
        Format::Pdf => {} // handled above
    }
    Ok(parsed)
}

/// A NUL byte in the first 8 KiB: not text.
pub fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0)
}

pub(crate) fn file_stem(id: &str) -> String {
    let name = id.rsplit('/').next().unwrap_or(id);
    name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name).to_string()
}

fn parse_text(text: &str, id: &str, source: &str) -> Document {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let title = if !first.is_empty() && first.chars().count() <= 100 { first.to_string() } else { file_stem(id) };
    Document {
        id: id.to_string(),
        title,
        source: source.to_string(),
        metadata: BTreeMap::from([("format".into(), "txt".into())]),
        parts: vec![Part { text: text.trim().to_string(), heading: None, page: None }],
    }
}

/// Markdown: markup stripped, one part per section with its heading path ("A > B").
fn parse_markdown(text: &str, id: &str, source: &str) -> Document {
    use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
    let mut parts: Vec<Part> = Vec::new();
    let mut headings: Vec<(HeadingLevel, String)> = Vec::new();
    let mut current = String::new();
    let mut in_heading: Option<(HeadingLevel, String)> = None;
    let mut title: Option<String> = None;
    let flush = |current: &mut String, headings: &[(HeadingLevel, String)], parts: &mut Vec<Part>| {
        let t = current.trim();
        if !t.is_empty() {
            let path: Vec<&str> = headings.iter().map(|(_, h)| h.as_str()).collect();
            let heading = (!path.is_empty()).then(|| path.join(" > "));
            parts.push(Part { text: t.to_string(), heading, page: None });
        }
        current.clear();
    };
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(&mut current, &headings, &mut parts);
                in_heading = Some((level, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, h)) = in_heading.take() {
                    let h = h.trim().to_string();
                    if title.is_none() && level == HeadingLevel::H1 {
                        title = Some(h.clone());
                    }
                    headings.retain(|(l, _)| *l < level);
                    headings.push((level, h));
                }
            }
            Event::Text(t) | Event::Code(t) => match &mut in_heading {
                Some((_, h)) => h.push_str(&t),
                None => current.push_str(&t),
            },
            Event::SoftBreak | Event::HardBreak => current.push(' '),
            Event::End(
                TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::BlockQuote(_) | TagEnd::TableRow,
            ) => current.push_str("\n\n"),
            Event::End(TagEnd::TableCell) => current.push(' '),
            _ => {}
        }
    }
    flush(&mut current, &headings, &mut parts);
    let title = title.or_else(|| headings.first().map(|(_, h)| h.clone())).unwrap_or_else(|| file_stem(id));
    Document {
        id: id.into(),
        title,
        source: source.into(),
        metadata: BTreeMap::from([("format".into(), "md".into())]),
        parts,
    }
}

/// HTML: the `<title>` and the text of `<main>`/`<article>` (else `<body>`), without scripts,
/// styles or templates; block elements become paragraph breaks.
fn parse_html(text: &str, id: &str, source: &str) -> Document {
    use scraper::{Html, Selector};
    let html = Html::parse_document(text);
    let sel = |s: &str| Selector::parse(s).ok();
    let title = sel("title")
        .and_then(|s| html.select(&s).next())
        .map(|t| t.text().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|t| !t.is_empty())
        .or_else(|| {
            sel("h1").and_then(|s| html.select(&s).next()).map(|t| t.text().collect::<String>().trim().to_string())
        })
        .unwrap_or_else(|| file_stem(id));
    let root = ["main", "article", "body"]
        .iter()
        .filter_map(|s| sel(s))
        .find_map(|s| html.select(&s).next())
        .unwrap_or_else(|| html.root_element());
    let mut out = String::new();
    collect_html_text(*root, &mut out);
    let paragraphs: Vec<String> = out
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect();
    Document {
        id: id.into(),
        title,
        source: source.into(),
        metadata: BTreeMap::from([("format".into(), "html".into())]),
        parts: vec![Part { text: paragraphs.join("\n\n"), heading: None, page: None }],
    }
}

/// The text under `node`, walked without recursion (a page of 20,000 nested elements must not
/// overflow the stack).
fn collect_html_text(node: ego_tree::NodeRef<'_, scraper::Node>, out: &mut String) {
    use ego_tree::iter::Edge;
    use scraper::Node;
    // The element whose subtree is skipped (script, style...), until it closes.
    let mut skipping: Option<ego_tree::NodeId> = None;
    for edge in node.traverse() {
        let (opening, n) = match edge {
            Edge::Open(n) => (true, n),
            Edge::Close(n) => (false, n),
        };
        if n.id() == node.id() {
            continue;
        }
        if let Some(id) = skipping {
            if !opening && n.id() == id {
                skipping = None;
            }
            continue;
        }
        match n.value() {
            Node::Text(t) if opening => out.push_str(t),
            Node::Element(e) => {
                let name = e.name();
                if matches!(name, "script" | "style" | "noscript" | "template" | "head" | "svg" | "iframe") {
                    if opening {
                        skipping = Some(n.id());
                    }
                    continue;
                }
                // As a browser lays text out: blocks (and line breaks) separate, table cells
                // are apart, inline elements (`b`, `sub`, `a`, `span`...) join their text to
                // the words around them with nothing added (`H<sub>2</sub>O` is "H2O", and
                // Chinese split by markup stays unsplit).
                if is_block(name) {
                    out.push_str("\n\n");
                } else if opening && matches!(name, "td" | "th") {
                    out.push(' ');
                }
            }
            _ => {}
        }
    }
}

/// Elements a browser lays out as blocks (or that break the line), as far as text goes.
fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "section"
            | "article"
            | "main"
            | "header"
            | "footer"
            | "aside"
            | "nav"
            | "li"
            | "ul"
            | "ol"
            | "dl"
            | "dd"
            | "dt"
            | "table"
            | "caption"
            | "tr"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "pre"
            | "blockquote"
            | "br"
            | "hr"
            | "figure"
            | "figcaption"
            | "details"
            | "summary"
            | "address"
            | "fieldset"
            | "form"
            | "center"
    )
}

fn parse_json(text: &str, id: &str, source: &str, fields: &JsonFields, parsed: &mut Parsed) -> Result<()> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Parse { path: source.into(), reason: format!("invalid JSON: {e}") })?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let many = items.len() > 1;
    for (i, item) in items.into_iter().enumerate() {
        let fallback_id = if many { format!("{id}#{i}") } else { id.to_string() };
        let src = if many { format!("{source}#{i}") } else { source.to_string() };
        match json_document(item, &fallback_id, &src, fields) {
            Ok(doc) => parsed.docs.push(doc),
            Err(reason) => parsed.errors.push(Error::Parse { path: src, reason }),
        }
    }
    Ok(())
}

fn parse_jsonl(text: &str, id: &str, source: &str, fields: &JsonFields, parsed: &mut Parsed) {
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let src = format!("{source}#L{}", i + 1);
        let doc = serde_json::from_str::<serde_json::Value>(line)
            .map_err(|e| format!("line {}: invalid JSON: {e}", i + 1))
            .and_then(|v| {
                json_document(v, &format!("{id}#L{}", i + 1), &src, fields).map_err(|e| format!("line {}: {e}", i + 1))
            });
        match doc {
            Ok(doc) => parsed.docs.push(doc),
            Err(reason) => parsed.errors.push(Error::Parse { path: source.to_string(), reason }),
        }
    }
}

/// One JSON object to a document: id, title and text fields, other scalars as metadata.
fn json_document(
    value: serde_json::Value,
    fallback_id: &str,
    source: &str,
    fields: &JsonFields,
) -> std::result::Result<Document, String> {
    let serde_json::Value::Object(map) = value else { return Err("not a JSON object".into()) };
    let pick = |given: &Option<String>, defaults: &[&str]| -> Option<String> {
        match given {
            Some(f) => Some(f.clone()),
            None => defaults.iter().find(|d| map.contains_key(**d)).map(|d| d.to_string()),
        }
    };
    let id_field = pick(&fields.id, &["_id", "id"]);
    let title_field = pick(&fields.title, &["title"]);
    let text_field = pick(&fields.text, &["text", "body", "content"]);
    let Some(text_field) = text_field else {
        return Err("no text field (looked for text, body, content; set --text-field)".into());
    };
    let as_string = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let text = match map.get(&text_field) {
        Some(v) => as_string(v).ok_or_else(|| format!("field {text_field:?} is not a string"))?,
        None => return Err(format!("no {text_field:?} field")),
    };
    let id = match &id_field {
        Some(f) => match map.get(f) {
            Some(v) => {
                as_string(v).filter(|s| !s.is_empty()).ok_or_else(|| format!("field {f:?} is not a usable id"))?
            }
            None if fields.id.is_some() => return Err(format!("no {f:?} field")),
            None => fallback_id.to_string(),
        },
        None => fallback_id.to_string(),
    };
    let title = title_field.as_ref().and_then(|f| map.get(f)).and_then(as_string).unwrap_or_default();
    let skip = [id_field.as_deref(), title_field.as_deref(), Some(text_field.as_str())];
    let metadata = map
        .iter()
        .filter(|(k, v)| !skip.contains(&Some(k.as_str())) && (v.is_string() || v.is_number() || v.is_boolean()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A document may name where it lives (shown with search hits and answer sources).
    let source = ["url", "uri", "source"]
        .iter()
        .find_map(|k| map.get(*k).and_then(|v| v.as_str()).filter(|s| !s.trim().is_empty()))
        .unwrap_or(source);
    Ok(Document {
        id,
        title,
        source: source.to_string(),
        metadata,
        parts: vec![Part { text, heading: None, page: None }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_documents_may_name_their_url() {
        let f = JsonFields::default();
        let d = json_document(
            serde_json::json!({"id": "1", "text": "t", "url": "https://example.org/a"}),
            "x",
            "f.jsonl#L1",
            &f,
        )
        .unwrap();
        assert_eq!(d.source, "https://example.org/a");
        assert_eq!(d.metadata.get("url").and_then(|v| v.as_str()), Some("https://example.org/a"));
        let d = json_document(serde_json::json!({"id": "1", "text": "t"}), "x", "f.jsonl#L1", &f).unwrap();
        assert_eq!(d.source, "f.jsonl#L1");
    }

    fn one(format: Format, text: &str) -> Document {
        let mut p = parse(format, text.as_bytes(), "dir/file.x", "/tmp/dir/file.x", &JsonFields::default()).unwrap();
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        p.docs.remove(0)
    }

    #[test]
    fn markdown_keeps_heading_paths_and_strips_markup() {
        let d = one(
            Format::Markdown,
            "# Guide\n\nIntro *text* here.\n\n## Install\n\nRun `cargo build`.\n\n## Use\n\n- one\n- two\n",
        );
        assert_eq!(d.title, "Guide");
        assert_eq!(d.parts[0].text, "Intro text here.");
        assert_eq!(d.parts[1].heading.as_deref(), Some("Guide > Install"));
        assert!(d.parts[1].text.contains("Run cargo build."));
        assert_eq!(d.parts[2].heading.as_deref(), Some("Guide > Use"));
        assert!(!d.text().contains('*') && !d.text().contains('`'));
    }

    #[test]
    fn html_takes_title_and_main_text_without_scripts() {
        let d = one(
            Format::Html,
            "<html><head><title>Page T</title><style>p{color:red}</style></head><body><nav>menu</nav><main><h1>Head</h1><p>Hello <b>world</b>.</p><script>alert(1)</script><p>Second.</p></main></body></html>",
        );
        assert_eq!(d.title, "Page T");
        let t = d.text();
        assert!(t.contains("Hello world .") || t.contains("Hello world."), "{t}");
        assert!(t.contains("Second."));
        assert!(!t.contains("alert") && !t.contains("color") && !t.contains("menu"), "{t}");
    }

    #[test]
    fn deeply_nested_html_is_read_without_recursion() {
        let page = format!("<body>{}deep text{}</body>", "<div><span>".repeat(10_000), "</span></div>".repeat(10_000));
        let d = std::thread::Builder::new()
            .stack_size(256 << 10) // a small stack: a recursive walk would overflow it
            .spawn(move || one(Format::Html, &page))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(d.parts[0].text, "deep text");
    }

    #[test]
    fn inline_markup_adds_no_spaces_and_blocks_still_separate() {
        let d = one(
            Format::Html,
            "<body><p>H<sub>2</sub>O and E=mc<sup>2</sup>, <a href=x>li</a>nk</p><p>中文<b>分词</b>测试</p>\
             <ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>\
             <p>x<br>y</p></body>",
        );
        let t = &d.parts[0].text;
        assert!(t.contains("H2O and E=mc2, link"), "{t}");
        assert!(t.contains("中文分词测试"), "{t}");
        assert!(t.contains("one\n\ntwo") && t.contains("a b") && t.contains("b\n\nc"), "{t}");
        assert!(t.contains("x\n\ny"), "{t}");
    }

    #[test]
    fn jsonl_keeps_metadata_and_reports_bad_lines_by_number() {
        let text = "{\"_id\": \"a\", \"title\": \"T\", \"text\": \"x\", \"year\": 2020, \"tags\": [1]}\nnot json\n\n{\"id\": 7, \"text\": \"y\"}\n";
        let p = parse(Format::JsonLines, text.as_bytes(), "c.jsonl", "/c.jsonl", &JsonFields::default()).unwrap();
        assert_eq!(p.docs.len(), 2);
        assert_eq!(p.docs[0].id, "a");
        assert_eq!(p.docs[0].metadata.get("year"), Some(&serde_json::json!(2020)));
        assert!(!p.docs[0].metadata.contains_key("tags"));
        assert_eq!(p.docs[1].id, "7");
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].to_string().contains("line 2"), "{}", p.errors[0]);
    }

    #[test]
    fn custom_json_fields() {
        let f = JsonFields { id: Some("key".into()), title: Some("name".into()), text: Some("body".into()) };
        let p =
            parse(Format::Json, br#"[{"key": "k1", "name": "N", "body": "B", "lang": "en"}]"#, "f.json", "/f.json", &f)
                .unwrap();
        assert_eq!(p.docs[0].id, "k1");
        assert_eq!(p.docs[0].title, "N");
        assert_eq!(p.docs[0].metadata.get("lang"), Some(&serde_json::json!("en")));
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_with_a_warning() {
        let p = parse(Format::Text, b"caf\xe9 au lait", "a.txt", "/a.txt", &JsonFields::default()).unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert!(p.docs[0].text().contains("caf\u{fffd} au lait"));
    }
}
