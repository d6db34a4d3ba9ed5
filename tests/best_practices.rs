//! The two best practices of Tencent's cloud service event set, run end to end exactly as
//! docs/examples/ documents them: the real `eventbus serve`, the example scripts that create
//! the rules and targets (through the real CLI), `eventbus simulate` putting cloud events into
//! `default`, and local stand-ins for the WeCom robot and the cloud API.
//!
//! (a) Oceanus alarm push: TaskManager-load alarms and recoveries reach the WeCom robot as
//!     markdown alarm texts; other Oceanus events do not.
//! (b) CVM abnormal -> backup and restart: a DiskReadonly alarm runs the example program,
//!     which snapshots the disk and reboots the instance named by `subject` (its recovery
//!     does not), and is pushed to WeCom; the GuestReboot that follows is pushed too.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use common::Server;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_eventbus");

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples")
}

/// A stand-in HTTP endpoint that records every JSON body it is posted and answers `answer`.
#[derive(Clone)]
struct StandIn {
    url: String,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl StandIn {
    async fn start(path: &str, answer: &'static str) -> StandIn {
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let app = Router::new()
            .route(
                "/{*path}",
                axum::routing::post(
                    move |State(seen): State<Arc<Mutex<Vec<Value>>>>, body: Bytes| async move {
                        let v = serde_json::from_slice(&body).expect("a JSON body");
                        seen.lock().unwrap().push(v);
                        ([("content-type", "application/json")], answer)
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn {
            url: format!("http://{addr}{path}"),
            seen,
        }
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize, what: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: saw {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A WeCom group robot: answers `{"errcode":0}` as the real one does.
async fn wecom_robot() -> StandIn {
    StandIn::start(
        "/cgi-bin/webhook/send?key=test-key",
        r#"{"errcode":0,"errmsg":"ok"}"#,
    )
    .await
}

/// Runs a command to success, returning its stdout; its output is shown when it fails.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs an example's shell script against `server`, with the robot's URL.
fn setup_script(script: &Path, server: &Server, wecom: &StandIn) {
    run(
        Command::new("sh")
            .arg(script)
            .env("EVENTBUS", BIN)
            .env("EVENTBUS_SERVER", &server.base)
            .env("WECOM_URL", &wecom.url),
        &script.display().to_string(),
    );
}

/// `eventbus simulate` into `default`; returns the events it put (read back from the set).
fn simulate(server: &Server, args: &[&str]) {
    run(
        Command::new(BIN)
            .arg("simulate")
            .args(args)
            .env("EVENTBUS_SERVER", &server.base),
        "eventbus simulate",
    );
}

/// The content of a WeCom message body (text or markdown).
fn wecom_content(body: &Value) -> String {
    let kind = body["msgtype"].as_str().expect("msgtype");
    body[kind]["content"].as_str().expect("content").to_string()
}

async fn get_json(url: String) -> Value {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every event stored in `default`.
async fn stored(server: &Server) -> Vec<Value> {
    let url = format!(
        "{}/v1/event-sets/default/events?start=0&limit=1000",
        server.base
    );
    let v: Value = get_json(url).await;
    v["events"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_practice_oceanus_alarm_push_reaches_the_wecom_robot() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), None);
    let robot = wecom_robot().await;
    setup_script(
        &examples().join("oceanus-alarm-push/setup.sh"),
        &server,
        &robot,
    );

    // Two other Oceanus events first: the rule must not push them.
    simulate(
        &server,
        &[
            "--product",
            "oceanus",
            "--type",
            "OceanusBackpressureHigh",
            "--count",
            "2",
            "--seed",
            "1",
        ],
    );
    // An alarm and its recovery, for the same job.
    simulate(
        &server,
        &[
            "--product",
            "oceanus",
            "--type",
            "OceanusTaskmanagerLoadTooHigh",
            "--count",
            "2",
            "--seed",
            "7",
        ],
    );
    let messages = robot.wait_for(2, "the alarm and the recovery").await;
    // Nothing else arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(robot.seen().len(), 2, "{:#?}", robot.seen());

    let events: Vec<Value> = stored(&server)
        .await
        .into_iter()
        .filter(|e| e["type"] == "oceanus:ErrorEvent:OceanusTaskmanagerLoadTooHigh")
        .collect();
    assert_eq!(events.len(), 2);
    let subject = events[0]["subject"].as_str().unwrap();
    assert_eq!(
        events[1]["subject"], subject,
        "the recovery is the same job's"
    );
    let mut statuses = Vec::new();
    for m in &messages {
        assert_eq!(m["msgtype"], "markdown", "{m}");
        let text = wecom_content(m);
        assert!(text.contains("OceanusTaskmanagerLoadTooHigh"), "{text}");
        assert!(text.contains(subject), "{text}");
        statuses.push(
            ["abnormal", "recovered"]
                .into_iter()
                .find(|s| text.to_lowercase().contains(s))
                .unwrap_or_else(|| panic!("no status in {text}")),
        );
    }
    statuses.sort();
    assert_eq!(statuses, ["abnormal", "recovered"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_practice_cvm_disk_readonly_is_backed_up_and_restarted_then_notified() {
    let dir = tempfile::tempdir().unwrap();
    let api = StandIn::start("/cloud-api", r#"{"Response":{"RequestId":"standin"}}"#).await;
    let robot = wecom_robot().await;
    let config = dir.path().join("eventbus.toml");
    run(
        Command::new("sh")
            .arg(examples().join("cvm-backup-restart/write-config.sh"))
            .arg(&config)
            .env("CLOUD_API_URL", &api.url),
        "write-config.sh",
    );
    let server = Server::start(&dir.path().join("data"), Some(&config));
    setup_script(
        &examples().join("cvm-backup-restart/setup.sh"),
        &server,
        &robot,
    );

    // DiskReadonly alarms and recoveries (the simulator recovers some open alarms).
    simulate(
        &server,
        &[
            "--product",
            "cvm",
            "--type",
            "DiskReadonly",
            "--count",
            "6",
            "--seed",
            "3",
        ],
    );
    let disk_events: Vec<Value> = stored(&server)
        .await
        .into_iter()
        .filter(|e| e["type"] == "cvm:ErrorEvent:DiskReadonly")
        .collect();
    assert_eq!(disk_events.len(), 6);
    let alarms: Vec<&Value> = disk_events.iter().filter(|e| e["status"] == "1").collect();
    let recoveries = disk_events.iter().filter(|e| e["status"] == "0").count();
    assert!(
        !alarms.is_empty() && recoveries > 0,
        "seed 3 gives both alarms and recoveries: {disk_events:#?}"
    );

    // Each alarm, and only the alarms, is backed up and restarted by the example program.
    let calls = api
        .wait_for(2 * alarms.len(), "CreateSnapshot and RebootInstances")
        .await;
    for alarm in &alarms {
        let instance = alarm["subject"].as_str().unwrap();
        assert!(instance.starts_with("ins-"), "{alarm}");
        let disk = alarm["data"]["additionalMsg"]["diskId"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("disk-{}", &instance[4..]));
        let snapshot = json!({"Action": "CreateSnapshot", "Region": "ap-guangzhou",
            "DiskId": disk, "SnapshotName": format!("eventbus-{}", alarm["id"].as_str().unwrap())});
        let reboot = json!({"Action": "RebootInstances", "Region": "ap-guangzhou",
               "InstanceIds": [instance], "StopType": "SOFT"});
        let at = |call: &Value| calls.iter().position(|c| c == call);
        let (s, r) = (at(&snapshot), at(&reboot));
        assert!(
            s.is_some() && r.is_some(),
            "{snapshot} and {reboot} in {calls:#?}"
        );
        assert!(s < r, "the snapshot is taken before the reboot: {calls:#?}");
    }
    // The alarms are pushed too (the recoveries match neither rule).
    let messages = robot
        .wait_for(alarms.len(), "the DiskReadonly notifications")
        .await;
    for m in &messages {
        let text = wecom_content(m);
        assert!(
            text.contains("DiskReadonly") && text.contains("abnormal"),
            "{text}"
        );
    }

    // The instances restart: the cloud emits GuestReboot, which is pushed.
    simulate(
        &server,
        &[
            "--product",
            "cvm",
            "--type",
            "GuestReboot",
            "--count",
            "1",
            "--seed",
            "4",
        ],
    );
    let messages = robot
        .wait_for(alarms.len() + 1, "the GuestReboot notification")
        .await;
    assert!(
        messages
            .iter()
            .any(|m| wecom_content(m).contains("GuestReboot")),
        "{messages:#?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.seen().len(), 2 * alarms.len(), "nothing for recoveries");
    assert_eq!(robot.seen().len(), alarms.len() + 1);

    // The command binding reports the delivery.
    let url = format!(
        "{}/v1/event-sets/default/rules/cvm-disk-readonly/targets/backup-reboot",
        server.base
    );
    let t: Value = get_json(url).await;
    assert_eq!(t["delivery"]["delivered"], alarms.len(), "{t}");
    assert_eq!(t["delivery"]["dead_lettered"], 0, "{t}");
}
