//! The API through its router (no socket), on a keyless server with one collection: the
//! first byte picks the route and content type, the rest is the body (or the query string).
//! A 500 on any input is a crash: bad input must get a 4xx naming the problem.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use std::sync::{Arc, LazyLock};
use tower::ServiceExt;

struct Server {
    runtime: tokio::runtime::Runtime,
    state: Arc<sousuo_web::AppState>,
    _dir: tempfile::TempDir,
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = sousuo_web::Config::new(dir.path().join("data"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let state = runtime.block_on(async { sousuo_web::AppState::new(config, crate::targets::ENCODER.clone(), None) });
    let state = state.expect("server state");
    let server = Server { runtime, state, _dir: dir };
    let (status, _) = call(&server, "POST", "/collections", "application/json", br#"{"name":"kb"}"#.to_vec());
    assert_eq!(status, StatusCode::CREATED);
    server
});

const ROUTES: [(&str, &str, &str); 10] = [
    ("POST", "/collections", "application/json"),
    ("POST", "/collections/kb/documents", "application/json"),
    ("POST", "/collections/kb/documents", "application/x-ndjson"),
    ("POST", "/collections/kb/documents", "multipart/form-data; boundary=XyZ"),
    ("POST", "/collections/kb/search", "application/json"),
    ("POST", "/collections/kb/ask", "application/json"),
    ("POST", "/v1/chat/completions", "application/json"),
    ("POST", "/v1/embeddings", "application/json"),
    ("POST", "/keys", "application/json"),
    ("GET", "/collections/kb/search?", ""),
];

fn call(server: &Server, method: &str, uri: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if !content_type.is_empty() {
        req = req.header("content-type", content_type);
    }
    let Ok(req) = req.body(Body::from(body)) else { return (StatusCode::BAD_REQUEST, Vec::new()) };
    let app = sousuo_web::app(server.state.clone());
    server.runtime.block_on(async {
        let res = app.oneshot(req).await.expect("the router answers");
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 16 << 20).await.map(|b| b.to_vec()).unwrap_or_default();
        (status, bytes)
    })
}

pub fn request(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let (method, path, content_type) = ROUTES[pick as usize % ROUTES.len()];
    let (uri, body) = if method == "GET" {
        // The query string: only what a URI may hold (the client's library would have encoded it).
        let q: String = rest.iter().map(|&b| b as char).filter(|c| c.is_ascii_graphic()).collect();
        (format!("{path}{q}"), Vec::new())
    } else {
        (path.to_string(), rest.to_vec())
    };
    let (status, body) = call(&SERVER, method, &uri, content_type, body);
    assert!(
        status != StatusCode::INTERNAL_SERVER_ERROR,
        "{method} {uri} answered 500: {}",
        String::from_utf8_lossy(&body)
    );
}
