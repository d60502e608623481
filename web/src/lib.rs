//! Sousuo's HTTP server (axum): the JSON API, answers streamed as Server-Sent Events, an
//! OpenAI-compatible chat endpoint, API keys, Prometheus metrics, and the search page (one
//! HTML file embedded in the binary).
//!
//! [`app`] builds the router from an [`AppState`]; [`serve`] binds it and shuts down
//! gracefully (in-flight requests finish, queued indexing tasks finish, indexes are committed).
//!
//! - `routes`: the handlers by resource, the middleware, the answer stream.
//! - `state`: models, open collections, the admission semaphore; `tasks`: the indexing queue.
//! - `cluster`: a node's view of the cluster (`sousuo node --bind`): clustered collections
//!   searched by scatter-gather, replica lag and fan-out figures for `/metrics`.
//! - `auth`: API keys; `error`: the one table from library errors to HTTP; `json`: bodies.

#![warn(missing_docs)]

mod auth;
mod cluster;
mod error;
mod json;
mod listen;
mod metrics;
mod process_metrics;
mod ratelimit;
mod routes;
mod state;
mod tasks;
mod taskstore;

pub use auth::{Action, Caller, KeyStore};
pub use cluster::ClusterView;
pub use error::{classify, ApiError, ApiResult, ErrorBody, ErrorDetail, LibError};
pub use routes::{app, ApiDoc, AskRequest, FilterArg, SearchRequest};
pub use state::{AppState, Config};
pub use tasks::{Retention, TaskStatus, TaskView, Tasks};

use std::net::SocketAddr;
use std::sync::Arc;

/// The search page.
pub const PAGE: &str = include_str!("../assets/index.html");

/// Answers that may wait for the decoder before `ask` answers 503.
pub const DECODER_QUEUE: usize = 8;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without keys.
    #[error("refusing to listen on {0} without API keys: pass --master-key (or SOUSUO_MASTER_KEY), bind to 127.0.0.1, or pass --insecure-no-auth")]
    Insecure(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether binding `addr` without keys is refused.
pub fn check_bind(addr: SocketAddr, has_master_key: bool, insecure: bool) -> Result<(), ServeError> {
    if !has_master_key && !insecure && !addr.ip().is_loopback() {
        return Err(ServeError::Insecure(addr));
    }
    Ok(())
}

/// Serves `state` on `addr` until Ctrl-C or SIGTERM; `on_ready` gets the bound address.
pub async fn serve(
    state: Arc<AppState>,
    addr: SocketAddr,
    insecure: bool,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    check_bind(addr, state.keys.enabled(), insecure)?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    on_ready(listener.local_addr()?);
    serve_on(listener, state, shutdown_signal()).await
}

/// Serves `state` on a bound `listener` until `shutdown` completes, then finishes the indexing
/// tasks and commits the collections.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    listen::run(listener, app(state.clone()), state.config.header_read_timeout, shutdown).await?;
    tracing::info!("shutting down: finishing indexing tasks and committing collections");
    let s = state.clone();
    tokio::task::spawn_blocking(move || s.shutdown()).await.map_err(std::io::Error::other)?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
