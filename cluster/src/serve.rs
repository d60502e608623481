//! A node's side of scatter-gather: a caught-up replica answers its shard's search requests
//! ([`crate::protocol`]) from its local collection, on blocking threads.

use crate::protocol::{group, subject, ShardReply, ShardRequest};
use crate::{Error, Result};
use futures_util::StreamExt;
use sousuo_indexer::Collection;
use sousuo_query::shard;
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};

/// Answers shard `shard` of `name`'s requests until `stop` turns true. At most `parallel`
/// requests run at once; the rest wait their turn.
pub async fn serve(
    client: async_nats::Client,
    collection: Arc<Collection>,
    name: String,
    shard: u32,
    parallel: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut sub = client
        .queue_subscribe(subject(&name, shard), group(&name, shard))
        .await
        .map_err(|e| Error::nats("subscribe to shard searches", e))?;
    let permits = Arc::new(Semaphore::new(parallel.max(1)));
    loop {
        let message = tokio::select! {
            m = sub.next() => m,
            _ = stop.changed() => None,
        };
        let Some(message) = message else { break };
        let Some(reply_to) = message.reply.clone() else { continue };
        let (client, collection, permits) = (client.clone(), collection.clone(), permits.clone());
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            let reply = match serde_json::from_slice::<ShardRequest>(&message.payload) {
                Ok(req) => tokio::task::spawn_blocking(move || answer(&collection, req)).await.unwrap_or_else(|e| {
                    ShardReply::Failed { bad_request: false, reason: format!("the shard's search panicked: {e}") }
                }),
                Err(e) => ShardReply::Failed { bad_request: false, reason: format!("unreadable request: {e}") },
            };
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            if let Err(e) = client.publish(reply_to, body.into()).await {
                tracing::warn!(shard, "cannot send a search reply: {e}");
            }
        });
    }
    let _ = sub.unsubscribe().await;
    Ok(())
}

/// One request, answered from the local collection.
pub fn answer(collection: &Collection, req: ShardRequest) -> ShardReply {
    let result = match req {
        ShardRequest::Stats { query, params } => shard::term_stats(collection, &query, &params).map(ShardReply::Stats),
        ShardRequest::Lists { query, vector, stats, params } => {
            shard::lists(collection, &query, vector.as_deref(), stats.as_ref(), &params).map(ShardReply::Lists)
        }
        ShardRequest::Bodies { query, params, items } => {
            shard::bodies(collection, &query, &params, &items).map(ShardReply::Bodies)
        }
        ShardRequest::Vector { key } => {
            collection.store().get_vector(key).map(ShardReply::Vector).map_err(sousuo_query::Error::from)
        }
        ShardRequest::Document { id } => document(collection, &id).map(ShardReply::Document),
        ShardRequest::Count => collection
            .source_seq()
            .map(|applied| ShardReply::Count {
                documents: collection.store().doc_count() as u64,
                chunks: collection.store().chunk_count() as u64,
                applied,
            })
            .map_err(sousuo_query::Error::from),
    };
    result.unwrap_or_else(|e| ShardReply::Failed { bad_request: is_callers(&e), reason: e.to_string() })
}

fn document(collection: &Collection, id: &str) -> sousuo_query::Result<Option<crate::protocol::StoredDocument>> {
    let Some(doc) = collection.get_doc(id)? else { return Ok(None) };
    let mut chunks = Vec::with_capacity(doc.chunk_keys.len());
    for &k in &doc.chunk_keys {
        if let Some(c) = collection.store().get_chunk(k)? {
            chunks.push((k, c));
        }
    }
    Ok(Some((doc, chunks)))
}

/// Whether a failure is the caller's mistake (the same on every shard) rather than the shard's.
fn is_callers(e: &sousuo_query::Error) -> bool {
    use sousuo_indexer::Error as I;
    use sousuo_query::Error as Q;
    matches!(e, Q::EmptyQuery | Q::BadFilter { .. } | Q::BadParameter { .. } | Q::Index(I::QuerySyntax { .. }))
}
