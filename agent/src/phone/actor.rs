//! The task that owns one connection: it feeds received bytes to the [`Session`], hands
//! outgoing messages to the writer task, and routes stream events to the calls waiting on them.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::{ConnState, PhoneError};
use crate::adb::session::{Event, Session};
use crate::adb::transport::{ByteSource, Writer};

/// A call asking for a new stream.
pub(crate) struct OpenRequest {
    pub service: String,
    pub reply: oneshot::Sender<Result<StreamIo, PhoneError>>,
}

/// Operations on an open stream (unbounded: they are small and flow control bounds data).
pub(crate) enum StreamOp {
    Write {
        id: u32,
        data: Bytes,
        done: oneshot::Sender<()>,
    },
    Close(u32),
    Abort(u32),
}

/// What a call sees on its stream.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    Data(Bytes),
    Closed,
    Lost(String),
}

/// A stream whose OPEN is in flight: the caller's reply channel, its end, the service name.
type PendingOpen = (
    oneshot::Sender<Result<StreamIo, PhoneError>>,
    StreamIo,
    String,
);

struct Slot {
    events: mpsc::UnboundedSender<StreamEvent>,
    opened: Option<PendingOpen>,
    /// (byte mark, notify): released when `sent_total` reaches the mark.
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// One call's end of a stream. Dropping it without [`StreamIo::close`] aborts the stream (CLSE),
/// which is how timeouts and cancellation reach the phone.
#[derive(Debug)]
pub(crate) struct StreamIo {
    pub id: u32,
    events: mpsc::UnboundedReceiver<StreamEvent>,
    ops: mpsc::UnboundedSender<StreamOp>,
    finished: bool,
    pub max_payload: usize,
}

impl StreamIo {
    /// Queues data; returns once it has been handed to the transport.
    pub async fn write(&mut self, data: Bytes) -> Result<(), PhoneError> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(StreamOp::Write {
                id: self.id,
                data,
                done: tx,
            })
            .map_err(|_| PhoneError::Disconnected("connection task ended".into()))?;
        rx.await
            .map_err(|_| PhoneError::Disconnected("stream closed while writing".into()))
    }

    /// Next data, or `None` once the phone closed the stream.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, PhoneError> {
        match self.events.recv().await {
            Some(StreamEvent::Data(d)) => Ok(Some(d)),
            Some(StreamEvent::Closed) => {
                self.finished = true;
                Ok(None)
            }
            Some(StreamEvent::Lost(why)) => {
                self.finished = true;
                Err(PhoneError::Disconnected(why))
            }
            None => {
                self.finished = true;
                Err(PhoneError::Disconnected("connection task ended".into()))
            }
        }
    }

    /// Closes gracefully after queued data went out.
    pub fn close(mut self) {
        self.finished = true;
        let _ = self.ops.send(StreamOp::Close(self.id));
    }
}

impl Drop for StreamIo {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.ops.send(StreamOp::Abort(self.id));
        }
    }
}

pub(crate) struct Actor<R: ByteSource> {
    pub session: Session,
    pub source: R,
    pub writer: Writer,
    pub opens: mpsc::Receiver<OpenRequest>,
    pub ops_rx: mpsc::UnboundedReceiver<StreamOp>,
    pub ops_tx: mpsc::UnboundedSender<StreamOp>,
    pub state: watch::Sender<ConnState>,
}

impl<R: ByteSource> Actor<R> {
    pub async fn run(mut self) {
        let reason = self.run_inner().await;
        tracing::debug!(%reason, "phone connection ended");
        let _ = self.state.send(ConnState::Offline(reason.clone()));
        // Fail everything still waiting.
        self.opens.close();
        while let Ok(req) = self.opens.try_recv() {
            let _ = req
                .reply
                .send(Err(PhoneError::Disconnected(reason.clone())));
        }
    }

