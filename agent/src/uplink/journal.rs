//! The on-disk journal: work orders the agent accepted, and every run event until the event
//! stream acknowledged it. Each write is fsynced (file, then directory) before the caller goes
//! on, so a crash, a restart or a NATS outage loses nothing.
//!
//! Layout under the state directory:
//!
//! - `orders/<queue_item_id>_<attempt>.json`: the [`OrderRecord`] (the order, the next event
//!   `seq` of that attempt, whether `Finished` was journaled). Records of finished runs are kept
//!   for a day, so a redelivered order is recognised and not run twice.
//! - `events/<counter>.evt`: one `encode(AgentEvent)` per file; `counter` is a journal-wide
//!   monotonic number, so replay keeps the original order. Deleted after the publish ack.
//!
//! Blocking file I/O: call it from `spawn_blocking` (the publisher and the runner do).

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use phonefarm_shared::{AgentEvent, EventKind, WorkOrder};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long records of finished orders are kept to recognise redeliveries.
pub const FINISHED_RETENTION: Duration = Duration::from_secs(24 * 3600);

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
    #[error("cannot encode order record")]
    Encode(#[source] serde_json::Error),
    #[error("the journal is closed")]
    Closed,
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

/// Above this many records, each new order prunes the expired ones.
const PRUNE_ABOVE: usize = 512;

/// One journaled, not yet acknowledged event.
#[derive(Debug, Clone, PartialEq)]
pub struct JournaledEvent {
    pub path: PathBuf,
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

struct Inner {
    /// Set by [`Journal::close`]: no more writes (another process may own the directory).
    closed: bool,
    next_counter: u64,
    orders: HashMap<(Uuid, u32), OrderRecord>,
}

/// The journal; cheap to share behind an `Arc`.
pub struct Journal {
    orders_dir: PathBuf,
    events_dir: PathBuf,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("events_dir", &self.events_dir)
            .finish_non_exhaustive()
    }
}

/// Writes `data` to `path` atomically and durably: temp file, fsync, rename, fsync directory.
pub(crate) fn write_durable(dir: &Path, path: &Path, data: &[u8]) -> Result<(), JournalError> {
    write_synced(path, data)?;
    sync_dir(dir)
}

/// Writes `data` to `path` atomically (temp file, fsync, rename); the rename is durable once
/// the directory is fsynced.
fn write_synced(path: &Path, data: &[u8]) -> Result<(), JournalError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))
}

/// [`write_synced`] for many files: all written first, then fsynced from several threads at
/// once (the filesystem commits concurrent fsyncs together), then renamed. One result per file.
fn write_many_synced(files: &[(PathBuf, Vec<u8>)]) -> Vec<Result<(), JournalError>> {
    const THREADS: usize = 8;
    let written: Vec<Result<(PathBuf, fs::File), JournalError>> = files
        .iter()
        .map(|(path, data)| {
            let tmp = path.with_extension("tmp");
            let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(data).map_err(io(&tmp))?;
            Ok((tmp, f))
        })
        .collect();
    let sync =
        |part: &[Result<(PathBuf, fs::File), JournalError>]| -> Vec<Result<(), JournalError>> {
            part.iter()
                .map(|w| match w {
                    Ok((tmp, f)) => f.sync_all().map_err(io(tmp)),
                    Err(_) => Ok(()),
                })
                .collect()
        };
    let synced = if written.len() <= 1 {
        // A single admission: no thread for one fsync.
        sync(&written)
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = written
                .chunks(written.len().div_ceil(THREADS))
                .map(|part| (part.len(), scope.spawn(move || sync(part))))
                .collect();
            handles
                .into_iter()
                .flat_map(|(n, h)| {
                    h.join().unwrap_or_else(|_| {
                        (0..n)
                            .map(|_| {
                                Err(JournalError::Io {
                                    path: "(fsync thread)".into(),
                                    source: std::io::Error::other("fsync thread panicked"),
                                })
                            })
                            .collect()
                    })
                })
                .collect()
        })
    };
    files
        .iter()
        .zip(written)
        .zip(synced)
        .map(|(((path, _), written), synced)| {
            let (tmp, _) = written?;
            synced?;
            fs::rename(&tmp, path).map_err(io(path))
        })
        .collect()
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

