//! API errors: `{"error": {"code", "message", "type"}}` with the matching status.
//!
//! Every library error reaches the client through one table ([`classify`] and the matches it
//! calls), matched exhaustively, so a new error variant cannot silently become a 500: the
//! caller's mistakes are 4xx, a busy server 503 with `Retry-After`, and only what is truly
//! internal 500. The codes are stable and documented in `docs/errors.md`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable machine-readable code.
    pub code: &'static str,
    /// What happened, for a person.
    pub message: String,
    /// Seconds for `Retry-After` (503 answers).
    pub retry_after: Option<u32>,
}

/// The JSON body of an error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error: its code, message and type.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The stable code (`collection_not_found`, `bad_filter`, ...).
    pub code: String,
    /// What happened, for a person.
    pub message: String,
    /// `invalid_request` (the caller's mistake), `auth`, `unavailable` (retry later) or
    /// `internal`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Status 499: the client went away before the answer was ready (nginx's convention).
const CLIENT_CLOSED: u16 = 499;

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let retry_after = (status == StatusCode::SERVICE_UNAVAILABLE).then_some(2);
        ApiError { status, code, message: message.into(), retry_after }
    }
    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    /// 401: no key, or an unknown or expired one.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_api_key", message)
    }
    /// 403: the key may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 503 with `Retry-After`.
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
    }
    /// 429 with `Retry-After`: the key used up its rate limit.
    pub fn rate_limited(retry_after: u32) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this key has used its requests for now; retry in {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }
    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    /// The error's type, from its status.
    pub fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "auth",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal",
            _ => "invalid_request",
        }
    }
    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail { code: self.code.to_string(), message: self.message.clone(), kind: self.kind() },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(code = self.code, "{}", self.message);
        }
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"sousuo\""));
        }
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// The result type of the handlers.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// A status and a stable code.
type Class = (StatusCode, &'static str);

const BAD: StatusCode = StatusCode::BAD_REQUEST;
const CONFLICT: StatusCode = StatusCode::CONFLICT;
const INTERNAL: StatusCode = StatusCode::INTERNAL_SERVER_ERROR;
const UNAVAILABLE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

fn client_closed() -> StatusCode {
    StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(StatusCode::BAD_REQUEST)
}

/// I/O: a full disk is 507, anything else internal.
fn io(e: &std::io::Error) -> Class {
    if e.kind() == std::io::ErrorKind::StorageFull {
        (StatusCode::INSUFFICIENT_STORAGE, "disk_full")
    } else {
        (INTERNAL, "io_error")
    }
}

fn common(e: &sousuo_common::Error) -> Class {
    use sousuo_common::Error as E;
    match e {
        E::Fetch(_) => (INTERNAL, "model_fetch_failed"),
        E::Checksum { .. } => (INTERNAL, "model_checksum_mismatch"),
        E::Io { source, .. } => io(source),
    }
}

fn kernels(e: &sousuo_kernels::Error) -> Class {
    use sousuo_kernels::Error as E;
    match e {
        E::DimensionMismatch { .. } | E::Corrupt(_) => (INTERNAL, "kernel_error"),
        E::NotCompiledWithCuda | E::CudaUnavailable(_) | E::Cuda(_) => (INTERNAL, "gpu_error"),
    }
}

fn encoder(e: &sousuo_encoder::Error) -> Class {
    use sousuo_encoder::Error as E;
    match e {
        E::Tokenizer(_) => (BAD, "bad_text"),
        E::WorkerGone => (UNAVAILABLE, "encoder_stopped"),
        E::MissingModelFile { .. } | E::BadModelFile { .. } | E::Device(_) => (INTERNAL, "encoder_unavailable"),
        E::Model(_) | E::DimensionMismatch { .. } => (INTERNAL, "encoder_failed"),
        E::Models(e) => common(e),
        E::Kernel(e) => kernels(e),
        E::Io { source, .. } => io(source),
    }
}

fn decoder(e: &sousuo_decoder::Error) -> Class {
    use sousuo_decoder::Error as E;
    match e {
        E::Busy => (UNAVAILABLE, "busy"),
        E::Stopped => (UNAVAILABLE, "decoder_stopped"),
        E::Cancelled => (client_closed(), "cancelled"),
        E::BadParameter { .. } => (BAD, "bad_parameter"),
        E::Tokenizer(_) => (BAD, "bad_text"),
        E::Model(_) | E::Unsupported(_) | E::CorruptCache(_) | E::Template(_) => (INTERNAL, "decoder_unavailable"),
        E::Generation(_) => (INTERNAL, "generation_failed"),
        E::Kernel(e) => kernels(e),
        E::Files(e) => common(e),
        E::Io { source, .. } => io(source),
    }
}

fn indexer(e: &sousuo_indexer::Error) -> Class {
    use sousuo_indexer::Error as E;
    match e {
        E::InvalidName { .. } => (BAD, "bad_collection_name"),
        E::NoSuchCollection(_) => (StatusCode::NOT_FOUND, "collection_not_found"),
        E::NoSuchDocument(_) => (StatusCode::NOT_FOUND, "document_not_found"),
        E::NoSuchPath(_) => (BAD, "no_such_path"),
        E::CollectionExists(_) => (CONFLICT, "collection_exists"),
        E::InUse { .. } => (CONFLICT, "collection_in_use"),
        E::EncoderMismatch { .. } => (CONFLICT, "encoder_mismatch"),
        E::PrecisionMismatch { .. } => (CONFLICT, "precision_mismatch"),
        E::FormatVersion { .. } => (CONFLICT, "format_version"),
        E::Parse { .. } => (BAD, "bad_document"),
        E::Binary { .. } => (BAD, "binary_content"),
        E::QuerySyntax { .. } => (BAD, "bad_query"),
        E::Cancelled => (client_closed(), "cancelled"),
        E::Store(_) => (INTERNAL, "store_error"),
        E::Bm25(_) => (INTERNAL, "bm25_error"),
        E::Vectors(_) => (INTERNAL, "vector_index_error"),
        E::DimensionMismatch { .. } => (INTERNAL, "dimension_mismatch"),
        E::Sink { .. } => (UNAVAILABLE, "sink_unavailable"),
        E::DiskFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
        E::Encoder(e) => encoder(e),
        E::Files(e) => common(e),
        E::Io { source, .. } => io(source),
    }
}

fn query(e: &sousuo_query::Error) -> Class {
    use sousuo_query::Error as E;
    match e {
        E::EmptyQuery => (BAD, "empty_query"),
        E::BadFilter { .. } => (BAD, "bad_filter"),
        E::BadParameter { .. } => (BAD, "bad_parameter"),
        E::Dataset(_) => (BAD, "bad_dataset"),
        E::ShardsUnavailable { .. } => (UNAVAILABLE, "shards_unavailable"),
        E::Cluster { .. } => (UNAVAILABLE, "cluster_unavailable"),
        E::Index(e) => indexer(e),
        E::Encoder(e) => encoder(e),
        E::Decoder(e) => decoder(e),
    }
}

fn cluster(e: &sousuo_cluster::Error) -> Class {
    use sousuo_cluster::Error as E;
    match e {
        E::BadUrl { .. } => (BAD, "bad_nats_url"),
        E::Nats { .. } => (UNAVAILABLE, "cluster_unavailable"),
        E::NoSuchCollection(_) => (StatusCode::NOT_FOUND, "collection_not_found"),
        E::CollectionExists(_) => (StatusCode::CONFLICT, "collection_exists"),
        E::BadSpec { .. } => (BAD, "bad_collection_spec"),
        E::NoSuchShard { .. } => (StatusCode::NOT_FOUND, "shard_not_found"),
        E::Decode { .. } => (INTERNAL, "cluster_log_corrupt"),
        E::Task(_) => (INTERNAL, "internal"),
        E::Index(e) => indexer(e),
        E::Embed(e) => encoder(e),
        E::Io { source, .. } => io(source),
        E::NoSnapshot { .. } => (INTERNAL, "no_snapshot"),
    }
}

/// The status and code of any library error: the one table.
pub fn classify(e: &LibError) -> (StatusCode, &'static str) {
    match e {
        LibError::Common(e) => common(e),
        LibError::Kernels(e) => kernels(e),
        LibError::Encoder(e) => encoder(e),
        LibError::Decoder(e) => decoder(e),
        LibError::Indexer(e) => indexer(e),
        LibError::Query(e) => query(e),
        LibError::Cluster(e) => cluster(e),
    }
}

/// An error of any library crate, as [`classify`] takes it.
#[derive(Debug)]
pub enum LibError {
    /// `sousuo-common`.
    Common(sousuo_common::Error),
    /// `sousuo-kernels`.
    Kernels(sousuo_kernels::Error),
    /// `sousuo-encoder`.
    Encoder(sousuo_encoder::Error),
    /// `sousuo-decoder`.
    Decoder(sousuo_decoder::Error),
    /// `sousuo-indexer`.
    Indexer(sousuo_indexer::Error),
    /// `sousuo-query`.
    Query(sousuo_query::Error),
    /// `sousuo-cluster`.
    Cluster(sousuo_cluster::Error),
}

impl std::fmt::Display for LibError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LibError::Common(e) => e.fmt(f),
            LibError::Kernels(e) => e.fmt(f),
            LibError::Encoder(e) => e.fmt(f),
            LibError::Decoder(e) => e.fmt(f),
            LibError::Indexer(e) => e.fmt(f),
            LibError::Query(e) => e.fmt(f),
            LibError::Cluster(e) => e.fmt(f),
        }
    }
}

impl From<LibError> for ApiError {
    fn from(e: LibError) -> Self {
        let (status, code) = classify(&e);
        ApiError::new(status, code, e.to_string())
    }
}

macro_rules! from_lib {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                LibError::$v(e).into()
            }
        }
    )*};
}

from_lib! {
    sousuo_common::Error => Common,
    sousuo_kernels::Error => Kernels,
    sousuo_encoder::Error => Encoder,
    sousuo_decoder::Error => Decoder,
    sousuo_indexer::Error => Indexer,
    sousuo_query::Error => Query,
    sousuo_cluster::Error => Cluster,
}
