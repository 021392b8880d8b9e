//! The bus test fixture: a real `nats-server` per test (free port, temp store dir, killed on
//! drop; restartable on the same port and store for outage tests), a coordinator with the bus
//! over a fresh database, and a simulated agent speaking the shared wire contract.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use phonefarm_coordinator::bus::{self, BusConfig, BusHandle};
use phonefarm_coordinator::{app, auth, db};
use phonefarm_shared::{
    AgentEvent, Control, EventKind, Inventory, PhoneState, PhoneStatus, Presence, WorkOrder,
    subjects,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use super::app::{AppDb, Receiver, milestones};
pub use crate::{NatsServer, free_port, wait_until};

/// Short timings so tests finish fast.
pub fn test_config(url: String) -> BusConfig {
    let mut c = BusConfig::new(url);
    // Longer than any test step under load; the lease tests shorten it.
    c.lease = Duration::from_secs(10);
    c.accept_timeout = Duration::from_secs(10);
    c.offline_after = Duration::from_secs(3);
    c.retry_base = Duration::from_millis(200);
    c.retry_max = Duration::from_secs(1);
    c.dispatch_interval = Duration::from_millis(200);
    c.sweep_interval = Duration::from_millis(200);
    c
}

pub struct BusApp {
    pub base: String,
    pub db: AppDb,
    pub nats: NatsServer,
    pub bus: BusHandle,
    pub key: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl BusApp {
    pub async fn spawn() -> BusApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tune: impl FnOnce(&mut BusConfig)) -> BusApp {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let nats = NatsServer::start();
        let db = AppDb::new().await;
        let key = auth::generate_key();
        db::api_keys::insert(
            &db.pool,
            "bus-admin",
            &auth::hash_key(&key),
            "pf_",
            "admin",
            None,
        )
        .await
        .expect("admin key");
        let mut config = test_config(nats.url());
        tune(&mut config);
        let mut app = BusApp {
            base: String::new(),
            db,
            nats,
            bus: bus::connect(config.clone()).await.expect("bus connect"),
            key,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            shutdown: CancellationToken::new(),
            task: None,
        };
        app.start().await;
        app
    }

    /// Starts (or restarts) the coordinator on the same database and NATS.
    pub async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.base = format!("http://{}", listener.local_addr().unwrap());
        self.shutdown = CancellationToken::new();
        let settings = app::Settings {
            ingest_secret: None,
            webhook_secret: None,
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            public_metrics: true,
            deliverer: Some(phonefarm_coordinator::callbacks::DelivererConfig {
                poll_interval: Duration::from_millis(100),
                ..Default::default()
            }),
        };
        self.task = Some(tokio::spawn(app::run_with_bus(
            listener,
            self.db.pool.clone(),
            settings,
            Some(self.bus.clone()),
            self.shutdown.clone(),
        )));
    }

    /// Stops the coordinator and waits for its loops to end.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn account(&self, account: &str, phone: &str) {
        let (s, b) = self
            .put(
                &format!("/accounts/{account}"),
                &serde_json::json!({"phone_id": phone}),
            )
            .await;
        assert!(s < 300, "{b:?}");
    }

    /// Enqueues a process; returns its id.
    pub async fn enqueue(&self, body: &Value) -> Uuid {
        let (s, b) = self.post("/capability-requests/enqueue", body).await;
        assert_eq!(s, 202, "{b:?}");
        Uuid::parse_str(b["process_id"].as_str().unwrap()).unwrap()
    }

    /// Enqueues an unattended keyword_warmup on queue routing for `account`; returns its id.
    pub async fn enqueue_queued(&self, request_id: &str, account: &str, callback: &str) -> Uuid {
        let target = serde_json::json!({"routing": "queue", "account_id": account});
        self.enqueue(&keyword(request_id, target, "unattended", callback))
            .await
    }

    pub async fn process(&self, id: Uuid) -> Value {
        let (s, b) = self.get(&format!("/processes/{id}")).await;
        assert_eq!(s, 200, "{b:?}");
        b
    }

    pub async fn status(&self, id: Uuid) -> String {
        self.process(id).await["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits for a process status.
    pub async fn wait_status(&self, id: Uuid, want: &str) -> Value {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let p = self.process(id).await;
            if p["status"] == want {
                return p;
            }
            assert!(
                Instant::now() < until,
                "process {id} never became {want}: {p}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The one value `sql` selects with `arg` bound to `$1` (a test's view of a column).
    pub async fn scalar<T, A>(&self, sql: &'static str, arg: A) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
        A: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    {
        sqlx::query_scalar(sql)
            .bind(arg)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// The state of a queue item.
    pub async fn item_state(&self, id: Uuid) -> String {
        self.scalar("SELECT state FROM queue_items WHERE queue_item_id = $1", id)
            .await
    }

    /// Waits until the ingester (the `coordinator` consumer) has been delivered the event
    /// stored at `stream_seq` at least once, applied or not.
    pub async fn wait_delivered(&self, stream_seq: u64) {
        wait_until(
            &format!("event {stream_seq} delivered to the ingester"),
            Duration::from_secs(20),
            || async {
                let Ok(stream) = self.bus.js.get_stream(subjects::EVT_STREAM).await else {
                    return false;
                };
                stream
                    .consumer_info(subjects::COORDINATOR_CONSUMER)
                    .await
                    .is_ok_and(|i| i.delivered.stream_sequence >= stream_seq)
            },
        )
        .await;
    }

    /// The (attempt, seq) of an item's agent events in the order they were applied.
    pub async fn applied_seqs(&self, id: Uuid) -> Vec<(i32, i64)> {
        sqlx::query_as(
            "SELECT attempt, seq FROM queue_item_events WHERE queue_item_id = $1 AND attempt > 0 \
             ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    pub async fn wait_item_state(&self, id: Uuid, want: &str) {
        wait_until(
            &format!("item {id} {want}"),
            Duration::from_secs(20),
            || async { self.item_state(id).await == want },
        )
        .await;
    }
}

impl Drop for BusApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A keyword_warmup request.
pub fn keyword(request_id: &str, target: Value, mode: &str, callback: &str) -> Value {
    serde_json::json!({
        "request_id": request_id,
        "capability": "keyword_warmup",
        "mode": mode,
        "target": target,
        "inputs": {"keywords": ["fitness"], "videos_per_keyword": 2},
        "callback": {"url": callback, "metadata": {}},
        "requested_by": {"system": "ugc-tracker"}
    })
}

pub fn phone(id: &str) -> PhoneStatus {
    PhoneStatus {
        phone_id: id.into(),
        serial: id.into(),
        transport: "usb".into(),
        location: format!("1-{}", id.len()),
        state: PhoneState::Online,
        model: Some("Pixel 6".into()),
        android_version: Some("14".into()),
        battery_level: Some(80),
        temperature_decicelsius: Some(312),
        storage_free_bytes: Some(10_000_000_000),
        screen_on: Some(true),
        app_version: Some("34.1.2".into()),
        current_queue_item_id: None,
    }
}

/// The agent side of the wire contract, written with async-nats as an agent would.
pub struct SimAgent {
    pub id: String,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    inventory_seq: u64,
    presence: Option<tokio::task::JoinHandle<()>>,
}

impl SimAgent {
    pub async fn connect(url: &str, id: &str) -> SimAgent {
        let client = async_nats::connect(url).await.expect("agent connect");
        Self::with_client(client, id)
    }

    pub fn with_client(client: async_nats::Client, id: &str) -> SimAgent {
        SimAgent {
            id: id.into(),
            js: jetstream::new(client.clone()),
            client,
            inventory_seq: 0,
            presence: None,
        }
    }

    pub fn presence_value(&self) -> Presence {
        Presence {
            agent_id: self.id.clone(),
            version: "0.1.0".into(),
            host: "rack-host".into(),
            started_at_unix_ms: 1_774_000_000_000,
            phones: 1,
        }
    }

    /// One presence put (as the agent does every 10 s), straight to the KV subject.
    pub async fn put_presence(&self, p: &Presence) {
        self.js
            .publish(
                format!("$KV.{}.{}", subjects::AGENTS_BUCKET, self.id),
                phonefarm_shared::encode(p).into(),
            )
            .await
            .expect("presence publish")
            .await
            .expect("presence ack");
    }

    /// Keeps presence alive every `every` until stopped or dropped.
    pub fn keep_alive(&mut self, every: Duration) {
        let js = self.js.clone();
        let subject = format!("$KV.{}.{}", subjects::AGENTS_BUCKET, self.id);
        let body: bytes::Bytes = phonefarm_shared::encode(&self.presence_value()).into();
        self.presence = Some(tokio::spawn(async move {
            loop {
                if let Ok(ack) = js.publish(subject.clone(), body.clone()).await {
                    let _ = ack.await;
                }
                tokio::time::sleep(every).await;
            }
        }));
    }

    pub fn go_silent(&mut self) {
        if let Some(t) = self.presence.take() {
            t.abort();
        }
    }

    pub async fn inventory(&mut self, phones: Vec<PhoneStatus>) {
        self.inventory_seq += 1;
        let inv = Inventory {
            agent_id: self.id.clone(),
            seq: self.inventory_seq,
            at_unix_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
            phones,
        };
        let publish = jetstream::message::PublishMessage::build()
            .payload(phonefarm_shared::encode(&inv).into())
            .message_id(format!("inv:{}:{}", self.id, self.inventory_seq));
        self.js
            .send_publish(subjects::inventory(&self.id), publish)
            .await
            .expect("inventory publish")
            .await
            .expect("inventory ack");
    }

    /// Presence + inventory of the given phones, with presence kept alive.
    pub async fn online(url: &str, id: &str, phones: &[&str]) -> SimAgent {
        let mut a = Self::connect(url, id).await;
        a.keep_alive(Duration::from_millis(300));
        a.inventory(phones.iter().map(|p| phone(p)).collect()).await;
        a
    }

    async fn consumer(&self, stream: &str) -> Option<PullConsumer> {
        self.js
            .get_consumer_from_stream(subjects::agent_consumer(&self.id), stream)
            .await
            .ok()
    }

    async fn next_raw(&self, stream: &str, within: Duration) -> Option<jetstream::Message> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            let Some(c) = self.consumer(stream).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let left = until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500));
            if left < Duration::from_millis(10) {
                break;
            }
            if let Ok(mut batch) = c.fetch().max_messages(1).expires(left).messages().await
                && let Some(Ok(m)) = batch.next().await
            {
                return Some(m);
            }
        }
        None
    }

    /// The next work order within `within`, acked at once (as after journaling it).
    pub async fn next_order(&self, within: Duration) -> Option<WorkOrder> {
        let m = self.next_raw(subjects::WORK_STREAM, within).await?;
        let order = phonefarm_shared::decode::<WorkOrder>(&m.payload).expect("a work order");
        m.ack().await.expect("ack work");
        Some(order)
    }

    pub async fn expect_order(&self) -> WorkOrder {
        self.next_order(Duration::from_secs(20))
            .await
            .expect("a work order")
    }

    pub async fn next_control(&self, within: Duration) -> Option<Control> {
        let m = self.next_raw(subjects::CTL_STREAM, within).await?;
        let c = phonefarm_shared::decode::<Control>(&m.payload).expect("a control");
        m.ack().await.expect("ack control");
        Some(c)
    }

    /// Publishes one run event and waits for the stream's ack.
    pub async fn event(&self, order: &WorkOrder, seq: u64, kind: EventKind) {
        self.event_for(order.queue_item_id, order.attempt, seq, kind)
            .await;
    }

    pub async fn event_for(&self, queue_item_id: Uuid, attempt: u32, seq: u64, kind: EventKind) {
        self.event_stored(queue_item_id, attempt, seq, kind).await;
    }

    /// Publishes one run event; returns its sequence in the event stream.
    pub async fn event_stored(
        &self,
        queue_item_id: Uuid,
        attempt: u32,
        seq: u64,
        kind: EventKind,
    ) -> u64 {
        let ev = AgentEvent {
            queue_item_id,
            attempt,
            seq,
            at_unix_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
            kind,
        };
        let publish = jetstream::message::PublishMessage::build()
            .payload(phonefarm_shared::encode(&ev).into())
            .message_id(ev.msg_id());
        self.js
            .send_publish(subjects::run_events(&self.id), publish)
            .await
            .expect("event publish")
            .await
            .expect("event ack")
            .sequence
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.go_silent();
    }
}

pub fn finished_ok(result: &str) -> EventKind {
    EventKind::Finished {
        outcome: phonefarm_shared::Outcome::Completed,
        result_json: result.into(),
        error: None,
    }
}

pub fn finished_err(code: &str, retryable: bool) -> EventKind {
    EventKind::Finished {
        outcome: phonefarm_shared::Outcome::Failed,
        result_json: "{}".into(),
        error: Some(phonefarm_shared::RunError {
            code: code.into(),
            message: format!("{code} happened"),
            retryable,
        }),
    }
}
