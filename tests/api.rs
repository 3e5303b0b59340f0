//! The REST API against real Postgres, Redis and NATS (and a real processor where data
//! must flow): contract 3's fixed subset, tenant isolation, the role matrix, bad input.

mod api_harness;

use api_harness::{Api, eventually};
use serde_json::{Value, json};

const IMEI: &str = "356307042441013";

async fn create_device(api: &Api, key: &str, identifier: &str) -> i64 {
    let body = json!({"identifier": identifier, "name": "Truck 1", "protocol": "teltonika"}).to_string();
    let response = api.call("POST", "/v1/devices", Some(key), Some(&body)).await;
    assert_eq!(response.status, 201, "{}", response.text());
    response.json()["id"].as_i64().expect("id")
}

#[tokio::test]
async fn the_fixed_subset_of_contract_3_end_to_end() {
    let api = Api::start(|_| {}).await;
    api.start_processor();
    assert_eq!(api.call("GET", "/health", None, None).await.status, 200);
    let (tenant_id, key) = api.tenant("Acme Logistics").await;
    assert!(key.starts_with("fgk_"));

    // POST /v1/devices: 201 with the device and its id; the same identifier again: 409.
    let body = json!({"identifier": IMEI, "name": "Truck 1", "protocol": "teltonika"}).to_string();
    let created = api.call("POST", "/v1/devices", Some(&key), Some(&body)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let device = created.json();
    assert_eq!(device["identifier"], IMEI);
    assert_eq!(device["name"], "Truck 1");
    assert_eq!(device["protocol"], "teltonika");
    let id = device["id"].as_i64().expect("id");
    let again = api.call("POST", "/v1/devices", Some(&key), Some(&body)).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["error"]["code"], "conflict");

    // No position yet: 404.
    assert_eq!(api.call("GET", &format!("/v1/devices/{id}/live"), Some(&key), None).await.status, 404);

    // Positions arrive through the stream and the processor.
    api.publish_positions(
        tenant_id,
        id,
        IMEI,
        &["2026-11-25T10:00:00Z", "2026-11-25T10:00:10Z", "2026-11-25T10:00:20Z"],
    )
    .await;
    let live_path = format!("/v1/devices/{id}/live");
    eventually("live position", || async { api.call("GET", &live_path, Some(&key), None).await.status == 200 }).await;
    let live = api.call("GET", &live_path, Some(&key), None).await.json();
    assert_eq!(live["device"], IMEI);
    assert_eq!(live["time"], "2026-11-25T10:00:20Z");
    assert_eq!(live["received"], "2026-11-25T16:00:00.123Z");
    assert_eq!(live["io"]["239"], 1);

    // History: ascending, complete, `next` null on the last page; paging by cursor.
    let range = "from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z";
    let path = format!("/v1/devices/{id}/positions?{range}");
    eventually("history", || async {
        api.call("GET", &path, Some(&key), None).await.json()["positions"].as_array().map_or(0, Vec::len) == 3
    })
    .await;
    let page = api.call("GET", &path, Some(&key), None).await.json();
    let times: Vec<&str> =
        page["positions"].as_array().expect("array").iter().filter_map(|p| p["time"].as_str()).collect();
    assert_eq!(times, ["2026-11-25T10:00:00Z", "2026-11-25T10:00:10Z", "2026-11-25T10:00:20Z"]);
    assert_eq!(page["positions"][0]["received"], "2026-11-25T16:00:00.123Z");
    assert_eq!(page["positions"][0]["speed"], 52);
    assert!(page["next"].is_null());
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/devices/{id}/positions?{range}&limit=2");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = api.call("GET", &path, Some(&key), None).await.json();
        for p in page["positions"].as_array().expect("array") {
            seen.push(p["time"].as_str().unwrap_or_default().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, times, "pages join up without gaps or repeats");

    // GeoJSON.
    let geo = api.call("GET", &format!("/v1/devices/{id}/positions?{range}&format=geojson"), Some(&key), None).await;
    assert_eq!(geo.status, 200);
    let geo = geo.json();
    assert_eq!(geo["type"], "Feature");
    assert_eq!(geo["geometry"]["type"], "LineString");
    assert_eq!(geo["geometry"]["coordinates"][0][0].as_f64(), Some(25.0));
    assert_eq!(geo["geometry"]["coordinates"][0][1].as_f64(), Some(54.0));
    assert_eq!(geo["properties"]["times"].as_array().map(Vec::len), Some(3));

    // The live list.
    let all = api.call("GET", "/v1/live", Some(&key), None).await.json();
    assert_eq!(all["vehicles"][0]["device_id"], id);
    assert_eq!(all["vehicles"][0]["position"]["time"], "2026-11-25T10:00:20Z");
}

#[tokio::test]
async fn another_tenants_objects_are_404_and_never_listed() {
    let api = Api::start(|_| {}).await;
    let (_, alice) = api.tenant("Alice").await;
    let (_, bob) = api.tenant("Bob").await;
    let alice_device = create_device(&api, &alice, "111111111111111").await;
    create_device(&api, &bob, "222222222222222").await;
    let range = "from=2026-01-01T00:00:00Z&to=2026-12-31T00:00:00Z";
    for (method, path, body) in [
        ("GET", format!("/v1/devices/{alice_device}"), None),
        ("PATCH", format!("/v1/devices/{alice_device}"), Some(r#"{"name":"mine now"}"#)),
        ("DELETE", format!("/v1/devices/{alice_device}"), None),
        ("GET", format!("/v1/devices/{alice_device}/live"), None),
        ("GET", format!("/v1/devices/{alice_device}/positions?{range}"), None),
        ("GET", format!("/v1/devices/{alice_device}/commands"), None),
        ("POST", format!("/v1/devices/{alice_device}/commands"), Some(r#"{"text":"getinfo"}"#)),
        ("GET", format!("/v1/stream?device={alice_device}"), None),
    ] {
        let response = api.call(method, &path, Some(&bob), body).await;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.text());
    }
    // Alice's group, driver, user and key are not Bob's to delete.
    let group = api.call("POST", "/v1/groups", Some(&alice), Some(r#"{"name":"North"}"#)).await.json()["id"].clone();
    let driver = api.call("POST", "/v1/drivers", Some(&alice), Some(r#"{"name":"Ann"}"#)).await.json()["id"].clone();
    let user = api
        .call(
            "POST",
            "/v1/users",
            Some(&alice),
            Some(r#"{"email":"a@alice.example","password":"long enough","role":"viewer"}"#),
        )
        .await
        .json()["id"]
        .clone();
    let key_id =
        api.call("POST", "/v1/api-keys", Some(&alice), Some(r#"{"role":"viewer"}"#)).await.json()["id"].clone();
    for path in [
        format!("/v1/groups/{group}"),
        format!("/v1/drivers/{driver}"),
        format!("/v1/users/{user}"),
        format!("/v1/api-keys/{key_id}"),
    ] {
        let response = api.call("DELETE", &path, Some(&bob), None).await;
        assert_eq!(response.status, 404, "DELETE {path}: {}", response.text());
    }
    for (path, field) in [("/v1/groups", "groups"), ("/v1/drivers", "drivers"), ("/v1/users", "users")] {
        let listed = api.call("GET", path, Some(&bob), None).await.json();
        assert_eq!(listed[field].as_array().map(Vec::len), Some(0), "{path}: {listed}");
    }
    let alice_groups = api.call("GET", "/v1/groups", Some(&alice), None).await.json();
    assert_eq!(alice_groups["groups"].as_array().map(Vec::len), Some(1), "Alice's group is still there");
    let listed = api.call("GET", "/v1/devices", Some(&bob), None).await.json();
    let identifiers: Vec<&str> =
        listed["devices"].as_array().expect("array").iter().filter_map(|d| d["identifier"].as_str()).collect();
    assert_eq!(identifiers, ["222222222222222"]);
    let live = api.call("GET", "/v1/live", Some(&bob), None).await.json();
    assert_eq!(live["vehicles"].as_array().map(Vec::len), Some(1));
    // Alice's device is untouched.
    let mine = api.call("GET", &format!("/v1/devices/{alice_device}"), Some(&alice), None).await.json();
    assert_eq!(mine["name"], "Truck 1");
}

#[tokio::test]
async fn roles_are_enforced_and_sessions_work() {
    let api = Api::start(|_| {}).await;
    let (_, admin) = api.tenant("Roles").await;
    let device = create_device(&api, &admin, "333333333333333").await;
    let mut keys = std::collections::HashMap::new();
    for role in ["viewer", "dispatcher"] {
        let body = json!({"name": role, "role": role}).to_string();
        let created = api.call("POST", "/v1/api-keys", Some(&admin), Some(&body)).await;
        assert_eq!(created.status, 201, "{}", created.text());
        keys.insert(role, created.json()["api_key"].as_str().expect("key").to_owned());
    }
    let (viewer, dispatcher) = (&keys["viewer"], &keys["dispatcher"]);
    let new_device = json!({"identifier": "444444444444444", "protocol": "teltonika"}).to_string();
    let command = r#"{"text":"getinfo"}"#;
    let commands = format!("/v1/devices/{device}/commands");
    // (caller, method, path, body, expected status)
    let matrix: Vec<(&str, &str, &str, Option<&str>, u16)> = vec![
        (viewer, "GET", "/v1/devices", None, 200),
        (viewer, "POST", "/v1/devices", Some(&new_device), 403),
        (viewer, "POST", &commands, Some(command), 403),
        (viewer, "GET", "/v1/users", None, 403),
        (viewer, "GET", "/v1/api-keys", None, 403),
        (viewer, "POST", "/v1/drivers", Some(r#"{"name":"Ann"}"#), 403),
        (dispatcher, "POST", "/v1/devices", Some(&new_device), 403),
        (dispatcher, "POST", &commands, Some(command), 202),
        (dispatcher, "POST", "/v1/drivers", Some(r#"{"name":"Ann","key_id":"01A2B3C4"}"#), 201),
        (dispatcher, "GET", "/v1/users", None, 403),
        (
            admin.as_str(),
            "POST",
            "/v1/users",
            Some(r#"{"email":"Eve@Example.com","password":"long enough","role":"viewer"}"#),
            201,
        ),
        (admin.as_str(), "GET", "/v1/users", None, 200),
        (admin.as_str(), "POST", "/v1/groups", Some(r#"{"name":"North"}"#), 201),
    ];
    for (key, method, path, body, expected) in matrix {
        let response = api.call(method, path, Some(key), body).await;
        assert_eq!(response.status, expected, "{method} {path}: {}", response.text());
    }
    // The queued command shows in the list.
    let listed = api.call("GET", &commands, Some(viewer), None).await.json();
    assert_eq!(listed["commands"][0]["text"], "getinfo");
    assert_eq!(listed["commands"][0]["status"], "queued");

    // A user logs in (email case does not matter), uses the token, logs out.
    let login =
        api.call("POST", "/v1/auth/login", None, Some(r#"{"email":"eve@example.com","password":"long enough"}"#)).await;
    assert_eq!(login.status, 200, "{}", login.text());
    let token = login.json()["token"].as_str().expect("token").to_owned();
    assert_eq!(login.json()["role"], "viewer");
    assert_eq!(api.call("GET", "/v1/devices", Some(&token), None).await.status, 200);
    assert_eq!(api.call("POST", "/v1/devices", Some(&token), Some(&new_device)).await.status, 403);
    assert_eq!(api.call("POST", "/v1/auth/logout", Some(&token), None).await.status, 204);
    assert_eq!(api.call("GET", "/v1/devices", Some(&token), None).await.status, 401);

    // A revoked key stops working at once (the cache is invalidated).
    let key_list = api.call("GET", "/v1/api-keys", Some(&admin), None).await.json();
    let viewer_key_id =
        key_list["api_keys"].as_array().expect("keys").iter().find(|k| k["name"] == "viewer").expect("viewer")["id"]
            .as_i64()
            .expect("id");
    assert_eq!(api.call("GET", "/v1/devices", Some(viewer), None).await.status, 200);
    assert_eq!(api.call("DELETE", &format!("/v1/api-keys/{viewer_key_id}"), Some(&admin), None).await.status, 204);
    assert_eq!(api.call("GET", "/v1/devices", Some(viewer), None).await.status, 401);
    // Keys are stored hashed: the table never holds one.
    let stored: i64 = api
        .postgres
        .query_one("SELECT count(*) FROM api_keys WHERE key_hash = convert_to($1, 'UTF8')", &[viewer])
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn bad_input_gets_a_clear_400_or_401_and_changes_nothing() {
    let api = Api::start(|config| config.api.max_body_bytes = 4096).await;
    let (_, key) = api.tenant("Input").await;
    let cases: Vec<(&str, &str, Option<String>, &str)> = vec![
        ("POST", "/v1/devices", Some("{not json".into()), "JSON"),
        (
            "POST",
            "/v1/devices",
            Some(r#"{"identifier": 356307042441013, "protocol": "teltonika"}"#.into()),
            "identifier",
        ),
        (
            "POST",
            "/v1/devices",
            Some(r#"{"identifier": "1", "protocol": "teltonika", "colour": "red"}"#.into()),
            "colour",
        ),
        ("POST", "/v1/devices", Some(r#"{"identifier": "1"}"#.into()), "protocol"),
        (
            "POST",
            "/v1/devices",
            Some(r#"{"identifier": "1", "protocol": "carrier-pigeon"}"#.into()),
            "protocol must be",
        ),
        ("POST", "/v1/devices", Some(r#"{"identifier": "no spaces", "protocol": "teltonika"}"#.into()), "identifier"),
        (
            "POST",
            "/v1/devices",
            Some(r#"{"identifier": "1", "protocol": "teltonika", "speed_limit": -5}"#.into()),
            "speed_limit",
        ),
        (
            "POST",
            "/v1/devices",
            Some(r#"{"identifier": "1", "protocol": "teltonika", "group_id": 999999}"#.into()),
            "group_id",
        ),
        (
            "POST",
            "/v1/devices",
            Some(format!(r#"{{"identifier": "1", "protocol": "teltonika", "name": "{}"}}"#, "x".repeat(5000))),
            "larger",
        ),
        (
            "POST",
            "/v1/devices",
            Some(r#"{"identifier": "356307042441013", "protocol": "gt06", "utc_offset": "Europe/Vilnius"}"#.into()),
            "utc_offset",
        ),
        (
            "POST",
            "/v1/devices",
            Some(r#"{"identifier": "356307042441013", "protocol": "gt06", "utc_offset": "+15:00"}"#.into()),
            "utc_offset",
        ),
        (
            "POST",
            "/v1/devices",
            Some(r#"{"identifier": "356307042441013", "protocol": "gt06", "model": ""}"#.into()),
            "model",
        ),
        ("POST", "/v1/devices", Some(r#"{"identifier": "35630704244101", "protocol": "gt06"}"#.into()), "15 digits"),
        ("GET", "/v1/devices/1/positions?from=yesterday&to=2026-01-01T00:00:00Z", None, "RFC 3339"),
        ("GET", "/v1/devices/1/positions?to=2026-01-01T00:00:00Z", None, "from"),
        (
            "GET",
            "/v1/devices/1/positions?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&limit=100000",
            None,
            "limit",
        ),
        ("GET", "/v1/devices/abc", None, "id"),
        ("POST", "/v1/users", Some(r#"{"email": "x@y.z", "password": "short", "role": "viewer"}"#.into()), "password"),
        ("POST", "/v1/users", Some(r#"{"email": "x@y.z", "password": "long enough", "role": "root"}"#.into()), "role"),
    ];
    for (method, path, body, says) in cases {
        let response = api.call(method, path, Some(&key), body.as_deref()).await;
        assert_eq!(response.status, 400, "{method} {path}: {}", response.text());
        let message = response.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(says), "{method} {path}: {message:?} should mention {says:?}");
    }
    assert_eq!(api.call("GET", "/v1/devices", None, None).await.status, 401);
    assert_eq!(api.call("GET", "/v1/devices", Some("fgk_0000"), None).await.status, 401);
    assert_eq!(api.call("GET", "/v1/devices", Some("'; DROP TABLE devices; --"), None).await.status, 401);
    assert_eq!(api.call("GET", "/v1/nothing-here", Some(&key), None).await.status, 404);
    // SQL metacharacters are data, stored and returned as sent.
    let name = r#"Robert'); DROP TABLE devices;-- "\ %_"#;
    let body = json!({"identifier": "555555555555555", "protocol": "wialon", "name": name, "plate": "' OR 1=1 --"})
        .to_string();
    let created = api.call("POST", "/v1/devices", Some(&key), Some(&body)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["name"], name);
    let listed = api.call("GET", "/v1/devices", Some(&key), None).await.json();
    assert_eq!(listed["devices"].as_array().map(Vec::len), Some(1), "nothing else was created");
}

#[tokio::test]
async fn a_devices_model_and_clock_offset_are_kept_changed_and_cleared() {
    let api = Api::start(|_| {}).await;
    let (_, key) = api.tenant("Settings").await;
    let body = r#"{"identifier": "356307042441013", "protocol": "gt06", "model": "VL103", "utc_offset": "+0530"}"#;
    let created = api.call("POST", "/v1/devices", Some(&key), Some(body)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!((&created.json()["model"], &created.json()["utc_offset"]), (&json!("VL103"), &json!("+05:30")));
    let id = created.json()["id"].as_i64().unwrap_or_default();
    let path = format!("/v1/devices/{id}");
    let changed = api.call("PATCH", &path, Some(&key), Some(r#"{"utc_offset": "-03:00"}"#)).await;
    assert_eq!((&changed.json()["model"], &changed.json()["utc_offset"]), (&json!("VL103"), &json!("-03:00")));
    let cleared = api.call("PATCH", &path, Some(&key), Some(r#"{"model": null, "utc_offset": null}"#)).await;
    assert_eq!((&cleared.json()["model"], &cleared.json()["utc_offset"]), (&Value::Null, &Value::Null));
    let refused = api.call("PATCH", &path, Some(&key), Some(r#"{"utc_offset": "+3:99"}"#)).await;
    assert_eq!(refused.status, 400);
    let unchanged = api.call("GET", &path, Some(&key), None).await;
    assert_eq!(unchanged.json()["utc_offset"], Value::Null);
}

#[tokio::test]
async fn login_brute_force_is_rate_limited() {
    let api = Api::start(|config| config.api.login_max_failures = 3).await;
    let (_, key) = api.tenant("Brute").await;
    let user = r#"{"email":"ops@brute.example","password":"the right one","role":"admin"}"#;
    assert_eq!(api.call("POST", "/v1/users", Some(&key), Some(user)).await.status, 201);
    let wrong = r#"{"email":"ops@brute.example","password":"guess"}"#;
    for _ in 0..3 {
        assert_eq!(api.call("POST", "/v1/auth/login", None, Some(wrong)).await.status, 401);
    }
    let limited = api.call("POST", "/v1/auth/login", None, Some(wrong)).await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    // Even the right password waits out the window.
    let right = r#"{"email":"ops@brute.example","password":"the right one"}"#;
    assert_eq!(api.call("POST", "/v1/auth/login", None, Some(right)).await.status, 429);
    // An unknown account fails the same way as a wrong password.
    let unknown =
        api.call("POST", "/v1/auth/login", None, Some(r#"{"email":"nobody@x.example","password":"guess"}"#)).await;
    assert_eq!(unknown.status, 401);
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let api = Api::start(|_| {}).await;
    let response = api.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(response.status, 200);
    let document = response.json();
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = document["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/v1/devices", &["get", "post"][..]),
        ("/v1/devices/{id}", &["get", "patch", "delete"]),
        ("/v1/devices/{id}/live", &["get"]),
        ("/v1/devices/{id}/positions", &["get"]),
        ("/v1/devices/{id}/commands", &["get", "post"]),
        ("/v1/live", &["get"]),
        ("/v1/stream", &["get"]),
        ("/v1/events", &["get"]),
        ("/v1/auth/login", &["post"]),
        ("/v1/auth/logout", &["post"]),
        ("/v1/users", &["get", "post"]),
        ("/v1/api-keys", &["get", "post"]),
        ("/v1/drivers", &["get", "post"]),
        ("/v1/groups", &["get", "post"]),
    ] {
        for method in methods {
            assert!(paths.get(path).and_then(|p| p.get(*method)).is_some(), "{method} {path} documented");
        }
    }
    // Every documented operation is served (not the 404 fallback).
    let (_, key) = api.tenant("Doc").await;
    // (The stream never ends, so it is left to its own test.)
    for path in paths.keys().filter(|p| *p != "/v1/stream") {
        let concrete = path.replace("{id}", "1");
        let response = api.call("GET", &concrete, Some(&key), None).await;
        assert!(
            response.status != 404 || response.json()["error"]["message"] != "route not found",
            "{path} is documented but not routed"
        );
    }
}

#[tokio::test]
async fn the_live_stream_pushes_positions_of_the_callers_tenant() {
    let api = Api::start(|_| {}).await;
    api.start_processor();
    let (tenant_id, key) = api.tenant("Streaming").await;
    let device = create_device(&api, &key, IMEI).await;
    let address = api.address;
    let stream_key = key.clone();
    let reader = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(address).await.expect("connect");
        let head = format!("GET /v1/stream HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {stream_key}\r\n\r\n");
        socket.write_all(head.as_bytes()).await.expect("write");
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&received).contains("event: position") {
            let n = socket.read(&mut buffer).await.expect("read");
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&received).into_owned()
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    api.publish_positions(tenant_id, device, IMEI, &["2026-11-25T11:00:00Z"]).await;
    let text = tokio::time::timeout(std::time::Duration::from_secs(20), reader).await.expect("pushed").expect("reader");
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains("2026-11-25T11:00:00Z"), "{text}");
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let api = Api::start(|config| config.api.session_ttl_s = 1).await;
    let (_, key) = api.tenant("Expiry").await;
    let user = r#"{"email":"short@expiry.example","password":"long enough","role":"viewer"}"#;
    assert_eq!(api.call("POST", "/v1/users", Some(&key), Some(user)).await.status, 201);
    let login = api
        .call("POST", "/v1/auth/login", None, Some(r#"{"email":"short@expiry.example","password":"long enough"}"#))
        .await;
    let token = login.json()["token"].as_str().expect("token").to_owned();
    assert_eq!(api.call("GET", "/v1/devices", Some(&token), None).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        api.call("GET", "/v1/devices", Some(&token), None).await.status,
        401,
        "expired, even though it was cached"
    );
}

#[tokio::test]
async fn sql_metacharacters_in_every_string_field_are_stored_as_data() {
    let api = Api::start(|_| {}).await;
    let (_, key) = api.tenant("Quotes").await;
    let (_, other_key) = api.tenant("Bystander").await;
    let bystander = create_device(&api, &other_key, "777777777777777").await;
    let nasty = r#"x'); DROP TABLE devices; -- "\ %_ $1 ;SELECT pg_sleep(10)"#;
    let short = r#"' OR 1=1;--"\%_"#;
    let email = r#"o'brien+%_"--@example.com"#;
    let calls: Vec<(&str, String, serde_json::Value, &str)> = vec![
        ("/v1/groups", "name".into(), json!({"name": nasty}), "name"),
        ("/v1/drivers", "name".into(), json!({"name": nasty, "key_id": nasty}), "key_id"),
        (
            "/v1/users",
            "email".into(),
            json!({"email": email, "password": "long enough", "name": nasty, "role": "viewer"}),
            "name",
        ),
        ("/v1/api-keys", "name".into(), json!({"name": nasty, "role": "viewer"}), "name"),
        (
            "/v1/devices",
            "identifier".into(),
            json!({"identifier": "888888888888888", "protocol": "wialon", "name": nasty, "plate": short, "password": short}),
            "plate",
        ),
    ];
    for (path, _, body, field) in &calls {
        let created = api.call("POST", path, Some(&key), Some(&body.to_string())).await;
        assert_eq!(created.status, 201, "{path}: {}", created.text());
        assert_eq!(created.json()[*field], body[*field], "{path}: {field} comes back as sent");
    }
    let users = api.call("GET", "/v1/users", Some(&key), None).await.json();
    assert!(users.to_string().contains(r#"o'brien+%_\"--@example.com"#), "{users}");
    let device = api.call("GET", "/v1/devices", Some(&key), None).await.json()["devices"][0]["id"].as_i64();
    let command = json!({"text": nasty}).to_string();
    let queued =
        api.call("POST", &format!("/v1/devices/{}/commands", device.unwrap_or(0)), Some(&key), Some(&command)).await;
    assert_eq!(queued.status, 202, "{}", queued.text());
    // Query strings too: a filter, a kind, a cursor.
    for path in [
        format!("/v1/events?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&kind={}", "x'%20OR%201=1--"),
        "/v1/devices?group=1%20OR%201=1".to_owned(),
    ] {
        let status = api.call("GET", &path, Some(&key), None).await.status;
        assert!(status == 200 || status == 400, "{path}: {status}");
    }
    // An identifier registered to another tenant: 409 for them, nothing changes for us.
    let taken = json!({"identifier": "888888888888888", "protocol": "teltonika", "name": "mine now"}).to_string();
    assert_eq!(api.call("POST", "/v1/devices", Some(&other_key), Some(&taken)).await.status, 409);
    let ours = api.call("GET", "/v1/devices", Some(&key), None).await.json();
    assert_eq!(ours["devices"][0]["name"], nasty);
    // Nothing leaked into or out of the other tenant, and every table is still there.
    let theirs = api.call("GET", "/v1/devices", Some(&other_key), None).await.json();
    assert_eq!(theirs["devices"].as_array().map(Vec::len), Some(1));
    assert_eq!(theirs["devices"][0]["id"], bystander);
    let tables: i64 =
        api.postgres.query_one("SELECT count(*) FROM devices", &[]).await.expect("devices table still there").get(0);
    assert_eq!(tables, 2);
}

/// A day of one truck: parked, a 10-minute drive, idling, parked with a refuel, a
/// 5-minute drive; one position a minute.
fn truck_day(identifier: &str) -> Vec<serde_json::Value> {
    let mut positions = Vec::new();
    let mut lat = 54.0;
    let mut fuel = 60.0;
    for minute in 0..50 {
        let (speed, ignition) = match minute {
            10..=20 => (60.0, true),
            21..=23 => (0.0, true),
            40..=45 => (60.0, true),
            _ => (0.0, false),
        };
        if speed > 0.0 && minute != 10 && minute != 40 {
            lat += 0.009; // about 1 km
            fuel -= 0.1;
        }
        if minute == 30 {
            fuel += 30.0;
        }
        positions.push(json!({
            "device": identifier, "protocol": "teltonika",
            "time": format!("2026-11-25T08:{minute:02}:00Z"), "received": "2026-11-25T16:00:00Z",
            "lat": lat, "lon": 25.0, "speed": speed, "valid": true,
            "attrs": {"ignition": ignition, "fuel_litres": (fuel * 10.0_f64).round() / 10.0}, "io": {}
        }));
    }
    positions
}

#[tokio::test]
async fn reports_find_trips_stops_and_totals() {
    let api = Api::start(|_| {}).await;
    api.start_processor();
    let (tenant_id, key) = api.tenant("Reports").await;
    let (_, other_key) = api.tenant("Other").await;
    let group = api.call("POST", "/v1/groups", Some(&key), Some(r#"{"name": "North"}"#)).await.json()["id"].as_i64();
    let body = json!({"identifier": IMEI, "protocol": "teltonika", "group_id": group}).to_string();
    let id = api.call("POST", "/v1/devices", Some(&key), Some(&body)).await.json()["id"].as_i64().expect("device");
    let payload = json!({"tenant_id": tenant_id, "device_id": id, "positions": truck_day(IMEI)});
    let nats = async_nats::connect(api.config.nats.url.as_str()).await.expect("nats");
    let subject = format!("{}.pos.{tenant_id}.{id}", api.config.nats.subject_prefix);
    let js = async_nats::jetstream::new(nats);
    js.publish(subject, payload.to_string().into()).await.expect("publish").await.expect("stored");
    let range = "from=2026-11-25T08:00:00Z&to=2026-11-25T09:00:00Z";
    eventually("the day is stored", || async {
        let page = api.call("GET", &format!("/v1/devices/{id}/positions?{range}"), Some(&key), None).await.json();
        page["positions"].as_array().map(Vec::len) == Some(50)
    })
    .await;

    let trips = api.call("GET", &format!("/v1/reports/trips?device={id}&{range}"), Some(&key), None).await;
    assert_eq!(trips.status, 200, "{}", trips.text());
    let trips = trips.json()["trips"].as_array().cloned().unwrap_or_default();
    assert_eq!(trips.len(), 2, "{trips:#?}");
    // Trip 1: ignition on from 08:10 to 08:23 (idling included), ten 1 km steps.
    assert_eq!(
        (&trips[0]["start_time"], &trips[0]["end_time"]),
        (&json!("2026-11-25T08:10:00Z"), &json!("2026-11-25T08:23:00Z"))
    );
    assert_eq!(trips[0]["duration_s"], 780);
    let distance = trips[0]["distance_m"].as_f64().unwrap_or(0.0);
    assert!((distance - 10_007.5).abs() < 5.0, "{distance}");
    assert_eq!(trips[0]["max_speed"], 60.0);
    assert_eq!(trips[0]["start"]["lat"], 54.0);
    assert!(trips[0]["end"]["lon"].as_f64().is_some() && trips[0]["avg_speed"].as_f64().is_some());
    assert_eq!((&trips[1]["start_time"], &trips[1]["duration_s"]), (&json!("2026-11-25T08:40:00Z"), &json!(300)));

    let stops = api.call("GET", &format!("/v1/reports/stops?device={id}&{range}"), Some(&key), None).await.json();
    let stops = stops["stops"].as_array().cloned().unwrap_or_default();
    let spans: Vec<(&str, &str)> =
        stops.iter().map(|s| (s["start_time"].as_str().unwrap_or(""), s["end_time"].as_str().unwrap_or(""))).collect();
    assert_eq!(
        spans,
        [
            ("2026-11-25T08:00:00Z", "2026-11-25T08:10:00Z"),
            ("2026-11-25T08:23:00Z", "2026-11-25T08:40:00Z"),
            ("2026-11-25T08:45:00Z", "2026-11-25T08:49:00Z")
        ]
    );
    assert_eq!(stops[1]["duration_s"], 1020);
    // The idling belongs to the ignition-on trip; the engine was last seen on as the stop
    // began, and off a minute later.
    assert_eq!(stops[1]["engine_on_s"], 60);
    assert!(stops[1]["lat"].as_f64().is_some());

    for query in [format!("device={id}"), format!("group={}", group.unwrap_or(0))] {
        let summary = api.call("GET", &format!("/v1/reports/summary?{query}&{range}"), Some(&key), None).await.json();
        let summary = &summary["summary"][0];
        assert_eq!(summary["device_id"], id);
        // Engine: on from 08:10 until the 08:24 reading says off, and 08:40 until 08:46.
        assert_eq!(
            (&summary["driving_s"], &summary["idle_s"], &summary["engine_s"]),
            (&json!(1080), &json!(180), &json!(1200))
        );
        assert_eq!((&summary["refuels"], &summary["drains"]), (&json!(1), &json!(0)));
        assert!((summary["fuel_used_l"].as_f64().unwrap_or(0.0) - 1.5).abs() < 0.05, "{summary}");
        assert_eq!(summary["max_speed"], 60.0);
    }

    // The processor's segments and a scan of every position give the same reports, over
    // the whole range and over one that cuts through the first drive.
    let segments: i64 = api
        .postgres
        .query_one("SELECT count(*) FROM segments WHERE device_id = $1", &[&id])
        .await
        .expect("segments")
        .get(0);
    assert!((4..20).contains(&segments), "a few segments for 50 positions: {segments}");
    for span in [range, "from=2026-11-25T08:15:30Z&to=2026-11-25T08:42:00Z"] {
        for report in ["trips", "stops", "summary"] {
            let path = format!("/v1/reports/{report}?device={id}&{span}");
            let read = api.call("GET", &path, Some(&key), None).await.text();
            let scanned = api.call("GET", &format!("{path}&source=positions"), Some(&key), None).await.text();
            assert_eq!(read, scanned, "{path}");
        }
    }
    let wrong = api.call("GET", &format!("/v1/reports/trips?device={id}&{range}&source=cache"), Some(&key), None).await;
    assert_eq!(wrong.status, 400);
    let path = format!("/v1/reports/trips?device={id}&{range}&source=positions&background=true");
    assert_eq!(api.call("GET", &path, Some(&key), None).await.status, 400, "jobs read the segments");

    // Exports: CSV of every report, GPX and KML of the track.
    let csv = api.call("GET", &format!("/v1/reports/trips?device={id}&{range}&format=csv"), Some(&key), None).await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("text/csv")));
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        lines[0],
        "device_id,start_time,end_time,start_lat,start_lon,end_lat,end_lon,distance_m,duration_s,max_speed,avg_speed"
    );
    assert!(
        lines[1].starts_with(&format!("{id},2026-11-25T08:10:00Z,2026-11-25T08:23:00Z,54.0,25.0,")),
        "{}",
        lines[1]
    );
    for report in ["stops", "summary"] {
        let csv =
            api.call("GET", &format!("/v1/reports/{report}?device={id}&{range}&format=csv"), Some(&key), None).await;
        assert_eq!(csv.status, 200, "{report}");
        assert!(csv.text().starts_with("device_id,"), "{report}");
    }
    let gpx = api.call("GET", &format!("/v1/devices/{id}/positions?{range}&format=gpx"), Some(&key), None).await.text();
    assert!(gpx.starts_with("<?xml") && gpx.trim_end().ends_with("</gpx>"), "{gpx}");
    assert_eq!(gpx.matches("<trkpt ").count(), 50, "every fix, no paging");
    assert!(gpx.contains(r#"<trkpt lat="54" lon="25"><time>2026-11-25T08:00:00Z</time></trkpt>"#), "{gpx}");
    let kml = api.call("GET", &format!("/v1/devices/{id}/positions?{range}&format=kml"), Some(&key), None).await.text();
    assert_eq!((kml.matches("<when>").count(), kml.matches("<gx:coord>").count()), (50, 50));
    assert!(kml.trim_end().ends_with("</kml>"));

    // Rules: the tenant's, then the device's over them.
    let trips_path = format!("/v1/reports/trips?device={id}&{range}");
    let count = |body: serde_json::Value| body["trips"].as_array().map_or(0, Vec::len);
    let put = api.call("PUT", "/v1/report-rules", Some(&key), Some(r#"{"min_stop_s": 3600}"#)).await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!((&put.json()["rules"]["min_stop_s"], &put.json()["rules"]["max_gap_s"]), (&json!(3600), &json!(600)));
    assert_eq!(count(api.call("GET", &trips_path, Some(&key), None).await.json()), 1, "one long trip now");
    let patch = json!({"report_rules": {"min_stop_s": 180}}).to_string();
    let patched = api.call("PATCH", &format!("/v1/devices/{id}"), Some(&key), Some(&patch)).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(count(api.call("GET", &trips_path, Some(&key), None).await.json()), 2, "the device's own rule wins");
    for bad in [r#"{"min_stop": 1}"#, "[1, 2]", r#"{"detection": "telepathy"}"#] {
        assert_eq!(api.call("PUT", "/v1/report-rules", Some(&key), Some(bad)).await.status, 400, "{bad}");
    }
    // The overspeed minimum is a device setting, checked.
    let minimum = api.call("PATCH", &format!("/v1/devices/{id}"), Some(&key), Some(r#"{"overspeed_min_s": 60}"#)).await;
    assert_eq!((minimum.status, &minimum.json()["overspeed_min_s"]), (200, &json!(60)));
    for bad in [r#"{"overspeed_min_s": -1}"#, r#"{"overspeed_min_s": 3601}"#] {
        assert_eq!(api.call("PATCH", &format!("/v1/devices/{id}"), Some(&key), Some(bad)).await.status, 400, "{bad}");
    }
    let reset = api.call("PATCH", &format!("/v1/devices/{id}"), Some(&key), Some(r#"{"report_rules": null}"#)).await;
    assert_eq!(reset.status, 200);
    assert_eq!(api.call("PUT", "/v1/report-rules", Some(&key), Some("{}")).await.status, 200);

    // A background job gives the same report, later; a long span is one by itself.
    let sync = api.call("GET", &format!("/v1/reports/summary?device={id}&{range}"), Some(&key), None).await.text();
    let queued =
        api.call("GET", &format!("/v1/reports/summary?device={id}&{range}&background=true"), Some(&key), None).await;
    assert_eq!(queued.status, 202, "{}", queued.text());
    let url = queued.json()["job"]["url"].as_str().unwrap_or_default().to_owned();
    assert!(queued.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("location") && *v == url));
    eventually("the job is done", || async { api.call("GET", &url, Some(&key), None).await.status == 200 }).await;
    assert_eq!(api.call("GET", &url, Some(&key), None).await.text(), sync);
    assert_eq!(api.call("GET", &url, Some(&other_key), None).await.status, 404, "another tenant's job");
    let long = "from=2026-01-01T00:00:00Z&to=2026-12-01T00:00:00Z";
    let queued = api.call("GET", &format!("/v1/reports/trips?device={id}&{long}&format=csv"), Some(&key), None).await;
    assert_eq!(queued.status, 202, "{}", queued.text());
    let url = queued.json()["job"]["url"].as_str().unwrap_or_default().to_owned();
    eventually("the long job is done", || async { api.call("GET", &url, Some(&key), None).await.status == 200 }).await;
    assert_eq!(api.call("GET", &url, Some(&key), None).await.text(), csv.text(), "the same two trips, as CSV");

    // Another tenant, bad queries.
    assert_eq!(
        api.call("GET", &format!("/v1/reports/trips?device={id}&{range}"), Some(&other_key), None).await.status,
        404
    );
    assert_eq!(
        api.call("GET", &format!("/v1/devices/{id}/positions?{range}&format=gpx"), Some(&other_key), None).await.status,
        404
    );
    for bad in [
        format!("/v1/reports/trips?{range}"),
        format!("/v1/reports/trips?device={id}&group=1&{range}"),
        format!("/v1/reports/trips?device={id}&from=2025-01-01T00:00:00Z&to=2026-12-01T00:00:00Z"),
        format!("/v1/reports/trips?device={id}&from=2026-08-01T00:00:00Z&to=2026-11-05T00:00:00Z&background=false"),
        format!("/v1/reports/stops?device={id}&from=yesterday&to=2026-12-01T00:00:00Z"),
        format!("/v1/reports/summary?device={id}&{range}&format=pdf"),
    ] {
        assert_eq!(api.call("GET", &bad, Some(&key), None).await.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn geofences_are_managed_per_tenant_and_give_enter_and_exit_events() {
    let api = Api::start(|_| {}).await;
    let (tenant_id, key) = api.tenant("Fences").await;
    let (_, other_key) = api.tenant("Elsewhere").await;
    let square = json!({"name": "Depot", "polygon": [[54.0, 24.9], [54.0, 25.1], [54.02, 25.1], [54.02, 24.9]]});
    let created = api.call("POST", "/v1/geofences", Some(&key), Some(&square.to_string())).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let fence = created.json();
    assert_eq!((&fence["name"], &fence["polygon"][2]), (&json!("Depot"), &json!([54.02, 25.1])));
    let circle = json!({"name": "Yard", "circle": {"lat": 54.5, "lon": 25.5, "radius_m": 300}}).to_string();
    assert_eq!(api.call("POST", "/v1/geofences", Some(&key), Some(&circle)).await.status, 201);
    for bad in [
        json!({"name": "x", "polygon": [[54.0, 24.9], [54.0, 25.1]]}),
        json!({"name": "x", "circle": {"lat": 95.0, "lon": 25.0, "radius_m": 10}}),
        json!({"name": "x", "circle": {"lat": 54.0, "lon": 25.0, "radius_m": 10}, "polygon": [[0, 0], [0, 1], [1, 1]]}),
        json!({"name": "", "circle": {"lat": 54.0, "lon": 25.0, "radius_m": 10}}),
    ] {
        assert_eq!(api.call("POST", "/v1/geofences", Some(&key), Some(&bad.to_string())).await.status, 400, "{bad}");
    }
    let listed = api.call("GET", "/v1/geofences", Some(&key), None).await.json();
    assert_eq!(listed["geofences"].as_array().map(Vec::len), Some(2));
    assert_eq!(api.call("GET", "/v1/geofences", Some(&other_key), None).await.json()["geofences"], json!([]));
    let yard = listed["geofences"][1]["id"].as_i64().unwrap_or(0);
    assert_eq!(api.call("DELETE", &format!("/v1/geofences/{yard}"), Some(&other_key), None).await.status, 404);
    assert_eq!(api.call("DELETE", &format!("/v1/geofences/{yard}"), Some(&key), None).await.status, 204);
    // A second fence with the same square: leaving both at once is two events.
    let annex = json!({"name": "Annex", "polygon": [[54.0, 24.9], [54.0, 25.1], [54.02, 25.1], [54.02, 24.9]]});
    assert_eq!(api.call("POST", "/v1/geofences", Some(&key), Some(&annex.to_string())).await.status, 201);

    // A device drives in and out; the processor (reading geofences at start) derives it.
    let id = create_device(&api, &key, IMEI).await;
    api.start_processor();
    api.publish_positions(
        tenant_id,
        id,
        IMEI,
        &["2026-11-25T09:00:00Z", "2026-11-25T09:01:00Z", "2026-11-25T09:02:00Z", "2026-11-25T09:03:00Z"],
    )
    .await;
    // publish_positions puts the fixes at 54.00, 54.01, 54.02, 54.03 (the first on the
    // southern edge, inside; out after 54.02).
    let path = "/v1/events?from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z&kind=geofence_exit";
    eventually("the exit events", || async {
        api.call("GET", path, Some(&key), None).await.json()["events"].as_array().is_some_and(|e| e.len() == 2)
    })
    .await;
    let exit = &api.call("GET", path, Some(&key), None).await.json()["events"][0];
    assert_eq!(exit["time"], "2026-11-25T09:03:00Z");
    assert_eq!(exit["details"]["geofence_id"], fence["id"]);
    assert_eq!(exit["details"]["name"], "Depot");
    // One a page: the cursor tells the two apart, so paging shows both.
    let first = api.call("GET", &format!("{path}&limit=1"), Some(&key), None).await.json();
    let cursor = first["next"].as_str().unwrap_or_default().to_owned();
    let second = api.call("GET", &format!("{path}&limit=1&cursor={cursor}"), Some(&key), None).await.json();
    assert_eq!(second["events"][0]["details"]["name"], "Annex", "{first} then {second}");
    assert_eq!(second["next"], serde_json::Value::Null);
    // A cursor given before refs existed (time.device.kind) still reads: past that event.
    let old = cursor.rsplit_once('.').map(|(before, _)| before.to_owned()).unwrap_or_default();
    let after_old = api.call("GET", &format!("{path}&limit=1&cursor={old}"), Some(&key), None).await;
    assert_eq!((after_old.status, &after_old.json()["events"]), (200, &json!([])));
}
