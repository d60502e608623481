//! The cluster layer against a real NATS server with JetStream (Debian's `nats-server`) and the
//! real encoder: metadata, the shard log (acknowledged on store, retries deduplicated), and
//! replicas that apply it, resume after a restart, agree with each other, and skip redeliveries.

use sousuo_cluster::meta::NodeInfo;
use sousuo_cluster::replica::Replica;
use sousuo_cluster::server::NatsServer;
use sousuo_cluster::{connect, shard_of, CollectionSpec, Error, Meta, ShardLog};
use sousuo_encoder::models::{default_cache_root, ModelCache, MINILM};
use sousuo_encoder::{Encoder, EncoderOptions, ModelDir};
use sousuo_indexer::store::{Change, DocRecord};
use sousuo_indexer::{ChunkParams, EncoderInfo};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn encoder() -> &'static Encoder {
    static ENC: OnceLock<Encoder> = OnceLock::new();
    ENC.get_or_init(|| {
        let home = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
        let root = default_cache_root(home.as_deref(), dirs::cache_dir().as_deref()).expect("set SOUSUO_HOME");
        let dir = ModelCache::new(root)
            .ensure(&MINILM, |_| eprintln!("fetching the encoder for the tests"))
            .unwrap_or_else(|e| panic!("the cluster tests need {}: {e}; run `cargo run -- models fetch`", MINILM.name));
        Encoder::load(&ModelDir::open(&dir).unwrap(), EncoderOptions::default()).unwrap()
    })
}

const TOPICS: [&str; 8] = ["volcano", "violin", "glacier", "satellite", "orchid", "tram", "lighthouse", "honeybee"];

/// Document `i` (version `v`), embedded by the real encoder: one chunk naming a unique word.
fn upsert(i: usize, v: u32) -> Change {
    let text =
        format!("Note {i} (revision {v}) is about the {} and carries the word zq{i}x.", TOPICS[i % TOPICS.len()]);
    let vector = encoder().encode(&[text.as_str()]).unwrap().rows().next().unwrap().to_vec();
    let id = format!("doc-{i}");
    let doc = DocRecord::new(id.clone(), format!("Note {i}"), id, format!("{i}-{v}"));
    Change::one_chunk(doc, text, vector)
}

fn spec(name: &str, shards: u32) -> CollectionSpec {
    CollectionSpec {
        name: name.into(),
        shards,
        replicas: 1,
        log_replicas: 1,
        encoder: EncoderInfo::of(encoder()).unwrap(),
        chunking: ChunkParams::for_encoder(encoder()),
        created_at: 0,
    }
}

fn holds(r: &Replica, i: usize) -> bool {
    r.collection().get_doc(&format!("doc-{i}")).unwrap().is_some()
}

