//! JetStream objects, created idempotently at every coordinator start (and per agent at
//! enrollment). Designed to nats-server 2.9.10: KV buckets and the object store are created as
//! plain streams with the shape async-nats expects, because `create_key_value` fails on 2.9
//! (its account info lacks fields the client wants).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use phonefarm_shared::subjects;

use super::BusConfig;

/// The oldest server this coordinator is designed to (and tested against).
pub const MIN_SERVER: (u64, u64, u64) = (2, 9, 0);
/// How long the work stream remembers message ids: a retried publish is stored once.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Events are kept this long (the coordinator acks them long before).
pub const EVENT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long the ingester may hold an event before the server redelivers it.
pub const EVENT_ACK_WAIT: Duration = Duration::from_secs(30);
/// How long an agent may hold a work order unacked before redelivery.
pub const WORK_ACK_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("nats-server {found} is too old: {}.{}.{} or newer is required", MIN_SERVER.0, MIN_SERVER.1, MIN_SERVER.2)]
    ServerTooOld { found: String },
    #[error("cannot read the nats-server version {found:?}")]
    BadVersion { found: String },
    #[error("creating stream {name}")]
    Stream {
        name: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("creating consumer {consumer} on {stream}")]
    Consumer {
        stream: String,
        consumer: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("agent id {0:?} is not a subject-safe token")]
    BadAgentId(String),
}

