//! Every error variant of every library crate, walked through the one HTTP table
//! (`sousuo_web::classify`): the caller's mistakes are 4xx, a busy or stopping server 503, and
//! 500 only for what is truly internal. Each crate's list is guarded by an exhaustive match, so
//! a new variant does not compile until it is listed here with the status it must get; every
//! code must be documented in docs/errors.md.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use sousuo_web::{classify, ApiError, LibError};
use std::path::PathBuf;

fn io(kind: std::io::ErrorKind) -> std::io::Error {
    std::io::Error::new(kind, "test")
}

fn s() -> String {
    "x".to_string()
}

const BAD: u16 = 400;
const NOT_FOUND: u16 = 404;
const CONFLICT: u16 = 409;
const CLOSED: u16 = 499;
const INTERNAL: u16 = 500;
const BUSY: u16 = 503;
const FULL: u16 = 507;

fn common() -> Vec<(sousuo_common::Error, u16)> {
    use sousuo_common::Error as E;
    let all = vec![
        (E::Fetch(s()), INTERNAL),
        (E::Checksum { file: s(), expected: s(), got: s() }, INTERNAL),
        (E::Io { path: PathBuf::from("p"), source: io(std::io::ErrorKind::PermissionDenied) }, INTERNAL),
        (E::Io { path: PathBuf::from("p"), source: io(std::io::ErrorKind::StorageFull) }, FULL),
    ];
    for (e, _) in &all {
        match e {
            E::Fetch(_) | E::Checksum { .. } | E::Io { .. } => {}
        }
    }
    all
}

fn kernels() -> Vec<(sousuo_kernels::Error, u16)> {
    use sousuo_kernels::Error as E;
    let all = vec![
        (E::DimensionMismatch { expected: 1, got: 2 }, INTERNAL),
        (E::Corrupt(s()), INTERNAL),
        (E::NotCompiledWithCuda, INTERNAL),
        (E::CudaUnavailable(s()), INTERNAL),
        (E::Cuda(s()), INTERNAL),
    ];
    for (e, _) in &all {
        match e {
            E::DimensionMismatch { .. }
            | E::Corrupt(_)
            | E::NotCompiledWithCuda
            | E::CudaUnavailable(_)
            | E::Cuda(_) => {}
        }
    }
    all
}

fn encoder() -> Vec<(sousuo_encoder::Error, u16)> {
    use sousuo_encoder::Error as E;
    let all = vec![
        (E::MissingModelFile { dir: PathBuf::from("m"), file: "config.json" }, INTERNAL),
        (E::BadModelFile { path: PathBuf::from("m"), reason: s() }, INTERNAL),
        (E::Tokenizer(s()), BAD),
        (E::Model(s()), INTERNAL),
        (E::WorkerGone, BUSY),
        (E::DimensionMismatch { expected: 1, got: 2 }, INTERNAL),
        (E::Models(sousuo_common::Error::Fetch(s())), INTERNAL),
        (E::Device(s()), INTERNAL),
        (E::Kernel(sousuo_kernels::Error::Cuda(s())), INTERNAL),
        (E::Io { path: PathBuf::from("p"), source: io(std::io::ErrorKind::StorageFull) }, FULL),
    ];
    for (e, _) in &all {
        match e {
            E::MissingModelFile { .. }
            | E::BadModelFile { .. }
            | E::Tokenizer(_)
            | E::Model(_)
            | E::WorkerGone
            | E::DimensionMismatch { .. }
            | E::Models(_)
            | E::Device(_)
            | E::Kernel(_)
            | E::Io { .. } => {}
        }
    }
    all
}

