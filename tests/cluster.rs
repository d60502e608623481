//! The cluster through the binary, against a real nats-server: `cluster create` (2 shards, 2
//! replicas each), two `node` processes that claim them, `index --nats` (which waits for the
//! replicas), `cluster status`; one node killed with SIGKILL, documents appended while it is
//! down, the node restarted: it catches up, and on both nodes the shards hold every document
//! exactly once (the same chunks a single-node collection of the same files holds).

mod support;

use sousuo_cluster::server::NatsServer;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{cmd, home, ok, run, Proc};

fn node(home: &Path, nats: &str, id: &str) -> Proc {
    Proc(cmd(home, &["node", "--nats", nats, "--id", id]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

fn status(home: &Path, nats: &str) -> serde_json::Value {
    serde_json::from_str(&ok(run(home, &["cluster", "status", "--nats", nats, "--json"]))).unwrap()
}

/// Waits until `done` holds for the cluster's status.
fn wait_for(home: &Path, nats: &str, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let s = status(home, nats);
        if done(&s) {
            return s;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{what}: {s:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn caught_up(s: &serde_json::Value) -> bool {
    let shards = s["shards"].as_array().unwrap();
    shards.len() == 2
        && shards
            .iter()
            .all(|sh| sh["replicas"].as_array().is_some_and(|r| r.len() == 2 && r.iter().all(|x| x["lag"] == 0)))
}

fn stat(home: &Path, collection: &str, field: &str) -> u64 {
    let s: serde_json::Value = serde_json::from_str(&ok(run(home, &["stats", "-c", collection, "--json"]))).unwrap();
    s[field].as_u64().unwrap()
}

#[test]
fn a_node_applies_the_logs_and_catches_up_after_sigkill() {
    let nats = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = nats.url();
    let (writer, holder, other) = (home(), home(), home());
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpora/sample");
    let (en, zh) = (sample.join("en"), sample.join("zh"));

    ok(run(writer.path(), &["cluster", "create", "notes", "--shards", "2", "--replicas", "2", "--nats", &url]));
    let again = run(writer.path(), &["cluster", "create", "notes", "--nats", &url]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already has a collection"));

    let mut n1 = node(holder.path(), &url, "n1");
    let mut n2 = node(other.path(), &url, "n2");
    wait_for(writer.path(), &url, "the nodes take both shards", caught_up);
    let out = run(writer.path(), &["index", en.to_str().unwrap(), "-c", "notes", "--nats", &url]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success() && said.contains("every replica applied them"), "{said}");
    let s = status(writer.path(), &url);
    assert!(caught_up(&s), "{s:#}");
    let stored: u64 = s["shards"].as_array().unwrap().iter().map(|sh| sh["stored"].as_u64().unwrap()).sum();
    assert!(stored > 0);

    // SIGKILL the node; append while it is down; restart it: it resumes from the log.
    n1.kill().unwrap();
    n1.wait().unwrap();
    ok(run(writer.path(), &["index", zh.to_str().unwrap(), "-c", "notes", "--nats", &url, "--no-wait"]));
    let behind = status(writer.path(), &url);
    assert!(!caught_up(&behind), "the killed node cannot have applied the new documents: {behind:#}");
    let mut n1 = node(holder.path(), &url, "n1");
    wait_for(writer.path(), &url, "the restarted node catches up", caught_up);
    // A graceful stop commits the indexes.
    for n in [&mut n1, &mut n2] {
        let stopped = Command::new("kill").args(["-TERM", &n.id().to_string()]).status().unwrap();
        assert!(stopped.success());
        assert!(n.wait().unwrap().success(), "a node did not stop cleanly on SIGTERM");
    }

    // Every document exactly once across the shards: the chunks of a single-node collection.
    ok(run(writer.path(), &["index", en.to_str().unwrap(), zh.to_str().unwrap(), "-c", "local"]));
    for h in [&holder, &other] {
        let docs = stat(h.path(), "notes-shard0", "documents") + stat(h.path(), "notes-shard1", "documents");
        let chunks = stat(h.path(), "notes-shard0", "chunks") + stat(h.path(), "notes-shard1", "chunks");
        assert_eq!(docs, stat(writer.path(), "local", "documents"));
        assert_eq!(chunks, stat(writer.path(), "local", "chunks"));
    }
    // The shards are searchable on the node.
    let hits = ok(run(holder.path(), &["search", "HNSW graph", "-c", "notes-shard0", "--json"]))
        + &ok(run(holder.path(), &["search", "HNSW graph", "-c", "notes-shard1", "--json"]));
    assert!(hits.contains("hnsw.md"), "{hits}");

    ok(run(writer.path(), &["cluster", "drop", "notes", "--nats", &url]));
    let gone = status(writer.path(), &url);
    assert!(gone["shards"].as_array().unwrap().is_empty(), "{gone:#}");
}

fn search_json(home: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(run(home, args))).unwrap()
}

fn ranked(results: &serde_json::Value) -> Vec<(String, f64)> {
    results["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["doc_id"].as_str().unwrap().to_string(), h["score"].as_f64().unwrap()))
        .collect()
}

#[test]
fn a_sharded_collection_searches_as_one_and_names_missing_shards() {
    let nats = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = nats.url();
    let (writer, h1, h2) = (home(), home(), home());
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpora/sample");
    let (en, zh) = (sample.join("en"), sample.join("zh"));
    let paths = [en.to_str().unwrap(), zh.to_str().unwrap()];

    ok(run(writer.path(), &["cluster", "create", "kb", "--shards", "2", "--replicas", "2", "--nats", &url]));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bind = format!("127.0.0.1:{port}");
    let mut n1 = Proc(
        cmd(h1.path(), &["node", "--nats", &url, "--id", "n1", "--bind", &bind, "--no-answers"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut n2 = node(h2.path(), &url, "n2");
    wait_for(writer.path(), &url, "the nodes take both shards", caught_up);
    ok(run(writer.path(), &["index", paths[0], paths[1], "-c", "kb", "--nats", &url]));
    ok(run(writer.path(), &["index", paths[0], paths[1], "-c", "local"]));

    // Scatter-gather gives the single index's ranking and scores: BM25 with the shards' summed
    // statistics, dense by cosine, fused once at the coordinator.
    for mode in ["bm25", "dense", "hybrid"] {
        for q in ["how does HNSW find nearest neighbours", "BM25 term frequency saturation", "向量检索"] {
            let local = search_json(writer.path(), &["search", q, "-c", "local", "--mode", mode, "--json"]);
            let cluster =
                search_json(writer.path(), &["search", q, "-c", "kb", "--mode", mode, "--json", "--nats", &url]);
            let (l, c) = (ranked(&local), ranked(&cluster));
            assert!(!l.is_empty() && cluster.get("missing_shards").is_none(), "{mode} {q}: {cluster:#}");
            // The same documents in the same order, except that hits whose scores are equal to
            // float rounding may swap (tantivy sums a query's term scores in an order that
            // depends on the segments, which differ between one index and the shards).
            assert_eq!(l.len(), c.len(), "{mode} {q}: {l:?} on one node, {c:?} across shards");
            for ((x, a), (y, b)) in l.iter().zip(&c) {
                assert!((a - b).abs() < 1e-3, "{mode} {q}: score {a} on one node, {b} across shards");
                assert!(x == y || (a - b).abs() < 1e-5, "{mode} {q}: {l:?} on one node, {c:?} across shards");
            }
            assert_eq!(local["hits"][0]["snippet"], cluster["hits"][0]["snippet"], "{mode} {q}");
        }
    }
    let stats: serde_json::Value =
        serde_json::from_str(&ok(run(writer.path(), &["stats", "-c", "kb", "--json", "--nats", &url]))).unwrap();
    assert_eq!(stats["documents"].as_u64(), Some(stat(writer.path(), "local", "documents")), "{stats:#}");

    // An answer over the merged retrieval cites what the shards returned.
    let ask = ok(run(writer.path(), &["ask", "What is HNSW?", "-c", "kb", "--extractive", "--json", "--nats", &url]));
    let ask: serde_json::Value = serde_json::from_str(&ask).unwrap();
    assert!(ask["sources"].as_array().is_some_and(|s| !s.is_empty()), "{ask:#}");

    // The node's HTTP API coordinates the same search, lists the clustered collection, and
    // reports replica lag and fan-out time.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let get = |path: &str| -> (u16, String) {
        rt.block_on(async {
            let r = reqwest::get(format!("http://{bind}{path}")).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let cli = search_json(writer.path(), &["search", "HNSW graph", "-c", "kb", "--json", "--nats", &url]);
    let (status, body) = get("/collections/kb/search?q=HNSW%20graph");
    assert_eq!(status, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ranked(&api).into_iter().map(|x| x.0).collect::<Vec<_>>(),
        ranked(&cli).into_iter().map(|x| x.0).collect::<Vec<_>>()
    );
    let (_, list) = get("/collections");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let kb = list.as_array().unwrap().iter().find(|c| c["name"] == "kb").cloned().unwrap_or_default();
    assert_eq!(kb["documents"].as_u64(), Some(stat(writer.path(), "local", "documents")), "{list:#}");
    let (_, metrics) = get("/metrics");
    assert!(metrics.contains("sousuo_cluster_replica_lag{collection=\"kb\",shard=\"0\",node=\"n2\"} 0"), "{metrics}");
    assert!(metrics.contains("sousuo_cluster_fanout_rounds_total "), "{metrics}");
    assert!(metrics.contains("# TYPE sousuo_cluster_replica_lag gauge"), "{metrics}");

    // Documents added, read and deleted through the coordinator's API go through the logs.
    let http = reqwest::Client::new();
    let doc =
        serde_json::json!([{"id": "api-doc", "title": "Quokka census", "text": "Quokkas live on Rottnest Island."}]);
    let task: serde_json::Value = rt.block_on(async {
        http.post(format!("http://{bind}/collections/kb/documents"))
            .json(&doc)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let started = Instant::now();
    loop {
        let (_, t) = get(&format!("/tasks/{}", task["id"]));
        let t: serde_json::Value = serde_json::from_str(&t).unwrap();
        if t["status"] == "succeeded" && t["replicated"] == true {
            break;
        }
        assert!(t["status"] != "failed" && started.elapsed() < Duration::from_secs(60), "{t}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let found = |q: &str| {
        let (_, body) = get(&format!("/collections/kb/search?q={q}"));
        ranked(&serde_json::from_str(&body).unwrap()).iter().any(|(d, _)| d == "api-doc")
    };
    let started = Instant::now();
    while !found("quokka") {
        assert!(started.elapsed() < Duration::from_secs(30), "the uploaded document is not found");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, body) = get("/collections/kb/documents/api-doc");
    assert!(status == 200 && body.contains("Rottnest"), "{status} {body}");
    let deleted = rt.block_on(async {
        http.delete(format!("http://{bind}/collections/kb/documents/api-doc")).send().await.unwrap().status().as_u16()
    });
    assert_eq!(deleted, 200);
    // Replicas apply it each in its own time: either may answer a request.
    let started = Instant::now();
    while found("quokka") || get("/collections/kb/documents/api-doc").0 != 404 {
        assert!(started.elapsed() < Duration::from_secs(30), "the deleted document is still found");
        std::thread::sleep(Duration::from_millis(300));
    }

    // A deletion goes through the log to every replica.
    let top =
        ranked(&search_json(writer.path(), &["search", "HNSW", "-c", "kb", "--json", "--nats", &url]))[0].0.clone();
    ok(run(writer.path(), &["delete", "-c", "kb", &top, "--nats", &url]));
    let started = Instant::now();
    while ranked(&search_json(writer.path(), &["search", "HNSW", "-c", "kb", "--json", "--nats", &url]))
        .iter()
        .any(|(d, _)| *d == top)
    {
        assert!(started.elapsed() < Duration::from_secs(30), "{top} is still found after its deletion");
        std::thread::sleep(Duration::from_millis(300));
    }

    // One node down: the other replica answers, results complete. Both down: the shards are
    // named as missing, and `--complete` refuses.
    n1.kill().unwrap();
    n1.wait().unwrap();
    let one = search_json(writer.path(), &["search", "HNSW", "-c", "kb", "--json", "--nats", &url]);
    assert!(one.get("missing_shards").is_none() && !ranked(&one).is_empty(), "{one:#}");
    n2.kill().unwrap();
    n2.wait().unwrap();
    let none = search_json(writer.path(), &["search", "HNSW", "-c", "kb", "--json", "--nats", &url]);
    assert_eq!(none["missing_shards"], serde_json::json!([0, 1]), "{none:#}");
    let refused = run(writer.path(), &["search", "HNSW", "-c", "kb", "--nats", &url, "--complete"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no replica answering"), "{refused:?}");
    // The API (the coordinator n1 is down too: serve one from a third node, holding nothing).
    let h3 = home();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bind = format!("127.0.0.1:{port}");
    let mut n3 = Proc(
        cmd(h3.path(), &["node", "--nats", &url, "--id", "n3", "--bind", &bind, "--no-answers"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let (partial, whole) = loop {
        let get = |path: &str| {
            rt.block_on(async {
                match reqwest::get(format!("http://{bind}{path}")).await {
                    Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                    Err(e) => (0, e.to_string()),
                }
            })
        };
        let partial = get("/collections/kb/search?q=HNSW");
        if partial.0 != 0 {
            break (partial, get("/collections/kb/search?q=HNSW&complete=true"));
        }
        assert!(started.elapsed() < Duration::from_secs(60), "n3 does not serve: {partial:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(partial.0 == 200 && partial.1.contains("\"missing_shards\":[0,1]"), "{partial:?}");
    assert!(whole.0 == 503 && whole.1.contains("shards_unavailable"), "{whole:?}");
    n3.kill().unwrap();
    n3.wait().unwrap();
}

#[test]
fn a_new_replica_bootstraps_from_a_snapshot_after_the_log_is_trimmed() {
    let nats = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = nats.url();
    let (writer, h1, h2) = (home(), home(), home());
    let en = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpora/sample/en");
    ok(run(writer.path(), &["cluster", "create", "snap", "--shards", "1", "--replicas", "2", "--nats", &url]));
    let mut n1 = Proc(
        cmd(h1.path(), &["node", "--nats", &url, "--id", "n1", "--snapshot-every", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let one_replica = |s: &serde_json::Value| s["shards"][0]["replicas"].as_array().is_some_and(|r| r.len() == 1);
    wait_for(writer.path(), &url, "n1 takes the shard", one_replica);
    ok(run(writer.path(), &["index", en.to_str().unwrap(), "-c", "snap", "--nats", &url]));
    // n1 snapshots after its next commit and trims the stream below it.
    let trimmed =
        wait_for(writer.path(), &url, "the stream is trimmed", |s| s["shards"][0]["first"].as_u64() > Some(1));
    let stored = trimmed["shards"][0]["stored"].as_u64().unwrap();

    // A new node cannot replay the whole log: it restores the snapshot, then follows the stream.
    let mut n2 = node(h2.path(), &url, "n2");
    wait_for(writer.path(), &url, "n2 catches up", |s| {
        s["shards"][0]["replicas"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|x| x["applied"].as_u64() == Some(stored) && x["lag"] == 0))
    });
    for n in [&mut n1, &mut n2] {
        Command::new("kill").args(["-TERM", &n.id().to_string()]).status().unwrap();
        assert!(n.wait().unwrap().success());
    }
    ok(run(writer.path(), &["index", en.to_str().unwrap(), "-c", "local"]));
    assert_eq!(stat(h2.path(), "snap-shard0", "documents"), stat(writer.path(), "local", "documents"));
    assert_eq!(stat(h2.path(), "snap-shard0", "chunks"), stat(writer.path(), "local", "chunks"));
    // Dropping the collection drops its snapshots: a new one of that name starts clean.
    ok(run(writer.path(), &["cluster", "drop", "snap", "--nats", &url]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let left = rt.block_on(async {
        let js = sousuo_cluster::connect(&url).await.unwrap();
        let snapshots = sousuo_cluster::snapshot::Snapshots::open(&js, 1).await.unwrap();
        snapshots.latest("snap", 0).await.unwrap()
    });
    assert_eq!(left, None);
}
