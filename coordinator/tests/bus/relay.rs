//! The relay's two paths: rows claimed from the outbox, and work orders handed over in memory
//! by this replica's dispatcher (`relay::Handoff`). Driven pass by pass on a stopped
//! coordinator, so no loop runs beside the test.

use phonefarm_coordinator::bus::{self, relay};
use phonefarm_coordinator::db;
use phonefarm_shared::subjects;

use phonefarm_testkit::coordinator::bus::*;

async fn published(app: &BusApp) -> Vec<String> {
    sqlx::query_scalar("SELECT msg_id FROM outbox WHERE published_at IS NOT NULL ORDER BY id")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn held_rows_go_only_by_the_handoff_and_given_back_rows_by_the_claim() {
    let mut app = BusApp::spawn().await;
    app.stop().await;
    let bus = bus::connect(test_config(app.nats.url())).await.unwrap();
    let mut conn = app.db.pool.acquire().await.unwrap();
    let subject = subjects::work("rack-1");
    let rows = db::outbox::insert_all(
        &mut conn,
        &vec![subject; 4],
        &["m0", "m1", "m2", "m3"].map(String::from),
        &vec![b"order".to_vec(); 4],
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 4);

    // m1..m3 are held (a dispatcher is committing them): the claim pass takes m0 only.
    bus.handoff.hold(&rows[1..]);
    let p = relay::pass(&bus, &mut conn).await.unwrap();
    assert_eq!((p.published, p.failed), (1, 0));
    assert_eq!(published(&app).await, ["m0"]);
    let p = relay::pass(&bus, &mut conn).await.unwrap();
    assert_eq!(p.published, 0, "held rows are not claimed");

    // The commit went through for m1 and m2: the relay publishes them without a claim.
    bus.handoff.ready(rows[1..3].to_vec());
    let p = relay::pass(&bus, &mut conn).await.unwrap();
    assert_eq!((p.published, p.failed), (2, 0));
    assert_eq!(published(&app).await, ["m0", "m1", "m2"]);

    // m3's commit failed as far as the dispatcher knows: given back, the claim pass takes it.
    bus.handoff.release([rows[3].id]);
    let p = relay::pass(&bus, &mut conn).await.unwrap();
    assert_eq!(p.published, 1);
    assert_eq!(published(&app).await, ["m0", "m1", "m2", "m3"]);
    let p = relay::pass(&bus, &mut conn).await.unwrap();
    assert_eq!(p.published, 0);

    // All four reached the stream.
    let mut stream = bus.js.get_stream(subjects::WORK_STREAM).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4);
}