fn decoder() -> Vec<(sousuo_decoder::Error, u16)> {
    use sousuo_decoder::Error as E;
    let all = vec![
        (E::Model(s()), INTERNAL),
        (E::Unsupported(s()), INTERNAL),
        (E::CorruptCache(s()), INTERNAL),
        (E::Tokenizer(s()), BAD),
        (E::Template(s()), INTERNAL),
        (E::Generation(s()), INTERNAL),
        (E::BadParameter { name: "temperature", reason: s() }, BAD),
        (E::Busy, BUSY),
        (E::Stopped, BUSY),
        (E::Cancelled, CLOSED),
        (E::Kernel(sousuo_kernels::Error::Corrupt(s())), INTERNAL),
        (
            E::Files(sousuo_common::Error::Io {
                path: PathBuf::from("p"),
                source: io(std::io::ErrorKind::StorageFull),
            }),
            FULL,
        ),
        (E::Io { path: PathBuf::from("p"), source: io(std::io::ErrorKind::NotFound) }, INTERNAL),
    ];
    for (e, _) in &all {
        match e {
            E::Model(_)
            | E::Unsupported(_)
            | E::CorruptCache(_)
            | E::Tokenizer(_)
            | E::Template(_)
            | E::Generation(_)
            | E::BadParameter { .. }
            | E::Busy
            | E::Stopped
            | E::Cancelled
            | E::Kernel(_)
            | E::Files(_)
            | E::Io { .. } => {}
        }
    }
    all
}

fn indexer() -> Vec<(sousuo_indexer::Error, u16)> {
    use sousuo_indexer::Error as E;
    let all = vec![
        (E::InvalidName { name: s(), reason: "r" }, BAD),
        (E::NoSuchCollection(s()), NOT_FOUND),
        (E::NoSuchPath(PathBuf::from("p")), BAD),
        (E::CollectionExists(s()), CONFLICT),
        (E::InUse { collection: s() }, CONFLICT),
        (
            E::EncoderMismatch { collection: s(), built_with: s(), built_dim: 1, requested: s(), requested_dim: 2 },
            CONFLICT,
        ),
        (E::PrecisionMismatch { collection: s(), built: s(), requested: s() }, CONFLICT),
        (E::FormatVersion { collection: s(), found: 1, supported: 2 }, CONFLICT),
        (E::Parse { path: s(), reason: s() }, BAD),
        (E::Binary { path: s() }, BAD),
        (E::QuerySyntax { query: s(), reason: s() }, BAD),
        (E::NoSuchDocument(s()), NOT_FOUND),
        (E::Store(s()), INTERNAL),
        (E::Bm25(s()), INTERNAL),
        (E::Vectors(s()), INTERNAL),
        (E::DimensionMismatch { expected: 1, got: 2 }, INTERNAL),
        (E::Sink { reason: s() }, BUSY),
        (E::Encoder(sousuo_encoder::Error::WorkerGone), BUSY),
        (E::Files(sousuo_common::Error::Fetch(s())), INTERNAL),
        (E::Io { path: PathBuf::from("p"), source: io(std::io::ErrorKind::StorageFull) }, FULL),
        (E::Cancelled, CLOSED),
        (E::DiskFull { path: PathBuf::from("p"), available: 1, needed: 2, reserve: 1 }, FULL),
    ];
    for (e, _) in &all {
        match e {
            E::InvalidName { .. }
            | E::NoSuchCollection(_)
            | E::NoSuchPath(_)
            | E::CollectionExists(_)
            | E::InUse { .. }
            | E::EncoderMismatch { .. }
            | E::PrecisionMismatch { .. }
            | E::FormatVersion { .. }
            | E::Parse { .. }
            | E::Binary { .. }
            | E::QuerySyntax { .. }
            | E::NoSuchDocument(_)
            | E::Store(_)
            | E::Bm25(_)
            | E::Vectors(_)
            | E::DimensionMismatch { .. }
            | E::Sink { .. }
            | E::Encoder(_)
            | E::Files(_)
            | E::Io { .. }
            | E::DiskFull { .. }
            | E::Cancelled => {}
        }
    }
    all
}

fn query() -> Vec<(sousuo_query::Error, u16)> {
    use sousuo_query::Error as E;
    let all = vec![
        (E::EmptyQuery, BAD),
        (E::BadFilter { filter: s(), reason: s() }, BAD),
        (E::BadParameter { name: "limit", reason: s() }, BAD),
        (E::Index(sousuo_indexer::Error::NoSuchCollection(s())), NOT_FOUND),
        (E::Encoder(sousuo_encoder::Error::Tokenizer(s())), BAD),
        (E::Decoder(sousuo_decoder::Error::Busy), BUSY),
        (E::Dataset(s()), BAD),
        (E::ShardsUnavailable { collection: s(), missing: vec![1] }, BUSY),
        (E::Cluster { reason: s() }, BUSY),
    ];
    for (e, _) in &all {
        match e {
            E::EmptyQuery
            | E::BadFilter { .. }
            | E::BadParameter { .. }
            | E::Index(_)
            | E::Encoder(_)
            | E::Decoder(_)
            | E::Dataset(_)
            | E::ShardsUnavailable { .. }
            | E::Cluster { .. } => {}
        }
    }
    all
}

