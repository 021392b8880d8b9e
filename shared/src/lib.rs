//! The wire contract between the coordinator and its agents: message types, subjects and the
//! versioned postcard envelope. This crate does no I/O and depends on serde, postcard, uuid and
//! time only, so both sides agree on bytes without sharing any runtime.
//!
//! postcard is not self-describing: a released message's fields and variants are never
//! reordered, removed or inserted. New fields go into new variants or a new envelope version,
//! appended at the end. The golden-bytes tests at the bottom fail on any layout change.

pub mod screen;
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
    /// Restart the phone (`adb reboot`), for an operator. The agent refuses it (logged) while
    /// a run executes on the phone and keeps work off the phone until it has booted again.
    Reboot {
        phone_id: String,
        /// Names the order: in the logs, and in the agent's `PhoneOpReport`s about it.
        request_id: Uuid,
    },
    /// Wake the phone and show a full-screen colour for `for_seconds`, so a technician finds
    /// it on the rack; refused while a run executes, and no work starts meanwhile.
    Locate {
        phone_id: String,
        request_id: Uuid,
        for_seconds: u32,
    },
}

/// How an operator's phone action (`Control::Reboot`, `Control::Locate`) went on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpOutcome {
    /// The phone is held and the action under way.
    Started,
    /// Not started: nothing was done (a run executes on the phone, or it is not this agent's).
    Refused { reason: String },
    /// Finished: the phone is back after its reboot, or the locate colour was shown and left.
    Done,
    /// Started but did not complete (the reboot command failed, the phone did not come back
    /// in time, the colour could not be shown).
    Failed { reason: String },
}

impl OpOutcome {
    /// `started`, `refused`, `done`, `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            OpOutcome::Started => "started",
            OpOutcome::Refused { .. } => "refused",
            OpOutcome::Done => "done",
            OpOutcome::Failed { .. } => "failed",
        }
    }
}

/// `pf.evt.<agent_id>.ops`: what became of one operator's phone action, sent when it starts
/// (or is refused) and when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneOpReport {
    pub agent_id: String,
    pub phone_id: String,
    /// The `request_id` of the `Control` order.
    pub request_id: Uuid,
    /// `reboot` or `locate`.
    pub action: String,
    pub at_unix_ms: i64,
    pub outcome: OpOutcome,
}

/// `pf.watch.<agent_id>` (core NATS, never stored): someone is watching the phone's screen;
/// capture it about once a second for `for_seconds` more. Viewers renew it every few seconds,
/// so a lost one costs a frame or two and a stopped viewer stops the capture soon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    pub phone_id: String,
    pub for_seconds: u32,
}

/// `pf.screen.<agent_id>.<phone_id>` (core NATS, never stored): one capture of the phone's
/// screen (`screencap -p`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenFrame {
    pub phone_id: String,
    /// Increases with every frame of this phone's capture loop.
    pub seq: u64,
    pub at_unix_ms: i64,
    pub png: Vec<u8>,
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
    /// The flow pack the run chose for the installed app (sent once, before the flow's first
    /// step), so outcomes can be counted per pack revision. A run refused before it reached
    /// the app (inputs, health) sends none.
    PackChosen {
        name: String,
        revision: u32,
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

/// Value of a key in the `pf_flows` KV bucket: a flow pack's TOML, signed (ed25519) by a
/// publisher key. Agents apply it only if `signer` is in their trust list and `signature`
/// verifies over [`pack_signing_input`] of the key it was read under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPack {
    pub toml: String,
    /// The signer's ed25519 public key (32 bytes).
    pub signer: Vec<u8>,
    /// The ed25519 signature (64 bytes).
    pub signature: Vec<u8>,
}

/// What a pack signature covers: a domain tag, the KV key (so a signed pack cannot be replayed
/// under another key) and the TOML.
pub fn pack_signing_input(key: &str, toml: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + key.len() + toml.len());
    out.extend_from_slice(b"phonefarm-flowpack-v1\0");
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    out.extend_from_slice(toml.as_bytes());
    out
}

/// One flow pack an agent runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRunning {
    pub name: String,
    pub revision: u32,
    /// SHA-256 of the pack's TOML, hex.
    pub sha256: String,
    /// The KV key and revision it came from; None for a pack shipped on the agent's disk.
    pub kv: Option<(String, u64)>,
}

/// A pack from KV the agent refused (it keeps the packs it has).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRejected {
    pub key: String,
    pub kv_revision: u64,
    /// The signer's public key as given (`ed25519:<base64>`), if the value named one.
    pub signer: Option<String>,
    /// Why: `unsigned`, `untrusted_signer`, `bad_signature`, `invalid:<detail>`, ...
    pub reason: String,
}