    async fn run_inner(&mut self) -> String {
        let mut slots: HashMap<u32, Slot> = HashMap::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut opens_open = true;
        // Calls made before the connection is online wait here (their own deadlines apply).
        let mut waiting: Vec<OpenRequest> = Vec::new();
        loop {
            if self.session.is_online() {
                for req in waiting.drain(..) {
                    if !req.reply.is_closed() {
                        self.on_open(req, &mut slots);
                    }
                }
            }
            // Events first: they may release waiters; then transmit what the session queued.
            while let Some(ev) = self.session.poll_event() {
                self.on_event(ev, &mut slots);
            }
            while let Some(m) = self.session.poll_transmit() {
                let h = self.session.header(&m);
                if !self.writer.send(h, m.payload) {
                    return "writer stopped".into();
                }
            }
            for (id, slot) in slots.iter_mut() {
                let sent = self.session.sent_total(*id).unwrap_or(u64::MAX);
                while slot.waiters.front().is_some_and(|(mark, _)| *mark <= sent) {
                    if let Some((_, tx)) = slot.waiters.pop_front() {
                        let _ = tx.send(());
                    }
                }
            }
            let online = self.session.is_online();
            tokio::select! {
                r = self.source.recv(&mut buf) => match r {
                    Ok(0) => return "phone closed the connection".into(),
                    Ok(n) => {
                        if let Err(e) = self.session.feed(&buf[..n]) {
                            let msg = format!("protocol error: {e}");
                            for (_, s) in slots.drain() {
                                let _ = s.events.send(StreamEvent::Lost(msg.clone()));
                            }
                            return msg;
                        }
                    }
                    Err(e) => {
                        let msg = format!("read failed: {e}");
                        for (_, s) in slots.drain() {
                            let _ = s.events.send(StreamEvent::Lost(msg.clone()));
                        }
                        return msg;
                    }
                },
                req = self.opens.recv(), if opens_open => match req {
                    Some(req) if online => self.on_open(req, &mut slots),
                    Some(req) => waiting.push(req),
                    None => {
                        opens_open = false;
                        if slots.is_empty() {
                            return "all handles dropped".into();
                        }
                    }
                },
                Some(op) = self.ops_rx.recv() => self.on_op(op, &mut slots),
                e = &mut self.writer.failed => {
                    let msg = match e {
                        Ok(e) => format!("write failed: {e}"),
                        Err(_) => "writer stopped".into(),
                    };
                    for (_, s) in slots.drain() {
                        let _ = s.events.send(StreamEvent::Lost(msg.clone()));
                    }
                    return msg;
                }
            }
            if !opens_open && slots.is_empty() {
                return "all handles dropped".into();
            }
        }
    }

    fn on_open(&mut self, req: OpenRequest, slots: &mut HashMap<u32, Slot>) {
        match self.session.open(&req.service) {
            Ok(id) => {
                let (etx, erx) = mpsc::unbounded_channel();
                let max_payload = self.session.peer().map_or(4096, |p| p.max_payload as usize);
                let io = StreamIo {
                    id,
                    events: erx,
                    ops: self.ops_tx.clone(),
                    finished: false,
                    max_payload,
                };
                slots.insert(
                    id,
                    Slot {
                        events: etx,
                        opened: Some((req.reply, io, req.service)),
                        waiters: VecDeque::new(),
                    },
                );
            }
            Err(e) => {
                let _ = req.reply.send(Err(PhoneError::Protocol(e.to_string())));
            }
        }
    }

    fn on_op(&mut self, op: StreamOp, slots: &mut HashMap<u32, Slot>) {
        match op {
            StreamOp::Write { id, data, done } => {
                if self.session.write(id, data).is_ok()
                    && let Some(slot) = slots.get_mut(&id)
                {
                    let mark =
                        self.session.sent_total(id).unwrap_or(0) + self.session.queued(id) as u64;
                    slot.waiters.push_back((mark, done));
                }
                // Otherwise `done` is dropped and the writer sees the stream is gone.
            }
            StreamOp::Close(id) => self.session.close(id),
            StreamOp::Abort(id) => {
                self.session.abort(id);
                slots.remove(&id);
            }
        }
    }

    fn on_event(&mut self, ev: Event, slots: &mut HashMap<u32, Slot>) {
        match ev {
            Event::Online(info) => {
                let _ = self.state.send(ConnState::Online(info));
            }
            Event::Unauthorized => {
                let _ = self.state.send(ConnState::Unauthorized);
            }
            Event::Opened { id } => {
                if let Some(slot) = slots.get_mut(&id)
                    && let Some((reply, io, _)) = slot.opened.take()
                    && let Err(Ok(io)) = reply.send(Ok(io))
                {
                    // The caller gave up while the OPEN was in flight.
                    drop(io);
                    slots.remove(&id);
                }
            }
            Event::OpenFailed { id } => {
                if let Some(mut slot) = slots.remove(&id)
                    && let Some((reply, mut io, service)) = slot.opened.take()
                {
                    io.finished = true;
                    let _ = reply.send(Err(PhoneError::Refused(service)));
                }
            }
            Event::Data { id, data } => {
                if let Some(slot) = slots.get(&id) {
                    let _ = slot.events.send(StreamEvent::Data(data));
                }
            }
            Event::Closed { id } => {
                if let Some(slot) = slots.remove(&id) {
                    let _ = slot.events.send(StreamEvent::Closed);
                }
            }
            // Device-role events never reach a host session.
            Event::AuthKeyOffered(_) | Event::OpenRequest { .. } => {}
        }
    }
}
