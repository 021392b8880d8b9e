//! The wire contract between the coordinator and its agents: message types, subjects and the
//! versioned postcard envelope. This crate does no I/O and depends on serde, postcard, uuid and
//! time only, so both sides agree on bytes without sharing any runtime.
//!
//! postcard is not self-describing: a released message's fields and variants are never
//! reordered, removed or inserted. New fields go into new variants or a new envelope version,
//! appended at the end. The golden-bytes tests at the bottom fail on any layout change.

pub mod subjects;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope version this build writes. Readers accept every version they know.
pub const ENVELOPE_VERSION: u16 = 1;

/// Every message on the bus travels in an envelope naming its layout version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub version: u16,
    pub body: T,
}

#[derive(Debug)]
pub enum WireError {
    /// The bytes are not a valid envelope of this message type.
    Decode(postcard::Error),
    /// The envelope is from a newer, unknown layout.
    UnknownVersion(u16),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Decode(e) => write!(f, "cannot decode message: {e}"),
            WireError::UnknownVersion(v) => write!(f, "unknown envelope version {v}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Encodes `body` in a current-version envelope.
pub fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct Ref<'a, T> {
        version: u16,
        body: &'a T,
    }
    // Serializing plain data into a Vec cannot fail.
    postcard::to_stdvec(&Ref {
        version: ENVELOPE_VERSION,
        body,
    })
    .unwrap_or_default()
}

/// Decodes an envelope, refusing versions newer than this build knows.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WireError> {
    let (version, rest): (u16, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(WireError::Decode)?;
    if version == 0 || version > ENVELOPE_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    let (body, _) = postcard::take_from_bytes(rest).map_err(WireError::Decode)?;
    Ok(body)
}

/// What a work order asks a phone to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Capability {
    KeywordWarmup,
    FypWarmup,
    Maintenance,
    PostVideo,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::KeywordWarmup => "keyword_warmup",
            Capability::FypWarmup => "fyp_warmup",
            Capability::Maintenance => "maintenance",
            Capability::PostVideo => "post_video",
        }
    }

    pub fn parse(s: &str) -> Option<Capability> {
        [
            Capability::KeywordWarmup,
            Capability::FypWarmup,
            Capability::Maintenance,
            Capability::PostVideo,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// `pf.work.<agent_id>`: one run of one queue item on one phone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrder {
    pub queue_item_id: Uuid,
    /// Fencing token: events of any other attempt are ignored by the coordinator.
    pub attempt: u32,
    pub run_id: Uuid,
    pub process_id: Option<Uuid>,
    pub capability: Capability,
    pub phone_id: String,
    pub account_id: String,
    /// The validated inputs with defaults, as JSON text (free-form per capability).
    pub inputs_json: String,
    /// The flow pack version the coordinator expects, if it pins one.
    pub flow_pack_version: Option<String>,
    /// The run must finish by this time (Unix milliseconds).
    pub deadline_unix_ms: i64,
}

/// How a cancel stops a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelMode {
    /// Stop at the next step boundary.
    Soft,
    /// Abort now: kill the run, force-stop the app, go home.
    Hard,
}

/// `pf.ctl.<agent_id>`: orders that must not queue behind work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Control {
    Cancel {
        queue_item_id: Uuid,
        attempt: u32,
        mode: CancelMode,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Completed,
    Failed,
    Cancelled,
}

/// Why a run failed: a contract `reason[:detail]` code and whether another attempt may help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// `device_error`, `flow_error:<screen>`, `account_outcome:<what>`, …
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

/// What happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    /// The order is journaled on the agent; the run will start.
    Accepted,
    StepStarted {
        step: String,
    },
    StepFinished {
        step: String,
    },
    /// Progress counters as JSON text (e.g. `{"videos_watched": 2}`).
    Progress {
        counters_json: String,
    },
    /// The run is alive (extends the lease).
    Heartbeat,
    /// Evidence stored in the object store under `object`.
    Evidence {
        object: String,
        kind: String,
    },
    Finished {
        outcome: Outcome,
        result_json: String,
        error: Option<RunError>,
    },
}

/// `pf.evt.<agent_id>.run`: one milestone of one attempt. `(queue_item_id, attempt, seq)` is
/// unique: replays are no-ops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    pub queue_item_id: Uuid,
    pub attempt: u32,
    pub seq: u64,
    pub at_unix_ms: i64,
    pub kind: EventKind,
}

impl AgentEvent {
    /// The deterministic JetStream message id: a retried publish is stored once.
    pub fn msg_id(&self) -> String {
        format!("{}:{}:{}", self.queue_item_id, self.attempt, self.seq)
    }
}

/// A phone's connection state as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhoneState {
    Online,
    Unauthorized,
    Offline,
    NeedsAttention,
}

