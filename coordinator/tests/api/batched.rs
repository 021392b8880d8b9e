//! Group commit (`http::batched`): a batch answers each request as it would be answered alone,
//! and one failing request does not fail its neighbours.

use std::sync::Arc;

use phonefarm_coordinator::domain::{requests, routing::RoutingError};
use phonefarm_coordinator::http::batched::{self, Creation, Outcome};
use serde_json::{Value, json};
use uuid::Uuid;

use phonefarm_testkit::coordinator::app::*;

const CB: &str = "http://127.0.0.1:9/cb";

fn creation(body: &Value) -> Creation {
    Creation::new(Arc::new(requests::enqueue(body).expect("a valid request")))
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn one_batch_gives_each_request_its_own_outcome() {
    let app = spawn_app().await;
    app.account("acc-1", "phone-1").await;
    app.account("acc-2", "phone-2").await;
    assert_eq!(
        app.enqueue(&keyword_request("old", "acc-1", CB))
            .await
            .status,
        202
    );
    // A request Postgres refuses (standing in for any insert that fails for one row only).
    sqlx::query(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.request_id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; \
         RETURN NEW; END $$",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON processes \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();

    let batch = vec![
        creation(&keyword_request("new-1", "acc-1", CB)),
        creation(&keyword_request("old", "acc-1", CB)),
        creation(&keyword_request("ghost-1", "ghost", CB)),
        creation(&keyword_request("twin", "acc-2", CB)),
        creation(&keyword_request("twin", "acc-2", CB)),
        creation(&keyword_request("new-2", "acc-2", CB)),
    ];
    let twin_first = batch[3].process_id;
    let created = batched::commit(&app.db.pool, batch).await;
    assert_eq!(
        created,
        vec![
            Ok(Outcome::Created { items: 1 }),
            Ok(Outcome::Exists),
            Ok(Outcome::Routing(RoutingError::NotFound(vec![
                "account_not_found:ghost".into()
            ]))),
            Ok(Outcome::Created { items: 1 }),
            Ok(Outcome::Exists),
            Ok(Outcome::Created { items: 1 }),
        ]
    );
    let (twin,): (Uuid,) =
        sqlx::query_as("SELECT process_id FROM processes WHERE request_id = 'twin'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(twin, twin_first, "the first of two equal keys wins");

    // The same batch with a poisoned request: the batch transaction fails, its requests are
    // retried one by one, and only the poisoned one fails.
    let batch = vec![
        creation(&keyword_request("new-3", "acc-1", CB)),
        creation(&keyword_request("poison", "acc-1", CB)),
        creation(&keyword_request("new-1", "acc-1", CB)),
        creation(&keyword_request("new-4", "acc-2", CB)),
    ];
    let out = batched::commit(&app.db.pool, batch).await;
    assert_eq!(out[0], Ok(Outcome::Created { items: 1 }));
    assert_eq!(out[1].as_ref().map_err(|e| e.status.as_u16()), Err(500));
    assert_eq!(out[2], Ok(Outcome::Exists));
    assert_eq!(out[3], Ok(Outcome::Created { items: 1 }));

    // Every created process has exactly its item and its `accepted` callback (sequence 1).
    assert_eq!(count(&app, "SELECT count(*) FROM processes").await, 6);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM processes p WHERE \
             (SELECT count(*) FROM queue_items q WHERE q.process_id = p.process_id) = 1 \
             AND (SELECT count(*) FROM callback_deliveries d WHERE d.process_id = p.process_id \
                  AND d.sequence = 1 AND d.body::jsonb->>'milestone' = 'accepted' \
                  AND d.body::jsonb->'process'->>'request_id' = p.request_id) = 1"
        )
        .await,
        6
    );
    assert_eq!(count(&app, "SELECT count(*) FROM queue_items").await, 6);
    assert_eq!(
        count(&app, "SELECT count(*) FROM callback_deliveries").await,
        6
    );
}

#[tokio::test]
async fn a_concurrent_burst_gets_the_answers_each_request_gets_alone() {
    let app = spawn_app().await;
    for i in 0..4 {
        app.account(&format!("acc-{i}"), &format!("phone-{i}"))
            .await;
    }
    let mut bodies = Vec::new();
    for i in 0..40 {
        bodies.push(keyword_request(
            &format!("r-{i}"),
            &format!("acc-{}", i % 4),
            CB,
        ));
    }
    for i in 0..10 {
        bodies.push(keyword_request(
            &format!("r-{i}"),
            &format!("acc-{}", i % 4),
            CB,
        ));
    }
    for i in 0..5 {
        bodies.push(keyword_request(&format!("g-{i}"), "ghost", CB));
    }
    let results = futures::future::join_all(bodies.iter().map(|b| app.enqueue(b))).await;
    let mut ids = std::collections::HashMap::new();
    for (body, r) in bodies.iter().zip(&results) {
        let rid = body["request_id"].as_str().unwrap();
        match r.status.as_u16() {
            202 | 200 => {
                let id = r.body["process_id"].as_str().unwrap().to_owned();
                assert_eq!(&r.body["request_id"], rid);
                let prev = ids.insert(rid.to_owned(), id.clone());
                assert!(prev.is_none_or(|p| p == id), "one process per request id");
            }
            404 => {
                assert!(rid.starts_with("g-"));
                assert_eq!(r.body["errors"], json!(["account_not_found:ghost"]));
            }
            s => panic!("{rid}: unexpected {s}: {:?}", r.body),
        }
    }
    let created = results.iter().filter(|r| r.status == 202).count();
    let duplicates = results
        .iter()
        .filter(|r| r.status == 200 && r.body["duplicate"] == true)
        .count();
    assert_eq!((created, duplicates, ids.len()), (40, 10, 40));
    assert_eq!(count(&app, "SELECT count(*) FROM processes").await, 40);
    assert_eq!(count(&app, "SELECT count(*) FROM queue_items").await, 40);
    assert_eq!(
        count(&app, "SELECT count(*) FROM callback_deliveries").await,
        40
    );
    // Every answer can be read back.
    for id in ids.values() {
        let r = app.get(&format!("/processes/{id}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["status"], "queued");
    }
}

#[tokio::test]
async fn concurrent_reads_of_many_processes_each_get_their_own() {
    let app = spawn_app().await;
    app.account("acc-1", "phone-1").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = app
            .enqueue(&keyword_request(&format!("v-{i}"), "acc-1", CB))
            .await;
        ids.push((
            format!("v-{i}"),
            r.body["process_id"].as_str().unwrap().to_owned(),
        ));
    }
    let missing = Uuid::now_v7().to_string();
    let paths: Vec<String> = ids
        .iter()
        .map(|(_, id)| format!("/processes/{id}"))
        .chain(std::iter::once(format!("/processes/{missing}")))
        .chain(ids.iter().map(|(_, id)| format!("/processes/{id}")))
        .collect();
    let results = futures::future::join_all(paths.iter().map(|p| app.get(p))).await;
    for (path, r) in paths.iter().zip(&results) {
        if path.ends_with(&missing) {
            assert_eq!(r.status, 404);
            assert_eq!(
                r.body["errors"],
                json!([format!("process_not_found:{missing}")])
            );
            continue;
        }
        assert_eq!(r.status, 200, "{path}");
        let id = path.rsplit('/').next().unwrap();
        assert_eq!(r.body["process_id"], id);
        let rid = &ids.iter().find(|(_, i)| i == id).unwrap().0;
        assert_eq!(&r.body["request_id"], rid);
        assert_eq!(
            r.body["linked_ids"]["queue_item_ids"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }
}

#[tokio::test]
async fn a_batch_larger_than_one_statement_is_written_whole() {
    let app = spawn_app().await;
    app.account("acc-1", "phone-1").await;
    // 40 requests with ~2 KiB of inputs each: several statements per table in one transaction.
    let keywords: Vec<String> = (0..20)
        .map(|k| format!("{k:02}-{}", "k".repeat(97)))
        .collect();
    let batch: Vec<Creation> = (0..40)
        .map(|i| {
            let mut body = keyword_request(&format!("big-{i}"), "acc-1", CB);
            body["inputs"]["keywords"] = json!(keywords);
            creation(&body)
        })
        .collect();
    let ids: Vec<Uuid> = batch.iter().map(|c| c.process_id).collect();
    let out = batched::commit(&app.db.pool, batch).await;
    assert!(
        out.iter().all(|o| *o == Ok(Outcome::Created { items: 1 })),
        "{out:?}"
    );
    let stored: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT p.process_id, \
         (SELECT count(*) FROM queue_items q WHERE q.process_id = p.process_id \
            AND jsonb_array_length(q.inputs->'keywords') = 20), \
         (SELECT count(*) FROM callback_deliveries d WHERE d.process_id = p.process_id) \
         FROM processes p ORDER BY p.process_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(
        stored,
        want.into_iter().map(|id| (id, 1, 1)).collect::<Vec<_>>()
    );
}
