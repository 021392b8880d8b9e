//! The NATS checks: connect with the agent's credentials; a publish on its own subject is
//! stored and one on another agent's is refused; the clock against the server's.
//!
//! The own-subject publish goes to the agent's evidence bucket (`$O.pf_evidence_<id>.C.…`,
//! which only the agent writes and nothing consumes) and is purged afterwards. The server's time
//! is that message's JetStream timestamp, which the server stamps from its own clock when it
//! stores the message: the skew is that time against the middle of the local publish-to-ack
//! interval, uncertain by half of it (printed).

use std::time::Duration;

use async_nats::jetstream;
use phonefarm_shared::subjects;
use tokio::sync::mpsc;

use super::Check;
use crate::daemon::DaemonConfig;
use crate::uplink::NatsAuth;

/// Skew under which the clock passes, and over which it fails.
pub const SKEW_WARN: Duration = Duration::from_secs(1);
pub const SKEW_FAIL: Duration = Duration::from_secs(5);
/// How long a refused publish's error may take to arrive.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

const PROBE_SUBJECT_TOKEN: &str = "doctor-probe";

fn own_subject(agent_id: &str) -> String {
    format!(
        "$O.{}.C.{PROBE_SUBJECT_TOKEN}",
        subjects::evidence_bucket(agent_id)
    )
}

/// Another agent's id (never this one's).
fn other_agent(agent_id: &str) -> String {
    if agent_id == "doctor-other" {
        "doctor-other-2".into()
    } else {
        "doctor-other".into()
    }
}

async fn connect(
    config: &DaemonConfig,
    errors: mpsc::UnboundedSender<String>,
) -> Result<async_nats::Client, String> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("phonefarm-agent doctor {}", config.agent_id))
        .custom_inbox_prefix(format!("_INBOX_{}", config.agent_id))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(Some(1))
        .event_callback(move |event| {
            let errors = errors.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = errors.send(e.to_string());
                }
            }
        });
    opts = match &config.nats_auth {
        NatsAuth::None => opts,
        NatsAuth::UserPassword { user, password } => {
            opts.user_and_password(user.clone(), password.clone())
        }
        NatsAuth::NkeySeed(seed) => opts.nkey(seed.clone()),
        NatsAuth::CredsFile(path) => opts
            .credentials_file(path)
            .await
            .map_err(|e| format!("cannot read the creds file {}: {e}", path.display()))?,
    };
    let tls = &config.nats_tls;
    if let Some(ca) = &tls.ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &tls.client_cert {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if tls.required {
        opts = opts.require_tls(true);
    }
    opts.connect(&config.nats_url)
        .await
        .map_err(|e| format!("{}: {e}", phonefarm_shared::redact_url(&config.nats_url)))
}

/// Waits up to [`REFUSAL_WAIT`] for the server's permissions violation on `subject`.
async fn refusal(errors: &mut mpsc::UnboundedReceiver<String>, subject: &str) -> bool {
    let deadline = tokio::time::Instant::now() + REFUSAL_WAIT;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, errors.recv()).await {
        if e.to_ascii_lowercase().contains("permissions violation") && e.contains(subject) {
            return true;
        }
    }
    false
}

