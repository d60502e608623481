//! Every route through `app(state).oneshot(..)` (no socket), with the real encoder, including
//! the 4xx paths: bad JSON, unknown collection, oversized body, missing / wrong / insufficient
//! keys, hostile query strings.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use sousuo_encoder::models::{default_cache_root, ModelCache, MINILM};
use sousuo_encoder::{Encoder, EncoderOptions, ModelDir};
use sousuo_web::{app, AppState, Config};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower::ServiceExt;

const MASTER: &str = "master-key-for-tests-0123456789";

fn encoder() -> Encoder {
    static E: OnceLock<Encoder> = OnceLock::new();
    E.get_or_init(|| {
        let home = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
        let cache = ModelCache::new(default_cache_root(home.as_deref(), dirs::cache_dir().as_deref()).unwrap());
        let dir = cache
            .ensure(&MINILM, |_| eprintln!("fetching the encoder for the tests"))
            .unwrap_or_else(|e| panic!("the web tests need {}: {e}; run `cargo run -- models fetch`", MINILM.name));
        Encoder::load(&ModelDir::open(&dir).unwrap(), EncoderOptions::default()).unwrap()
    })
    .clone()
}

struct Server {
    dir: tempfile::TempDir,
    state: Arc<AppState>,
    app: Router,
}

fn server(master: bool, tweak: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("data"));
    if master {
        config.master_key = Some(MASTER.into());
    }
    tweak(&mut config);
    let state = AppState::new(config, encoder(), None).unwrap();
    Server { app: app(state.clone()), state, dir }
}

