//! The cluster under failure, on one machine: 3 clustered NATS servers (JetStream, R = 3), 4
//! nodes (2 shards x 2 replicas; one also serves the API), 2 embedding workers. A 2,000-document
//! SciFact slice is ingested while, at random points (the seed is printed), one replica node,
//! one worker and one NATS server are killed with SIGKILL and restarted, and the API is queried
//! all the while. Afterwards: the ingest was acknowledged; every document is stored once, on its
//! shard, and found by search exactly once; both replicas of each shard hold the same documents
//! and chunks; no query got a 5xx but a deliberate 503; the killed replica caught up. Nodes
//! snapshot every 400 changes, so the shard streams are trimmed while all this happens.
//!
//! `SOUSUO_CHAOS_DOCS=5183` runs it on all of SciFact; `SOUSUO_CHAOS_SEED=N` repeats a run's
//! kill schedule (docs/cluster.md).

mod support;

use serde_json::Value;
use sousuo_cluster::server::NatsCluster;
use sousuo_cluster::shard_of;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use support::{cmd, home, ok, run, Proc};

/// The first `n` documents of SciFact, written to `dir`; their ids.
fn slice(dir: &Path, n: usize) -> (PathBuf, Vec<(String, String)>) {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/scifact/corpus.jsonl");
    let text = std::fs::read_to_string(&corpus).unwrap_or_else(|e| {
        panic!("the chaos test reads {}: {e} (the shared corpora sit beside the repository)", corpus.display())
    });
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(n).collect();
    let path = dir.join("slice.jsonl");
    std::fs::File::create(&path).unwrap().write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
    let docs = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["_id"].as_str().unwrap().to_string(), v["title"].as_str().unwrap_or("").to_string())
        })
        .collect();
    (path, docs)
}

/// Starts a process whose log (stderr) is appended to `log`, which a restart keeps adding to.
fn spawn(c: &mut Command, log: &Path) -> Proc {
    let f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Proc(c.stdout(Stdio::null()).stderr(f).spawn().unwrap())
}

/// The last `n` lines of each log, for a failure's message.
fn tails(logs: &[PathBuf], n: usize) -> String {
    let mut out = String::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out += &format!("\n--- {} (last {n} lines)\n", log.display());
        out += &lines[lines.len().saturating_sub(n)..].join("\n");
    }
    out
}