fn finds(r: &Replica, i: usize) -> bool {
    r.collection().search_bm25(&format!("zq{i}x"), 5).unwrap().iter().any(|h| h.doc_id == format!("doc-{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lives_in_the_cluster() {
    let nats = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let js = connect(&nats.url()).await.unwrap();
    let meta = Meta::open_with_ttl(&js, 1, Duration::from_secs(2)).await.unwrap();
    let s = spec("notes", 3);
    meta.create_collection(&s).await.unwrap();
    assert!(matches!(meta.create_collection(&s).await, Err(Error::CollectionExists(_))));
    assert_eq!(meta.collection("notes").await.unwrap(), s);
    assert!(matches!(meta.collection("absent").await, Err(Error::NoSuchCollection(_))));
    assert!(matches!(meta.create_collection(&spec("zero", 0)).await, Err(Error::BadSpec { .. })));
    assert!(matches!(
        meta.create_collection(&CollectionSpec { log_replicas: 7, ..spec("seven", 1) }).await,
        Err(Error::BadSpec { .. })
    ));
    assert!(matches!(meta.create_collection(&spec("../x", 1)).await, Err(Error::Index(_))));
    assert_eq!(meta.collections().await.unwrap(), vec![s.clone()]);

    // Replica claims: idempotent, several nodes per shard.
    let all = ["n1".to_string(), "n2".to_string()];
    assert!(meta.claim_replica("notes", 1, "n1", &all, 2).await.unwrap());
    assert!(meta.claim_replica("notes", 1, "n1", &all, 2).await.unwrap());
    assert!(meta.claim_replica("notes", 1, "n2", &all, 2).await.unwrap());
    assert_eq!(meta.replicas_of("notes", 1).await.unwrap(), vec!["n1", "n2"]);
    assert!(meta.replicas_of("notes", 0).await.unwrap().is_empty());
    // Claims: at most `max` live holders; a dead holder's place is taken.
    let live = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(meta.claim_replica("notes", 2, "a", &live(&["a", "b"]), 1).await.unwrap());
    assert!(meta.claim_replica("notes", 2, "a", &live(&["a", "b"]), 1).await.unwrap(), "a holder keeps its claim");
    assert!(!meta.claim_replica("notes", 2, "b", &live(&["a", "b"]), 1).await.unwrap(), "the shard is full");
    assert!(meta.claim_replica("notes", 2, "b", &live(&["b"]), 1).await.unwrap(), "a is dead: b takes over");
    assert_eq!(meta.replicas_of("notes", 2).await.unwrap(), vec!["b"]);

    // Nodes register with a heartbeat (the bucket's max_age drops the silent ones).
    let node =
        NodeInfo { id: "n1".into(), api: None, shards: vec![("notes".into(), 1)], worker: None, heartbeat_at: 1 };
    meta.heartbeat(&node).await.unwrap();
    assert_eq!(meta.nodes().await.unwrap(), vec![node.clone()]);
    // A node that stops beating is seen as gone once its entry outlives the TTL.
    let started = Instant::now();
    while !meta.nodes().await.unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "a silent node stays listed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(started.elapsed() >= Duration::from_secs(1), "the node vanished before its TTL");
    meta.heartbeat(&node).await.unwrap();
    assert_eq!(meta.nodes().await.unwrap().len(), 1, "a node that beats again is back");

    // A second connection sees the same cluster; dropping forgets the collection.
    let other = Meta::open(&connect(&nats.url()).await.unwrap(), 1).await.unwrap();
    assert_eq!(other.collection("notes").await.unwrap().shards, 3);
    other.drop_collection(&s).await.unwrap();
    assert!(matches!(meta.collection("notes").await, Err(Error::NoSuchCollection(_))));
    assert!(meta.replicas_of("notes", 1).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_apply_the_shard_log_exactly_once() {
    let nats = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let js = connect(&nats.url()).await.unwrap();
    let s = spec("docs", 2);
    Meta::open(&js, 1).await.unwrap().create_collection(&s).await.unwrap();
    let log = ShardLog::open(&js, &s).await.unwrap();
    let n = 30;
    let mut per_shard = [0u64; 2];
    for i in 0..n {
        let a = log.append(&upsert(i, 1), &format!("doc-{i}-v1")).await.unwrap();
        assert_eq!(a.shard, shard_of(&format!("doc-{i}"), 2));
        assert!(!a.duplicate);
        per_shard[a.shard as usize] += 1;
        assert_eq!(a.seq, per_shard[a.shard as usize], "each shard's log counts from 1");
    }
    assert!(per_shard.iter().all(|&c| c > 0), "{per_shard:?}");
    // A batch: published together, stored in order, deduplicated by id like single appends.
    let batch: Vec<(Change, String)> = (n..n + 4).map(|i| (upsert(i, 1), format!("doc-{i}-v1"))).collect();
    let mut again_batch = batch.clone();
    again_batch.push((upsert(0, 1), "doc-0-v1".into()));
    let stored = log.append_all(again_batch.iter().map(|(c, id)| (c, id.clone()))).await.unwrap();
    for (a, i) in stored.iter().zip(n..) {
        if i < n + 4 {
            assert!(!a.duplicate);
            per_shard[a.shard as usize] += 1;
            assert_eq!(a.seq, per_shard[a.shard as usize]);
        }
    }
    assert!(stored[4].duplicate, "doc-0-v1 was stored already");
    let n = n + 4;
    // A retried publish (same message id) is stored once.
    let again = log.append(&upsert(0, 1), "doc-0-v1").await.unwrap();
    assert!(again.duplicate);
    assert_eq!(log.last_seq(again.shard).await.unwrap(), per_shard[again.shard as usize]);

    let data = tempfile::tempdir().unwrap();
    let node1 = data.path().join("n1");
    let r: Vec<Replica> =
        vec![Replica::open(&log, 0, "n1", &node1).await.unwrap(), Replica::open(&log, 1, "n1", &node1).await.unwrap()];
    for replica in &r {
        replica.catch_up().await.unwrap();
        replica.commit().await.unwrap();
        assert_eq!(replica.lag().await.unwrap(), 0);
    }
    for i in 0..n {
        let home = shard_of(&format!("doc-{i}"), 2) as usize;
        assert!(holds(&r[home], i) && !holds(&r[1 - home], i), "doc-{i} must be in shard {home} only");
        assert!(finds(&r[home], i), "doc-{i} is not searchable in its shard");
    }
    let docs: usize = r.iter().map(|x| x.collection().stats().unwrap().documents).sum();
    assert_eq!(docs, n);

    // Shard 0's replica stops; meanwhile documents are deleted and replaced; it resumes.
    let shard0: Vec<usize> = (0..n).filter(|&i| shard_of(&format!("doc-{i}"), 2) == 0).collect();
    drop(r);
    let (gone, changed) = (&shard0[..2], &shard0[2..4]);
    for &i in gone {
        log.append(&Change::Delete { doc_id: format!("doc-{i}") }, &format!("doc-{i}-del")).await.unwrap();
    }
    for &i in changed {
        log.append(&upsert(i, 2), &format!("doc-{i}-v2")).await.unwrap();
    }
    let r0 = Replica::open(&log, 0, "n1", &node1).await.unwrap();
    r0.catch_up().await.unwrap();
    r0.commit().await.unwrap();
    assert_eq!(r0.applied().unwrap(), log.last_seq(0).await.unwrap());
    for &i in gone {
        assert!(!holds(&r0, i) && !finds(&r0, i), "deleted doc-{i} is still there");
    }
    for &i in changed {
        let chunk_keys = r0.collection().get_doc(&format!("doc-{i}")).unwrap().unwrap().chunk_keys;
        let text = r0.collection().store().get_chunk(chunk_keys[0]).unwrap().unwrap().text;
        assert!(text.contains("revision 2"), "doc-{i} was not replaced: {text}");
    }
    let stats0 = r0.collection().stats().unwrap();
    assert_eq!(stats0.documents, shard0.len() - gone.len());
    assert_eq!(stats0.chunks, stats0.documents, "one chunk per document: nothing applied twice");

    // A second replica of shard 0, on another node, built from the log alone, agrees.
    let node2 = data.path().join("n2");
    let twin = Replica::open(&log, 0, "n2", &node2).await.unwrap();
    twin.catch_up().await.unwrap();
    let ids = |x: &Replica| -> Vec<String> {
        let mut v: Vec<String> = x.collection().store().docs().map(|d| d.unwrap().id).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&twin), ids(&r0));
    drop(twin);

    // Redelivery: node 2's consumer is reset to replay the whole stream (as after lost acks);
    // the replica skips everything its store holds.
    let stream = log.stream(0).await.unwrap();
    stream.delete_consumer("replica-n2").await.unwrap();
    let config = async_nats::jetstream::consumer::pull::Config {
        durable_name: Some("replica-n2".into()),
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
        ..Default::default()
    };
    stream.create_consumer(config).await.unwrap();
    let twin = Replica::open(&log, 0, "n2", &node2).await.unwrap();
    let before = twin.collection().stats().unwrap();
    let (mut delivered, mut fresh) = (0, 0);
    for _ in 0..4 {
        let s = twin.step(Duration::from_millis(300)).await.unwrap();
        (delivered, fresh) = (delivered + s.delivered, fresh + s.applied);
    }
    assert_eq!(delivered as u64, log.last_seq(0).await.unwrap(), "the reset consumer replays the whole stream");
    assert_eq!(fresh, 0, "redelivered changes were applied again");
    let after = twin.collection().stats().unwrap();
    assert_eq!((after.documents, after.chunks, after.seq), (before.documents, before.chunks, before.seq));
}
