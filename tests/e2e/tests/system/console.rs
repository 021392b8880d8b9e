//! The operators' console in a real browser (Debian's chromium over WebDriver, testkit's
//! `webdriver`) against the whole system: the coordinator, a real agent daemon and four
//! simulated phones. One system and one browser for every scenario, one after the other, except
//! that scenario 5's run (which waits out the flow's 15 s screen timeout) starts first, so
//! scenarios 1 to 4 run meanwhile:
//!
//! 1. sign in; the fleet page lists the four phones, online (the one running 5's work busy);
//! 2. a process enqueued through the public API appears on the processes page and reaches
//!    `completed` there without a reload (the live SSE part; a marker in `window` survives);
//! 3. its page shows the milestones and every callback with its delivery attempts, from a real
//!    HTTP receiver that refuses the first delivery (503, then 200);
//! 4. a phone disabled from its page gets no new work (work for its account waits while other
//!    work completes, asserted through the API and on the simulated phone) until it is
//!    enabled again from the page;
//! 5. a run that meets a screen no flow pack knows (the model's `StrangeScreen` fault) fails
//!    with evidence: its page shows the screenshot loaded (`naturalWidth > 0`), the UI dump as
//!    a tree with the unknown screen's nodes and the screen the flow expected marked as what
//!    failed (no node of it is there to highlight), the pack and revision the run used and
//!    the phone's app version;
//!    the failures page groups it by reason, that pack, app version and model;
//! 6. the live view on a phone's page swaps its `<img>` for newer frames, each one loaded and
//!    showing the phone's screen as it changes (off, then on again), without a reload;
//! 7. a run on a phone that loses every tap of one view fails on the screen it stayed on, and
//!    its evidence highlights that view in the UI dump (`li.hit`);
//! 8. the browser logged no console error and no request failed.
//!
//! Screenshots go to `$PF_ARTIFACTS` or `<target dir>/console-screenshots/` (paths printed);
//! the ones in `docs/console/` come from here.

use std::time::Duration;

use phonefarm_phonemodel::{Fault, FaultTrigger};
use phonefarm_testkit::coordinator::receivers::{Receiver, Reply};
use phonefarm_testkit::wait_for;
use phonefarm_testkit::webdriver::{Browser, PAGE_WAIT};
use serde_json::{Value, json};

use crate::harness::{Options, System, request};

const TEST: &str = "the_console_in_a_browser_against_a_real_agent_and_simulated_phones";

/// One short run: one keyword, one video, one second.
fn short(keyword: &str) -> Value {
    json!({"keywords": [keyword], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 1}})
}