fn status(home: &Path, urls: &str) -> Option<Value> {
    let out = run(home, &["cluster", "status", "--nats", urls, "--json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

/// Waits (up to `secs`) until `done` holds for the cluster's status; the status then.
fn wait_for(home: &Path, urls: &str, secs: u64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let s = status(home, urls);
        if let Some(s) = s.as_ref().filter(|s| done(s)) {
            return s.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(secs), "{what}: {s:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every shard has 2 live replicas with no lag, and nothing is queued. The killed node `n1`
/// is among them unless it was away longer than the nodes' TTL (a slow restart on a loaded
/// machine), in which case another node took its place, as designed: the test then says so.
fn settled(s: &Value) -> bool {
    let shards = s["shards"].as_array().cloned().unwrap_or_default();
    let queued: u64 = s["queues"].as_array().map_or(1, |q| q.iter().map(|q| q["queued"].as_u64().unwrap_or(1)).sum());
    queued == 0
        && shards.len() == 2
        && shards.iter().all(|sh| {
            sh["replicas"]
                .as_array()
                .is_some_and(|r| r.len() == 2 && r.iter().all(|x| x["lag"] == 0 && x["alive"] == true))
        })
}

fn holds_a_replica(s: &Value, node: &str) -> bool {
    s["shards"].as_array().is_some_and(|shards| {
        shards.iter().any(|sh| sh["replicas"].as_array().is_some_and(|r| r.iter().any(|x| x["node"] == node)))
    })
}

/// A tiny deterministic generator for the kill times (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn sigterm(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// Queries the API until stopped; every status code it got.
fn query_loop(base: String, stop: Arc<AtomicBool>, codes: Arc<Mutex<Vec<(u16, String)>>>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let queries = ["vitamin D deficiency", "gene expression in cancer cells", "antibiotic resistance", "BRCA1"];
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let q = queries[i % queries.len()];
        i += 1;
        let got = rt.block_on(async {
            let r = reqwest::get(format!("{base}/collections/sf/search?q={}", q.replace(' ', "%20"))).await;
            match r {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) => (0, e.to_string()),
            }
        });
        codes.lock().unwrap().push(got);
        std::thread::sleep(Duration::from_millis(150));
    }
}

#[test]
fn the_cluster_survives_sigkills_of_a_replica_a_worker_and_a_nats_server() {
    let seed = std::env::var("SOUSUO_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("chaos seed {seed}");
    let mut rng = Rng(seed);
    let n: usize = std::env::var("SOUSUO_CHAOS_DOCS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let mut nats = NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let urls = nats.urls();
    let client = home();
    let (corpus, docs) = slice(client.path(), n);
    let homes: Vec<_> = (0..4).map(|_| home()).collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");

    // The nodes first, so that each takes one of the four replicas when the collection appears.
    let node = |i: usize| -> Proc {
        let id = format!("n{}", i + 1);
        // Snapshots (and the streams' trimming) happen during the ingest too.
        let mut args = vec!["node", "--nats", &urls, "--id", &id, "--meta-replicas", "3", "--snapshot-every", "400"];
        let bind = format!("127.0.0.1:{port}");
        if i == 3 {
            args.extend(["--bind", &bind, "--no-answers"]);
        }
        spawn(&mut cmd(homes[i].path(), &args), &homes[i].path().join("node.log"))
    };
    let mut nodes: Vec<Proc> = (0..4).map(node).collect();
    wait_for(client.path(), &urls, 90, "4 nodes register", |s| s["nodes"].as_array().is_some_and(|n| n.len() == 4));
    let started = Instant::now();
    let create =
        ["cluster", "create", "sf", "--shards", "2", "--replicas", "2", "--log-replicas", "3", "--nats", &urls];
    while !run(client.path(), &create).status.success() {
        assert!(started.elapsed() < Duration::from_secs(60), "cannot create the collection on the cluster");
        std::thread::sleep(Duration::from_secs(1));
    }
    let placed = wait_for(client.path(), &urls, 60, "the nodes take the replicas", |s| {
        s["shards"].as_array().is_some_and(|sh| {
            sh.len() == 2 && sh.iter().all(|x| x["replicas"].as_array().is_some_and(|r| r.len() == 2))
        })
    });
    eprintln!("placement: {}", placed["shards"]);
    let worker = |i: usize| {
        spawn(
            &mut cmd(
                homes[i].path(),
                &["worker", "--nats", &urls, "--id", &format!("w{}", i + 1), "--ack-wait-secs", "5"],
            ),
            &homes[i].path().join("worker.log"),
        )
    };
    let mut workers = vec![worker(0), worker(1)];
    wait_for(client.path(), &urls, 60, "2 workers register", |s| s["workers"].as_array().is_some_and(|w| w.len() == 2));

    let stop = Arc::new(AtomicBool::new(false));
    let codes = Arc::new(Mutex::new(Vec::new()));
    let queries = {
        let (stop, codes, base) = (stop.clone(), codes.clone(), base.clone());
        std::thread::spawn(move || query_loop(base, stop, codes))
    };

    // Ingest; kill and restart a replica node, a worker and a NATS server at random points.
    let index = cmd(client.path(), &["index", corpus.to_str().unwrap(), "-c", "sf", "--nats", &urls])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ingest = Instant::now();
    let mut events: Vec<(u64, &str)> =
        vec![(2 + rng.below(25), "node"), (2 + rng.below(25), "worker"), (2 + rng.below(25), "nats")];
    events.sort();
    eprintln!("kills at {events:?} s");
    for (at, what) in events {
        let wait = Duration::from_secs(at).saturating_sub(ingest.elapsed());
        std::thread::sleep(wait);
        let down = Duration::from_secs(2 + rng.below(3));
        match what {
            "node" => {
                nodes[0].kill().unwrap();
                nodes[0].wait().unwrap();
                std::thread::sleep(down);
                nodes[0] = node(0);
            }
            "worker" => {
                workers[0].kill().unwrap();
                workers[0].wait().unwrap();
                std::thread::sleep(down);
                workers[0] = worker(0);
            }
            _ => {
                nats.kill(1);
                std::thread::sleep(down);
                nats.restart(1).unwrap();
            }
        }
        eprintln!("{what} killed at {:.1} s and restarted", ingest.elapsed().as_secs_f64());
    }
    // Bounded: a cluster that never recovers fails the test instead of hanging CI.
    let mut index = index;
    while index.try_wait().unwrap().is_none() {
        if ingest.elapsed() > Duration::from_secs(600) {
            index.kill().unwrap();
            let status = cmd(client.path(), &["cluster", "status", "--nats", &urls]).output().unwrap();
            let logs: Vec<PathBuf> = homes.iter().map(|h| h.path().join("node.log")).collect();
            panic!(
                "the ingest did not finish in 10 minutes; cluster status: {}{}\nnode logs:{}",
                String::from_utf8_lossy(&status.stdout),
                String::from_utf8_lossy(&status.stderr),
                tails(&logs, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = index.wait_with_output().unwrap();
    eprintln!("ingest done in {:.1} s", ingest.elapsed().as_secs_f64());
    assert!(out.status.success(), "the ingest was not acknowledged: {}", String::from_utf8_lossy(&out.stderr));
    // The killed node back among the caught-up replicas (its claims outlive a short absence)...
    let back = |s: &Value| settled(s) && holds_a_replica(s, "n1");
    let started = Instant::now();
    let mut end = wait_for(client.path(), &urls, 300, "every replica catches up", settled);
    while !back(&end) && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        end = wait_for(client.path(), &urls, 300, "every replica catches up", settled);
    }
    // ... or, after a restart slower than the nodes' TTL, registered again with its places held
    // by others (nothing moves a replica that has a live holder).
    if !holds_a_replica(&end, "n1") {
        let nodes = end["nodes"].as_array().cloned().unwrap_or_default();
        assert!(nodes.iter().any(|n| n["id"] == "n1"), "the killed node never registered again: {end:#}");
        eprintln!("n1 was away longer than the nodes' TTL: its places went to other nodes");
    }
    stop.store(true, Ordering::Relaxed);
    queries.join().unwrap();

    // No 5xx but deliberate 503s; and queries were answered while all this happened.
    let codes = codes.lock().unwrap();
    let bad: Vec<_> = codes.iter().filter(|(c, _)| *c >= 500 && *c != 503).collect();
    assert!(bad.is_empty(), "queries got server errors: {bad:?}");
    assert!(codes.iter().filter(|(c, _)| *c == 200).count() > 10, "too few queries were answered: {codes:?}");

    // Every document found exactly once by a search restricted to its id (a sample).
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (id, title) in docs.iter().step_by((n / 40).max(1)) {
        let url = format!("{base}/collections/sf/search");
        let body = serde_json::json!({"q": if title.is_empty() { "study" } else { title.as_str() }, "filter": [format!("id={id}")]});
        let v: Value = rt.block_on(async {
            reqwest::Client::new().post(url).json(&body).send().await.unwrap().json().await.unwrap()
        });
        let found = v["hits"].as_array().map_or(0, |h| h.iter().filter(|x| x["doc_id"] == id.as_str()).count());
        assert_eq!(found, 1, "document {id}: {v:#}");
    }

    // Each document on its shard once; both replicas of a shard the same documents and chunks.
    for (child, _) in nodes.iter_mut().zip(0..) {
        sigterm(child);
    }
    for w in &mut workers {
        sigterm(w);
    }
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    for (id, _) in &docs {
        *expected.entry(shard_of(id, 2)).or_default() += 1;
    }
    for sh in end["shards"].as_array().unwrap() {
        let shard = sh["shard"].as_u64().unwrap() as u32;
        assert!(sh["first"].as_u64() > Some(1), "shard {shard}: its stream was never trimmed below a snapshot: {sh}");
        let mut seen = Vec::new();
        for r in sh["replicas"].as_array().unwrap() {
            let i: usize = r["node"].as_str().unwrap()[1..].parse::<usize>().unwrap() - 1;
            let local = format!("sf-shard{shard}");
            let s: Value = serde_json::from_str(&ok(run(homes[i].path(), &["stats", "-c", &local, "--json"]))).unwrap();
            seen.push((s["documents"].as_u64().unwrap(), s["chunks"].as_u64().unwrap()));
        }
        assert!(
            seen.iter().all(|s| s.0 == expected[&shard]),
            "shard {shard}: replicas hold {seen:?} (documents, chunks), want {} documents; {sh}",
            expected[&shard]
        );
        assert_eq!(seen[0], seen[1], "shard {shard}: its replicas differ");
    }
}