/// A request with an optional bearer key and JSON body.
fn build(method: &str, uri: &str, key: Option<&str>, body: Option<&Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    match body {
        Some(v) => b.header(header::CONTENT_TYPE, "application/json").body(Body::from(v.to_string())).unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

async fn call(s: &Server, method: &str, uri: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    raw(s, build(method, uri, key, body.as_ref())).await
}

async fn raw(s: &Server, req: Request<Body>) -> (StatusCode, Value) {
    let res = s.app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {v}"))
}

async fn wait_task(s: &Server, id: u64, key: Option<&str>) -> Value {
    for _ in 0..600 {
        let (st, t) = call(s, "GET", &format!("/tasks/{id}"), key, None).await;
        assert_eq!(st, StatusCode::OK, "{t}");
        if t["status"] == "succeeded" || t["status"] == "failed" || t["status"] == "canceled" {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {id} did not finish");
}

async fn with_docs(s: &Server, key: Option<&str>) {
    let docs = json!([
        {"id": "bm25", "title": "BM25", "text": "BM25 ranks documents by term frequency and inverse document frequency, with saturation (k1) and length normalisation (b).", "year": 2020},
        {"id": "hnsw", "title": "HNSW", "text": "HNSW is a layered graph for approximate nearest neighbour search over vectors.", "year": 2016},
        {"id": "xss", "title": "<script>alert('t')</script>", "text": "A hostile page: <script>alert(1)</script> <img src=x onerror=alert(2)> about graphs and ranking."}
    ]);
    let (st, t) = call(s, "POST", "/collections/kb/documents", key, Some(docs)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{t}");
    let t = wait_task(s, t["id"].as_u64().unwrap(), key).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["documents_indexed"], 3);
    // The staged upload goes once its task ends: the store holds the documents.
    let uploads = s.dir.path().join("data/kb/uploads");
    let left: Vec<_> = std::fs::read_dir(&uploads).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "uploads left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_documents_search_and_ask() {
    let s = server(false, |_| {});
    let (st, v) = call(&s, "GET", "/health", None, None).await;
    assert_eq!((st, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (st, v) = call(&s, "POST", "/collections", None, Some(json!({"name": "kb"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = call(&s, "POST", "/collections", None, Some(json!({"name": "kb"}))).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "collection_exists"));
    with_docs(&s, None).await;

    let (st, v) = call(&s, "GET", "/collections", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v[0]["name"], "kb");
    let (st, v) = call(&s, "GET", "/collections/kb", None, None).await;
    assert_eq!((st, v["documents"].as_u64()), (StatusCode::OK, Some(3)));
    let (st, v) = call(&s, "GET", "/collections/kb/stats", None, None).await;
    assert_eq!((st, v["documents"].as_u64()), (StatusCode::OK, Some(3)), "{v}");

    let (st, v) = call(&s, "GET", "/collections/kb/search?q=term%20frequency&limit=2", None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["hits"][0]["doc_id"], "bm25");
    assert!(v["hits"][0]["snippet"].as_str().unwrap().contains("<b>"), "{v}");
    let (st, v) = call(
        &s,
        "POST",
        "/collections/kb/search",
        None,
        Some(json!({"q": "graph", "mode": "keyword", "filter": ["year>=2000"]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["hits"].as_array().unwrap().len(), 1, "the filter keeps documents with a year: {v}");
    // Document text is escaped in snippets.
    let (_, v) = call(&s, "GET", "/collections/kb/search?q=hostile%20page%20onerror", None, None).await;
    let snip = v["hits"][0]["snippet"].as_str().unwrap();
    assert!(!snip.contains("<script") && !snip.contains("<img"), "{snip}");

    let (st, v) = call(&s, "GET", "/collections/kb/documents/hnsw", None, None).await;
    assert_eq!((st, v["title"].as_str()), (StatusCode::OK, Some("HNSW")));
    let (st, v) = call(&s, "GET", "/collections/kb/documents/nope", None, None).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "document_not_found"));

    // No decoder in this state: reranking is refused by name.
    let (st, v) = call(&s, "GET", "/collections/kb/search?q=graph&rerank=true", None, None).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "bad_parameter"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("rerank"), "{v}");

    // No decoder in this state: the answer is extractive, cited, and checked.
    let (st, v) =
        call(&s, "POST", "/collections/kb/ask", None, Some(json!({"q": "What does BM25 rank documents by?"}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "extractive", "{v}");
    assert!(v["sentences"][0]["citations"][0].as_u64().is_some(), "{v}");
    // SSE framing without a decoder: sources then done.
    let req = Request::post("/collections/kb/ask")
        .header(header::ACCEPT, "text/event-stream")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"q": "HNSW graph"}).to_string()))
        .unwrap();
    let (st, v) = raw(&s, req).await;
    let text = v.as_str().unwrap();
    assert_eq!(st, StatusCode::OK);
    let (src, done) = (text.find("event: sources").unwrap(), text.find("event: done").unwrap());
    assert!(src < done, "{text}");

    let (st, _) = call(&s, "DELETE", "/collections/kb/documents/hnsw", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = call(&s, "GET", "/collections/kb/search?q=nearest%20neighbour&mode=keyword", None, None).await;
    assert!(v["hits"].as_array().unwrap().iter().all(|h| h["doc_id"] != "hnsw"), "{v}");
    let (st, v) = call(&s, "DELETE", "/collections/kb/documents/hnsw", None, None).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "document_not_found"));

    // The OpenAI-compatible endpoint (no decoder here: a quoted, cited answer) and model list.
    let req = json!({"model": "kb", "messages": [{"role": "user", "content": "What does BM25 rank documents by?"}]});
    let (st, v) = call(&s, "POST", "/v1/chat/completions", None, Some(req)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("[1]"), "{v}");
    // A 900 KB question is refused as on /ask; a 900 KB earlier turn is clipped, not fatal.
    let huge = "word ".repeat(180_000);
    let req = json!({"model": "kb", "messages": [{"role": "user", "content": huge}]});
    let (st, v) = call(&s, "POST", "/v1/chat/completions", None, Some(req)).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "query_too_long"), "{v}");
    let req = json!({"model": "kb", "messages": [
        {"role": "user", "content": huge}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "What does BM25 rank documents by?"}]});
    let (st, v) = call(&s, "POST", "/v1/chat/completions", None, Some(req)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(&s, "GET", "/v1/models", None, None).await;
    assert_eq!((st, v["data"][0]["id"].as_str()), (StatusCode::OK, Some("kb")));
    // Embeddings, OpenAI's shape: the collection's encoder, unit vectors, in input order.
    let req = json!({"model": "kb", "input": ["nearest neighbour graph", "term frequency saturation"]});
    let (st, v) = call(&s, "POST", "/v1/embeddings", None, Some(req)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!((data.len(), data[1]["index"].as_u64()), (2, Some(1)), "{v}");
    let e: Vec<f32> = serde_json::from_value(data[0]["embedding"].clone()).unwrap();
    assert_eq!(e.len(), 384);
    assert!((e.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-3);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 6, "{v}");
    // The same text as base64 (little-endian f32) is the same vector.
    let req = json!({"model": "kb", "input": "nearest neighbour graph", "encoding_format": "base64"});
    let (st, v) = call(&s, "POST", "/v1/embeddings", None, Some(req)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(v["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let b: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(b, e);

    let (st, v) = call(&s, "GET", "/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["paths"]["/collections/{name}/ask"].is_object(), "{}", v["paths"]);
    let (st, v) = call(&s, "GET", "/metrics", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let m = v.as_str().unwrap();
    assert!(
        m.contains("sousuo_http_requests_total{method=\"GET\",route=\"/collections/{name}/search\",status=\"200\"}"),
        "{m}"
    );
    assert!(m.contains("sousuo_documents_indexed_total 3"), "{m}");
    // Typed by the book: counters as counters, latency as a histogram, the process's own.
    assert!(m.contains("# TYPE sousuo_http_requests counter"), "{m}");
    assert!(m.contains("# TYPE sousuo_http_request_duration_seconds histogram"), "{m}");
    assert!(m.contains("# TYPE sousuo_encoder_tokens counter") && m.contains("sousuo_encoder_tokens_total "), "{m}");
    assert!(m.contains("# TYPE sousuo_cpu_queue_depth gauge"), "{m}");
    let rss = m.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).unwrap_or_else(|| panic!("{m}"));
    assert!(rss.parse::<f64>().unwrap() > 1e6, "{rss}");
    assert!(m.trim_end().ends_with("# EOF"), "{m}");

    let (st, _) = call(&s, "DELETE", "/collections/kb", None, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = call(&s, "GET", "/collections/kb", None, None).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "collection_not_found"));
    assert!(s.state.collection_names().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx() {
    let s = server(false, |c| {
        c.max_upload_bytes = 4096;
        c.max_body_bytes = 2048;
    });
    with_docs(&s, None).await;
    let cases: Vec<(&str, &str, Option<&str>, StatusCode, &str)> = vec![
        ("POST", "/collections", Some("{not json"), StatusCode::BAD_REQUEST, "bad_json"),
        ("POST", "/collections", Some(r#"{"name": "../etc"}"#), StatusCode::BAD_REQUEST, "bad_collection_name"),
        ("GET", "/collections/missing/search?q=x", None, StatusCode::NOT_FOUND, "collection_not_found"),
        ("POST", "/collections/missing/ask", Some(r#"{"q": "x"}"#), StatusCode::NOT_FOUND, "collection_not_found"),
        ("GET", "/collections/kb/search?q=", None, StatusCode::BAD_REQUEST, "empty_query"),
        ("GET", "/collections/kb/search?q=x&limit=0", None, StatusCode::BAD_REQUEST, "bad_parameter"),
        ("GET", "/collections/kb/search?q=x&limit=abc", None, StatusCode::BAD_REQUEST, "bad_parameter"),
        ("GET", "/collections/kb/search?q=x&mode=psychic", None, StatusCode::BAD_REQUEST, "bad_parameter"),
        ("GET", "/collections/kb/search?q=x&filter=year%3E%3D", None, StatusCode::BAD_REQUEST, "bad_filter"),
        ("GET", "/collections/kb/search?q=x&semantic_ratio=7", None, StatusCode::BAD_REQUEST, "bad_parameter"),
        ("POST", "/collections/kb/search", Some("[1,2"), StatusCode::BAD_REQUEST, "bad_json"),
        ("POST", "/collections/kb/ask", Some(r#"{"q": "   "}"#), StatusCode::BAD_REQUEST, "empty_query"),
        ("POST", "/collections/kb/ask", Some(r#"{"question": 5}"#), StatusCode::BAD_REQUEST, "bad_json"),
        (
            "POST",
            "/collections/kb/ask",
            Some(r#"{"q": "x", "temperature": -1}"#),
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        ),
        ("POST", "/collections/kb/ask", Some(r#"{"q": "x", "top_p": 0}"#), StatusCode::BAD_REQUEST, "bad_parameter"),
        ("POST", "/collections/kb/documents", Some("[]"), StatusCode::BAD_REQUEST, "no_documents"),
        (
            "POST",
            "/collections/kb/documents",
            Some(r#"[{"title": "no id", "text": "t"}]"#),
            StatusCode::BAD_REQUEST,
            "bad_document",
        ),
        ("POST", "/collections/kb/documents", Some(r#"[{"id": "x"}]"#), StatusCode::BAD_REQUEST, "bad_document"),
        ("POST", "/collections/kb/documents", Some("plain words"), StatusCode::BAD_REQUEST, "bad_json"),
        ("GET", "/tasks/999", None, StatusCode::NOT_FOUND, "task_not_found"),
        ("GET", "/tasks/abc", None, StatusCode::NOT_FOUND, "task_not_found"),
        ("GET", "/no/such/route", None, StatusCode::NOT_FOUND, "not_found"),
        ("PUT", "/collections", None, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("GET", "/keys", None, StatusCode::BAD_REQUEST, "keys_disabled"),
        (
            "POST",
            "/v1/chat/completions",
            Some(r#"{"model": "kb", "messages": []}"#),
            StatusCode::BAD_REQUEST,
            "bad_messages",
        ),
        (
            "POST",
            "/v1/chat/completions",
            Some(r#"{"model": "../x", "messages": [{"role": "user", "content": "q"}]}"#),
            StatusCode::BAD_REQUEST,
            "bad_model",
        ),
        ("POST", "/v1/chat/completions", Some(r#"{"messages": 3}"#), StatusCode::BAD_REQUEST, "bad_json"),
        (
            "POST",
            "/v1/chat/completions",
            Some(
                r#"{"model": "kb", "messages": [{"role": "tool", "content": "{}"}, {"role": "user", "content": "q"}]}"#,
            ),
            StatusCode::BAD_REQUEST,
            "bad_messages",
        ),
        (
            "POST",
            "/v1/embeddings",
            Some(r#"{"model": "nope", "input": "x"}"#),
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
        (
            "POST",
            "/v1/embeddings",
            Some(r#"{"model": "kb", "input": [101, 102]}"#),
            StatusCode::BAD_REQUEST,
            "bad_input",
        ),
        ("POST", "/v1/embeddings", Some(r#"{"model": "kb", "input": []}"#), StatusCode::BAD_REQUEST, "bad_input"),
        (
            "POST",
            "/v1/embeddings",
            Some(r#"{"model": "kb", "input": ["a", " "]}"#),
            StatusCode::BAD_REQUEST,
            "bad_input",
        ),
        (
            "POST",
            "/v1/embeddings",
            Some(r#"{"model": "kb", "input": "x", "encoding_format": "int8"}"#),
            StatusCode::BAD_REQUEST,
            "bad_encoding_format",
        ),
        (
            "POST",
            "/v1/embeddings",
            Some(r#"{"model": "kb", "input": "x", "dimensions": 256}"#),
            StatusCode::BAD_REQUEST,
            "bad_dimensions",
        ),
    ];
    for (method, uri, body, want, want_code) in cases {
        let mut b = Request::builder().method(method).uri(uri);
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        let req = b.body(body.map(|x| Body::from(x.to_string())).unwrap_or_else(Body::empty)).unwrap();
        let (st, v) = raw(&s, req).await;
        assert_eq!((st, code(&v)), (want, want_code), "{method} {uri}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        if uri.starts_with("/v1/") {
            // OpenAI's error shape: its type names and a `param`.
            let kind = if st == StatusCode::NOT_FOUND { "not_found_error" } else { "invalid_request_error" };
            assert_eq!(v["error"]["type"], kind, "{uri}: {v}");
            assert!(v["error"].get("param").is_some(), "{uri}: {v}");
        }
    }
    // Oversized bodies: 413 for uploads and for other routes.
    let big = json!([{"id": "big", "text": "x".repeat(10_000)}]);
    let (st, v) = call(&s, "POST", "/collections/kb/documents", None, Some(big)).await;
    assert_eq!((st, code(&v)), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    let (st, v) = call(&s, "POST", "/collections/kb/search", None, Some(json!({"q": "y".repeat(5000)}))).await;
    assert_eq!((st, code(&v)), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    // Hostile query strings are searched as text, or refused with a 400; never a 5xx.
    for q in [
        "%27%20OR%201%3D1%20--",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "title%3A(%22%20AND%20NOT",
        "%E2%80%AE%00%FF",
        "%5B%5D%7B%7D*%3F~%5E",
    ] {
        let (st, v) = call(&s, "GET", &format!("/collections/kb/search?q={q}"), None, None).await;
        assert!(st == StatusCode::OK || st == StatusCode::BAD_REQUEST, "{q}: {st} {v}");
    }
    // Unsupported upload format in multipart.
    let boundary = "XyZ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"evil.exe\"\r\n\r\nMZ\r\n--{boundary}--\r\n"
    );
    let req = Request::post("/collections/kb/documents")
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(Body::from(body))
        .unwrap();
    let (st, v) = raw(&s, req).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "unsupported_format"));
    // Stored data is intact after all of it.
    let (_, v) = call(&s, "GET", "/collections/kb", None, None).await;
    assert_eq!(v["documents"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_gate_every_route() {
    let s = server(true, |_| {});
    // Health and the page are open; everything else needs a key.
    assert_eq!(call(&s, "GET", "/health", None, None).await.0, StatusCode::OK);
    let (st, page) = call(&s, "GET", "/", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("<title>Sousuo"));
    for (m, uri) in [
        ("GET", "/collections"),
        ("GET", "/collections/kb/search?q=x"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/keys"),
        ("GET", "/tasks/1"),
        ("GET", "/tasks"),
        ("POST", "/tasks/1/cancel"),
    ] {
        let (st, v) = call(&s, m, uri, None, None).await;
        assert_eq!((st, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_api_key"), "{uri}");
        let (st, _) = call(&s, m, uri, Some("wrong-key"), None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{uri}");
    }
    with_docs(&s, Some(MASTER)).await;
    let (st, _) = call(&s, "POST", "/collections", Some(MASTER), Some(json!({"name": "secret"}))).await;
    assert_eq!(st, StatusCode::CREATED);

    let (st, k) = call(
        &s,
        "POST",
        "/keys",
        Some(MASTER),
        Some(json!({"name": "reader", "actions": ["search"], "collections": ["kb"]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    let reader = k["key"].as_str().unwrap().to_string();
    let uid = k["uid"].as_str().unwrap().to_string();
    // Stored hashed: the secret is not in the key file.
    let file = std::fs::read_to_string(s.dir.path().join("data/keys.json")).unwrap();
    assert!(!file.contains(&reader) && file.contains(&uid));

    let (st, _) = call(&s, "GET", "/collections/kb/search?q=graph", Some(&reader), None).await;
    assert_eq!(st, StatusCode::OK);
    // Listing shows only its collections.
    let (_, v) = call(&s, "GET", "/collections", Some(&reader), None).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    // Another collection: 403 without saying whether it exists; same for a missing one.
    let (st1, v1) = call(&s, "GET", "/collections/secret/search?q=x", Some(&reader), None).await;
    let (st2, v2) = call(&s, "GET", "/collections/ghost/search?q=x", Some(&reader), None).await;
    assert_eq!((st1, st2), (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN));
    assert_eq!(
        v1["error"]["message"].as_str().unwrap().replace("secret", "ghost"),
        v2["error"]["message"].as_str().unwrap()
    );
    // Actions it lacks: 403.
    for (m, uri, body) in [
        ("POST", "/collections/kb/ask", Some(json!({"q": "x"}))),
        ("POST", "/collections/kb/documents", Some(json!([{"id": "n", "text": "t"}]))),
        ("DELETE", "/collections/kb/documents/bm25", None),
        ("DELETE", "/collections/kb", None),
        ("POST", "/collections", Some(json!({"name": "kb2"}))),
        ("GET", "/keys", None),
        ("GET", "/metrics", None),
    ] {
        let (st, v) = call(&s, m, uri, Some(&reader), body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{m} {uri}: {v}");
    }
    // A task of another collection is invisible.
    let (st, t) = call(
        &s,
        "POST",
        "/collections/secret/documents",
        Some(MASTER),
        Some(json!([{"id": "s", "text": "classified"}])),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _) = call(&s, "GET", &format!("/tasks/{}", t["id"]), Some(&reader), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&s, "POST", &format!("/tasks/{}/cancel", t["id"]), Some(&reader), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // ... and not listed: the list holds only its collection's tasks.
    let (st, v) = call(&s, "GET", "/tasks", Some(&reader), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let listed = v["results"].as_array().unwrap();
    assert!(!listed.is_empty() && listed.iter().all(|t| t["collection"] == "kb"), "{v}");

    // Expired keys are refused; deleted keys too.
    let (_, k2) = call(
        &s,
        "POST",
        "/keys",
        Some(MASTER),
        // Whole seconds: valid for at least 2 s from here, expired after 4.1 s.
        Some(json!({"actions": ["*"], "collections": ["*"], "expires_at": now() + 3})),
    )
    .await;
    let short = k2["key"].as_str().unwrap().to_string();
    assert_eq!(call(&s, "GET", "/collections", Some(&short), None).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let (st, v) = call(&s, "GET", "/collections", Some(&short), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
    let (st, v) = call(&s, "GET", "/keys", Some(MASTER), None).await;
    assert_eq!((st, v.as_array().unwrap().len()), (StatusCode::OK, 2));
    assert!(v[0].get("hash").is_none() && v[0].get("key").is_none());
    assert_eq!(call(&s, "DELETE", &format!("/keys/{uid}"), Some(MASTER), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&s, "GET", "/collections/kb/search?q=x", Some(&reader), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&s, "DELETE", &format!("/keys/{uid}"), Some(MASTER), None).await.0, StatusCode::NOT_FOUND);
    // Bad key requests.
    let (st, _) = call(&s, "POST", "/keys", Some(MASTER), Some(json!({"actions": [], "collections": ["kb"]}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) =
        call(&s, "POST", "/keys", Some(MASTER), Some(json!({"actions": ["fly"], "collections": ["kb"]}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_sheds_load_with_503() {
    // No CPU slot and no queue: every CPU request is shed at once, with Retry-After.
    let s = server(false, |c| {
        c.cpu_workers = 0;
        c.cpu_queue = 0;
    });
    let res =
        s.app.clone().oneshot(Request::get("/collections/kb/search?q=x").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get(header::RETRY_AFTER).is_some());
    // Health still answers.
    assert_eq!(call(&s, "GET", "/health", None, None).await.0, StatusCode::OK);
}

#[test]
fn refuses_open_non_loopback_binds() {
    let any: std::net::SocketAddr = "0.0.0.0:7373".parse().unwrap();
    let err = sousuo_web::check_bind(any, false, false).unwrap_err().to_string();
    assert!(err.contains("--master-key") && err.contains("--insecure-no-auth"), "{err}");
    assert!(sousuo_web::check_bind(any, true, false).is_ok());
    assert!(sousuo_web::check_bind(any, false, true).is_ok());
    assert!(sousuo_web::check_bind("127.0.0.1:7373".parse().unwrap(), false, false).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_server_refuses_other_sites_and_rebound_names() {
    let s = server(false, |_| {});
    let req = |method: &str, uri: &str, headers: &[(&str, &str)], body: &str| {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::from(body.to_string())).unwrap()
    };
    let evil = ("origin", "http://evil.example.com");
    let host = ("host", "127.0.0.1:7373");
    // A cross-site "simple" request (no preflight): text/plain JSON creating a collection.
    let body = r#"{"name": "pwned"}"#;
    let (st, v) = raw(&s, req("POST", "/collections", &[host, evil, ("content-type", "text/plain")], body)).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "cross_origin"), "{v}");
    // A cross-site multipart upload, by Fetch Metadata alone.
    let multipart =
        "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\r\n--B--\r\n";
    let headers = [host, ("sec-fetch-site", "cross-site"), ("content-type", "multipart/form-data; boundary=B")];
    let (st, v) = raw(&s, req("POST", "/collections/pwned/documents", &headers, multipart)).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "cross_origin"), "{v}");
    // DNS rebinding: a read under another host name.
    let (st, v) = raw(&s, req("GET", "/collections", &[("host", "rebind.evil.example.com")], "")).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "host_not_allowed"), "{v}");
    // JSON is parsed only with a JSON content type (curl's default form type included).
    let form = ("content-type", "application/x-www-form-urlencoded");
    let (st, v) = raw(&s, req("POST", "/collections", &[host, form], body)).await;
    assert_eq!((st, code(&v)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_content_type"), "{v}");
    let (st, v) =
        raw(&s, req("POST", "/collections/pwned/documents", &[host, ("content-type", "text/plain")], "{}")).await;
    assert_eq!((st, code(&v)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_content_type"), "{v}");
    let (_, v) = raw(&s, req("GET", "/collections", &[host], "")).await;
    assert!(!v.to_string().contains("pwned"), "nothing was created: {v}");
    // The page itself (same origin) and clients without browser headers still write.
    let json = ("content-type", "application/json");
    let same = ("origin", "http://127.0.0.1:7373");
    let (st, v) =
        raw(&s, req("POST", "/collections", &[host, same, json, ("sec-fetch-site", "same-origin")], body)).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = raw(&s, req("POST", "/collections", &[("host", "localhost:7373"), json], r#"{"name": "ok2"}"#)).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // A server with keys is not limited to loopback names: the key decides.
    let keyed = server(true, |_| {});
    let auth = format!("Bearer {MASTER}");
    let (st, _) =
        raw(&keyed, req("GET", "/collections", &[("host", "search.example.com"), ("authorization", &auth)], "")).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_silent_clients_are_disconnected_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = server(false, |c| c.header_read_timeout = Duration::from_millis(500));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(sousuo_web::serve_on(listener, s.state.clone(), async {
        let _ = stopped.await;
    }));
    // Closed: the read ends (EOF or reset) well before the guard's 20 s.
    let closed = |mut sock: tokio::net::TcpStream| async move {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), sock.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the server kept the connection open");
    };
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::join!(closed(partial), closed(silent));
    // A client that sends its request answers normally.
    let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
    ok.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    ok.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_names_and_queries_get_4xx_without_server_paths() {
    let s = server(false, |_| {});
    with_docs(&s, None).await;
    let data = s.dir.path().to_string_lossy().to_string();
    let no_path = |v: &Value| assert!(!v.to_string().contains(&data), "a server path leaked: {v}");
    // A collection named like the server's own files.
    for name in ["keys.json", "node-id", "cluster-uploads"] {
        let (st, v) = call(&s, "POST", "/collections", None, Some(json!({"name": name}))).await;
        assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "bad_collection_name"), "{name}: {v}");
        no_path(&v);
    }
    // A 300-character upload name is indexed under a shortened name.
    let name = format!("{}.txt", "n".repeat(300));
    let body = format!(
        "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\nLong names are fine.\r\n--B--\r\n"
    );
    let req = Request::post("/collections/kb/documents")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=B")
        .body(Body::from(body))
        .unwrap();
    let (st, v) = raw(&s, req).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let t = wait_task(&s, v["id"].as_u64().unwrap(), None).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    no_path(&t);
    // Query syntax the parser cannot run is a 400.
    for q in ["doc_id:*", "chunk_key:*", "title:*"] {
        let (st, v) = call(&s, "POST", "/collections/kb/search", None, Some(json!({"q": q, "syntax": true}))).await;
        assert!(st == StatusCode::OK || st == StatusCode::BAD_REQUEST, "{q}: {st} {v}");
        no_path(&v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_the_origins_named() {
    let app_origin = "https://app.example.com";
    let send = |s: &Server, method: &str, uri: &str, headers: Vec<(&'static str, String)>, body: &str| {
        let mut b = Request::builder().method(method).uri(uri).header("host", "127.0.0.1:7373");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let req = b.body(Body::from(body.to_string())).unwrap();
        s.app.clone().oneshot(req)
    };
    let acao = |r: &axum::response::Response| {
        r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string())
    };
    // Off by default: no CORS header for anyone.
    let plain = server(false, |_| {});
    let r = send(&plain, "GET", "/collections", vec![("origin", app_origin.into())], "").await.unwrap();
    assert_eq!((r.status(), acao(&r)), (StatusCode::OK, None));
    // With --cors-origin: the preflight is answered, reads carry the header, writes pass.
    let s = server(false, |c| c.cors_origins = vec![app_origin.to_string()]);
    let preflight = vec![
        ("origin", app_origin.to_string()),
        ("access-control-request-method", "POST".to_string()),
        ("access-control-request-headers", "content-type,authorization".to_string()),
    ];
    let r = send(&s, "OPTIONS", "/collections", preflight, "").await.unwrap();
    assert!(r.status().is_success(), "{:?}", r.status());
    assert_eq!(acao(&r).as_deref(), Some(app_origin));
    let methods = r.headers().get("access-control-allow-methods").unwrap().to_str().unwrap().to_string();
    assert!(methods.contains("POST"), "{methods}");
    let json = ("content-type", "application/json".to_string());
    let headers = vec![("origin", app_origin.to_string()), ("sec-fetch-site", "cross-site".into()), json.clone()];
    let r = send(&s, "POST", "/collections", headers, r#"{"name": "fromapp"}"#).await.unwrap();
    assert_eq!((r.status(), acao(&r).as_deref()), (StatusCode::CREATED, Some(app_origin)));
    // Another origin: no CORS header, and its writes are still refused.
    let evil = vec![("origin", "https://evil.example.com".to_string()), json];
    let r = send(&s, "POST", "/collections", evil.clone(), r#"{"name": "pwned"}"#).await.unwrap();
    assert_eq!((r.status(), acao(&r)), (StatusCode::FORBIDDEN, None));
    let r = send(&s, "GET", "/collections", evil, "").await.unwrap();
    assert_eq!(acao(&r), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_cancelled_waiting_or_running() {
    let s = server(false, |_| {});
    let (st, _) = call(&s, "POST", "/collections", None, Some(json!({"name": "big"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    // A long task keeps the indexing thread busy; a second one waits behind it.
    let docs: Vec<Value> = (0..6000)
        .map(|i| json!({"id": format!("d{i}"), "text": format!("document {i} about graphs, ranking and retrieval number {i}")}))
        .collect();
    let (st, long) = call(&s, "POST", "/collections/big/documents", None, Some(json!(docs))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{long}");
    let small = json!([{"id": "late", "text": "a document that must never be indexed: zanzibarquokka"}]);
    let (_, waiting) = call(&s, "POST", "/collections/big/documents", None, Some(small)).await;
    let (long_id, waiting_id) = (long["id"].as_u64().unwrap(), waiting["id"].as_u64().unwrap());
    // The waiting one is cancelled at once.
    let (st, t) = call(&s, "POST", &format!("/tasks/{waiting_id}/cancel"), None, None).await;
    assert_eq!((st, t["status"].as_str()), (StatusCode::OK, Some("canceled")), "{t}");
    // The running one stops before its next document, once it has started.
    for _ in 0..600 {
        let (_, t) = call(&s, "GET", &format!("/tasks/{long_id}"), None, None).await;
        if t["documents_seen"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (st, _) = call(&s, "POST", &format!("/tasks/{long_id}/cancel"), None, None).await;
    assert_eq!(st, StatusCode::OK);
    let t = wait_task(&s, long_id, None).await;
    assert_eq!(t["status"], "canceled", "{t}");
    assert!(t["documents_seen"].as_u64().unwrap() < 6000, "it stopped early: {t}");
    let w = wait_task(&s, waiting_id, None).await;
    assert_eq!(w["status"], "canceled", "a cancelled task never runs: {w}");
    // The collection still answers, and the cancelled upload's document is not in it.
    let (st, v) = call(&s, "GET", "/collections/big/search?q=zanzibarquokka&mode=keyword", None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["hits"].as_array().unwrap().is_empty(), "{v}");
    let (st, v) = call(&s, "POST", "/tasks/999999/cancel", None, None).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "task_not_found"));
    // Listed newest first, filtered, paged.
    let (st, v) = call(&s, "GET", "/tasks?status=canceled&collection=big", None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ids: Vec<u64> = v["results"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![waiting_id, long_id], "{v}");
    let (_, v) = call(&s, "GET", "/tasks?limit=1", None, None).await;
    assert_eq!((v["results"].as_array().unwrap().len(), v["next"].as_u64()), (1, Some(long_id)), "{v}");
    let (_, v) = call(&s, "GET", &format!("/tasks?from={long_id}"), None, None).await;
    assert_eq!(v["results"][0]["id"].as_u64(), Some(long_id), "{v}");
    let (_, v) = call(&s, "GET", "/tasks?status=succeeded", None, None).await;
    assert!(v["results"].as_array().unwrap().is_empty(), "{v}");
    let (_, v) = call(&s, "GET", "/tasks?collection=other", None, None).await;
    assert!(v["results"].as_array().unwrap().is_empty(), "{v}");
    let (st, v) = call(&s, "GET", "/tasks?status=done", None, None).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "bad_parameter"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_rate_limited_and_the_bearer_scheme_is_case_insensitive() {
    let s = server(true, |c| c.rate_limit_per_minute = Some(3));
    let (st, k) = call(&s, "POST", "/keys", Some(MASTER), Some(json!({"actions": ["*"], "collections": ["*"]}))).await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    let get = |auth: String| {
        let req = Request::get("/collections").header(header::AUTHORIZATION, auth).body(Body::empty()).unwrap();
        s.app.clone().oneshot(req)
    };
    // Any case of the scheme; three requests a minute, then 429 with Retry-After.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = get(format!("{scheme} {key}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
    }
    let r = get(format!("Bearer {key}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u32 = r.headers().get(header::RETRY_AFTER).unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    // The master key is not limited.
    for _ in 0..5 {
        assert_eq!(get(format!("Bearer {MASTER}")).await.unwrap().status(), StatusCode::OK);
    }
    // 401 says how to authenticate.
    let r = get("Bearer wrong".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap().starts_with("Bearer"));
}

/// One request with an optional bearer key: status, `WWW-Authenticate`, body text.
async fn request(
    s: &Server,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, bool, String) {
    let res = s.app.clone().oneshot(build(method, uri, key, body)).await.unwrap();
    let (status, challenge) = (res.status(), res.headers().contains_key(header::WWW_AUTHENTICATE));
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    (status, challenge, String::from_utf8_lossy(&bytes).into_owned())
}

/// Every route `/openapi.json` documents, called for the collection "secret": without a key,
/// with an expired key, and with a key for collection "kb" only. A route added later is covered
/// by the first two at once; the third needs its request body named here (the test says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_gated_by_key_and_collection() {
    let s = server(true, |_| {});
    with_docs(&s, Some(MASTER)).await;
    let (st, _) = call(&s, "POST", "/collections", Some(MASTER), Some(json!({"name": "secret"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let classified = json!([{"id": "s1", "title": "Secret plans", "text": "classified zeppelin routes"}]);
    let (_, task) = call(&s, "POST", "/collections/secret/documents", Some(MASTER), Some(classified)).await;
    let task = wait_task(&s, task["id"].as_u64().unwrap(), Some(MASTER)).await;
    let mint = |body: Value| async { call(&s, "POST", "/keys", Some(MASTER), Some(body)).await.1 };
    let expiring = mint(json!({"actions": ["*"], "collections": ["*"], "expires_at": now() + 2})).await;
    let all_but_keys = ["search", "ask", "documents.add", "documents.delete", "collections.manage"];
    let scoped = mint(json!({"name": "kb only", "actions": all_but_keys, "collections": ["kb"]})).await;
    let (expiring, scoped) = (expiring["key"].as_str().unwrap(), scoped["key"].as_str().unwrap());
    let master_uid = mint(json!({"actions": ["search"], "collections": ["secret"]})).await["uid"].clone();

    let (_, spec) = call(&s, "GET", "/openapi.json", Some(MASTER), None).await;
    let task_id = task["id"].to_string();
    let mut routes = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut uri = path
                .replace("{name}", "secret")
                .replace("{id}", if path.starts_with("/tasks") { &task_id } else { "s1" })
                .replace("{uid}", master_uid.as_str().unwrap());
            let required: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .filter_map(|p| p["name"].as_str())
                .collect();
            if !required.is_empty() {
                uri += &format!("?{}", required.iter().map(|n| format!("{n}=x")).collect::<Vec<_>>().join("&"));
            }
            routes.push((method.to_uppercase(), path.clone(), uri));
        }
    }
    assert!(routes.len() >= 20, "{routes:?}");
    let body_for = |method: &str, path: &str| -> Option<Value> {
        match (method, path) {
            ("POST", "/collections") => Some(json!({"name": "elsewhere"})),
            ("POST", "/collections/{name}/search" | "/collections/{name}/ask") => Some(json!({"q": "zeppelin"})),
            ("POST", "/collections/{name}/documents") => Some(json!([{"id": "n", "text": "t"}])),
            ("POST", "/keys") => Some(json!({"actions": ["*"], "collections": ["*"]})),
            ("POST", "/v1/chat/completions") => {
                Some(json!({"model": "secret", "messages": [{"role": "user", "content": "zeppelin?"}]}))
            }
            ("POST", "/v1/embeddings") => Some(json!({"model": "secret", "input": "zeppelin"})),
            _ if method != "POST" || path == "/tasks/{id}/cancel" => None,
            _ => panic!("{method} {path}: name a request body for it in this test"),
        }
    };
    let public = ["/health"];
    for (method, path, uri) in &routes {
        if public.contains(&path.as_str()) {
            continue;
        }
        let body = body_for(method, path);
        let (st, challenge, text) = request(&s, method, uri, None, body.as_ref()).await;
        assert_eq!((st, challenge), (StatusCode::UNAUTHORIZED, true), "{method} {uri} without a key: {text}");
        let (st, challenge, _) = request(&s, method, uri, Some("not-a-key"), body.as_ref()).await;
        assert_eq!((st, challenge), (StatusCode::UNAUTHORIZED, true), "{method} {uri} with a wrong key");
    }
    // The expiring key works, then expires (whole seconds: after 3.1 s it is past).
    assert_eq!(request(&s, "GET", "/collections", Some(expiring), None).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for (method, path, uri) in &routes {
        if public.contains(&path.as_str()) {
            continue;
        }
        let (st, _, text) = request(&s, method, uri, Some(expiring), body_for(method, path).as_ref()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {uri} with an expired key: {text}");
        assert!(text.contains("expired"), "{method} {uri}: {text}");
    }
    // A key for "kb": every route about "secret" is 403 or 404, and nothing it gets back names
    // "secret" or holds its text (listings, models, tasks, metrics labels, errors).
    for (method, path, uri) in &routes {
        let (st, _, text) = request(&s, method, uri, Some(scoped), body_for(method, path).as_ref()).await;
        let about_secret = uri.contains("secret") || uri.contains("/tasks/") || uri.contains("/keys/");
        if about_secret {
            assert!(matches!(st, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "{method} {uri}: {st} {text}");
        }
        assert!(!st.is_server_error(), "{method} {uri}: {st} {text}");
        for leak in ["zeppelin routes", "Secret plans", "\"secret\"", "collection=\"secret\""] {
            let echoed = leak == "\"secret\"" && (st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND);
            assert!(echoed || !text.contains(leak), "{method} {uri} ({st}) shows {leak:?} to a kb-only key: {text}");
        }
    }
}
