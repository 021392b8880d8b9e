//! The journal on disk: replay, torn tails, checkpoints, group commit, the earlier layout.

use super::segment::FRAME_MAX;
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