/// `pf.evt.<agent_id>.packs`: the flow packs an agent runs and those it refused, sent at
/// start, on every change and after every reconnect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackReport {
    pub agent_id: String,
    /// Increases with every report of this agent process.
    pub seq: u64,
    pub at_unix_ms: i64,
    pub running: Vec<PackRunning>,
    pub rejected: Vec<PackRejected>,
}

/// Whether `s` can be one token of a subject (agent ids, phone ids): no `.`, `*`, `>`,
/// whitespace or control characters, not empty, at most 64 bytes.
pub fn is_subject_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'))
}

/// The userinfo (`user:password@`, `token@`) of one URL, if it has one: (start, end) of the
/// part before the last `@` of the authority.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
    authority.rfind('@').map(|at| (start, start + at))
}

/// Whether any of the comma-separated URLs in `urls` carries credentials.
pub fn url_has_secret(urls: &str) -> bool {
    urls.split(',').any(|u| userinfo(u.trim()).is_some())
}

/// `urls` (one URL or several, comma-separated) as it may be logged: credentials in a URL
/// (`nats://user:pass@host`, `nats://token@host`) become `***`.
pub fn redact_url(urls: &str) -> String {
    urls.split(',')
        .map(|u| match userinfo(u) {
            Some((start, end)) => format!("{}***{}", &u[..start], &u[end..]),
            None => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
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
            (
                "signed_pack",
                encode(&SignedPack {
                    toml: "t".into(),
                    signer: vec![1, 2],
                    signature: vec![3],
                }),
            ),
            (
                "pack_report",
                encode(&PackReport {
                    agent_id: "a".into(),
                    seq: 1,
                    at_unix_ms: 2,
                    running: vec![PackRunning {
                        name: "p".into(),
                        revision: 3,
                        sha256: "h".into(),
                        kv: Some(("k".into(), 4)),
                    }],
                    rejected: vec![PackRejected {
                        key: "k".into(),
                        kv_revision: 5,
                        signer: None,
                        reason: "r".into(),
                    }],
                }),
            ),
            (
                "reboot",
                encode(&Control::Reboot {
                    phone_id: "p".into(),
                    request_id: id(2),
                }),
            ),
            (
                "locate",
                encode(&Control::Locate {
                    phone_id: "p".into(),
                    request_id: id(2),
                    for_seconds: 300,
                }),
            ),
            (
                "watch",
                encode(&Watch {
                    phone_id: "p".into(),
                    for_seconds: 10,
                }),
            ),
            (
                "pack_chosen",
                encode(&AgentEvent {
                    queue_item_id: id(1),
                    attempt: 1,
                    seq: 2,
                    at_unix_ms: 3,
                    kind: EventKind::PackChosen {
                        name: "p".into(),
                        revision: 4,
                    },
                }),
            ),
            (
                "phone_op",
                encode(&PhoneOpReport {
                    agent_id: "a".into(),
                    phone_id: "p".into(),
                    request_id: id(2),
                    action: "r".into(),
                    at_unix_ms: 1,
                    outcome: OpOutcome::Refused { reason: "b".into() },
                }),
            ),
            (
                "screen_frame",
                encode(&ScreenFrame {
                    phone_id: "p".into(),
                    seq: 1,
                    at_unix_ms: 2,
                    png: vec![0x89, 0x50],
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
            ("signed_pack", "01 0174 020102 0103"),
            (
                "pack_report",
                "01 0161 01 04 01 0170 03 0168 01 016b 04 01 016b 05 00 0172",
            ),
            ("reboot", "01 01 0170 1002020202020202020202020202020202"),
            (
                "locate",
                "01 02 0170 1002020202020202020202020202020202 ac02",
            ),
            ("watch", "01 0170 0a"),
            (
                "pack_chosen",
                "01 1001010101010101010101010101010101 01 02 06 07 0170 04",
            ),
            (
                "phone_op",
                "01 0161 0170 1002020202020202020202020202020202 0172 02 01 0162",
            ),
            ("screen_frame", "01 0170 01 04 028950"),
        ];
        assert_eq!(cases.len(), golden.len());
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

    #[test]
    fn pack_signatures_cover_the_key() {
        assert_eq!(
            pack_signing_input("k", "t"),
            b"phonefarm-flowpack-v1\0k\0t".to_vec()
        );
        assert_ne!(pack_signing_input("a", "bc"), pack_signing_input("ab", "c"));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact_url("nats://user:s3cret@host:4222,tls://tok@h2:4222/x@y"),
            "nats://***@host:4222,tls://***@h2:4222/x@y"
        );
        assert_eq!(redact_url("u:p@host:4222"), "***@host:4222");
        assert!(url_has_secret("nats://a:4222, nats://u:p@b:4222"));
        assert!(!url_has_secret("nats://a:4222,nats://b:4222/p@q"));
    }
}