impl Journal {
    /// Opens (creating) the journal under `state_dir`, loading every order record and finding
    /// where the event counter stands. Unreadable files are logged and set aside (renamed
    /// `*.bad`), never fatal.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let orders_dir = state_dir.join("orders");
        let events_dir = state_dir.join("events");
        fs::create_dir_all(&orders_dir).map_err(io(&orders_dir))?;
        fs::create_dir_all(&events_dir).map_err(io(&events_dir))?;
        let mut orders = HashMap::new();
        for entry in fs::read_dir(&orders_dir).map_err(io(&orders_dir))? {
            let path = entry.map_err(io(&orders_dir))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let parsed = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<OrderRecord>(&b).ok());
            match parsed {
                Some(rec) => {
                    let stale = rec.finished
                        && fs::metadata(&path)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|age| age > FINISHED_RETENTION);
                    if stale {
                        let _ = fs::remove_file(&path);
                    } else {
                        orders.insert((rec.order.queue_item_id, rec.order.attempt), rec);
                    }
                }
                None => {
                    tracing::warn!(path = %path.display(), "unreadable order record set aside");
                    let _ = fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        let next_counter = Self::event_files(&events_dir)?
            .last()
            .map_or(1, |(n, _)| n + 1);
        Ok(Self {
            orders_dir,
            events_dir,
            inner: Mutex::new(Inner {
                closed: false,
                next_counter,
                orders,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn event_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.extension().is_none_or(|e| e != "evt") {
                continue;
            }
            if let Some(n) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
            {
                files.push((n, path));
            }
        }
        files.sort();
        Ok(files)
    }

    fn order_path(&self, queue_item_id: Uuid, attempt: u32) -> PathBuf {
        self.orders_dir
            .join(format!("{queue_item_id}_{attempt}.json"))
    }

    fn write_record(&self, rec: &OrderRecord) -> Result<(), JournalError> {
        let (path, bytes) = self.record_file(rec)?;
        write_durable(&self.orders_dir, &path, &bytes)
    }

    /// Every event still waiting for its publish ack, oldest first (replayed at start).
    pub fn pending_events(&self) -> Result<Vec<JournaledEvent>, JournalError> {
        let mut out = Vec::new();
        for (_, path) in Self::event_files(&self.events_dir)? {
            let bytes = fs::read(&path).map_err(io(&path))?;
            match phonefarm_shared::decode::<AgentEvent>(&bytes) {
                Ok(event) => out.push(JournaledEvent { path, event }),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "undecodable journal entry set aside");
                    let _ = fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        Ok(out)
    }

    /// Orders journaled but not finished (their runs were cut short by a restart).
    pub fn unfinished_orders(&self) -> Vec<WorkOrder> {
        let mut v: Vec<_> = self
            .lock()
            .orders
            .values()
            .filter(|r| !r.finished)
            .map(|r| r.order.clone())
            .collect();
        v.sort_by_key(|o| (o.queue_item_id, o.attempt));
        v
    }

    /// The record of one order, if journaled.
    pub fn order(&self, queue_item_id: Uuid, attempt: u32) -> Option<OrderRecord> {
        self.lock().orders.get(&(queue_item_id, attempt)).cloned()
    }

    /// Refuses every later write; waits for a write in progress. Called when the agent stops,
    /// so a task that outlives it cannot write behind the back of the next process.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Journals a new order and its `Accepted` event (seq 1), or reports it as known.
    pub fn accept_order(&self, order: &WorkOrder) -> Result<Admission, JournalError> {
        self.accept_orders(std::slice::from_ref(order))
            .pop()
            .unwrap_or(Err(JournalError::Closed))
    }

    /// Journals new orders and their `Accepted` events (seq 1) together, or reports them as
    /// known; one result per order, in order. For each order, as for one: its record is
    /// durable before its event, and the event before the record that moves its next `seq` on.
    /// The orders share the directory fsyncs of each of those three steps and one hold of the
    /// lock, so a burst of orders is not journaled one by one between the appends of the runs
    /// that just started (3n + 3 fsyncs instead of 6n).
    pub fn accept_orders(&self, orders: &[WorkOrder]) -> Vec<Result<Admission, JournalError>> {
        let mut out: Vec<Option<Result<Admission, JournalError>>> =
            orders.iter().map(|_| None).collect();
        let mut inner = self.lock();
        if inner.closed {
            return orders.iter().map(|_| Err(JournalError::Closed)).collect();
        }
        let mut fresh = Vec::new();
        let mut in_batch = std::collections::HashSet::new();
        for (i, order) in orders.iter().enumerate() {
            let key = (order.queue_item_id, order.attempt);
            if let Some(rec) = inner.orders.get(&key) {
                out[i] = Some(Ok(Admission::Known {
                    finished: rec.finished,
                }));
            } else if !in_batch.insert(key) {
                // The same order twice in one batch: the first is journaled.
                out[i] = Some(Ok(Admission::Known { finished: false }));
            } else {
                fresh.push(i);
            }
        }
        let record = |order: &WorkOrder, next_seq: u64| OrderRecord {
            order: order.clone(),
            next_seq,
            finished: false,
            finished_at_unix_ms: None,
        };
        let records = |fresh: &[usize], next_seq: u64| {
            fresh
                .iter()
                .map(|&i| self.record_file(&record(&orders[i], next_seq)))
                .collect()
        };
        // 1. The records: the orders are known from now on.
        let files = records(&fresh, 1);
        self.write_step(files, &self.orders_dir, &mut fresh, &mut out);
        for &i in &fresh {
            let order = &orders[i];
            inner
                .orders
                .insert((order.queue_item_id, order.attempt), record(order, 1));
        }
        // 2. The `Accepted` events.
        let mut events = HashMap::new();
        let mut files = Vec::with_capacity(fresh.len());
        for &i in &fresh {
            let order = &orders[i];
            let event = AgentEvent {
                queue_item_id: order.queue_item_id,
                attempt: order.attempt,
                seq: 1,
                at_unix_ms: now_ms(),
                kind: EventKind::Accepted,
            };
            let path = self
                .events_dir
                .join(format!("{:020}.evt", inner.next_counter));
            inner.next_counter += 1;
            files.push(Ok((path.clone(), phonefarm_shared::encode(&event))));
            events.insert(i, JournaledEvent { path, event });
        }
        self.write_step(files, &self.events_dir, &mut fresh, &mut out);
        // 3. The records again, with the next seq moved on (so seq 1 is never reused).
        let files = records(&fresh, 2);
        self.write_step(files, &self.orders_dir, &mut fresh, &mut out);
        for &i in &fresh {
            let order = &orders[i];
            if let Some(rec) = inner.orders.get_mut(&(order.queue_item_id, order.attempt)) {
                rec.next_seq = 2;
            }
            if let Some(entry) = events.remove(&i) {
                out[i] = Some(Ok(Admission::New(entry)));
            }
        }
        if inner.orders.len() > PRUNE_ABOVE {
            self.prune_locked(&mut inner, now_ms());
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(JournalError::Closed)))
            .collect()
    }

    /// A record's path and bytes.
    fn record_file(&self, rec: &OrderRecord) -> Result<(PathBuf, Vec<u8>), JournalError> {
        let path = self.order_path(rec.order.queue_item_id, rec.order.attempt);
        let bytes = serde_json::to_vec(rec).map_err(JournalError::Encode)?;
        Ok((path, bytes))
    }

    /// One step of [`Journal::accept_orders`]: one file per order in `fresh`
    /// ([`write_many_synced`]), then one fsync of `dir`. An order whose file could not be built
    /// or written, or all of them if the directory fsync fails, fail with that error and leave
    /// `fresh`.
    fn write_step(
        &self,
        files: Vec<Result<(PathBuf, Vec<u8>), JournalError>>,
        dir: &Path,
        fresh: &mut Vec<usize>,
        out: &mut [Option<Result<Admission, JournalError>>],
    ) {
        let mut ready = Vec::with_capacity(files.len());
        let mut kept = Vec::with_capacity(files.len());
        for (&i, file) in fresh.iter().zip(files) {
            match file {
                Ok(f) => {
                    ready.push(f);
                    kept.push(i);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        fresh.clear();
        for (i, written) in kept.into_iter().zip(write_many_synced(&ready)) {
            match written {
                Ok(()) => fresh.push(i),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        if fresh.is_empty() {
            return;
        }
        if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
            for i in fresh.drain(..) {
                out[i] = Some(Err(io(dir)(std::io::Error::new(e.kind(), e.to_string()))));
            }
        }
    }

    /// Journals the next event of an attempt: assigns its `seq`, writes the event file and
    /// then the order record (so a seq is never reused), both fsynced. `Finished` marks the
    /// order finished; nothing may follow it.
    pub fn append(
        &self,
        queue_item_id: Uuid,
        attempt: u32,
        kind: EventKind,
    ) -> Result<JournaledEvent, JournalError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(JournalError::Closed);
        }
        let counter = inner.next_counter;
        let rec =
            inner
                .orders
                .get_mut(&(queue_item_id, attempt))
                .ok_or(JournalError::UnknownOrder {
                    queue_item_id,
                    attempt,
                })?;
        if rec.finished {
            return Err(JournalError::AlreadyFinished {
                queue_item_id,
                attempt,
            });
        }
        let finished = matches!(kind, EventKind::Finished { .. });
        let event = AgentEvent {
            queue_item_id,
            attempt,
            seq: rec.next_seq,
            at_unix_ms: now_ms(),
            kind,
        };
        let mut updated = rec.clone();
        updated.next_seq += 1;
        updated.finished = finished;
        if finished {
            updated.finished_at_unix_ms = Some(event.at_unix_ms);
        }
        let path = self.events_dir.join(format!("{counter:020}.evt"));
        write_durable(&self.events_dir, &path, &phonefarm_shared::encode(&event))?;
        inner.next_counter += 1;
        // The event is durable; if the record write fails the seq could be reused after a
        // restart, so the failure is reported (the caller treats it as a journal failure).
        let record = self.write_record(&updated);
        if let Some(rec) = inner.orders.get_mut(&(queue_item_id, attempt)) {
            *rec = updated;
        }
        record?;
        Ok(JournaledEvent { path, event })
    }

    /// Forgets records of orders finished more than [`FINISHED_RETENTION`] before `now_ms`.
    pub fn prune(&self, now_ms: i64) -> usize {
        let mut inner = self.lock();
        self.prune_locked(&mut inner, now_ms)
    }

    fn prune_locked(&self, inner: &mut Inner, now_ms: i64) -> usize {
        let horizon = now_ms
            .saturating_sub(i64::try_from(FINISHED_RETENTION.as_millis()).unwrap_or(i64::MAX));
        let expired: Vec<(Uuid, u32)> = inner
            .orders
            .iter()
            .filter(|(_, r)| r.finished && r.finished_at_unix_ms.is_some_and(|t| t < horizon))
            .map(|(k, _)| *k)
            .collect();
        for key in &expired {
            inner.orders.remove(key);
            let path = self.order_path(key.0, key.1);
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot prune an order record");
            }
        }
        expired.len()
    }

    /// Forgets an acknowledged event.
    pub fn remove(&self, entry: &JournaledEvent) -> Result<(), JournalError> {
        match fs::remove_file(&entry.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&entry.path)(e)),
        }
    }

    /// Number of events waiting for their ack on disk (for tests and metrics).
    pub fn pending_count(&self) -> usize {
        Self::event_files(&self.events_dir).map_or(0, |v| v.len())
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
        j.remove(&accepted).unwrap();
        drop(j);

        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(
            j.accept_order(&o).unwrap(),
            Admission::Known { finished: false }
        );
        let pending = j.pending_events().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].event, step.event);
        assert_eq!(j.unfinished_orders(), vec![o.clone()]);
        let fin = j
            .append(
                o.queue_item_id,
                1,
                EventKind::Finished {
                    outcome: Outcome::Completed,
                    result_json: "{}".into(),
                    error: None,
                },
            )
            .unwrap();
        assert_eq!(fin.event.seq, 3, "seq continues after reopen");
        assert!(j.unfinished_orders().is_empty());
        assert!(matches!(
            j.append(o.queue_item_id, 1, EventKind::Heartbeat),
            Err(JournalError::AlreadyFinished { .. })
        ));
        let order: Vec<u64> = j
            .pending_events()
            .unwrap()
            .iter()
            .map(|e| e.event.seq)
            .collect();
        assert_eq!(order, [2, 3], "replay keeps journal order");
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
        let replay: Vec<(Uuid, u64)> = j
            .pending_events()
            .unwrap()
            .iter()
            .map(|e| (e.event.queue_item_id, e.event.seq))
            .collect();
        let id = |n: u8| order(n).queue_item_id;
        assert_eq!(
            replay,
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
        j.close();
        assert!(
            j.accept_orders(&[order(14), order(15)])
                .iter()
                .all(|r| matches!(r, Err(JournalError::Closed)))
        );
    }

    #[test]
    fn a_closed_journal_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
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
        assert_eq!(j.pending_count(), 1, "only Accepted was written");
    }

