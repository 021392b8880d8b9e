//! The on-disk journal: work orders the agent accepted, and every run event until the event
//! stream acknowledged it. A write returns once it is durable, so a crash, a restart or a NATS
//! outage loses nothing.
//!
//! It is an append-only log under `<dir>/wal/`: numbered segments (`<generation>.wal`) of
//! frames `[len: u32 LE][crc32 of payload: u32 LE][payload]`, each payload one [`Entry`] in the
//! shared versioned postcard envelope. Writers append under a mutex and then wait for an
//! `fdatasync` that covers their bytes; one sync covers every writer waiting at that moment
//! (group commit), so a burst of admissions and the events of the runs already going share one
//! sync instead of queueing one file write each behind the lock. Acknowledgements are appended
//! without waiting for a sync: one lost in a crash only republishes an event the stream drops
//! as a duplicate (same msg id).
//!
//! Replay reads every frame up to the first torn or corrupt one (a crash mid-write leaves at
//! most an unfinished tail). Opening the journal replays it, then writes a checkpoint (every
//! order record and every unacknowledged event) as a new segment, syncs it and deletes the old
//! ones; so does a segment growing past [`SEGMENT_LIMIT`]. A lock file keeps a second process
//! out. Journals of the earlier layout (`orders/*.json`, `events/*.evt`) are imported at open.
//!
//! Records of finished orders are kept for [`FINISHED_RETENTION`], so a redelivered order is
//! recognised and not run twice.
//!
//! Blocking file I/O: call it from `spawn_blocking` (the publisher and the runner do).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use phonefarm_shared::{AgentEvent, EventKind, WorkOrder};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long records of finished orders are kept to recognise redeliveries.
pub const FINISHED_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// A segment longer than this is replaced by a checkpoint at the next write.
pub const SEGMENT_LIMIT: u64 = 8 << 20;

/// Largest frame payload accepted on replay (a longer length field is corruption).
const FRAME_MAX: usize = 4 << 20;

/// Above this many records, each batch of new orders forgets the expired ones.
const PRUNE_ABOVE: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal i/o on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no journaled order {queue_item_id} attempt {attempt}")]
    UnknownOrder { queue_item_id: Uuid, attempt: u32 },
    #[error("order {queue_item_id} attempt {attempt} is already finished")]
    AlreadyFinished { queue_item_id: Uuid, attempt: u32 },
    #[error("the journal is closed")]
    Closed,
    #[error("the journal in {path} is in use by another process")]
    Locked { path: PathBuf },
    #[error("the journal cannot write: {0}")]
    Failed(String),
    #[error("a journal entry of {0} bytes is too large")]
    TooLarge(usize),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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

/// One journaled, not yet acknowledged event; `id` is its place in the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct JournaledEvent {
    pub id: u64,
    pub event: AgentEvent,
}

/// Outcome of [`Journal::accept_order`].
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// New order: journaled, and its `Accepted` event with it.
    New(JournaledEvent),
    /// This (queue item, attempt) was journaled before; `finished` tells whether it ran.
    Known { finished: bool },
}

/// One log entry. Stored with postcard: add variants at the end only, never reorder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Entry {
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
struct State {
    orders: HashMap<(Uuid, u32), OrderRecord>,
    pending: BTreeMap<u64, AgentEvent>,
    next_id: u64,
}