fn cluster() -> Vec<(sousuo_cluster::Error, u16)> {
    use sousuo_cluster::Error as E;
    let all = vec![
        (E::BadUrl { url: s(), reason: s() }, BAD),
        (E::Nats { op: "connect", reason: s() }, BUSY),
        (E::NoSuchCollection(s()), NOT_FOUND),
        (E::CollectionExists(s()), CONFLICT),
        (E::BadSpec { name: s(), reason: s() }, BAD),
        (E::NoSuchShard { collection: s(), shards: 2, shard: 3 }, NOT_FOUND),
        (E::Decode { subject: s(), seq: 1, reason: s() }, INTERNAL),
        (E::Task(s()), INTERNAL),
        (E::Index(sousuo_indexer::Error::NoSuchCollection(s())), NOT_FOUND),
        (E::Embed(sousuo_encoder::Error::Tokenizer(s())), BAD),
        (E::Io { path: s().into(), source: std::io::Error::other("disk") }, INTERNAL),
        (E::NoSnapshot { collection: s(), shard: 0, first: 9 }, INTERNAL),
    ];
    for (e, _) in &all {
        match e {
            E::BadUrl { .. }
            | E::Nats { .. }
            | E::NoSuchCollection(_)
            | E::CollectionExists(_)
            | E::BadSpec { .. }
            | E::NoSuchShard { .. }
            | E::Decode { .. }
            | E::Task(_)
            | E::Index(_)
            | E::Embed(_)
            | E::Io { .. }
            | E::NoSnapshot { .. } => {}
        }
    }
    all
}

/// Every variant, as a `LibError`, with the status it must get.
fn every_error() -> Vec<(LibError, u16)> {
    let mut all: Vec<(LibError, u16)> = Vec::new();
    all.extend(common().into_iter().map(|(e, s)| (LibError::Common(e), s)));
    all.extend(kernels().into_iter().map(|(e, s)| (LibError::Kernels(e), s)));
    all.extend(encoder().into_iter().map(|(e, s)| (LibError::Encoder(e), s)));
    all.extend(decoder().into_iter().map(|(e, s)| (LibError::Decoder(e), s)));
    all.extend(indexer().into_iter().map(|(e, s)| (LibError::Indexer(e), s)));
    all.extend(query().into_iter().map(|(e, s)| (LibError::Query(e), s)));
    all.extend(cluster().into_iter().map(|(e, s)| (LibError::Cluster(e), s)));
    all
}

#[test]
fn every_library_error_gets_its_status() {
    let mut wrong = Vec::new();
    for (e, want) in every_error() {
        let (status, code) = classify(&e);
        if status.as_u16() != want {
            wrong.push(format!("{e:?}: {} ({code}), want {want}", status.as_u16()));
        }
    }
    assert!(wrong.is_empty(), "errors with the wrong status:\n{}", wrong.join("\n"));
}

#[test]
fn every_code_is_documented_and_typed_by_its_status() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/errors.md")).unwrap();
    for (e, _) in every_error() {
        let api = ApiError::from(e);
        assert!(docs.contains(&format!("`{}`", api.code)), "docs/errors.md does not document `{}`", api.code);
        let want = match api.status.as_u16() {
            401 | 403 => "auth",
            503 => "unavailable",
            s if s >= 500 => "internal",
            _ => "invalid_request",
        };
        assert_eq!(api.kind(), want, "{}", api.code);
        assert!(!api.message.is_empty());
    }
}

#[tokio::test]
async fn an_error_answers_code_message_and_type() {
    let api = ApiError::from(sousuo_decoder::Error::Busy);
    let r = api.into_response();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "busy");
    assert_eq!(v["error"]["type"], "unavailable");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}
