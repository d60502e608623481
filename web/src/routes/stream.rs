//! An answer run on a blocking thread, its progress streamed through a channel: shared by
//! `ask` (JSON or SSE) and the OpenAI route.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use sousuo_query::{answer, AnswerEvent, AnswerParams};
use std::sync::Arc;

/// Applies a request's generation options (shared by `ask` and the OpenAI endpoint): at most
/// 1,024 new tokens, temperature 0 (greedy) to 5, top-p in (0, 1].
pub(super) fn sampling(
    p: &mut AnswerParams,
    max_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
) -> ApiResult<()> {
    if let Some(m) = max_tokens {
        p.generate.max_tokens = m.clamp(1, 1024);
    }
    if temperature.is_some_and(|t| !(0.0..=5.0).contains(&t)) {
        return Err(ApiError::bad_request("bad_parameter", "temperature is between 0 and 5"));
    }
    if top_p.is_some_and(|t| !(t > 0.0 && t <= 1.0)) {
        return Err(ApiError::bad_request("bad_parameter", "top_p is above 0 and at most 1"));
    }
    p.generate.temperature = temperature;
    p.generate.top_p = top_p;
    if let Some(s) = seed {
        p.generate.seed = s;
    }
    Ok(())
}

/// Streamed answer events for the SSE and OpenAI streams.
pub(super) enum Streamed {
    Rewritten(String),
    Sources(serde_json::Value),
    Token(String),
    Done(Box<sousuo_query::Answer>),
    Error(ApiError),
}

/// Starts an answer on a blocking thread; events arrive on the returned channel.
pub(super) fn start_answer(
    state: &Arc<AppState>,
    collection: String,
    question: String,
    mut p: AnswerParams,
) -> ApiResult<tokio::sync::mpsc::Receiver<Streamed>> {
    if let Some(d) = &state.decoder {
        if d.stats().queued >= crate::DECODER_QUEUE {
            return Err(sousuo_decoder::Error::Busy.into());
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Streamed>(256);
    // When the receiver is gone (the client disconnected), the next token stops the decoder
    // instead of generating on to `max_tokens` for nobody.
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    p.cancel = Some(cancel.clone());
    let s = state.clone();
    let runner = state.clone();
    let job = async move {
        let tx2 = tx.clone();
        let r = runner
            .blocking(move || {
                let c = s.retriever(&collection)?;
                let a = answer(&*c, &s.encoder, s.decoder.as_ref(), &question, &p, &mut |e| {
                    let msg = match e {
                        AnswerEvent::Rewritten(q) => Streamed::Rewritten(q.to_string()),
                        AnswerEvent::Sources(src) => Streamed::Sources(serde_json::to_value(src).unwrap_or_default()),
                        AnswerEvent::Token(t) => Streamed::Token(t.to_string()),
                    };
                    if tx2.blocking_send(msg).is_err() {
                        cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                })?;
                Ok(a)
            })
            .await;
        let _ = tx
            .send(match r {
                Ok(a) => Streamed::Done(Box::new(a)),
                Err(e) => Streamed::Error(e),
            })
            .await;
    };
    tokio::spawn(job);
    Ok(rx)
}

/// Waits for the finished answer, skipping the progress events.
pub(super) async fn finished(mut rx: tokio::sync::mpsc::Receiver<Streamed>) -> ApiResult<sousuo_query::Answer> {
    while let Some(m) = rx.recv().await {
        match m {
            Streamed::Done(a) => return Ok(*a),
            Streamed::Error(e) => return Err(e),
            _ => {}
        }
    }
    Err(ApiError::internal("the answer stopped without a result"))
}
