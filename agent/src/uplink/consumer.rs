//! Binding to one of the agent's durable pull consumers (`agent-<id>` on `PF_WORK` or
//! `PF_CTL`) and feeding its messages to a handler, forever. The agent only looks the consumer
//! up (`CONSUMER.INFO`) and pulls (`MSG.NEXT`); it never creates it.
//!
//! While the server is away the pull stream reports `MissingHeartbeat` and recovers by itself
//! once it is back; `ConsumerDeleted` (or the stream ending) makes us bind again, retrying with
//! a backoff until the coordinator has (re)created the consumer.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::pull::MessagesErrorKind};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use phonefarm_shared::subjects;
use tokio_util::sync::CancellationToken;

use super::pause;

/// Pull tuning.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Idle heartbeat asked of the server; two missed ones are reported.
    pub heartbeat: Duration,
    /// How long one pull request lives.
    pub expires: Duration,
    /// Messages per pull.
    pub batch: usize,
    /// Messages handled at once (each acked by its own handler). 1 handles them one at a time,
    /// in delivery order.
    pub concurrency: usize,
    /// Delay between attempts to bind.
    pub rebind_delay: Duration,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            expires: Duration::from_secs(30),
            batch: 1,
            concurrency: 1,
            rebind_delay: Duration::from_secs(1),
        }
    }
}

/// Pulls from `agent-<agent_id>` on `stream` until `shutdown`, running `handle` for each
/// message, up to `options.concurrency` at once (1: one at a time, in order). Nothing more is
/// taken from the pull while that many are in hand.
pub async fn consume<F, Fut>(
    js: jetstream::Context,
    stream: &'static str,
    agent_id: String,
    options: PullOptions,
    shutdown: CancellationToken,
    mut handle: F,
) where
    F: FnMut(jetstream::Message) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = subjects::agent_consumer(&agent_id);
    let mut delay = options.rebind_delay;
    'bind: loop {
        if shutdown.is_cancelled() {
            return;
        }
        let consumer: pull::Stream = match bind(&js, stream, &name, &options).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(%agent_id, stream, consumer = %name, error = %e, retry_in = ?delay, "cannot bind to the consumer");
                if !pause(delay, &shutdown).await {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        tracing::info!(%agent_id, stream, consumer = %name, "bound to consumer");
        delay = options.rebind_delay;
        let mut messages = consumer;
        let mut in_hand = FuturesUnordered::new();
        let room = options.concurrency.max(1);
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                Some(()) = in_hand.next(), if !in_hand.is_empty() => continue,
                next = messages.next(), if in_hand.len() < room => next,
            };
            match next {
                Some(Ok(msg)) => in_hand.push(handle(msg)),
                Some(Err(e)) => match e.kind() {
                    MessagesErrorKind::MissingHeartbeat => {
                        // The pull request may be gone with the server that held it (on a
                        // cluster, the stream's leader died while this connection's own node
                        // lives on, so no reconnect re-issues it): pull afresh. Messages in
                        // hand carry on; if the server is away, keep waiting on the old pull.
                        match bind(&js, stream, &name, &options).await {
                            Ok(fresh) => {
                                tracing::info!(%agent_id, stream, consumer = %name, "missed heartbeats: pulling afresh");
                                messages = fresh;
                            }
                            Err(e) => {
                                tracing::debug!(%agent_id, stream, error = %e, "missed heartbeats: server away? waiting");
                            }
                        }
                    }
                    MessagesErrorKind::ConsumerDeleted => {
                        tracing::warn!(%agent_id, stream, consumer = %name, "consumer deleted; binding again");
                        finish(&mut in_hand, &shutdown).await;
                        continue 'bind;
                    }
                    other => {
                        tracing::warn!(%agent_id, stream, kind = %other, error = %e, "pull failed; binding again");
                        finish(&mut in_hand, &shutdown).await;
                        if !pause(options.rebind_delay, &shutdown).await {
                            return;
                        }
                        continue 'bind;
                    }
                },
                None => {
                    tracing::warn!(%agent_id, stream, "message stream ended; binding again");
                    finish(&mut in_hand, &shutdown).await;
                    continue 'bind;
                }
            }
        }
    }
}

/// Lets the handlers in hand finish (or shutdown come) before binding again.
async fn finish<Fut: Future<Output = ()>>(
    in_hand: &mut FuturesUnordered<Fut>,
    shutdown: &CancellationToken,
) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = async { while in_hand.next().await.is_some() {} } => {}
    }
}

async fn bind(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
    options: &PullOptions,
) -> Result<pull::Stream, async_nats::Error> {
    let consumer: jetstream::consumer::PullConsumer =
        js.get_consumer_from_stream(name, stream).await?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(options.batch)
        .heartbeat(options.heartbeat)
        .expires(options.expires)
        .messages()
        .await?;
    Ok(messages)
}
