//! The on-disk journal: work orders the agent accepted, and every run event until the event
//! stream acknowledged it. A write returns once it is durable, so a crash, a restart or a NATS
//! outage loses nothing.
//!
//! It is an append-only log under `<dir>/wal/`: numbered segments (`<generation>.wal`) of
//! frames, each one entry (the format, pure and fuzzed: [`segment`]). Writers append under a mutex and then wait for an
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

use std::collections::HashSet;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use phonefarm_shared::{AgentEvent, EventKind, WorkOrder};
use uuid::Uuid;

pub mod segment;

use segment::{Entry, State, frame, parse_frames};
pub use segment::{FINISHED_RETENTION, OrderRecord};

/// A segment longer than this is replaced by a checkpoint at the next write.
pub const SEGMENT_LIMIT: u64 = 8 << 20;

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

impl From<segment::TooLarge> for JournalError {
    fn from(e: segment::TooLarge) -> Self {
        JournalError::TooLarge(e.0)
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
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

/// Every entry of a segment up to its first torn or corrupt frame ([`parse_frames`]).
fn read_segment(path: &Path) -> Result<Vec<Entry>, JournalError> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    Ok(parse_frames(&bytes, path))
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
                        out.push(Err(JournalError::from(e)));
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
mod tests;
