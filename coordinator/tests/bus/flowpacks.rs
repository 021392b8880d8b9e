//! `flowpack publish`: a valid pack is signed and stored in KV `pf_flows` (the signature
//! verifies over its key and TOML); an invalid or stale one is refused. Agents' pack reports
//! are mirrored into Postgres (an older report changes nothing) and `flowpack list` shows the
//! published revision, what each agent runs and what it refused.

use std::process::Command;
use std::time::Duration;

use ed25519_dalek::Verifier as _;
use phonefarm_coordinator::flowpacks::{self, FlowPackError};
use phonefarm_shared::{PackRejected, PackReport, PackRunning, SignedPack, subjects};

use phonefarm_testkit::coordinator::bus::*;

fn pack(revision: u32) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../flowpacks/tiktok-32.toml"),
    )
    .unwrap();
    assert!(text.contains("revision = 1"));
    text.replace("revision = 1", &format!("revision = {revision}"))
}

#[tokio::test]
async fn packs_are_validated_signed_published_and_reported() {
    let app = BusApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("publisher.key");
    let key = flowpacks::keygen(&key_path).unwrap();

    let p = flowpacks::publish(&app.db.pool, &app.bus.js, &key, "t", &pack(2))
        .await
        .expect("published");
    assert_eq!((p.name.as_str(), p.revision), ("tiktok-32", 2));
    let kv = app
        .bus
        .js
        .get_key_value(subjects::FLOWS_BUCKET)
        .await
        .unwrap();
    let value = kv.get("tiktok-32").await.unwrap().expect("stored");
    let signed: SignedPack = phonefarm_shared::decode(&value).unwrap();
    assert_eq!(signed.toml, pack(2));
    let sig = ed25519_dalek::Signature::from_slice(&signed.signature).unwrap();
    key.verifying_key()
        .verify(
            &phonefarm_shared::pack_signing_input("tiktok-32", &signed.toml),
            &sig,
        )
        .expect("the signature covers the key and the TOML");

    // The same or a lower revision, or a pack that does not validate: refused, nothing stored.
    for r in [1, 2] {
        assert!(matches!(
            flowpacks::publish(&app.db.pool, &app.bus.js, &key, "t", &pack(r)).await,
            Err(FlowPackError::Stale { published: 2, .. })
        ));
    }
    assert!(matches!(
        flowpacks::publish(&app.db.pool, &app.bus.js, &key, "t", "[pack]\nname = 1\n").await,
        Err(FlowPackError::Invalid(_))
    ));
    assert_eq!(
        kv.entry("tiktok-32").await.unwrap().unwrap().revision,
        p.kv_revision
    );

    // An agent reports what it runs and what it refused.
    let report = |seq: u64, at: i64, revision: u32, rejected: Vec<PackRejected>| PackReport {
        agent_id: "rack-1".into(),
        seq,
        at_unix_ms: at,
        running: vec![PackRunning {
            name: "tiktok-32".into(),
            revision,
            sha256: p.sha256.clone(),
            kv: Some(("tiktok-32".into(), p.kv_revision)),
        }],
        rejected,
    };
    let refusal = PackRejected {
        key: "tiktok-33".into(),
        kv_revision: 9,
        signer: Some("ed25519:c3RyYW5nZXI=".into()),
        reason: "untrusted_signer".into(),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    for r in [
        report(2, now, 2, vec![refusal.clone()]),
        report(1, now - 5000, 1, vec![]),
    ] {
        app.bus
            .js
            .publish(
                subjects::pack_reports("rack-1"),
                phonefarm_shared::encode(&r).into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let pool = app.db.pool.clone();
    wait_until("the report mirrored", Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT report_seq FROM agent_flow_packs WHERE agent_id = 'rack-1'",
            )
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
                == Some(2)
        }
    })
    .await;
    // The older report (delivered after) did not replace it.
    wait_until("both reports consumed", Duration::from_secs(20), || async {
        let Ok(stream) = app.bus.js.get_stream(subjects::EVT_STREAM).await else {
            return false;
        };
        let Ok(mut c) = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
                flowpacks::REPORTS_CONSUMER,
            )
            .await
        else {
            return false;
        };
        c.info()
            .await
            .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
    })
    .await;
    let seq: i64 = app
        .scalar(
            "SELECT report_seq FROM agent_flow_packs WHERE agent_id = $1",
            "rack-1",
        )
        .await;
    assert_eq!(seq, 2);

    let out = Command::new(env!("CARGO_BIN_EXE_phonefarm-coordinator"))
        .args(["flowpack", "list"])
        .env("DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let published = flowpacks::public_key_text(&key);
    assert!(
        text.lines()
            .any(|l| l.starts_with("tiktok-32 ") && l.contains(" 2 ") && l.contains(&published)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("rack-1 ") && l.contains("tiktok-32") && l.contains(" 2 ")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("rack-1 ")
            && l.contains("tiktok-33")
            && l.contains("REFUSED")
            && l.contains("untrusted_signer")),
        "{text}"
    );
}

#[tokio::test]
async fn the_cli_publishes_with_a_key_from_keygen() {
    let app = BusApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("publisher.key");
    let file = dir.path().join("tiktok-32.toml");
    std::fs::write(&file, pack(3)).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_phonefarm-coordinator"))
            .args(args)
            .env("DATABASE_URL", &app.db.url)
            .env("NATS_URL", app.nats.url())
            .env("PHONEFARM_FLOWPACK_KEY", &key)
            .output()
            .unwrap()
    };
    let out = run(&["flowpack", "keygen", "--out", key.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.lines().any(|l| l.starts_with("ed25519:")), "{line}");
    let out = run(&["flowpack", "publish", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("published tiktok-32 revision 3"));
    let again = run(&["flowpack", "publish", file.to_str().unwrap()]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("not above the published revision 3"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
