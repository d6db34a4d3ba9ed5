//! `eventbus simulate` (src/cloud's simulator) against the real binary serving on a free
//! port. The `/v1/catalog` routes and the simulated events' put path are router tests in
//! tests/api.rs.

mod common;

use std::process::Command;

use eventbus::cloud;
use serde_json::Value;

const PRODUCER: &str = "producer-token-0123456789";
const CLOUD: &str = "cloud-token-0123456789";

// ----- the CLI against the real binary ------------------------------------------------------

fn eventbus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .args(args)
        .env_remove("EVENTBUS_TOKEN")
        .env_remove("EVENTBUS_SERVER")
        .env("EVENTBUS_LOG", "warn")
        .output()
        .expect("run eventbus")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cli_simulate_puts_cvm_events_into_default_of_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), None);
    let out = eventbus(&[
        "simulate",
        "--product",
        "cvm",
        "--count",
        "5",
        "--server",
        &server.base,
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let results: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 5, "{results:?}");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["offset"], i, "{r}");
        assert!(r["type"].as_str().unwrap().starts_with("cvm:"), "{r}");
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored = rt.block_on(async {
        reqwest::get(format!(
            "{}/v1/event-sets/default/events?start=0&limit=10",
            server.base
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
    });
    let stored: Value = serde_json::from_str(&stored).unwrap();
    let events = stored["events"].as_array().expect("events");
    assert_eq!(events.len(), 5, "{stored}");
    for (e, r) in events.iter().zip(&results) {
        assert_eq!(e["source"], "cvm.cloud.tencent", "{e}");
        assert_eq!(e["id"], r["id"]);
        assert_eq!(e["subject"], r["subject"]);
        assert!(e["subject"].as_str().unwrap().starts_with("ins-"), "{e}");
        // The sample data names the resource (`instanceId`; `resourceName` in audit records).
        let subject = e["subject"].as_str().unwrap();
        assert!(e["data"].to_string().contains(subject), "{e}");
        assert_eq!(e["datacontenttype"], "application/json;charset=utf-8");
        assert!(e["region"].as_str().unwrap().contains('-'), "{e}");
    }

    // The table output: a header and one row per event, with the type and the offset.
    let out = eventbus(&[
        "simulate",
        "--product",
        "cvm",
        "--type",
        "DiskReadonly",
        "--count",
        "2",
        "--seed",
        "5",
        "--server",
        &server.base,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("#  ID"), "{stdout}");
    assert!(lines[1].contains("cvm:ErrorEvent:DiskReadonly"), "{stdout}");
    assert!(lines[1].contains("  5  "), "offset 5: {stdout}");
}

#[test]
fn cli_simulate_needs_a_cloud_or_admin_token_when_tokens_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("eventbus.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[auth.tokens]]\ntoken = \"{PRODUCER}\"\nrole = \"producer\"\n\
             [[auth.tokens]]\ntoken = \"{CLOUD}\"\nrole = \"cloud\"\n"
        ),
    )
    .unwrap();
    let server = common::Server::start(&dir.path().join("data"), Some(&cfg));
    let run = |token: &str| {
        eventbus(&[
            "simulate",
            "--product",
            "redis",
            "--count",
            "3",
            "--server",
            &server.base,
            "--token",
            token,
        ])
    };
    let out = run(PRODUCER);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("`cloud` and `admin`"), "{err}");
    assert!(!err.contains(PRODUCER), "the token leaked: {err}");
    let out = run(CLOUD);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 4, "header and 3 rows");
}

#[test]
fn cli_simulate_unknown_product_or_type_fails_listing_the_valid_ones() {
    // No server: the choice is checked before anything is sent.
    let out = eventbus(&["simulate", "--product", "s3", "--server", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("unknown product `s3`"), "{err}");
    assert!(err.contains("cvm") && err.contains("oceanus"), "{err}");

    let out = eventbus(&["simulate", "--product", "cvm", "--type", "Nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("unknown event type `Nope`"), "{err}");
    assert!(err.contains("cvm:ErrorEvent:GuestReboot"), "{err}");
}

#[test]
fn cli_simulate_list_prints_the_catalog_offline() {
    let out = eventbus(&["simulate", "--list", "--server", "127.0.0.1:9"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let n_types = cloud::catalog().event_types().count();
    assert_eq!(stdout.lines().count(), 1 + n_types, "{stdout}");
    assert!(stdout.contains("cvm:ErrorEvent:DiskReadonly"));
    assert!(stdout.contains("antiddos.cloud.tencent"));

    let out = eventbus(&[
        "simulate",
        "--list",
        "--product",
        "oceanus",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["source"], "oceanus.cloud.tencent");
    assert!(
        lines[0]["event_types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["type"] == "oceanus:ErrorEvent:OceanusTaskmanagerLoadTooHigh")
    );
}