fn warmup_to(id: &str, account: &str, inputs: Value, callback: &str) -> Value {
    request(
        id,
        "keyword_warmup",
        "unattended",
        json!({"routing": "queue", "account_id": account}),
        inputs,
        callback,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser_against_a_real_agent_and_simulated_phones() {
    if !Browser::available(TEST) {
        return;
    }
    let started = std::time::Instant::now();
    let sys = System::start(Options::phones(4)).await;
    let d = Browser::start().await;
    let base = sys.coordinators[0].base.clone();
    // Scenario 5's run first: it waits out the flow's screen timeout (15 s) meanwhile.
    sys.sims[1]
        .phone
        .lock()
        .unwrap()
        .inject_fault(Fault::StrangeScreen, FaultTrigger::AfterInputs(2));
    let strange = sys
        .enqueue(warmup_to(
            "ui-strange",
            "acc-2",
            short("strange"),
            &sys.callback_url,
        ))
        .await;

    println!("scenario 1 from {:.1} s", started.elapsed().as_secs_f64());
    // 1. Sign in; the four phones (SIM0002 is busy with scenario 5's run by now, or soon).
    d.sign_in(&base, &sys.key).await;
    for i in [1, 3, 4] {
        d.wait_attribute(
            &format!("#phone-SIM000{i}"),
            "data-state",
            "online",
            PAGE_WAIT,
        )
        .await;
    }
    let state = d.attribute("#phone-SIM0002", "data-state").await;
    assert!(
        matches!(state.as_deref(), Some("online" | "busy")),
        "SIM0002 {state:?}"
    );
    assert_eq!(d.count("tr[id^=phone-]").await, 4, "{}", d.text().await);
    d.screenshot("system-fleet").await;

    println!("scenario 2 from {:.1} s", started.elapsed().as_secs_f64());
    // 2. A process from the API shows up on the open processes page and completes there.
    let hook = Receiver::start(vec![Reply::Status(503)]).await;
    d.go(&format!("{base}/ui/processes")).await;
    d.script("window.__noReload = 42; return null").await;
    let id = sys
        .enqueue(warmup_to(
            "ui-1",
            "acc-1",
            short("console"),
            &hook.url("/hook"),
        ))
        .await;
    let row = format!("tr[data-process='{id}']");
    assert!(
        d.find(&row).await.is_none(),
        "the row was not there at load"
    );
    d.wait_attribute(
        &format!("{row} [data-status]"),
        "data-status",
        "completed",
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        d.script("return window.__noReload").await,
        42,
        "the page was not reloaded"
    );
    d.screenshot("system-processes").await;

    println!("scenario 3 from {:.1} s", started.elapsed().as_secs_f64());
    // 3. Its page: milestones, and each callback with its attempts (the first one refused).
    d.go(&format!("{base}/ui/processes/{id}")).await;
    let milestones = d
        .script("return [...document.querySelectorAll('ol.milestones li strong')].map(e => e.innerText)")
        .await;
    for m in ["accepted", "queued", "executing", "finished"] {
        assert!(
            milestones
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x.as_str() == Some(m)),
            "milestone {m} in {milestones}"
        );
    }
    // The page is live: wait until the three callbacks are delivered, one after a 503.
    let deliveries = d
        .wait_script(
            "three delivered callbacks on the process page",
            "const s = [...document.querySelectorAll('section.delivery')].map(d => ({
                 head: d.querySelector('h3').innerText,
                 codes: [...d.querySelectorAll('tr.attempt')].map(r => r.children[2].innerText)}));
             return s.length === 3 && s.every(d => d.head.includes('delivered')) ? s : null",
            Duration::from_secs(30),
        )
        .await;
    let all: Vec<(String, Vec<String>)> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let codes = d["codes"].as_array().unwrap();
            let codes = codes.iter().map(|c| c.as_str().unwrap().to_string());
            (d["head"].as_str().unwrap().to_string(), codes.collect())
        })
        .collect();
    for m in ["accepted", "executing", "completed"] {
        assert!(
            all.iter().any(|(h, _)| h.contains(m)),
            "a {m} callback: {all:?}"
        );
    }
    let mut codes: Vec<Vec<String>> = all.iter().map(|(_, c)| c.clone()).collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![
            vec!["200".to_string()],
            vec!["200".into()],
            vec!["503".into(), "200".into()]
        ],
        "{all:?}"
    );
    assert_eq!(hook.count(), 4, "the receiver saw every attempt");
    d.script("document.querySelector('section.delivery').scrollIntoView(); return null")
        .await;
    d.screenshot("system-process-callbacks").await;

    println!("scenario 4 from {:.1} s", started.elapsed().as_secs_f64());
    // 4. Disabled from its page, SIM0003 gets no work; enabled again, its work runs.
    d.go(&format!("{base}/ui/phones/SIM0003")).await;
    d.click("button[value=disable]").await;
    d.wait_script(
        "the page showing the phone disabled",
        "return document.body.innerText.includes('disabled')",
        PAGE_WAIT,
    )
    .await;
    let phone = sys.get("/phones/SIM0003").await;
    assert_eq!(phone["enabled"], false, "{phone}");
    d.screenshot("system-phone-disabled").await;
    let held = sys
        .enqueue(warmup_to(
            "ui-held",
            "acc-3",
            short("held"),
            &sys.callback_url,
        ))
        .await;
    let other = sys
        .enqueue(warmup_to(
            "ui-other",
            "acc-4",
            short("other"),
            &sys.callback_url,
        ))
        .await;
    // Enqueued after the held one, the other completes: the dispatcher had its turns.
    sys.wait_status(&other, "completed", Duration::from_secs(90))
        .await;
    let p = sys.get(&format!("/processes/{held}")).await;
    assert_eq!(
        p["status"], "queued",
        "work for the disabled phone waits: {p}"
    );
    let item = sys.item(&sys.item_of(&held).await).await;
    assert_eq!(item["attempt"], 0, "never dispatched: {item}");
    assert!(
        sys.sims[2].searches().is_empty(),
        "nothing ran on the disabled phone"
    );
    d.click("button[value=enable]").await;
    sys.wait_status(&held, "completed", Duration::from_secs(90))
        .await;
    assert_eq!(sys.sims[2].searches(), vec!["held".to_string()]);

    println!("scenario 5 from {:.1} s", started.elapsed().as_secs_f64());
    // 5. A screen no pack knows: the run fails with evidence, shown on its page.
    let failed = sys
        .wait_status(&strange, "failed_terminal", Duration::from_secs(90))
        .await;
    assert_eq!(failed["error"]["code"], "flow_error:unknown", "{failed}");
    let qid = sys.item_of(&strange).await;
    d.go(&format!("{base}/ui/processes/{strange}")).await;
    let href = d.attribute("a[href^='/ui/evidence/']", "href").await;
    assert_eq!(href, Some(format!("/ui/evidence/{qid}/1")));
    // The failures page groups it by reason, the run's pack, app version and model, and links
    // the evidence of its last attempt.
    d.go(&format!("{base}/ui/failures")).await;
    let rows = d
        .script(
            "return [...document.querySelectorAll('table.failures tbody tr')].map(r =>
                 [...r.children].slice(0, 5).map(c => c.innerText)
                     .concat([r.querySelector('a').getAttribute('href')]))",
        )
        .await;
    let want = json!([
        "1",
        "flow_error",
        "tiktok-32 r1",
        "32.5.3",
        "Phonesim_One",
        format!("/ui/evidence/{qid}/last")
    ]);
    assert_eq!(rows, json!([want]), "the one failed run's group");
    d.screenshot("system-failures").await;
    let evidence_url = format!("{base}/ui/evidence/{qid}/last");
    // The agent announces evidence before its uploader has stored it: the page says so until
    // then (no broken image); reloaded until the screenshot and the dump are there.
    let width = wait_for(
        "the evidence uploaded",
        Duration::from_secs(30),
        async || {
            d.go(&evidence_url).await;
            let js = "const i = document.querySelector('figure.screenshot img');
                  return i && i.complete && document.querySelector('figure.dump')
                      ? i.naturalWidth : null";
            d.script(js).await.as_u64()
        },
    )
    .await;
    assert!(width > 0, "the screenshot loaded: naturalWidth {width}");
    let text = d.text().await;
    assert!(text.contains("Something new"), "the dump's nodes: {text}");
    // What failed is the expected screen: named and marked; no node of it is on this one.
    assert_eq!(
        d.attribute("figure.dump [data-expected]", "data-expected")
            .await
            .as_deref(),
        Some("search_results"),
        "{text}"
    );
    assert_eq!(d.count("figure.dump li.hit").await, 0, "{text}");
    assert_eq!(
        d.attribute("[data-run-pack]", "data-run-pack")
            .await
            .as_deref(),
        Some("tiktok-32 r1"),
        "{text}"
    );
    assert_eq!(
        d.attribute("[data-app-version]", "data-app-version")
            .await
            .as_deref(),
        Some("32.5.3"),
        "{text}"
    );
    d.screenshot("system-evidence").await;

    println!("scenario 6 from {:.1} s", started.elapsed().as_secs_f64());
    // 6. The live view: on SIM0001's page the screen's <img> is swapped for each new frame
    // (agent → NATS → coordinator → SSE → browser), each one loaded, without a reload, and it
    // follows the phone's screen as it changes.
    d.go(&format!("{base}/ui/phones/SIM0001")).await;
    d.script("window.__noReload = 6; return null").await;
    // The frame the page shows, once loaded: its number, its URL, and what the phone's
    // screen was (the simulator writes it into the PNG; the page's URL fetched again).
    let loaded_frame = "const i = document.querySelector('div.frame img[data-frame]');
        if (!(i && i.complete && i.naturalWidth > 0)) return null;
        const n = Number(i.dataset.frame), src = i.getAttribute('src');
        return fetch(src).then(r => r.text())
            .then(t => [n, src, (t.match(/screen=[A-Za-z]+/) || [''])[0]]);";
    // (turn the screen on or off first, what the frame must show)
    type Shows = fn(&str) -> bool;
    let steps: [(Option<bool>, Shows); 3] = [
        (None, |_| true),
        (Some(false), |s| s == "screen=ScreenOff"),
        (Some(true), |s| {
            s.starts_with("screen=") && s != "screen=ScreenOff"
        }),
    ];
    let mut last = 0;
    for (screen_on, shows) in steps {
        if let Some(on) = screen_on {
            sys.sims[0].phone.lock().unwrap().set_screen_on(on);
        }
        let (n, src, screen) = wait_for(
            "a newer frame of the phone's screen loaded in the page",
            Duration::from_secs(30),
            async || {
                let v = d.script(loaded_frame).await;
                let n = v[0].as_u64()?;
                let screen = v[2].as_str().unwrap_or_default().to_string();
                (n > last && shows(&screen))
                    .then(|| (n, v[1].as_str().unwrap_or_default().to_string(), screen))
            },
        )
        .await;
        assert_eq!(src, format!("/ui/phones/SIM0001/screen?n={n}"), "{screen}");
        last = n;
    }
    assert_eq!(
        d.script("return window.__noReload").await,
        6,
        "the frames came without a reload"
    );
    d.screenshot("system-live-view").await;

    println!("scenario 7 from {:.1} s", started.elapsed().as_secs_f64());
    // 7. A view that never takes a tap (the phone loses every tap of it): the run fails on the
    // screen it stayed on, and its evidence highlights that view in the UI dump.
    sys.sims[3]
        .phone
        .lock()
        .unwrap()
        .inject_fault(Fault::LoseTaps { n: 4 }, FaultTrigger::AfterDumps(1));
    let untaken = sys
        .enqueue(warmup_to(
            "ui-untaken",
            "acc-4",
            short("untaken"),
            &sys.callback_url,
        ))
        .await;
    let failed = sys
        .wait_status(&untaken, "failed_terminal", Duration::from_secs(90))
        .await;
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not take"), "{failed}");
    let qid = sys.item_of(&untaken).await;
    let evidence_url = format!("{base}/ui/evidence/{qid}/last");
    let hits = wait_for(
        "the evidence of the untaken tap uploaded",
        Duration::from_secs(30),
        async || {
            d.go(&evidence_url).await;
            let js = "return document.querySelector('figure.dump')
                ? document.querySelectorAll('figure.dump li.hit').length : null";
            d.script(js).await.as_u64()
        },
    )
    .await;
    let text = d.text().await;
    assert_eq!(hits, 1, "the one view the taps missed: {message}\n{text}");
    assert!(text.contains("1 matching node(s) highlighted"), "{text}");
    d.script("document.querySelector('figure.dump li.hit').scrollIntoView(); return null")
        .await;
    d.screenshot("system-evidence-highlight").await;

    println!("scenario 8 from {:.1} s", started.elapsed().as_secs_f64());
    // 8. Nothing went wrong in the browser.
    let problems = d.problems().await;
    assert!(
        problems.is_empty(),
        "the browser logged errors or failed requests: {problems:#?}"
    );
    let cancelled = d.cancelled_requests().await;
    d.quit().await;
    println!(
        "{TEST}: {:.1} s (system, browser and scenarios); {cancelled} loads cancelled by \
         leaving a page (live streams), not failures",
        started.elapsed().as_secs_f64()
    );
}
