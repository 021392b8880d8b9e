//! The `phonefarm-coordinator` binary: API keys through the CLI, and invalid configuration
//! exiting with a one-line cause before binding anything.

use std::process::{Command, Output};

use phonefarm_testkit::{TestDb, admin_url};
use sqlx::PgPool;

fn bin(args: &[&str], db: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phonefarm-coordinator"))
        .args(args)
        .env("DATABASE_URL", db)
        .env_remove("INGEST_SECRET")
        .env_remove("PHONEFARM_CALLBACK_ALLOW_CIDRS")
        .output()
        .expect("run the coordinator binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn api_keys_are_created_listed_and_revoked() {
    let test_db = TestDb::create().await;
    let url = test_db.url.clone();

    let out = bin(
        &[
            "api-key",
            "create",
            "--name",
            "tracker",
            "--role",
            "integrator",
            "--system",
            "ugc",
        ],
        &url,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_string();
    assert!(key.starts_with("pf_") && key.len() == 46, "{key}");

    let dup = bin(
        &["api-key", "create", "--name", "tracker", "--role", "admin"],
        &url,
    );
    assert!(!dup.status.success());
    let err = text(&dup.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("exists already"), "{err}");

    let list = bin(&["api-key", "list"], &url);
    let listed = text(&list.stdout);
    assert!(listed.contains("tracker") && listed.contains("integrator") && listed.contains("ugc"));
    assert!(
        !listed.contains(&key),
        "the key itself is never shown again"
    );

    assert!(
        bin(&["api-key", "revoke", "--name", "tracker"], &url)
            .status
            .success()
    );
    let again = bin(&["api-key", "revoke", "--name", "tracker"], &url);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("no active key"));

    let db = PgPool::connect(&url).await.unwrap();
    let (revoked,): (bool,) =
        sqlx::query_as("SELECT revoked_at IS NOT NULL FROM api_keys WHERE name = 'tracker'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(revoked);
    db.close().await;
}

#[test]
fn invalid_configuration_exits_with_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "serve",
                "--bind",
                &bind,
                "--callback-allow-cidr",
                "10.0.0.0/33",
            ],
            "not a CIDR",
        ),
        (vec!["serve", "--bind", "nonsense"], "invalid value"),
        (
            vec!["api-key", "create", "--name", "x", "--role", "root"],
            "invalid value",
        ),
    ];
    for (args, expect) in cases {
        let out = bin(&args, &admin_url());
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    // A missing signing key: its path and the I/O error, said once.
    let out = bin(
        &[
            "flowpack",
            "publish",
            "/nonexistent/pack.toml",
            "--signing-key",
            "/nonexistent/flowpack.key",
        ],
        &admin_url(),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("/nonexistent/flowpack.key"), "{err}");
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
    // Postgres unreachable: a one-line cause, and nothing was bound.
    let out = bin(
        &["serve", "--bind", &bind],
        "postgres://postgres@127.0.0.1:1/none",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: connecting to Postgres"), "{err}");
    assert!(
        std::net::TcpListener::bind(&bind).is_ok(),
        "the port was left bound"
    );
}
