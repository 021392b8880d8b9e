//! The console's phone actions, end to end: a signed-in operator's reboot and locate go
//! coordinator → outbox → JetStream `PF_CTL` → the agent → ADB → the simulated phone, which
//! records them; refused while a run executes (by the coordinator, and by the agent for an order
//! that reaches it anyway, which the phone's page then shows with the agent's reason); what the
//! agent reports (started, done) on the phone's page; audited; refused without the CSRF token
//! or a session.

use std::time::Duration;

use phonefarm_coordinator::{auth, db};
use phonefarm_phonemodel::Action;
use phonefarm_shared::{Control, subjects};
use phonefarm_testkit::{wait_for, wait_until};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::harness::{AGENT_ID, Options, System, warmup};

/// A signed-in console session (cookie and CSRF token), without following redirects.
pub struct Console {
    http: reqwest::Client,
    base: String,
    cookie: String,
    pub csrf: String,
}

impl Console {
    pub async fn sign_in(sys: &System) -> Console {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let base = sys.coordinators[0].base.clone();
        let r = http
            .post(format!("{base}/ui/sign-in"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("key={}", sys.key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()[SET_COOKIE].to_str().unwrap();
        let cookie = set.split(';').next().unwrap().to_string();
        let mut c = Console {
            http,
            base,
            cookie,
            csrf: String::new(),
        };
        let page = c.get("/ui/fleet").await.1;
        let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        c.csrf = page[at..].split('"').next().unwrap().to_string();
        c
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Waits until the phone's page lists an action (`request`, or any) in `state`, and
    /// returns that row of the actions table.
    pub async fn action_shown(
        &self,
        phone: &str,
        request: Option<uuid::Uuid>,
        state: &str,
        deadline: Duration,
    ) -> String {
        let want = format!("data-action-state=\"{state}\"");
        let id = request.map(|r| r.to_string()).unwrap_or_default();
        wait_for(
            &format!("an action {state} on {phone}'s page"),
            deadline,
            async || {
                let page = self.get(&format!("/ui/phones/{phone}")).await.1;
                page.split("<tr data-request=\"")
                    .skip(1)
                    .map(|row| row.split("</tr>").next().unwrap_or(row))
                    .find(|row| row.starts_with(id.as_str()) && row.contains(&want))
                    .map(str::to_string)
            },
        )
        .await
    }

    /// Posts a form; `csrf` false leaves the token out.
    pub async fn post(&self, path: &str, csrf: bool) -> reqwest::Response {
        let body = if csrf {
            format!("csrf={}", self.csrf)
        } else {
            String::new()
        };
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

/// The audit entries with this action, newest first.
async fn audited(sys: &System, action: &str) -> Vec<Value> {
    let log = sys.get("/audit").await;
    log["entries"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|x| x["action"] == action)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn reboots(sys: &System) -> usize {
    sys.sims[0]
        .actions()
        .iter()
        .filter(|a| matches!(a, Action::Rebooted))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_reboot_reaches_the_phone_which_comes_back_and_is_audited() {
    let sys = System::start(Options::phones(1)).await;
    let console = Console::sign_in(&sys).await;

    // Without the CSRF token, or with only an API key (no session), nothing is sent.
    let r = console.post("/ui/phones/SIM0001/reboot", false).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let pool = db::connect(sys.db_url()).await.unwrap();
    let integrator = auth::generate_key();
    db::api_keys::insert(
        &pool,
        "upstream",
        &auth::hash_key(&integrator),
        "pf_",
        "integrator",
        None,
    )
    .await
    .unwrap();
    for key in [&integrator, &sys.key] {
        let r = console
            .http
            .post(format!("{}/ui/phones/SIM0001/reboot", console.base))
            .bearer_auth(key)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={}", console.csrf))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[LOCATION],
            "/ui/sign-in",
            "a bearer key is no session"
        );
    }
    assert!(audited(&sys, "phone.reboot").await.is_empty());

    let r = console.post("/ui/phones/SIM0001/reboot", true).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/phones/SIM0001");
    wait_until(
        "the simulated phone rebooted",
        Duration::from_secs(30),
        || async { reboots(&sys) == 1 },
    )
    .await;
    // The phone went away with the reboot; the fleet reconnects it and reports it online.
    sys.wait_phones_online().await;
    let page = console.get("/ui/phones/SIM0001").await.1;
    assert!(page.contains("data-phone-state=\"online\""), "{page}");
    // The agent reported the reboot done once the phone had booted; the page says so.
    console
        .action_shown("SIM0001", None, "done", Duration::from_secs(60))
        .await;

    let entries = audited(&sys, "phone.reboot").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["target"], "SIM0001");
    assert_eq!(entries[0]["via"], "console");
    assert_eq!(entries[0]["actor"], "e2e");
    assert_eq!(reboots(&sys), 1, "one order, one reboot");

    // Work still runs on it afterwards (the agent's hold ended once it was back).
    let id = sys
        .enqueue(warmup(
            &sys,
            "after-reboot",
            "acc-1",
            json!({"keywords": ["cats"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 1}}),
        ))
        .await;
    sys.wait_status(&id, "completed", Duration::from_secs(90))
        .await;
}

/// Long enough that only a cancel ends it.
fn long() -> Value {
    json!({"keywords": ["travel", "food"], "videos_per_keyword": 5, "watch_seconds": {"min": 20, "max": 30}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_and_locate_are_refused_while_a_run_executes() {
    let sys = System::start(Options::phones(1)).await;
    let console = Console::sign_in(&sys).await;
    let id = sys.enqueue(warmup(&sys, "busy", "acc-1", long())).await;
    sys.wait_status(&id, "executing", Duration::from_secs(90))
        .await;
    let item = sys.item_of(&id).await;
    sys.wait_watching(&item).await;

    // The coordinator refuses, says why, and sends nothing.
    for action in ["reboot", "locate"] {
        let r = console
            .post(&format!("/ui/phones/SIM0001/{action}"), true)
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT, "{action}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("a run is executing on the phone") && page.contains(&item),
            "{page}"
        );
        assert!(audited(&sys, &format!("phone.{action}")).await.is_empty());
    }

    // An order that reaches the agent anyway (a run started after the coordinator's check) is
    // refused there: acked, the phone is not rebooted, and the refusal with its reason is on
    // the phone's page. The order is written as the coordinator writes one that passed its
    // check (its `phone_actions` row, state `sent`), then published to the agent.
    let request_id = uuid::Uuid::new_v4();
    let pool = db::connect(sys.db_url()).await.unwrap();
    db::phone_actions::insert(
        &pool,
        &db::phone_actions::NewAction {
            request_id,
            phone_id: "SIM0001",
            agent_id: AGENT_ID,
            action: "reboot",
            requested_by: "e2e",
            at: time::OffsetDateTime::now_utc(),
        },
    )
    .await
    .unwrap();
    let nats = async_nats::connect(sys.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let order = Control::Reboot {
        phone_id: "SIM0001".into(),
        request_id,
    };
    let ack = js
        .publish(
            subjects::control(AGENT_ID),
            phonefarm_shared::encode(&order).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream(subjects::agent_consumer(AGENT_ID), subjects::CTL_STREAM)
        .await
        .unwrap();
    wait_until(
        "the agent acked the reboot order",
        Duration::from_secs(30),
        || {
            let mut consumer = consumer.clone();
            async move {
                let info = consumer.info().await.unwrap();
                info.ack_floor.stream_sequence >= ack.sequence
            }
        },
    )
    .await;
    assert_eq!(reboots(&sys), 0, "refused while the run executes");
    let item_now = sys.item(&item).await;
    assert_eq!(item_now["state"], "EXECUTING", "{item_now}");
    let page = console
        .action_shown(
            "SIM0001",
            Some(request_id),
            "refused",
            Duration::from_secs(30),
        )
        .await;
    assert!(
        page.contains("a run is executing on the phone") && page.contains(&item),
        "the agent's reason: {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_locate_wakes_the_phone_and_shows_the_colour() {
    let sys = System::start(Options::phones(1)).await;
    let console = Console::sign_in(&sys).await;
    {
        let mut phone = sys.sims[0].phone.lock().unwrap();
        phone.config_mut().behaviour.lock_screen = true;
        phone.set_screen_on(false);
    }
    let r = console.post("/ui/phones/SIM0001/locate", true).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    wait_until(
        "the locate colour on the phone's screen",
        Duration::from_secs(30),
        || async {
            let phone = sys.sims[0].phone.lock().unwrap();
            phone
                .viewing()
                .is_some_and(|v| v.colour == Some([255, 0, 255]))
        },
    )
    .await;
    {
        let phone = sys.sims[0].phone.lock().unwrap();
        assert!(phone.screen_on() && !phone.locked());
        assert!(
            phone.actions().contains(&Action::Key { code: 224 }),
            "woken with KEYCODE_WAKEUP"
        );
    }
    let entries = audited(&sys, "phone.locate").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["target"], "SIM0001");
    assert_eq!(entries[0]["detail"]["for_seconds"], 60);
    // The agent reported it started (done comes after the 60 s of colour).
    console
        .action_shown("SIM0001", None, "started", Duration::from_secs(30))
        .await;
}

/// A server-sent event stream read by hand: `(event, data)` per event.
struct EventStream {
    resp: reqwest::Response,
    buf: String,
}

impl EventStream {
    async fn open(console: &Console, path: &str) -> EventStream {
        // No overall timeout: the stream lives as long as the test wants it.
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let resp = http
            .get(format!("{}{path}", console.base))
            .header(COOKIE, &console.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/event-stream");
        EventStream {
            resp,
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> (String, String) {
        let read = async {
            loop {
                if let Some(i) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..i + 2).collect();
                    let (mut event, mut data) = (String::new(), String::new());
                    for line in block.lines() {
                        if let Some(e) = line.strip_prefix("event:") {
                            event = e.trim().to_string();
                        } else if let Some(d) = line.strip_prefix("data:") {
                            data.push_str(d.trim_start());
                        }
                    }
                    if !event.is_empty() {
                        return (event, data);
                    }
                    continue;
                }
                let chunk = self.resp.chunk().await.unwrap().expect("the stream ended");
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("an event within 30 s")
    }

    /// The next `frame` event's frame number.
    async fn frame(&mut self, phone: &str) -> u64 {
        loop {
            let (event, data) = self.next().await;
            if event != "frame" {
                continue;
            }
            assert!(
                data.contains(&format!("src=\"/ui/phones/{phone}/screen?n=")),
                "{data}"
            );
            let at = data.find("data-frame=\"").unwrap() + 12;
            return data[at..].split('"').next().unwrap().parse().unwrap();
        }
    }
}

/// A change of a simulated phone's screen.
type Change = fn(&mut phonefarm_phonemodel::Phone);

fn screenshots(sys: &System, phone: usize) -> usize {
    sys.sims[phone]
        .actions()
        .iter()
        .filter(|a| matches!(a, Action::Screenshot))
        .count()
}

/// The PNG the image endpoint serves now.
async fn served(console: &Console, phone: &str) -> Vec<u8> {
    let r = console
        .http
        .get(format!("{}/ui/phones/{phone}/screen", console.base))
        .header(COOKIE, &console.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "image/png");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let png = r.bytes().await.unwrap().to_vec();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    png
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_view_carries_frames_while_watched_and_the_agent_stops_after() {
    let sys = System::start(Options::phones(2)).await;
    let console = Console::sign_in(&sys).await;
    let page = console.get("/ui/phones/SIM0001").await.1;
    assert!(
        page.contains("sse-connect=\"/ui/live/screen/SIM0001\""),
        "{page}"
    );
    assert_eq!(screenshots(&sys, 0), 0, "nobody watches: no capture");
    // SIM0002 captures at a real phone's size (2.5 MB, over nats-server's 1 MB default
    // max_payload): its frames cross NATS in parts.
    sys.sims[1]
        .phone
        .lock()
        .unwrap()
        .config_mut()
        .screencap_padding = 2_500_000;

    // One viewer of SIM0001, two of SIM0002.
    let mut one = EventStream::open(&console, "/ui/live/screen/SIM0001").await;
    let mut two_a = EventStream::open(&console, "/ui/live/screen/SIM0002").await;
    let _two_b = EventStream::open(&console, "/ui/live/screen/SIM0002").await;

    // The screens change between frames; the image endpoint follows with the latest.
    let steps: [(&str, Change); 3] = [
        ("screen=Launcher", |_| {}),
        ("screen=Feed video=", |p| {
            p.shell("monkey -p com.zhiliaoapp.musically -c android.intent.category.LAUNCHER 1");
        }),
        ("screen=ScreenOff", |p| p.set_screen_on(false)),
    ];
    let mut distinct: Vec<Vec<u8>> = Vec::new();
    let mut last = 0;
    for (want, change) in steps {
        change(&mut sys.sims[0].phone.lock().unwrap());
        let png = loop {
            let n = one.frame("SIM0001").await;
            assert!(n > last, "frame numbers grow: {n} after {last}");
            last = n;
            let png = served(&console, "SIM0001").await;
            if String::from_utf8_lossy(&png).contains(want) {
                break png;
            }
        };
        if !distinct.contains(&png) {
            distinct.push(png);
        }
    }
    assert_eq!(distinct.len(), 3, "three screens, three distinct frames");
    assert!(two_a.frame("SIM0002").await >= 1);
    let large = served(&console, "SIM0002").await;
    assert!(
        large.len() > 2_500_000,
        "SIM0002's frame: {} bytes",
        large.len()
    );
    assert!(large.ends_with(b"IEND\xaeB`\x82"), "the whole PNG, to IEND");

    // One capture loop per phone, however many viewers: over a window of 5 captures of
    // SIM0001, SIM0002 (two viewers) is captured about as often, not twice as often.
    let (c1, c2) = (screenshots(&sys, 0), screenshots(&sys, 1));
    wait_until(
        "5 more captures of SIM0001",
        Duration::from_secs(30),
        || async { screenshots(&sys, 0) >= c1 + 5 },
    )
    .await;
    let grown = screenshots(&sys, 1) - c2;
    assert!(
        grown <= 5 + 2,
        "SIM0002 captured {grown} times in that window"
    );

    // The SIM0001 viewer leaves: the agent stops capturing it once the watch lapses, while
    // SIM0002, still watched, is the clock.
    drop(one);
    wait_until(
        "SIM0001's capture stopped",
        Duration::from_secs(60),
        || async {
            let before = screenshots(&sys, 0);
            let yardstick = screenshots(&sys, 1);
            wait_until("3 captures of SIM0002", Duration::from_secs(30), || async {
                screenshots(&sys, 1) >= yardstick + 3
            })
            .await;
            screenshots(&sys, 0) == before
        },
    )
    .await;
    let (c1, c2) = (screenshots(&sys, 0), screenshots(&sys, 1));
    wait_until(
        "8 more captures of SIM0002",
        Duration::from_secs(30),
        || async { screenshots(&sys, 1) >= c2 + 8 },
    )
    .await;
    assert_eq!(
        screenshots(&sys, 0),
        c1,
        "SIM0001 is captured though nobody watches"
    );
}
