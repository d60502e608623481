//! The real binary serving on loopback: uploads through the API, tasks, search, SSE answers,
//! the OpenAI-compatible endpoint, 32 concurrent clients with faults while documents are added, and the
//! page in headless Chromium (fantoccini + chromedriver), and HTML pages' text against what
//! Chromium shows.

#[path = "support/words.rs"]
mod words;

use serde_json::{json, Value};
use sousuo_encoder::models::default_cache_root;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use words::{agreement, words};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sousuo")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Sousuo home whose models are the shared cache's (no second download).
fn home() -> tempfile::TempDir {
    let h = tempfile::tempdir().unwrap();
    let env_home = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
    let cache = default_cache_root(env_home.as_deref(), dirs::cache_dir().as_deref()).expect("a cache directory");
    std::fs::create_dir_all(&cache).unwrap();
    std::os::unix::fs::symlink(&cache, h.path().join("models")).unwrap();
    h
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    base: String,
    home: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sousuo(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin()).arg("--home").arg(home).args(args).output().unwrap()
}

/// Starts `sousuo serve` (fetching models first if the cache lacks them) and waits for /health.
async fn start(extra: &[&str]) -> Server {
    let home = home();
    let out = sousuo(home.path(), &["models", "fetch"]);
    assert!(out.status.success(), "models fetch: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let child = Command::new(bin())
        .arg("--home")
        .arg(home.path())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let s = Server { child, base, home };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(r) = http.get(format!("{}/health", s.base)).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s
}

async fn wait_task(http: &reqwest::Client, base: &str, task: &Value) -> Value {
    let id = task["id"].as_u64().unwrap_or_else(|| panic!("not a task: {task}"));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let t: Value = http.get(format!("{base}/tasks/{id}")).send().await.unwrap().json().await.unwrap();
        if t["status"] == "succeeded" || t["status"] == "failed" || t["status"] == "canceled" {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} did not finish: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn upload_files(http: &reqwest::Client, base: &str, collection: &str, files: &[(&str, String)]) -> Value {
    let mut form = reqwest::multipart::Form::new();
    for (name, text) in files {
        form = form.part("file", reqwest::multipart::Part::text(text.clone()).file_name(name.to_string()));
    }
    let r = http.post(format!("{base}/collections/{collection}/documents")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let task: Value = r.json().await.unwrap();
    wait_task(http, base, &task).await
}

/// SSE frames of a body: (event, data).
fn frames(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|f| {
            let mut ev = "message".to_string();
            let mut data = String::new();
            for line in f.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    ev = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            (!data.is_empty()).then_some((ev, data))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_search_ask_stream_and_openai() {
    let s = start(&[]).await;
    let http = reqwest::Client::new();
    let base = &s.base;
    let files = [
        ("hnsw.md", std::fs::read_to_string(repo().join("corpora/sample/en/hnsw.md")).unwrap()),
        ("bm25.md", std::fs::read_to_string(repo().join("corpora/sample/en/bm25.md")).unwrap()),
        ("notes.txt", "Sousuo keeps its uploads beside each collection.\n".to_string()),
    ];
    let t = upload_files(&http, base, "e2e", &files).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["documents_indexed"], 3, "{t}");

    let r: Value = http
        .get(format!("{base}/collections/e2e/search"))
        .query(&[("q", "approximate nearest neighbour graph")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["hits"][0]["doc_id"], "hnsw.md", "{r}");
    let w = r["semantic_ratio"].as_f64().unwrap_or(-1.0);
    assert!((0.2..=0.9).contains(&w), "the adaptive fusion's weight is reported: {r}");

    // Reranked by the server's decoder: the same documents, each once, the page cut after it.
    let q = [("q", "what keeps uploads beside each collection"), ("rerank", "true")];
    let rr: Value =
        http.get(format!("{base}/collections/e2e/search")).query(&q).send().await.unwrap().json().await.unwrap();
    let plain: Value =
        http.get(format!("{base}/collections/e2e/search")).query(&q[..1]).send().await.unwrap().json().await.unwrap();
    let ids = |v: &Value| {
        let mut ids: Vec<String> =
            v["hits"].as_array().unwrap().iter().map(|h| h["doc_id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&rr), ids(&plain), "{rr}");
    assert_eq!(rr["hits"][0]["doc_id"], "notes.txt", "{rr}");
    let one = [("q", "graph"), ("rerank", "true"), ("limit", "1"), ("offset", "1")];
    let r: Value =
        http.get(format!("{base}/collections/e2e/search")).query(&one).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["hits"].as_array().map(Vec::len), Some(1), "{r}");

    // Ask with Server-Sent Events: sources, at least one token (the short answer's), done.
    let body = http
        .post(format!("{base}/collections/e2e/ask"))
        .header("accept", "text/event-stream")
        .json(&json!({"q": "What does HNSW stand for?"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let f = frames(&body);
    let names: Vec<&str> = f.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"sources"), "{names:?}");
    assert!(names.iter().filter(|n| **n == "token").count() >= 1, "{names:?}");
    for (_, data) in f.iter().filter(|(e, _)| e == "token") {
        let token: Value = serde_json::from_str(data).unwrap();
        assert_eq!(token["checked"], false, "a draft token says it is unchecked: {token}");
    }
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    let done: Value = serde_json::from_str(&f.last().unwrap().1).unwrap();
    assert_ne!(done["kind"], "insufficient_evidence", "{done}");
    // The direct answer: a few words copied from the source, first in the text.
    let short = done["short_answer"].as_str().unwrap_or_default();
    assert!(short.contains("Navigable Small World"), "{done}");
    assert!(done["text"].as_str().unwrap_or_default().starts_with(short), "{done}");
    assert!(done["sentences"].as_array().unwrap().iter().any(|s| !s["citations"].as_array().unwrap().is_empty()));

    // OpenAI-compatible, not streamed: the official request shape.
    let req = json!({
        "model": "e2e",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What does the BM25 parameter b control?"}
        ]
    });
    let r: Value =
        http.post(format!("{base}/v1/chat/completions")).json(&req).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["object"], "chat.completion", "{r}");
    let content = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("[1]") && content.contains("Sources:"), "{content}");
    assert!(r["sousuo"]["sources"][0]["uri"].as_str().is_some());
    // Streamed.
    let mut req = req;
    req["stream"] = json!(true);
    let body = http.post(format!("{base}/v1/chat/completions")).json(&req).send().await.unwrap().text().await.unwrap();
    let f = frames(&body);
    assert_eq!(f.last().unwrap().1, "[DONE]");
    let mut text = String::new();
    for (_, d) in &f[..f.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(c);
        }
    }
    assert!(text.contains("Sources:") && text.contains("bm25.md"), "{text}");
    openai_python_client(base, "e2e");
    // Graceful shutdown commits and leaves a collection the CLI can open.
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut s = s;
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let out = sousuo(s.home.path(), &["stats", "--collection", "e2e", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["documents"], 3);
}

/// OpenAI's official Python client (`openai` from PyPI, fetched by `scripts/openai-client`)
/// against the server: models, chat plain and streamed, embeddings, errors
/// (tests/openai_client.py).
fn openai_python_client(base: &str, collection: &str) {
    let fetch = Command::new(repo().join("scripts/openai-client")).output().unwrap();
    assert!(
        fetch.status.success(),
        "scripts/openai-client could not fetch the `openai` package from PyPI (it needs python3 and PyPI, or HTTPS_PROXY behind a proxy): {}",
        String::from_utf8_lossy(&fetch.stderr)
    );
    let path = String::from_utf8_lossy(&fetch.stdout).trim().to_string();
    let python = std::env::var("SOUSUO_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg(repo().join("tests/openai_client.py"))
        .args([base, collection])
        .arg(repo().join("encoder/tests/fixtures/golden.json"))
        .env("PYTHONPATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the openai client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The server's resident memory (Linux: VmRSS), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    kb.unwrap_or(0u64) * 1024
}

/// 32 clients mixing searches, asks and uploads (70/25/5) against a server with a small queue
/// (`--cpu-queue 4`), every eighth client dropping its requests mid-way, while batches of
/// documents arrive (`SOUSUO_LOAD_SECS`, 20 in CI; docs/reliability.md: 120). Every answer is
/// 2xx, 429, or 503 with Retry-After; search latency percentiles are printed; the server's
/// memory after the first quarter of the run stays within 1.25x + 64 MiB of the first quarter's
/// peak; every document added is then searchable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_with_faults_get_2xx_429_or_503_and_memory_stays_flat() {
    let s = start(&["--no-answers", "--cpu-queue", "4"]).await;
    let base = s.base.clone();
    let http = reqwest::Client::new();
    let seed =
        upload_files(&http, &base, "load", &[("seed.md", "# Seed\n\nThe first document of the load test.".into())])
            .await;
    assert_eq!(seed["status"], "succeeded");
    let secs: u64 = std::env::var("SOUSUO_LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let pid = s.child.id();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        while Instant::now() < until {
            samples.push((started.elapsed().as_secs_f64(), rss(pid)));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        samples
    });
    let mut clients = Vec::new();
    for c in 0..32usize {
        let (http, base) = (http.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let queries = ["load test document", "graph search", "batch seven", "zqx token", "第一"];
            let faulty = c % 8 == 7;
            let (mut statuses, mut bad, mut latencies) =
                (std::collections::BTreeMap::<u16, usize>::new(), Vec::new(), Vec::new());
            let mut i = c;
            while Instant::now() < until {
                let q = queries[i % queries.len()];
                // Mostly searches, some asks, an upload in twenty.
                let op = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 6, 7, 6, 7, 0, 8][i % 20];
                i += 1;
                let t0 = Instant::now();
                let req = match op {
                    0..=5 => http.get(format!("{base}/collections/load/search")).query(&[("q", q)]),
                    6 | 7 => http.post(format!("{base}/collections/load/ask")).json(&json!({"q": q})),
                    _ => http
                        .post(format!("{base}/collections/load/documents"))
                        .json(&json!([{"id": format!("c{c}-{i}"), "text": format!("client {c} document {i}")}])),
                };
                // A faulty client gives up after 20 ms: the server sees the connection close.
                let req = if faulty { req.timeout(Duration::from_millis(20)) } else { req };
                match req.send().await {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        let retry = r.headers().contains_key("retry-after");
                        let _ = r.bytes().await;
                        if op <= 5 && st == 200 {
                            latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                        }
                        *statuses.entry(st).or_default() += 1;
                        if !(matches!(st, 200 | 202 | 429) || (st == 503 && retry)) {
                            bad.push(format!("{st} (retry-after: {retry}) for op {op}"));
                        }
                        if st == 503 || st == 429 {
                            // A client that honours Retry-After backs off (here briefly).
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    Err(e) if faulty => *statuses.entry(0).or_default() += usize::from(e.is_timeout()),
                    Err(e) => bad.push(format!("no answer: {e}")),
                }
            }
            (statuses, bad, latencies)
        }));
    }
    // Meanwhile, documents arrive in batches.
    let mut added = Vec::new();
    let mut tasks = Vec::new();
    let mut batch = 0;
    while Instant::now() + Duration::from_secs(2) < until {
        let docs: Vec<Value> = (0..10)
            .map(|j| {
                let id = format!("doc-{batch}-{j}");
                added.push(id.clone());
                json!({"id": id, "title": format!("Load document {batch}.{j}"),
                       "text": format!("Load test document {batch} {j} carries the unique token zqx{batch}x{j}.")})
            })
            .collect();
        // A full queue answers 503 with Retry-After: wait as told, then send the batch again.
        let r = loop {
            let r = http.post(format!("{base}/collections/load/documents")).json(&docs).send().await.unwrap();
            if r.status() != 503 {
                break r;
            }
            let wait = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1u64);
            tokio::time::sleep(Duration::from_millis(200).max(Duration::from_secs(wait) / 4)).await;
        };
        assert_eq!(r.status(), 202);
        tasks.push(r.json::<Value>().await.unwrap());
        batch += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (mut total, mut bad, mut latencies) = (std::collections::BTreeMap::<u16, usize>::new(), Vec::new(), Vec::new());
    for c in clients {
        let (statuses, b, l) = c.await.unwrap();
        for (k, v) in statuses {
            *total.entry(k).or_default() += v;
        }
        bad.extend(b);
        latencies.extend(l);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    eprintln!(
        "statuses over {secs} s (0: a faulty client's dropped request): {total:?}; search p50 {:?} ms, p99 {:?} ms \
         over {} searches",
        pct(0.5),
        pct(0.99),
        latencies.len()
    );
    assert!(bad.is_empty(), "answers other than 2xx, 429 or 503 with Retry-After: {:?}", &bad[..bad.len().min(10)]);
    assert!(total.get(&200).copied().unwrap_or(0) > 20, "too few requests succeeded: {total:?}");
    let samples = sampler.await.unwrap();
    let quarter = secs as f64 / 4.0;
    let early = samples.iter().filter(|(t, _)| *t <= quarter).map(|s| s.1).max().unwrap_or(0);
    let late = samples.iter().filter(|(t, _)| *t > quarter).map(|s| s.1).max().unwrap_or(0);
    eprintln!("server memory: {} MiB by the first quarter, {} MiB at most after", early >> 20, late >> 20);
    assert!(late as f64 <= early as f64 * 1.25 + (64 << 20) as f64, "memory grew: {early} -> {late} bytes");
    for t in &tasks {
        let t = wait_task(&http, &base, t).await;
        assert_eq!(t["status"], "succeeded", "{t}");
    }
    assert!(!added.is_empty());
    for id in &added {
        let (b, j) = id.trim_start_matches("doc-").split_once('-').unwrap();
        let r: Value = http
            .get(format!("{base}/collections/load/search"))
            .query(&[("q", format!("zqx{b}x{j}").as_str()), ("mode", "keyword")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["hits"][0]["doc_id"], id.as_str(), "{id} is not searchable: {r}");
    }
}

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_headless_chromium() {
    use fantoccini::Locator;
    let s = start(&[]).await;
    // The sample corpus, as the demo serves it.
    let out =
        sousuo(s.home.path(), &["index", repo().join("corpora/sample").to_str().unwrap(), "--collection", "demo"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web");
    std::fs::create_dir_all(&shots).unwrap();
    let (mut driver, c) = chromium().await;
    let result = async {
        c.goto(&format!("{}/", s.base)).await.unwrap();
        // The collection picker fills in.
        wait_js(&c, "return document.querySelector('#collection').value === 'demo'", 30).await;
        // Count what the live region says: the answer is announced once, when done.
        c.execute(
            "window.__said = []; new MutationObserver(() => window.__said.push(document.querySelector('#announce').textContent)) \
             .observe(document.querySelector('#announce'), {childList: true, characterData: true, subtree: true})",
            vec![],
        )
        .await
        .unwrap();
        // Type a question, press Enter (the `/` shortcut focuses the box).
        c.find(Locator::Css("body")).await.unwrap().send_keys("/").await.unwrap();
        let q = c.find(Locator::Css("#q")).await.unwrap();
        q.send_keys("How does HNSW search for nearest neighbours?\u{E007}").await.unwrap();
        wait_js(&c, "return document.querySelectorAll('#results .card').length > 0", 60).await;
        // The answer streams, then is replaced by the checked answer with citation links.
        wait_js(&c, "const k = document.querySelector('#answer-kind').textContent; return k !== '' && k !== 'writing…'", 300).await;
        let kind: String = c.execute("return document.querySelector('#answer-kind').textContent", vec![]).await.unwrap().as_str().unwrap().into();
        assert!(kind.contains("checked") || kind.contains("quoted"), "answer kind: {kind}");
        wait_js(&c, "return window.__said.length > 0", 10).await;
        let said = c.execute("return window.__said", vec![]).await.unwrap();
        let said = said.as_array().unwrap();
        assert_eq!(said.len(), 1, "announced once: {said:?}");
        assert!(said[0].as_str().unwrap().starts_with("Answer: "), "{said:?}");
        let live = c.execute("return document.querySelector('#answer').getAttribute('aria-live')", vec![]).await.unwrap();
        assert_eq!(live, Value::Null, "the streamed tokens are not a live region");
        // The query and the collection are in the URL.
        let search = c.execute("return location.search", vec![]).await.unwrap();
        let search = search.as_str().unwrap();
        assert!(search.contains("q=How+does+HNSW") && search.contains("c=demo"), "{search}");
        // Upload is reachable by keyboard: a focusable button opens the file picker.
        let focused = c
            .execute("const b = document.querySelector('#choose'); b.focus(); return document.activeElement === b && b.tabIndex >= 0", vec![])
            .await
            .unwrap();
        assert_eq!(focused, json!(true));
        // axe-core finds no serious or critical accessibility violation.
        let axe = axe_violations(&c).await;
        assert!(axe.is_empty(), "axe-core: {axe:#?}");
        c.set_window_size(1280, 900).await.unwrap();
        c.execute("document.activeElement.blur(); window.scrollTo(0, 0)", vec![]).await.unwrap();
        c.screenshot().await.map(|png| std::fs::write(shots.join("desktop.png"), png).unwrap()).unwrap();
        c.set_window_size(390, 844).await.unwrap();
        c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        c.screenshot().await.map(|png| std::fs::write(shots.join("phone.png"), png).unwrap()).unwrap();
        let axe = axe_violations(&c).await;
        assert!(axe.is_empty(), "axe-core on a phone-sized window: {axe:#?}");
        // Scroll the cited card out of view, then click the citation: the page brings it back.
        c.set_window_size(1280, 600).await.unwrap();
        let out_of_view = c
            .execute(
                "window.scrollTo(0, document.body.scrollHeight); \
                 const n = document.querySelector('#answer a.cite').dataset.n; \
                 const id = lastSources[n - 1].doc_id; \
                 window.__cited = [...document.querySelectorAll('.card')].find(e => e.dataset.doc === id); \
                 if (!window.__cited) return 'not among the cards'; \
                 const r = window.__cited.getBoundingClientRect(); return r.bottom < 0 || r.top > window.innerHeight",
                vec![],
            )
            .await
            .unwrap();
        eprintln!("cited card out of view before the click: {out_of_view}");
        if out_of_view == json!(true) {
            c.execute("document.querySelector('#answer a.cite').click()", vec![]).await.unwrap();
        } else {
            // The source was not among the result cards (or could not leave the view): the
            // click appends or flashes it; still check it ends up visible.
            c.find(Locator::Css("#answer a.cite")).await.unwrap().click().await.unwrap();
            c.execute("window.__cited = document.querySelector('.card.flash')", vec![]).await.unwrap();
        }
        wait_js(&c, "return document.querySelectorAll('.card.flash').length === 1", 10).await;
        // The card scrolls into view (smoothly: wait for it to arrive).
        wait_js(
            &c,
            "const r = window.__cited.getBoundingClientRect(); \
             return r.top >= 0 && r.bottom <= window.innerHeight + 5",
            10,
        )
        .await;
        c.screenshot().await.map(|png| std::fs::write(shots.join("answer.png"), png).unwrap()).unwrap();

        // Upload a file (with an XSS payload) and see it searchable, as text.
        // A plain-text file keeps its markup as text (HTML and Markdown parsers drop tags).
        let file = shots.join("upload-xss.txt");
        std::fs::write(
            &file,
            "Quokka <img src=x onerror=\"window.__xss=1\">\n\nThe quokka zebrafinch note: <script>window.__xss=2</script> \
             <img src=y onerror=\"window.__xss=3\"> ends here.\n",
        )
        .unwrap();
        let input = c.find(Locator::Css("#file")).await.unwrap();
        input.send_keys(file.to_str().unwrap()).await.unwrap();
        wait_js(&c, "return document.querySelector('#task').dataset.status === 'succeeded'", 120).await;
        let q = c.find(Locator::Css("#q")).await.unwrap();
        q.clear().await.unwrap();
        q.send_keys("quokka zebrafinch\u{E007}").await.unwrap();
        wait_js(
            &c,
            "return [...document.querySelectorAll('#results .card')].some(e => e.dataset.doc === 'upload-xss.txt')",
            60,
        )
        .await;
        let xss = c.execute("return window.__xss === undefined", vec![]).await.unwrap();
        assert_eq!(xss, json!(true), "document markup ran in the page");
        let text: String = c
            .execute("return document.querySelector('#results .card[data-doc=\"upload-xss.txt\"]').textContent", vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .into();
        assert!(text.contains("<img") || text.contains("<script>"), "markup shows as text: {text}");
        // Back returns to the first question, from the URL.
        c.back().await.unwrap();
        wait_js(&c, "return document.querySelector('#q').value.startsWith('How does HNSW')", 30).await;
        c.screenshot().await.map(|png| std::fs::write(shots.join("upload.png"), png).unwrap()).unwrap();
        c.close().await.unwrap();
    }
    .await;
    let _ = driver.kill();
    let _ = driver.wait();
    result
}

/// chromedriver on a free port and a headless Chromium session through it (plain HTTP).
async fn chromium() -> (Child, fantoccini::Client) {
    assert!(
        Path::new(CHROMEDRIVER).exists(),
        "the browser test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver \
         (.ci/run installs them)"
    );
    let port = free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100"]}),
    );
    for _ in 0..50 {
        let plain_http = hyper_util::client::legacy::connect::HttpConnector::new();
        match fantoccini::ClientBuilder::new(plain_http)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (driver, c),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("chromedriver did not start");
}

/// Pages saved from real sites (tests/fixtures/html): the indexer's text agrees word for word
/// with what Chromium shows of the same element (`innerText`), Chinese and Japanese included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_text_is_what_chromium_shows() {
    use sousuo_indexer::formats::{parse, Format, JsonFields};
    let (mut driver, c) = chromium().await;
    let dir = repo().join("tests/fixtures/html");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 4, "{pages:?}");
    let mut low = Vec::new();
    for page in &pages {
        let bytes = std::fs::read(page).unwrap();
        let name = page.file_name().unwrap().to_str().unwrap();
        let ours = parse(Format::Html, &bytes, name, name, &JsonFields::default()).unwrap();
        let ours: String = ours.docs[0].parts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join("\n");
        c.goto(&format!("file://{}", page.display())).await.unwrap();
        let shown = c
            .execute(
                "const e = document.querySelector('main') || document.querySelector('article') || document.body; \
                 return e.innerText",
                vec![],
            )
            .await
            .unwrap();
        let shown = shown.as_str().unwrap_or_default();
        let f1 = agreement(&words(&ours), &words(shown));
        eprintln!("{name}: word agreement with Chromium's innerText {f1:.4}");
        if f1 < 0.97 {
            low.push(format!("{name}: {f1:.4}"));
        }
    }
    let _ = c.close().await;
    let _ = driver.kill();
    let _ = driver.wait();
    assert!(low.is_empty(), "pages whose text differs from what the browser shows: {low:?}");
}

/// axe-core's serious and critical violations on the page (axe from npm: scripts/axe-core).
async fn axe_violations(c: &fantoccini::Client) -> Vec<Value> {
    let fetch = Command::new(repo().join("scripts/axe-core")).output().unwrap();
    assert!(
        fetch.status.success(),
        "scripts/axe-core could not fetch axe-core from the npm registry (it needs npm): {}",
        String::from_utf8_lossy(&fetch.stderr)
    );
    let src = std::fs::read_to_string(String::from_utf8_lossy(&fetch.stdout).trim()).unwrap();
    c.execute(&src, vec![]).await.unwrap();
    let v = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             axe.run(document).then(r => done({passes: r.passes.length, violations: r.violations.filter(v => \
               v.impact === 'serious' || v.impact === 'critical').map(v => ({id: v.id, impact: v.impact, help: v.help, \
               nodes: v.nodes.map(n => n.html)}))}), e => done({error: String(e)}))",
            vec![],
        )
        .await
        .unwrap();
    assert!(v["passes"].as_u64().unwrap_or(0) > 10, "axe-core did not run: {v}");
    v["violations"].as_array().cloned().unwrap_or_else(|| panic!("axe-core: {v}"))
}

async fn wait_js(c: &fantoccini::Client, script: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(v) = c.execute(script, vec![]).await {
            if v == json!(true) {
                return;
            }
        }
        if Instant::now() > deadline {
            let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web/timeout.png");
            if let Ok(png) = c.screenshot().await {
                let _ = std::fs::write(&shot, png);
            }
            panic!("timed out waiting for: {script} (screenshot at {})", shot.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
