//! `fleetgate admin create-tenant` (contract 3): one JSON object with the tenant id and
//! an admin API key, against a migrated, isolated schema.

use std::process::Command;

#[tokio::test]
async fn create_tenant_prints_its_id_and_an_admin_key() {
    let (_, url) =
        fleetgate_testkit::isolated_schema(&fleetgate_testkit::base_url(), "cli").await.expect("postgres reachable");
    let mut client = fleetgate_store::connect(&url).await.expect("connect");
    fleetgate_store::migrate(&mut client).await.expect("migrate");
    let output = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
        .args(["admin", "create-tenant", "--name", "Acme Logistics"])
        .env("FLEETGATE_POSTGRES_URL", &url)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let tenant_id = printed["tenant_id"].as_i64().expect("tenant_id");
    assert!(printed["api_key"].as_str().is_some_and(|k| k.starts_with("fgk_")));
    let row = client
        .query_one(
            "SELECT t.name, k.role FROM tenants t JOIN api_keys k ON k.tenant_id = t.id WHERE t.id = $1",
            &[&tenant_id],
        )
        .await
        .expect("stored");
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("Acme Logistics".to_owned(), "admin".to_owned()));

    let empty = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
        .args(["admin", "create-tenant", "--name", " "])
        .env("FLEETGATE_POSTGRES_URL", &url)
        .output()
        .expect("runs");
    assert!(!empty.status.success(), "an empty name is refused");
}