    #[test]
    fn finished_records_expire_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let (done, open) = (order(4), order(5));
        j.accept_order(&done).unwrap();
        j.accept_order(&open).unwrap();
        let fin = j
            .append(
                done.queue_item_id,
                1,
                EventKind::Finished {
                    outcome: Outcome::Completed,
                    result_json: "{}".into(),
                    error: None,
                },
            )
            .unwrap();
        let retention = i64::try_from(FINISHED_RETENTION.as_millis()).unwrap();
        assert_eq!(
            j.prune(fin.event.at_unix_ms + retention - 1),
            0,
            "kept a day"
        );
        assert_eq!(j.prune(fin.event.at_unix_ms + retention + 1), 1);
        assert!(j.order(done.queue_item_id, 1).is_none());
        assert!(
            j.order(open.queue_item_id, 1).is_some(),
            "unfinished orders stay"
        );
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.order(done.queue_item_id, 1).is_none(), "its file is gone");
    }

    #[test]
    fn garbage_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        fs::write(
            dir.path().join("events/00000000000000000007.evt"),
            b"\xff\xff",
        )
        .unwrap();
        fs::write(dir.path().join("orders/x_1.json"), b"not json").unwrap();
        assert!(j.pending_events().unwrap().is_empty());
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.unfinished_orders().is_empty());
        assert!(
            j.append(Uuid::nil(), 1, EventKind::Heartbeat).is_err(),
            "events need a journaled order"
        );
    }
}