pub async fn checks(config: &DaemonConfig) -> Vec<Check> {
    let (tx, mut errors) = mpsc::unbounded_channel();
    let client = match connect(config, tx).await {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "nats-connect",
                e,
                "check --nats-url, the creds file (`phonefarm-coordinator agent enroll` issues it; revoked or expired ones are refused) and --nats-ca",
            )];
        }
    };
    let info = client.server_info();
    let mut checks = vec![Check::pass(
        "nats-connect",
        format!(
            "connected to {} (nats-server {}{})",
            phonefarm_shared::redact_url(&config.nats_url),
            info.version,
            if info.tls_required { ", TLS" } else { "" }
        ),
    )];
    let js = jetstream::ContextBuilder::new()
        .timeout(REFUSAL_WAIT)
        .build(client.clone());

    // A publish on the agent's own subject, stored by JetStream; its timestamp is the clock.
    let own = own_subject(&config.agent_id);
    let before = time::OffsetDateTime::now_utc();
    let acked = match js.publish(own.clone(), "doctor".into()).await {
        Ok(ack) => ack.await,
        Err(e) => Err(e),
    };
    let after = time::OffsetDateTime::now_utc();
    match acked {
        Ok(ack) => {
            checks.push(Check::pass(
                "nats-publish-own",
                format!("a publish on {own} was stored (stream {})", ack.stream),
            ));
            checks.push(clock(&js, &ack.stream, ack.sequence, before, after, &own).await);
        }
        Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
            checks.push(Check::warn(
                "nats-publish-own",
                format!(
                    "the agent's evidence bucket {} does not exist yet",
                    subjects::evidence_bucket(&config.agent_id)
                ),
                "start the agent once (the coordinator creates it when the agent first shows up), then run doctor again",
            ));
            checks.push(Check::warn(
                "clock",
                "not measured (it needs the evidence bucket)",
                "run doctor again once the agent has been online",
            ));
        }
        Err(e) => {
            let refused = refusal(&mut errors, &own).await;
            checks.push(Check::fail(
                "nats-publish-own",
                if refused {
                    format!("the server refused a publish on the agent's own subject {own}")
                } else {
                    format!("a publish on {own} failed: {e}")
                },
                "these credentials are not this agent's: check --agent-id against the id the creds file was enrolled for",
            ));
        }
    }

    // A publish on another agent's subject must be refused.
    let foreign = own_subject(&other_agent(&config.agent_id));
    let sent = client.publish(foreign.clone(), "doctor".into()).await;
    let flushed = client.flush().await;
    let refused = refusal(&mut errors, &foreign).await;
    checks.push(match (sent.is_ok() && flushed.is_ok(), refused) {
        (_, true) => Check::pass(
            "nats-publish-other",
            format!("a publish on another agent's subject ({foreign}) was refused"),
        ),
        (true, false) => Check::fail(
            "nats-publish-other",
            format!("a publish on another agent's subject ({foreign}) was allowed"),
            "use the agent's own enrolled credentials (`phonefarm-coordinator agent enroll <id>`), not a shared or the coordinator's user",
        ),
        (false, false) => Check::fail(
            "nats-publish-other",
            "the connection broke while publishing",
            "run doctor again; check the NATS server's log",
        ),
    });
    checks
}

async fn clock(
    js: &jetstream::Context,
    stream: &str,
    seq: u64,
    before: time::OffsetDateTime,
    after: time::OffsetDateTime,
    subject: &str,
) -> Check {
    let fix = "run doctor again; the agent's user may read its own evidence stream";
    let stream = match js.get_stream(stream).await {
        Ok(s) => s,
        Err(e) => return Check::warn("clock", format!("not measured: {e}"), fix),
    };
    let stored = stream.get_raw_message(seq).await;
    let _ = stream.purge().filter(subject).await;
    match stored {
        Ok(m) => clock_verdict(m.time, before, after),
        Err(e) => Check::warn("clock", format!("not measured: {e}"), fix),
    }
}

/// The skew of `server` against the middle of `[before, after]`.
pub fn clock_verdict(
    server: time::OffsetDateTime,
    before: time::OffsetDateTime,
    after: time::OffsetDateTime,
) -> Check {
    let half: time::Duration = (after - before) / 2;
    let skew = server - (before + half);
    let abs = skew.unsigned_abs();
    let detail = format!(
        "{:+.3} s against the NATS server (± {:.3} s)",
        skew.as_seconds_f64(),
        half.as_seconds_f64().abs()
    );
    let fix = "synchronise the clock: timedatectl set-ntp true (systemd-timesyncd or chrony)";
    if abs > SKEW_FAIL {
        Check::fail("clock", detail, fix)
    } else if abs > SKEW_WARN {
        Check::warn("clock", detail, fix)
    } else {
        Check::pass("clock", detail)
    }
}