/// One phone in an inventory report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneStatus {
    pub phone_id: String,
    pub serial: String,
    /// `usb` or `tcp`.
    pub transport: String,
    /// USB bus-port path (`1-2.3`) or `host:port`.
    pub location: String,
    pub state: PhoneState,
    pub model: Option<String>,
    pub android_version: Option<String>,
    pub battery_level: Option<u8>,
    /// Tenths of a degree Celsius, as `dumpsys battery` reports it.
    pub temperature_decicelsius: Option<i16>,
    pub storage_free_bytes: Option<u64>,
    pub screen_on: Option<bool>,
    pub app_version: Option<String>,
    pub current_queue_item_id: Option<Uuid>,
}

/// `pf.evt.<agent_id>.inventory`: every phone, sent on change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub agent_id: String,
    /// Increases with every report of this agent process.
    pub seq: u64,
    pub at_unix_ms: i64,
    pub phones: Vec<PhoneStatus>,
}

/// Value of the agent's key in the `pf_agents` KV bucket, written every 10 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub agent_id: String,
    pub version: String,
    pub host: String,
    pub started_at_unix_ms: i64,
    pub phones: u32,
}

/// Whether `s` can be one token of a subject (agent ids, phone ids): no `.`, `*`, `>`,
/// whitespace or control characters, not empty, at most 64 bytes.
pub fn is_subject_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn order() -> WorkOrder {
        WorkOrder {
            queue_item_id: id(1),
            attempt: 2,
            run_id: id(3),
            process_id: Some(id(4)),
            capability: Capability::KeywordWarmup,
            phone_id: "SIM0001".into(),
            account_id: "acc-1".into(),
            inputs_json: "{}".into(),
            flow_pack_version: None,
            deadline_unix_ms: 1_774_000_000_000,
        }
    }

    #[test]
    fn round_trips() {
        let o = order();
        assert_eq!(decode::<WorkOrder>(&encode(&o)).unwrap(), o);
        let e = AgentEvent {
            queue_item_id: id(1),
            attempt: 1,
            seq: 7,
            at_unix_ms: 5,
            kind: EventKind::Finished {
                outcome: Outcome::Failed,
                result_json: "{}".into(),
                error: Some(RunError {
                    code: "device_error".into(),
                    message: "usb".into(),
                    retryable: true,
                }),
            },
        };
        assert_eq!(decode::<AgentEvent>(&encode(&e)).unwrap(), e);
        assert_eq!(e.msg_id(), format!("{}:1:7", id(1)));
    }

    #[test]
    fn refuses_unknown_versions_and_garbage() {
        let mut bytes = encode(&order());
        bytes[0] = 9;
        assert!(matches!(
            decode::<WorkOrder>(&bytes),
            Err(WireError::UnknownVersion(9))
        ));
        assert!(matches!(
            decode::<WorkOrder>(&[1, 0xff]),
            Err(WireError::Decode(_))
        ));
        assert!(decode::<WorkOrder>(&[]).is_err());
    }

    /// Golden bytes: these change only when the layout changes, which must not happen for a
    /// released message (append a variant or bump the envelope instead).
    #[test]
    fn golden_bytes() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("order", encode(&order())),
            (
                "cancel",
                encode(&Control::Cancel {
                    queue_item_id: id(9),
                    attempt: 3,
                    mode: CancelMode::Hard,
                }),
            ),
            (
                "presence",
                encode(&Presence {
                    agent_id: "a".into(),
                    version: "1".into(),
                    host: "h".into(),
                    started_at_unix_ms: 1,
                    phones: 2,
                }),
            ),
            (
                "event",
                encode(&AgentEvent {
                    queue_item_id: id(1),
                    attempt: 1,
                    seq: 300,
                    at_unix_ms: -1,
                    kind: EventKind::StepStarted { step: "s".into() },
                }),
            ),
        ];
        let golden = [
            (
                "order",
                "01 1001010101010101010101010101010101 02 1003030303030303030303030303030303 01 1004040404040404040404040404040404 00 0753494d30303031 056163632d31 027b7d 00 80b09eaaa167",
            ),
            ("cancel", "01 00 1009090909090909090909090909090909 03 01"),
            ("presence", "01 0161 0131 0168 02 02"),
            (
                "event",
                "01 1001010101010101010101010101010101 01 ac02 01 01 0173",
            ),
        ];
        for ((name, bytes), (_, want)) in cases.iter().zip(golden) {
            assert_eq!(hex(bytes), want.replace(' ', ""), "{name} changed layout");
        }
    }

    #[test]
    fn subject_tokens() {
        assert!(is_subject_token("rack-01"));
        assert!(is_subject_token("SIM0001"));
        for bad in ["", "a.b", "a*", "a>", "a b", "é"] {
            assert!(!is_subject_token(bad), "{bad:?}");
        }
    }
}