impl State {
    fn apply(&mut self, entry: Entry) {
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
    fn expired(&self, now_ms: i64) -> Vec<(Uuid, u32)> {
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
    fn checkpoint(&self) -> Vec<Entry> {
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

    fn unfinished_orders(&self) -> Vec<WorkOrder> {
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
fn frame(entry: &Entry, buf: &mut Vec<u8>) -> Result<(), JournalError> {
    let payload = phonefarm_shared::encode(entry);
    if payload.len() > FRAME_MAX {
        return Err(JournalError::TooLarge(payload.len()));
    }
    let len = u32::try_from(payload.len()).map_err(|_| JournalError::TooLarge(payload.len()))?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

/// Every entry of a segment up to its first torn or corrupt frame. A frame whose checksum
/// holds but that does not decode (written by a newer agent) is skipped with a warning.
fn read_segment(path: &Path) -> Result<Vec<Entry>, JournalError> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    Ok(parse_frames(&bytes, path))
}

fn parse_frames(bytes: &[u8], path: &Path) -> Vec<Entry> {
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

/// The segments under `wal`, oldest first.
fn segments(wal: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(wal).map_err(io(wal))? {
        let path = entry.map_err(io(wal))?.path();
        if path.extension().is_none_or(|e| e != "wal") {
            continue;
        }
        if let Some(generation) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        {
            found.push((generation, path));
        }
    }
    found.sort();
    Ok(found)
}

fn segment_path(wal: &Path, generation: u64) -> PathBuf {
    wal.join(format!("{generation:020}.wal"))
}

/// Replays what is on disk under `dir` without writing anything: the earlier layout's files,
/// then every segment.
fn replay(dir: &Path) -> Result<(State, Vec<(u64, PathBuf)>), JournalError> {
    let mut state = State {
        next_id: 1,
        ..State::default()
    };
    legacy::import(dir, &mut state)?;
    let wal = dir.join("wal");
    let segments = if wal.is_dir() {
        segments(&wal)?
    } else {
        Vec::new()
    };
    for (_, path) in &segments {
        for entry in read_segment(path)? {
            state.apply(entry);
        }
    }
    Ok((state, segments))
}

/// Writes `data` to `path` atomically and durably: temp file, fsync, rename, fsync directory.
pub(crate) fn write_durable(dir: &Path, path: &Path, data: &[u8]) -> Result<(), JournalError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A read-only look at a journal another process (or task) may be writing: for tests and
/// diagnostics. It takes no lock and writes nothing.
#[derive(Debug)]
pub struct JournalView {
    state: State,
}

impl JournalView {
    pub fn read(dir: &Path) -> Result<Self, JournalError> {
        Ok(Self {
            state: replay(dir)?.0,
        })
    }

    pub fn order(&self, queue_item_id: Uuid, attempt: u32) -> Option<&OrderRecord> {
        self.state.orders.get(&(queue_item_id, attempt))
    }

    pub fn orders(&self) -> usize {
        self.state.orders.len()
    }

    /// Events journaled and not acknowledged.
    pub fn pending_count(&self) -> usize {
        self.state.pending.len()
    }
}

struct Inner {
    /// Set by [`Journal::close`]: no more writes (another process may own the directory).
    closed: bool,
    /// A write or sync failed: what is on disk after it is unknown, so nothing more is written.
    failed: Option<String>,
    state: State,
    /// The segment being appended to, and its generation and length.
    file: Arc<fs::File>,
    generation: u64,
    segment_len: u64,
    /// Bytes appended by this process (across segments), and how many of them are synced.
    written: u64,
    synced: u64,
    /// A thread is syncing (without the lock); the others wait on `Journal::synced`.
    syncing: bool,
    /// Held while open; dropped by [`Journal::close`].
    lock: Option<fs::File>,
}

/// The journal; cheap to share behind an `Arc`.
pub struct Journal {
    wal: PathBuf,
    inner: Mutex<Inner>,
    synced: Condvar,
    /// Events with a smaller id were journaled by an earlier process.
    replay_below: u64,
    /// A segment longer than this is replaced by a checkpoint ([`SEGMENT_LIMIT`]).
    segment_limit: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("wal", &self.wal)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (creating) the journal under `dir`: takes its lock, replays it (importing the
    /// earlier layout), forgets records past their retention and writes the checkpoint that
    /// replaces every older segment.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        let wal = dir.join("wal");
        fs::create_dir_all(&wal).map_err(io(&wal))?;
        let lock_path = wal.join("LOCK");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(JournalError::Locked { path: wal }),
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let (mut state, old) = replay(dir)?;
        state.apply(Entry::Forget(state.expired(now_ms())));
        let generation = old.last().map_or(1, |(g, _)| g + 1);
        let (file, len) = write_checkpoint(&wal, generation, &state)?;
        // The checkpoint holds everything: what cannot be deleted now is replayed before it
        // next time (older segments and the earlier layout come first), which changes nothing.
        for (_, path) in &old {
            if let Err(e) = fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an old journal segment");
            }
        }
        if let Err(e) = legacy::remove(dir) {
            tracing::warn!(error = %e, "cannot delete the earlier journal layout");
        }
        let replay_below = state.next_id;
        Ok(Self {
            wal,
            inner: Mutex::new(Inner {
                closed: false,
                failed: None,
                state,
                file: Arc::new(file),
                generation,
                segment_len: len,
                written: 0,
                synced: 0,
                syncing: false,
                lock: Some(lock),
            }),
            synced: Condvar::new(),
            replay_below,
            segment_limit: SEGMENT_LIMIT,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The journal accepts writes: not closed, no earlier failure.
    fn writable(inner: &Inner) -> Result<(), JournalError> {
        if inner.closed {
            return Err(JournalError::Closed);
        }
        match &inner.failed {
            Some(why) => Err(JournalError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Appends `entries` to the segment and applies them to the state; returns the log
    /// position a sync must reach for them to be durable. A failed write is cut off again and
    /// changes nothing (a disk that was full may take the next one); if even that fails, the
    /// journal fails.
    fn write(&self, inner: &mut Inner, entries: Vec<Entry>) -> Result<u64, JournalError> {
        let mut buf = Vec::new();
        for entry in &entries {
            frame(entry, &mut buf)?;
        }
        self.write_framed(inner, &buf, entries)
    }

    /// [`Journal::write`] of entries already framed into `buf`.
    fn write_framed(
        &self,
        inner: &mut Inner,
        buf: &[u8],
        entries: Vec<Entry>,
    ) -> Result<u64, JournalError> {
        let path = segment_path(&self.wal, inner.generation);
        if let Err(e) = (&*inner.file).write_all(buf) {
            if let Err(cut) = inner.file.set_len(inner.segment_len) {
                inner.failed = Some(format!(
                    "writing {}: {e}; cutting the partial write off: {cut}",
                    path.display()
                ));
            }
            return Err(io(&path)(e));
        }
        for entry in entries {
            inner.state.apply(entry);
        }
        inner.segment_len += buf.len() as u64;
        inner.written += buf.len() as u64;
        if inner.segment_len > self.segment_limit {
            self.rotate(inner)?;
        }
        Ok(inner.written)
    }

    /// Replaces the segment with a checkpoint of the state (synced), then deletes it.
    fn rotate(&self, inner: &mut Inner) -> Result<(), JournalError> {
        let generation = inner.generation + 1;
        match write_checkpoint(&self.wal, generation, &inner.state) {
            Ok((file, len)) => {
                let old = segment_path(&self.wal, inner.generation);
                inner.file = Arc::new(file);
                inner.generation = generation;
                inner.segment_len = len;
                // The checkpoint holds everything written so far, durably.
                inner.synced = inner.written;
                self.synced.notify_all();
                if let Err(e) = fs::remove_file(&old) {
                    tracing::warn!(path = %old.display(), error = %e, "cannot delete an old journal segment");
                }
                Ok(())
            }
            Err(e) => {
                inner.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Waits until the log is synced up to `target`, syncing it if no other thread is: one
    /// `fdatasync` covers every writer that appended before it started.
    fn sync_to<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        target: u64,
    ) -> Result<(), JournalError> {
        loop {
            if inner.synced >= target {
                return Ok(());
            }
            if let Some(why) = &inner.failed {
                return Err(JournalError::Failed(why.clone()));
            }
            if inner.syncing {
                inner = self.synced.wait(inner).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            inner.syncing = true;
            let upto = inner.written;
            let file = inner.file.clone();
            let path = segment_path(&self.wal, inner.generation);
            drop(inner);
            let result = file.sync_data();
            inner = self.lock();
            inner.syncing = false;
            match result {
                Ok(()) => inner.synced = inner.synced.max(upto),
                Err(e) => {
                    inner.failed = Some(format!("syncing {}: {e}", path.display()));
                    self.synced.notify_all();
                    return Err(io(&path)(e));
                }
            }
            self.synced.notify_all();
        }
    }

    /// Events journaled by an earlier process and not yet acknowledged, oldest first (the
    /// publisher replays them at start; events of this process reach it as they are written).
    pub fn replay_events(&self) -> Vec<JournaledEvent> {
        self.lock()
            .state
            .pending
            .range(..self.replay_below)
            .map(|(&id, event)| JournaledEvent {
                id,
                event: event.clone(),
            })
            .collect()
    }

    /// Whether this (queue item, attempt) was journaled (finished or not).
    pub fn knows(&self, queue_item_id: Uuid, attempt: u32) -> bool {
        self.lock()
            .state
            .orders
            .contains_key(&(queue_item_id, attempt))
    }

    /// Orders journaled but not finished (their runs were cut short by a restart).
    pub fn unfinished_orders(&self) -> Vec<WorkOrder> {
        self.lock().state.unfinished_orders()
    }

    /// The record of one order, if journaled.
    pub fn order(&self, queue_item_id: Uuid, attempt: u32) -> Option<OrderRecord> {
        self.lock()
            .state
            .orders
            .get(&(queue_item_id, attempt))
            .cloned()
    }

    /// Refuses every later write and gives up the lock; waits for a write in progress. Called
    /// when the agent stops, so a task that outlives it cannot write behind the back of the
    /// next process.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.lock = None;
    }

    /// Journals a new order and its `Accepted` event (seq 1), or reports it as known.
    #[cfg(test)]
    pub fn accept_order(&self, order: &WorkOrder) -> Result<Admission, JournalError> {
        self.accept_orders(std::slice::from_ref(order))
            .pop()
            .unwrap_or(Err(JournalError::Closed))
    }

    /// Journals new orders and their `Accepted` events (seq 1) together, or reports them as
    /// known; one result per order, in order. The batch is one append and one sync.
    pub fn accept_orders(&self, orders: &[WorkOrder]) -> Vec<Result<Admission, JournalError>> {
        let mut inner = self.lock();
        if inner.closed || inner.failed.is_some() {
            let failed = inner.failed.clone();
            return orders
                .iter()
                .map(|_| {
                    Err(failed
                        .clone()
                        .map_or(JournalError::Closed, JournalError::Failed))
                })
                .collect();
        }
        let mut out = Vec::with_capacity(orders.len());
        let mut entries = Vec::new();
        let mut buf = Vec::new();
        let mut in_batch = HashSet::new();
        let mut id = inner.state.next_id;
        for order in orders {
            let key = (order.queue_item_id, order.attempt);
            if let Some(rec) = inner.state.orders.get(&key) {
                out.push(Ok(Admission::Known {
                    finished: rec.finished,
                }));
            } else if !in_batch.insert(key) {
                // The same order twice in one batch: the first is journaled.
                out.push(Ok(Admission::Known { finished: false }));
            } else {
                let event = AgentEvent {
                    queue_item_id: order.queue_item_id,
                    attempt: order.attempt,
                    seq: 1,
                    at_unix_ms: now_ms(),
                    kind: EventKind::Accepted,
                };
                let new = [
                    Entry::Order(order.clone()),
                    Entry::Event {
                        id,
                        event: event.clone(),
                    },
                ];
                let framed = buf.len();
                match new.iter().try_for_each(|e| frame(e, &mut buf)) {
                    Ok(()) => {
                        entries.extend(new);
                        out.push(Ok(Admission::New(JournaledEvent { id, event })));
                        id += 1;
                    }
                    Err(e) => {
                        // Refused alone, not with the batch.
                        buf.truncate(framed);
                        out.push(Err(e));
                    }
                }
            }
        }
        if inner.state.orders.len() > PRUNE_ABOVE {
            let expired = inner.state.expired(now_ms());
            if !expired.is_empty() {
                let forget = Entry::Forget(expired);
                if frame(&forget, &mut buf).is_ok() {
                    entries.push(forget);
                }
            }
        }
        let durable = if entries.is_empty() {
            Ok(())
        } else {
            match self.write_framed(&mut inner, &buf, entries) {
                Ok(target) => self.sync_to(inner, target),
                Err(e) => Err(e),
            }
        };
        let why = durable.as_ref().err().map(ToString::to_string);
        out.into_iter()
            .map(|a| match (a, &why) {
                (Ok(Admission::New(_)), Some(why)) => Err(JournalError::Failed(why.clone())),
                (a, _) => a,
            })
            .collect()
    }

    /// Journals the next event of an attempt (durably) with its `seq`. `Finished` marks the
    /// order finished; nothing may follow it.
    pub fn append(
        &self,
        queue_item_id: Uuid,
        attempt: u32,
        kind: EventKind,
    ) -> Result<JournaledEvent, JournalError> {
        let mut inner = self.lock();
        Self::writable(&inner)?;
        let rec = inner.state.orders.get(&(queue_item_id, attempt)).ok_or(
            JournalError::UnknownOrder {
                queue_item_id,
                attempt,
            },
        )?;
        if rec.finished {
            return Err(JournalError::AlreadyFinished {
                queue_item_id,
                attempt,
            });
        }
        let id = inner.state.next_id;
        let event = AgentEvent {
            queue_item_id,
            attempt,
            seq: rec.next_seq,
            at_unix_ms: now_ms(),
            kind,
        };
        let entry = Entry::Event {
            id,
            event: event.clone(),
        };
        let target = self.write(&mut inner, vec![entry])?;
        self.sync_to(inner, target)?;
        Ok(JournaledEvent { id, event })
    }

    /// Forgets records of orders finished more than [`FINISHED_RETENTION`] before `now_ms`.
    /// Not synced: a record that comes back after a crash is pruned again.
    pub fn prune(&self, now_ms: i64) -> Result<usize, JournalError> {
        let mut inner = self.lock();
        let expired = inner.state.expired(now_ms);
        let n = expired.len();
        self.write_unsynced(&mut inner, Entry::Forget(expired))?;
        Ok(n)
    }

    /// Forgets acknowledged events. Not synced: an acknowledgement lost in a crash only
    /// republishes an event the stream drops as a duplicate.
    pub fn acked(&self, ids: &[u64]) -> Result<(), JournalError> {
        let mut inner = self.lock();
        self.write_unsynced(&mut inner, Entry::Acked(ids.to_vec()))
    }

    /// Applies and appends an entry that only forgets (no sync). A closed journal writes
    /// nothing: the next process replays what it would have forgotten.
    fn write_unsynced(&self, inner: &mut Inner, entry: Entry) -> Result<(), JournalError> {
        let empty = match &entry {
            Entry::Acked(ids) => ids.is_empty(),
            Entry::Forget(keys) => keys.is_empty(),
            _ => false,
        };
        if empty || inner.closed {
            return Ok(());
        }
        Self::writable(inner)?;
        self.write(inner, vec![entry]).map(drop)
    }

    /// Number of events waiting for their ack (for tests and metrics).
    pub fn pending_count(&self) -> usize {
        self.lock().state.pending.len()
    }
}

/// Writes `state` as segment `generation` and syncs it and the directory; returns the open
/// segment and its length.
fn write_checkpoint(
    wal: &Path,
    generation: u64,
    state: &State,
) -> Result<(fs::File, u64), JournalError> {
    let path = segment_path(wal, generation);
    let mut buf = Vec::new();
    for entry in state.checkpoint() {
        frame(&entry, &mut buf)?;
    }
    let mut file = fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    file.write_all(&buf).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    sync_dir(wal)?;
    Ok((file, buf.len() as u64))
}

/// The earlier layout, one file per record and per event: read once at open and removed
/// after the checkpoint that holds it is durable.
mod legacy {
    use super::{Entry, JournalError, OrderRecord, State, io};
    use phonefarm_shared::AgentEvent;
    use std::fs;
    use std::path::Path;

    pub(super) fn import(dir: &Path, state: &mut State) -> Result<(), JournalError> {
        let orders = dir.join("orders");
        if orders.is_dir() {
            for entry in fs::read_dir(&orders).map_err(io(&orders))? {
                let path = entry.map_err(io(&orders))?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                match fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<OrderRecord>(&b).ok())
                {
                    Some(rec) => state.apply(Entry::Record(rec)),
                    None => {
                        tracing::warn!(path = %path.display(), "unreadable order record dropped")
                    }
                }
            }
        }
        let events = dir.join("events");
        if events.is_dir() {
            let mut found = Vec::new();
            for entry in fs::read_dir(&events).map_err(io(&events))? {
                let path = entry.map_err(io(&events))?.path();
                let id = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u64>().ok());
                if let (Some(id), true) = (id, path.extension().is_some_and(|e| e == "evt")) {
                    found.push((id, path));
                }
            }
            found.sort();
            for (id, path) in found {
                match fs::read(&path)
                    .ok()
                    .and_then(|b| phonefarm_shared::decode::<AgentEvent>(&b).ok())
                {
                    // Records were written after their events: an event moves nothing back.
                    Some(event) => state.apply(Entry::Event { id, event }),
                    None => {
                        tracing::warn!(path = %path.display(), "undecodable journal entry dropped")
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn remove(dir: &Path) -> Result<(), JournalError> {
        for sub in ["orders", "events"] {
            let path = dir.join(sub);
            if path.is_dir() {
                fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonefarm_shared::{Capability, Outcome};

    fn order(n: u8) -> WorkOrder {
        WorkOrder {
            queue_item_id: Uuid::from_bytes([n; 16]),
            attempt: 1,
            run_id: Uuid::from_bytes([n + 1; 16]),
            process_id: None,
            capability: Capability::KeywordWarmup,
            phone_id: "SIM0001".into(),
            account_id: "acc".into(),
            inputs_json: "{}".into(),
            flow_pack_version: None,
            deadline_unix_ms: 0,
        }
    }

    fn finished() -> EventKind {
        EventKind::Finished {
            outcome: Outcome::Completed,
            result_json: "{}".into(),
            error: None,
        }
    }

    fn replayed(dir: &Path) -> Vec<(Uuid, u64)> {
        Journal::open(dir)
            .unwrap()
            .replay_events()
            .iter()
            .map(|e| (e.event.queue_item_id, e.event.seq))
            .collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        segments(&dir.join("wal"))
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    #[test]
    fn orders_and_events_survive_reopen_in_order_with_seq_continuing() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let o = order(1);
        let Admission::New(accepted) = j.accept_order(&o).unwrap() else {
            panic!("new order expected");
        };
        assert_eq!(accepted.event.seq, 1);
        assert_eq!(accepted.event.kind, EventKind::Accepted);
        let step = j
            .append(
                o.queue_item_id,
                1,
                EventKind::StepStarted { step: "s".into() },
            )
            .unwrap();
        assert_eq!(step.event.seq, 2);
        assert!(
            j.replay_events().is_empty(),
            "events of this process are not replayed to it"
        );
        j.acked(&[accepted.id]).unwrap();
        assert_eq!(j.pending_count(), 1);
        drop(j);

        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(
            j.accept_order(&o).unwrap(),
            Admission::Known { finished: false }
        );
        let pending = j.replay_events();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].event, step.event);
        assert_eq!(j.unfinished_orders(), vec![o.clone()]);
        let fin = j.append(o.queue_item_id, 1, finished()).unwrap();
        assert_eq!(fin.event.seq, 3, "seq continues after reopen");
        assert!(fin.id > step.id, "ids continue after reopen");
        assert!(j.unfinished_orders().is_empty());
        assert!(matches!(
            j.append(o.queue_item_id, 1, EventKind::Heartbeat),
            Err(JournalError::AlreadyFinished { .. })
        ));
        j.close();
        drop(j);
        let id = o.queue_item_id;
        assert_eq!(
            replayed(dir.path()),
            [(id, 2), (id, 3)],
            "replay keeps journal order"
        );
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.order(id, 1).unwrap().finished);
        assert_eq!(j.order(id, 1).unwrap().next_seq, 4);
    }

    #[test]
    fn orders_accepted_together_are_journaled_as_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let known = order(10);
        j.accept_order(&known).unwrap();
        let batch = [order(11), known.clone(), order(12), order(11), order(13)];
        let got = j.accept_orders(&batch);
        assert_eq!(got.len(), 5);
        let new: Vec<&AgentEvent> = got
            .iter()
            .filter_map(|r| match r {
                Ok(Admission::New(e)) => Some(&e.event),
                _ => None,
            })
            .collect();
        assert_eq!(
            new.iter().map(|e| e.queue_item_id).collect::<Vec<_>>(),
            [11, 12, 13].map(|n| order(n).queue_item_id),
            "each new order once, in batch order"
        );
        assert!(
            new.iter()
                .all(|e| e.seq == 1 && e.kind == EventKind::Accepted)
        );
        assert_eq!(
            got[1].as_ref().unwrap(),
            &Admission::Known { finished: false }
        );
        assert_eq!(
            got[3].as_ref().unwrap(),
            &Admission::Known { finished: false },
            "the second copy in a batch is known"
        );
        // The next event of a batched order is seq 2, also after a reopen.
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        for n in [11, 12, 13] {
            let o = order(n);
            assert_eq!(j.order(o.queue_item_id, 1).unwrap().next_seq, 2);
            let e = j.append(o.queue_item_id, 1, EventKind::Heartbeat).unwrap();
            assert_eq!(e.event.seq, 2);
        }
        j.close();
        assert!(
            j.accept_orders(&[order(14), order(15)])
                .iter()
                .all(|r| matches!(r, Err(JournalError::Closed)))
        );
        drop(j);
        let id = |n: u8| order(n).queue_item_id;
        assert_eq!(
            replayed(dir.path()),
            [
                (id(10), 1),
                (id(11), 1),
                (id(12), 1),
                (id(13), 1),
                (id(11), 2),
                (id(12), 2),
                (id(13), 2)
            ],
            "replay keeps journal order"
        );
    }

    #[test]
    fn a_closed_journal_refuses_writes_and_lets_the_next_open_it() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(
            matches!(Journal::open(dir.path()), Err(JournalError::Locked { .. })),
            "one process at a time"
        );
        let o = order(2);
        j.accept_order(&o).unwrap();
        j.close();
        assert!(matches!(
            j.append(o.queue_item_id, 1, EventKind::Heartbeat),
            Err(JournalError::Closed)
        ));
        assert!(matches!(
            j.accept_order(&order(3)),
            Err(JournalError::Closed)
        ));
        let next = Journal::open(dir.path()).unwrap();
        assert_eq!(next.pending_count(), 1, "only Accepted was written");
        // The closed one writes nothing behind the next one's back.
        j.acked(&[1]).unwrap();
        drop(next);
        assert_eq!(Journal::open(dir.path()).unwrap().pending_count(), 1);
    }

    #[test]
    fn finished_records_expire_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let (done, open) = (order(4), order(5));
        j.accept_order(&done).unwrap();
        j.accept_order(&open).unwrap();
        let fin = j.append(done.queue_item_id, 1, finished()).unwrap();
        let retention = i64::try_from(FINISHED_RETENTION.as_millis()).unwrap();
        assert_eq!(
            j.prune(fin.event.at_unix_ms + retention - 1).unwrap(),
            0,
            "kept a day"
        );
        assert_eq!(j.prune(fin.event.at_unix_ms + retention + 1).unwrap(), 1);
        assert!(j.order(done.queue_item_id, 1).is_none());
        assert!(
            j.order(open.queue_item_id, 1).is_some(),
            "unfinished orders stay"
        );
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert!(
            j.order(done.queue_item_id, 1).is_none(),
            "forgotten on disk"
        );
        assert!(j.order(open.queue_item_id, 1).is_some());
    }

    #[test]
    fn a_torn_tail_is_dropped_and_what_follows_survives() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.accept_orders(&[order(20), order(21)]);
        drop(j);
        let [segment] = segment_files(dir.path()).try_into().unwrap();
        // A crash mid-append: a header promising more than was written.
        let mut f = fs::OpenOptions::new().append(true).open(&segment).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]).unwrap();
        drop(f);
        let j = Journal::open(dir.path()).unwrap();
        for n in [20, 21] {
            assert!(j.order(order(n).queue_item_id, 1).is_some());
        }
        let e = j
            .append(order(20).queue_item_id, 1, EventKind::Heartbeat)
            .unwrap();
        assert_eq!(e.event.seq, 2);
        drop(j);
        assert_eq!(
            segment_files(dir.path()).len(),
            1,
            "the checkpoint replaced the torn segment"
        );
        let id = |n: u8| order(n).queue_item_id;
        assert_eq!(
            replayed(dir.path()),
            [(id(20), 1), (id(21), 1), (id(20), 2)]
        );
    }

    #[test]
    fn replay_stops_at_a_corrupt_frame() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.accept_order(&order(30)).unwrap();
        let len_before = fs::metadata(&segment_files(dir.path())[0]).unwrap().len();
        j.accept_order(&order(31)).unwrap();
        drop(j);
        let segment = segment_files(dir.path()).remove(0);
        let mut bytes = fs::read(&segment).unwrap();
        let at = usize::try_from(len_before).unwrap() + 12;
        bytes[at] ^= 0xff;
        fs::write(&segment, bytes).unwrap();
        let view = JournalView::read(dir.path()).unwrap();
        assert!(view.order(order(30).queue_item_id, 1).is_some());
        assert!(
            view.order(order(31).queue_item_id, 1).is_none(),
            "nothing after a bad checksum is trusted"
        );
    }

    #[test]
    fn garbage_is_never_fatal() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("wal")).unwrap();
        fs::write(
            dir.path().join("wal/00000000000000000001.wal"),
            b"\xff\xff\xff\xffnot a frame",
        )
        .unwrap();
        fs::write(dir.path().join("wal/7.wal"), [0u8; 3]).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.unfinished_orders().is_empty());
        assert!(
            j.append(Uuid::nil(), 1, EventKind::Heartbeat).is_err(),
            "events need a journaled order"
        );
        assert!(j.accept_order(&order(40)).is_ok());
    }

    #[test]
    fn parse_frames_takes_any_bytes() {
        // Cheap deterministic fuzz: truncations and byte flips of a real log never panic and
        // never yield more entries than were written.
        let mut log = Vec::new();
        let entries = [
            Entry::Order(order(50)),
            Entry::Event {
                id: 1,
                event: AgentEvent {
                    queue_item_id: order(50).queue_item_id,
                    attempt: 1,
                    seq: 1,
                    at_unix_ms: 1,
                    kind: EventKind::Accepted,
                },
            },
            Entry::Acked(vec![1]),
        ];
        for e in &entries {
            frame(e, &mut log).unwrap();
        }
        assert_eq!(parse_frames(&log, Path::new("t")), entries);
        let mut x: u32 = 0x9e37_79b9;
        for cut in 0..log.len() {
            assert!(parse_frames(&log[..cut], Path::new("t")).len() < entries.len());
            let mut bad = log.clone();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bad[cut] ^= (x as u8) | 1;
            assert!(parse_frames(&bad, Path::new("t")).len() <= entries.len());
        }
    }

    #[test]
    fn the_earlier_layout_is_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let o = order(60);
        fs::create_dir_all(dir.path().join("orders")).unwrap();
        fs::create_dir_all(dir.path().join("events")).unwrap();
        let rec = OrderRecord {
            order: o.clone(),
            next_seq: 3,
            finished: false,
            finished_at_unix_ms: None,
        };
        fs::write(
            dir.path()
                .join(format!("orders/{}_1.json", o.queue_item_id)),
            serde_json::to_vec(&rec).unwrap(),
        )
        .unwrap();
        fs::write(dir.path().join("orders/x_1.json"), b"not json").unwrap();
        let event = AgentEvent {
            queue_item_id: o.queue_item_id,
            attempt: 1,
            seq: 2,
            at_unix_ms: 5,
            kind: EventKind::Heartbeat,
        };
        fs::write(
            dir.path().join("events/00000000000000000009.evt"),
            phonefarm_shared::encode(&event),
        )
        .unwrap();
        fs::write(dir.path().join("events/00000000000000000010.evt"), b"\xff").unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.order(o.queue_item_id, 1), Some(rec));
        let pending = j.replay_events();
        assert_eq!(pending, [JournaledEvent { id: 9, event }]);
        let next = j.append(o.queue_item_id, 1, EventKind::Heartbeat).unwrap();
        assert_eq!((next.id, next.event.seq), (10, 3));
        assert!(!dir.path().join("orders").exists());
        assert!(!dir.path().join("events").exists());
        drop(j);
        assert_eq!(
            replayed(dir.path()),
            [(o.queue_item_id, 2), (o.queue_item_id, 3)]
        );
    }

    #[test]
    fn a_long_log_is_replaced_by_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.segment_limit = 4096;
        let o = order(70);
        let Ok(Admission::New(first)) = j.accept_order(&o) else {
            panic!("new order expected");
        };
        j.acked(&[first.id]).unwrap();
        let mut last = None;
        for i in 0..300 {
            let e = j.append(o.queue_item_id, 1, EventKind::Heartbeat).unwrap();
            if i < 299 {
                j.acked(&[e.id]).unwrap();
            }
            last = Some(e);
        }
        let files = segment_files(dir.path());
        assert_eq!(files.len(), 1, "old segments are deleted");
        assert!(fs::metadata(&files[0]).unwrap().len() < 8192);
        assert!(j.lock().generation >= 3, "it rotated");
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.order(o.queue_item_id, 1).unwrap().next_seq, 302);
        assert_eq!(j.replay_events(), [last.unwrap()]);
    }

    #[test]
    fn concurrent_writers_share_syncs_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let j = Arc::new(Journal::open(dir.path()).unwrap());
        let orders: Vec<WorkOrder> = (80..88).map(order).collect();
        j.accept_orders(&orders);
        std::thread::scope(|s| {
            for o in &orders {
                let j = j.clone();
                s.spawn(move || {
                    for want in 2..=41 {
                        let e = j.append(o.queue_item_id, 1, EventKind::Heartbeat).unwrap();
                        assert_eq!(e.event.seq, want);
                    }
                });
            }
        });
        drop(j);
        let view = JournalView::read(dir.path()).unwrap();
        assert_eq!(view.pending_count(), 8 * 41);
        let replay = replayed(dir.path());
        for o in &orders {
            let seqs: Vec<u64> = replay
                .iter()
                .filter(|(id, _)| *id == o.queue_item_id)
                .map(|(_, s)| *s)
                .collect();
            assert_eq!(seqs, (1..=41).collect::<Vec<_>>());
        }
    }

    #[test]
    fn an_order_too_large_to_replay_is_refused_alone() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut big = order(95);
        big.inputs_json = "x".repeat(FRAME_MAX + 1);
        let got = j.accept_orders(&[big.clone(), order(96)]);
        assert!(matches!(got[0], Err(JournalError::TooLarge(_))), "{got:?}");
        assert!(matches!(got[1], Ok(Admission::New(_))), "{got:?}");
        drop(j);
        let view = JournalView::read(dir.path()).unwrap();
        assert!(view.order(big.queue_item_id, 1).is_none());
        assert!(view.order(order(96).queue_item_id, 1).is_some());
    }

    #[test]
    fn a_view_reads_a_journal_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.accept_order(&order(90)).unwrap();
        let view = JournalView::read(dir.path()).unwrap();
        assert_eq!((view.orders(), view.pending_count()), (1, 1));
        assert!(view.order(order(90).queue_item_id, 1).is_some());
        j.append(order(90).queue_item_id, 1, EventKind::Heartbeat)
            .unwrap();
        assert_eq!(JournalView::read(dir.path()).unwrap().pending_count(), 2);
    }
}
