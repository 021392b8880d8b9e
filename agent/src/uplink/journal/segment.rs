//! The journal's segment format, pure (no I/O): a segment is a sequence of frames
//! `[len: u32 LE][crc32 of payload: u32 LE][payload]`, each payload one [`Entry`] in the shared
//! versioned postcard envelope; [`State`] is what replaying entries gives. The writer
//! (`super`) appends frames and syncs them; `agent/fuzz` fuzzes [`parse_frames`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use phonefarm_shared::{AgentEvent, EventKind, WorkOrder};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long records of finished orders are kept to recognise redeliveries.
pub const FINISHED_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Largest frame payload accepted on replay (a longer length field is corruption).
pub const FRAME_MAX: usize = 4 << 20;

/// An entry longer than [`FRAME_MAX`] once encoded (replay would take it for corruption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge(pub usize);

/// What the journal keeps about one accepted order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order: WorkOrder,
    /// The `seq` the next event of this attempt gets (events start at 1).
    pub next_seq: u64,
    /// `Finished` was journaled: the run is over.
    pub finished: bool,
    /// When `Finished` was journaled (Unix ms); records older than [`FINISHED_RETENTION`]
    /// are pruned.
    #[serde(default)]
    pub finished_at_unix_ms: Option<i64>,
}

/// One log entry. Stored with postcard: add variants at the end only, never reorder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// A whole order record (checkpoints and imports).
    Record(OrderRecord),
    /// A new order; its record starts at `next_seq` 1.
    Order(WorkOrder),
    /// An event of an accepted order; moves the order's `next_seq` past it.
    Event { id: u64, event: AgentEvent },
    /// Events the stream stored: no longer pending.
    Acked(Vec<u64>),
    /// Records past their retention: forgotten.
    Forget(Vec<(Uuid, u32)>),
}

/// What replaying the log gives: every order record and every unacknowledged event.
#[derive(Debug, Default)]
pub struct State {
    pub orders: HashMap<(Uuid, u32), OrderRecord>,
    pub pending: BTreeMap<u64, AgentEvent>,
    pub next_id: u64,
}

impl State {
    pub fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Record(rec) => {
                self.orders
                    .insert((rec.order.queue_item_id, rec.order.attempt), rec);
            }
            Entry::Order(order) => {
                self.orders.insert(
                    (order.queue_item_id, order.attempt),
                    OrderRecord {
                        order,
                        next_seq: 1,
                        finished: false,
                        finished_at_unix_ms: None,
                    },
                );
            }
            Entry::Event { id, event } => {
                self.next_id = self.next_id.max(id + 1);
                if let Some(rec) = self.orders.get_mut(&(event.queue_item_id, event.attempt)) {
                    rec.next_seq = rec.next_seq.max(event.seq + 1);
                    if matches!(event.kind, EventKind::Finished { .. }) {
                        rec.finished = true;
                        rec.finished_at_unix_ms.get_or_insert(event.at_unix_ms);
                    }
                }
                self.pending.insert(id, event);
            }
            Entry::Acked(ids) => {
                for id in ids {
                    self.pending.remove(&id);
                }
            }
            Entry::Forget(keys) => {
                for key in keys {
                    self.orders.remove(&key);
                }
            }
        }
    }

    /// The records of orders finished more than [`FINISHED_RETENTION`] before `now_ms`.
    pub fn expired(&self, now_ms: i64) -> Vec<(Uuid, u32)> {
        let horizon = now_ms
            .saturating_sub(i64::try_from(FINISHED_RETENTION.as_millis()).unwrap_or(i64::MAX));
        let mut keys: Vec<_> = self
            .orders
            .iter()
            .filter(|(_, r)| r.finished && r.finished_at_unix_ms.is_some_and(|t| t < horizon))
            .map(|(k, _)| *k)
            .collect();
        keys.sort();
        keys
    }

    /// The entries that rebuild this state: every record, then every pending event in order.
    pub fn checkpoint(&self) -> Vec<Entry> {
        let mut records: Vec<&OrderRecord> = self.orders.values().collect();
        records.sort_by_key(|r| (r.order.queue_item_id, r.order.attempt));
        records
            .into_iter()
            .map(|r| Entry::Record(r.clone()))
            .chain(self.pending.iter().map(|(&id, event)| Entry::Event {
                id,
                event: event.clone(),
            }))
            .collect()
    }

    pub fn unfinished_orders(&self) -> Vec<WorkOrder> {
        let mut v: Vec<_> = self
            .orders
            .values()
            .filter(|r| !r.finished)
            .map(|r| r.order.clone())
            .collect();
        v.sort_by_key(|o| (o.queue_item_id, o.attempt));
        v
    }
}

/// Appends `entry` as one frame to `buf`; an entry replay would take for corruption (longer
/// than [`FRAME_MAX`]) is refused.
pub fn frame(entry: &Entry, buf: &mut Vec<u8>) -> Result<(), TooLarge> {
    let payload = phonefarm_shared::encode(entry);
    if payload.len() > FRAME_MAX {
        return Err(TooLarge(payload.len()));
    }
    let len = u32::try_from(payload.len()).map_err(|_| TooLarge(payload.len()))?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

/// Every entry framed in `bytes` up to the first torn or corrupt frame; a frame whose checksum
/// holds but that does not decode (written by a newer agent) is skipped with a warning. `path`
/// names the segment in the log lines.
pub fn parse_frames(bytes: &[u8], path: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else {
            tracing::warn!(path = %path.display(), at, "journal ends in a torn frame header");
            break;
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let payload = (len <= FRAME_MAX)
            .then(|| bytes.get(at + 8..at + 8 + len))
            .flatten();
        let Some(payload) = payload.filter(|p| crc32fast::hash(p) == crc) else {
            tracing::warn!(path = %path.display(), at, "journal ends in a torn or corrupt frame");
            break;
        };
        match phonefarm_shared::decode::<Entry>(payload) {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                tracing::warn!(path = %path.display(), at, error = %e, "undecodable journal entry skipped");
            }
        }
        at += 8 + len;
    }
    entries
}
