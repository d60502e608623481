//! `sousuo serve` killed with SIGKILL at random moments while a client uploads batches of
//! documents and deletes some through the API. After each restart: every task the server
//! acknowledged (202) ends, succeeded or failed with a reason, never stuck; every document of a
//! succeeded task is there unless an acknowledged delete removed it; deleted ones stay gone;
//! sled, tantivy and HNSW agree, each chunk once.

use super::{check_stores, crash_home, scifact_lines, seed, Rng};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BATCH: usize = 40;

fn serve(home: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sousuo"))
        .arg("--home")
        .arg(home)
        .args(["serve", "--no-answers", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sousuo serve starts")
}

async fn up(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the client was told: tasks acknowledged (id -> batch), deletes acknowledged, and
/// documents whose delete got no answer (either outcome is right for them).
#[derive(Default)]
struct Acked {
    tasks: HashMap<u64, usize>,
    deleted: HashSet<String>,
    unsure: HashSet<String>,
    handled: HashSet<u64>,
}

/// Uploads up to `quota` more batches and deletes the first document of each batch that
/// succeeded, until `until`; returns the next batch to upload.
async fn work(
    http: &reqwest::Client,
    base: &str,
    batches: &[Vec<(String, String)>],
    (mut next, quota): (usize, usize),
    until: Instant,
    acked: &mut Acked,
) -> usize {
    let last = (next + quota).min(batches.len());
    while Instant::now() < until {
        if let Some(batch) = batches.get(next).filter(|_| next < last) {
            let body: Vec<&str> = batch.iter().map(|(_, line)| line.as_str()).collect();
            let sent = http
                .post(format!("{base}/collections/crash/documents"))
                .header("content-type", "application/x-ndjson")
                .body(body.join("\n"))
                .send()
                .await;
            if let Ok(r) = sent {
                if r.status() == 202 {
                    if let Ok(task) = r.json::<Value>().await {
                        acked.tasks.insert(task["id"].as_u64().expect("a task id"), next);
                        next += 1;
                    }
                }
            }
        }
        let done = http.get(format!("{base}/tasks?status=succeeded&collection=crash&limit=1000")).send().await;
        let done: Vec<u64> = match done {
            Ok(r) => r.json::<Value>().await.map(|v| ids(&v["results"])).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        for id in done {
            let Some(&b) = acked.tasks.get(&id) else { continue };
            if !acked.handled.insert(id) {
                continue;
            }
            let doc = batches[b][0].0.clone();
            match http.delete(format!("{base}/collections/crash/documents/{doc}")).send().await {
                Ok(r) if r.status().is_success() => acked.deleted.insert(doc),
                _ => acked.unsure.insert(doc),
            };
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    next
}

fn ids(results: &Value) -> Vec<u64> {
    results.as_array().map(|a| a.iter().filter_map(|t| t["id"].as_u64()).collect()).unwrap_or_default()
}

async fn open_tasks(http: &reqwest::Client, base: &str) -> Vec<u64> {
    let r = http.get(format!("{base}/tasks?status=enqueued,processing&collection=crash")).send().await.unwrap();
    ids(&r.json::<Value>().await.unwrap()["results"])
}

/// Waits until no task is enqueued or processing, then checks every acknowledged task and its
/// documents through the API. Returns the documents that must be there.
async fn settle_and_check(
    http: &reqwest::Client,
    base: &str,
    batches: &[Vec<(String, String)>],
    acked: &Acked,
) -> HashSet<String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let open = open_tasks(http, base).await;
        if open.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "tasks stuck after a restart: {open:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut present = HashSet::new();
    for (&id, &b) in &acked.tasks {
        let r = http.get(format!("{base}/tasks/{id}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged task {id} is forgotten after a restart");
        let task: Value = r.json().await.unwrap();
        match task["status"].as_str() {
            Some("succeeded") => {}
            Some("failed") => {
                assert!(task["errors"].as_array().is_some_and(|e| !e.is_empty()), "failed without a reason: {task}");
                continue;
            }
            other => panic!("task {id} ended {other:?}: {task}"),
        }
        for (doc, _) in &batches[b] {
            if acked.unsure.contains(doc) {
                continue;
            }
            let r = http.get(format!("{base}/collections/crash/documents/{doc}")).send().await.unwrap();
            if acked.deleted.contains(doc) {
                assert_eq!(r.status(), 404, "document {doc} was deleted (acknowledged) but is back");
            } else {
                assert_eq!(r.status(), 200, "document {doc} of succeeded task {id} is missing");
                present.insert(doc.clone());
            }
        }
    }
    present
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_keeps_acknowledged_tasks_and_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, info) = crash_home(tmp.path());
    let n = if std::env::var_os("SOUSUO_FULL").is_some() { 5_000 } else { 600 };
    let text = scifact_lines();
    let batches: Vec<Vec<(String, String)>> = text
        .lines()
        .take(n)
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["_id"].as_str().unwrap().to_string(), l.to_string())
        })
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[_]>::to_vec)
        .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let seed = seed();
    eprintln!("HTTP crash test: {} batches of {BATCH}, SOUSUO_CRASH_SEED={seed}", batches.len());
    let mut rng = Rng(seed);
    let mut server = serve(&home, port);
    up(&http, &base).await;
    let r = http.post(format!("{base}/collections")).json(&json!({"name": "crash"})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let (mut acked, mut next) = (Acked::default(), 0);
    // A fifth of the batches between kills: each kill lands while they index.
    let quota = batches.len().div_ceil(5);
    let mut interrupted = 0;
    for kill in 1..=5 {
        let wait = Duration::from_millis(rng.between_ms(500, 3_500));
        next = work(&http, &base, &batches, (next, quota), Instant::now() + wait, &mut acked).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        let docs = check_stores(&home.join("data"), &info, &HashSet::new());
        server = serve(&home, port);
        up(&http, &base).await;
        let resumed = open_tasks(&http, &base).await.len();
        interrupted += resumed;
        let present = settle_and_check(&http, &base, &batches, &acked).await;
        eprintln!(
            "kill {kill} after {wait:?}: {docs} documents intact at the kill, {resumed} tasks run again; \
             {} tasks acknowledged, all ended; {} documents checked present, {} deleted",
            acked.tasks.len(),
            present.len(),
            acked.deleted.len()
        );
    }
    eprintln!("{interrupted} tasks interrupted by the kills ran again after restarts");
    server.kill().unwrap();
    server.wait().unwrap();
    let docs = check_stores(&home.join("data"), &info, &HashSet::new());
    assert!(docs > 0 && !acked.tasks.is_empty(), "the run indexed something: {docs} documents");
}