/// Parses `major.minor.patch` (suffixes like `-beta` ignored).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v');
    let core = core.split(['-', '+', ' ']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Refuses servers older than [`MIN_SERVER`]. Newer servers are accepted: the client is built
/// without the features of newer servers, so it only ever asks for what 2.9 understands.
pub fn check_server_version(found: &str) -> Result<(u64, u64, u64), BootstrapError> {
    let v = parse_version(found).ok_or_else(|| BootstrapError::BadVersion {
        found: found.into(),
    })?;
    if v < MIN_SERVER {
        return Err(BootstrapError::ServerTooOld {
            found: found.into(),
        });
    }
    if (v.0, v.1) != (MIN_SERVER.0, MIN_SERVER.1) {
        tracing::warn!(
            version = found,
            "nats-server is newer than the 2.9 line this build is tested against"
        );
    }
    Ok(v)
}

pub fn work_stream() -> stream::Config {
    stream::Config {
        name: subjects::WORK_STREAM.into(),
        subjects: vec![subjects::WORK_SUBJECTS.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

pub fn control_stream() -> stream::Config {
    stream::Config {
        name: subjects::CTL_STREAM.into(),
        subjects: vec![subjects::CTL_SUBJECTS.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        // A cancel older than a day is moot.
        max_age: Duration::from_secs(24 * 3600),
        ..Default::default()
    }
}

pub fn event_stream() -> stream::Config {
    stream::Config {
        name: subjects::EVT_STREAM.into(),
        subjects: vec![subjects::EVT_SUBJECTS.into()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: EVENT_MAX_AGE,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// The stream behind a KV bucket, shaped as async-nats' `create_key_value` would make it.
pub fn kv_stream(bucket: &str, history: i64, max_age: Duration) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    }
}

/// The stream behind an object store bucket, shaped as `create_object_store` would make it.
pub fn object_stream(bucket: &str) -> stream::Config {
    stream::Config {
        name: format!("OBJ_{bucket}"),
        subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        num_replicas: 1,
        ..Default::default()
    }
}

/// The coordinators' shared durable consumer on `PF_EVT`.
pub fn coordinator_consumer() -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(subjects::COORDINATOR_CONSUMER.into()),
        filter_subject: subjects::EVT_SUBJECTS.into(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: EVENT_ACK_WAIT,
        deliver_policy: consumer::DeliverPolicy::All,
        max_ack_pending: 10_000,
        ..Default::default()
    }
}

/// An agent's durable pull consumer on its work or control subject.
pub fn agent_consumer(agent_id: &str, filter: String) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(subjects::agent_consumer(agent_id)),
        filter_subject: filter,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: WORK_ACK_WAIT,
        deliver_policy: consumer::DeliverPolicy::All,
        ..Default::default()
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, BootstrapError> {
    let name = config.name.clone();
    let err = |e: async_nats::Error| BootstrapError::Stream {
        name: name.clone(),
        source: e,
    };
    let wanted = config.num_replicas.max(1);
    let mut stream = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| err(Box::new(e)))?;
    // An installation that grew into a cluster: the existing stream takes the replica count
    // it is now configured with (the server moves its data to the new peers).
    let existing = stream.cached_info().config.clone();
    if existing.num_replicas.max(1) != wanted {
        tracing::info!(
            stream = %name,
            from = existing.num_replicas,
            to = wanted,
            "changing the stream's replica count"
        );
        js.update_stream(stream::Config {
            num_replicas: wanted,
            ..existing
        })
        .await
        .map_err(|e| err(Box::new(e)))?;
        stream = js.get_stream(&name).await.map_err(|e| err(Box::new(e)))?;
    }
    Ok(stream)
}

/// `config` stored on `replicas` servers.
fn replicated(config: stream::Config, replicas: usize) -> stream::Config {
    stream::Config {
        num_replicas: replicas.max(1),
        ..config
    }
}

async fn ensure_consumer(
    stream: &stream::Stream,
    stream_name: &str,
    config: consumer::pull::Config,
) -> Result<(), BootstrapError> {
    let name = config.durable_name.clone().unwrap_or_default();
    stream
        .create_consumer(config)
        .await
        .map_err(|e| BootstrapError::Consumer {
            stream: stream_name.into(),
            consumer: name,
            source: Box::new(e),
        })?;
    Ok(())
}

/// Creates every stream, bucket and the coordinator consumer (a no-op when they exist).
pub async fn ensure(js: &jetstream::Context, config: &BusConfig) -> Result<(), BootstrapError> {
    let r = config.replicas;
    ensure_stream(js, replicated(work_stream(), r)).await?;
    ensure_stream(js, replicated(control_stream(), r)).await?;
    let events = ensure_stream(js, replicated(event_stream(), r)).await?;
    ensure_consumer(&events, subjects::EVT_STREAM, coordinator_consumer()).await?;
    let presence = kv_stream(subjects::AGENTS_BUCKET, 1, config.presence_max_age);
    ensure_stream(js, replicated(presence, r)).await?;
    let flows = kv_stream(subjects::FLOWS_BUCKET, 5, Duration::ZERO);
    ensure_stream(js, replicated(flows, r)).await?;
    // The shared bucket of evidence from before per-agent buckets (agents may no longer write
    // it; what it holds stays readable).
    ensure_stream(js, replicated(object_stream(subjects::EVIDENCE_BUCKET), r)).await?;
    tracing::info!(
        replicas = r,
        "jetstream streams, buckets and the coordinator consumer are in place"
    );
    Ok(())
}

/// Enrollment on the bus (idempotent): the agent's consumers on `PF_WORK` and `PF_CTL`, and
/// its own evidence bucket `pf_evidence_<id>` (agents whose id cannot name a bucket get none:
/// `agent enroll` refuses such ids). `replicas` is the installation's count (`--nats-replicas`,
/// as [`ensure`] was given): the streams it makes sure of keep it, and the bucket gets it.
#[tracing::instrument(skip(js))]
pub async fn enroll_agent(
    js: &jetstream::Context,
    agent_id: &str,
    replicas: usize,
) -> Result<(), BootstrapError> {
    if !phonefarm_shared::is_subject_token(agent_id) {
        return Err(BootstrapError::BadAgentId(agent_id.into()));
    }
    let work = ensure_stream(js, replicated(work_stream(), replicas)).await?;
    ensure_consumer(
        &work,
        subjects::WORK_STREAM,
        agent_consumer(agent_id, subjects::work(agent_id)),
    )
    .await?;
    let ctl = ensure_stream(js, replicated(control_stream(), replicas)).await?;
    ensure_consumer(
        &ctl,
        subjects::CTL_STREAM,
        agent_consumer(agent_id, subjects::control(agent_id)),
    )
    .await?;
    if subjects::is_bucket_token(agent_id) {
        let bucket = object_stream(&subjects::evidence_bucket(agent_id));
        ensure_stream(js, replicated(bucket, replicas)).await?;
    } else {
        tracing::warn!(
            agent_id,
            "the agent id cannot name a bucket: this agent has no evidence store"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("2.10.0-beta.1"), Some((2, 10, 0)));
        assert_eq!(parse_version("v2.9"), Some((2, 9, 0)));
        assert_eq!(parse_version("garbage"), None);
        assert!(check_server_version("2.9.10").is_ok());
        assert!(check_server_version("2.11.1").is_ok());
        assert!(matches!(
            check_server_version("2.8.4"),
            Err(BootstrapError::ServerTooOld { .. })
        ));
        assert!(matches!(
            check_server_version(""),
            Err(BootstrapError::BadVersion { .. })
        ));
    }
}
