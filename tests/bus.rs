//! Scenario: the embeddable bus: the built-in `default` set, the put path with per-entry
//! results, cloud-only and anti-spoofing rules, de-duplication, deletion order, and reopen.

use eventbus::bus::{BusConfig, DEFAULT_SET, EventBus, Producer, PutEntry};
use eventbus::{Error, RejectKind};
use serde_json::{Value, json};

fn open(dir: &std::path::Path) -> EventBus {
    EventBus::open(BusConfig {
        data_dir: dir.to_path_buf(),
        max_segment_bytes: 4096,
        ..BusConfig::default()
    })
    .unwrap()
}

fn cloud_event(id: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "cvm.cloud.tencent",
        "type": "cvm:ErrorEvent:PingUnreachable", "subject": "ins-1",
        "time": 1615430559146i64, "region": "ap-guangzhou", "status": "1",
        "data": {"instanceId": "ins-1"}
    })
}

fn app_event(id: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "orders.app", "type": "order.created",
           "data": {"n": 1}})
}

fn code_of(e: &PutEntry) -> Option<&str> {
    match e {
        PutEntry::Failed(err) => err.code(),
        PutEntry::Stored { .. } => None,
    }
}

fn offset_of(e: &PutEntry) -> (u64, bool) {
    match e {
        PutEntry::Stored {
            offset, duplicate, ..
        } => (*offset, *duplicate),
        PutEntry::Failed(err) => panic!("entry failed: {err}"),
    }
}

#[tokio::test]
async fn default_set_exists_from_the_first_start_and_takes_only_cloud_producers() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let sets = bus.list_sets().unwrap();
    assert!(sets.iter().any(|s| s.meta.name == DEFAULT_SET));
    let err = bus
        .put_events(DEFAULT_SET, &[cloud_event("a")], Producer::Custom)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rejected {
                kind: RejectKind::Denied,
                ..
            }
        ),
        "{err}"
    );
    let out = bus
        .put_events(DEFAULT_SET, &[cloud_event("a")], Producer::Cloud)
        .await
        .unwrap();
    assert_eq!(out.failed, 0);
    assert_eq!(offset_of(&out.entries[0]), (0, false));
}

#[tokio::test]
async fn default_set_refuses_non_cloud_events_per_entry_without_affecting_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let mut bad_type = cloud_event("t");
    bad_type["type"] = json!("PingUnreachable");
    let entries = [
        cloud_event("ok-1"),
        app_event("x"),
        bad_type,
        cloud_event("ok-2"),
    ];
    let out = bus
        .put_events(DEFAULT_SET, &entries, Producer::Cloud)
        .await
        .unwrap();
    assert_eq!(out.failed, 2);
    assert_eq!(
        code_of(&out.entries[1]),
        Some("InvalidParameterValue.Source")
    );
    assert_eq!(code_of(&out.entries[2]), Some("InvalidParameterValue.Type"));
    assert_eq!(offset_of(&out.entries[0]).0, 0);
    assert_eq!(offset_of(&out.entries[3]).0, 1);
    let stats = bus.get_set(DEFAULT_SET).unwrap().stats;
    assert_eq!(
        (
            stats.records,
            stats.first_offset,
            stats.last_offset,
            stats.next_offset
        ),
        (2, 0, Some(1), 2)
    );
    assert!(stats.bytes > 0 && stats.first_time_ms.is_some() && stats.last_time_ms.is_some());
}

#[tokio::test]
async fn custom_sets_refuse_spoofed_cloud_sources() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    bus.create_set("orders", None, None, None).unwrap();
    let out = bus
        .put_events(
            "orders",
            &[cloud_event("c"), app_event("a")],
            Producer::Custom,
        )
        .await
        .unwrap();
    assert_eq!(
        code_of(&out.entries[0]),
        Some("OperationDenied.ReservedSource")
    );
    assert_eq!(offset_of(&out.entries[1]).0, 0);
}

#[tokio::test]
async fn repeated_source_and_id_within_the_window_is_acknowledged_with_the_original_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = open(dir.path());
        bus.create_set("orders", None, None, None).unwrap();
        let first = bus
            .put_events(
                "orders",
                &[app_event("a"), app_event("b")],
                Producer::Custom,
            )
            .await
            .unwrap();
        assert_eq!(offset_of(&first.entries[1]), (1, false));
        // Same put twice in one request, and a repeat of an earlier one.
        let again = bus
            .put_events(
                "orders",
                &[app_event("b"), app_event("c"), app_event("c")],
                Producer::Custom,
            )
            .await
            .unwrap();
        assert_eq!(offset_of(&again.entries[0]), (1, true));
        let c = offset_of(&again.entries[1]);
        assert_eq!(c, (2, false));
        assert_eq!(offset_of(&again.entries[2]), (2, true));
        assert_eq!(bus.get_set("orders").unwrap().stats.next_offset, 3);
        bus.shutdown().unwrap();
    }
    // The window is rebuilt from the log after a restart.
    let bus = open(dir.path());
    let out = bus
        .put_events("orders", &[app_event("a")], Producer::Custom)
        .await
        .unwrap();
    assert_eq!(offset_of(&out.entries[0]), (0, true));
    assert_eq!(bus.get_set("orders").unwrap().stats.next_offset, 3);
}

#[tokio::test]
async fn dedup_window_zero_stores_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    bus.create_set("raw", None, None, Some(0)).unwrap();
    let out = bus
        .put_events("raw", &[app_event("a"), app_event("a")], Producer::Custom)
        .await
        .unwrap();
    assert_eq!(offset_of(&out.entries[1]), (1, false));
}

#[tokio::test]
async fn catalog_and_logs_come_back_identical_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (sets_before, events_before) = {
        let bus = open(dir.path());
        bus.create_set("orders", Some("order events"), None, None)
            .unwrap();
        for i in 0..50 {
            bus.put_events("orders", &[app_event(&format!("e{i}"))], Producer::Custom)
                .await
                .unwrap();
        }
        let sets: Vec<_> = bus
            .list_sets()
            .unwrap()
            .into_iter()
            .map(|s| (s.meta, s.stats))
            .collect();
        let events: Vec<_> = bus
            .read_from("orders", 0)
            .unwrap()
            .records()
            .collect::<Result<_, _>>()
            .unwrap();
        bus.shutdown().unwrap();
        (sets, events)
    };
    let bus = open(dir.path());
    let sets_after: Vec<_> = bus
        .list_sets()
        .unwrap()
        .into_iter()
        .map(|s| (s.meta, s.stats))
        .collect();
    assert_eq!(sets_after, sets_before);
    let events_after: Vec<_> = bus
        .read_from("orders", 0)
        .unwrap()
        .records()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events_after, events_before);
}

#[tokio::test]
async fn deleting_a_set_removes_its_log_and_a_new_set_of_that_name_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    bus.create_set("tmp", None, None, None).unwrap();
    bus.put_events("tmp", &[app_event("a")], Producer::Custom)
        .await
        .unwrap();
    bus.delete_set("tmp").unwrap();
    assert!(!bus.log_dir("tmp").exists());
    let err = bus.get_set("tmp").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rejected {
                kind: RejectKind::NotFound,
                ..
            }
        ),
        "{err}"
    );
    bus.create_set("tmp", None, None, None).unwrap();
    assert_eq!(bus.get_set("tmp").unwrap().stats.next_offset, 0);
}

#[tokio::test]
async fn default_set_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let err = bus.delete_set(DEFAULT_SET).unwrap_err();
    assert_eq!(err.code(), Some("OperationDenied.ResourceImmutable"));
    assert!(bus.get_set(DEFAULT_SET).is_ok());
}

#[tokio::test]
async fn updating_a_sets_retention_applies_to_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    bus.create_set("logs", None, None, Some(0)).unwrap();
    for i in 0..200 {
        bus.put_events("logs", &[app_event(&format!("e{i}"))], Producer::Custom)
            .await
            .unwrap();
    }
    assert_eq!(bus.get_set("logs").unwrap().stats.first_offset, 0);
    let patch: eventbus::catalog::SetPatch =
        serde_json::from_value(json!({"retention": {"max_bytes": 8192}})).unwrap();
    let info = bus.update_set("logs", patch).unwrap();
    assert_eq!(info.meta.retention.max_bytes, Some(8192));
    let removed = bus.apply_retention().await.unwrap();
    let logs = removed.iter().find(|(n, _)| n == "logs").unwrap().1;
    assert!(logs > 0, "retention removed nothing");
    let stats = bus.get_set("logs").unwrap().stats;
    assert_eq!(stats.first_offset, logs);
    assert!(stats.bytes <= 8192 + 4096, "{stats:?}");
}

#[tokio::test]
async fn a_set_with_rules_and_a_rule_with_targets_cannot_be_deleted_and_keep_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    bus.create_set("orders", None, None, None).unwrap();
    bus.put_events("orders", &[app_event("a")], Producer::Custom)
        .await
        .unwrap();
    let spec: eventbus::catalog::RuleSpec =
        serde_json::from_value(json!({"name": "all", "pattern": {"source": ["orders.app"]}}))
            .unwrap();
    bus.catalog().create_rule("orders", spec).unwrap();
    bus.catalog()
        .create_target(
            "orders",
            "all",
            json!({"name": "hook", "type": "http", "http": {"url": "http://127.0.0.1:9/x"}}),
        )
        .unwrap();
    let err = bus.delete_set("orders").unwrap_err();
    assert_eq!(err.code(), Some("ResourceInUse.EventSet"));
    assert!(matches!(
        err,
        Error::Rejected {
            kind: RejectKind::Conflict,
            ..
        }
    ));
    let err = bus.catalog().delete_rule("orders", "all").unwrap_err();
    assert_eq!(err.code(), Some("ResourceInUse.Rule"));
    // Refused deletions leave the set and its events alone.
    assert_eq!(bus.get_set("orders").unwrap().stats.next_offset, 1);
    bus.catalog()
        .delete_target("orders", "all", "hook")
        .unwrap();
    bus.catalog().delete_rule("orders", "all").unwrap();
    bus.delete_set("orders").unwrap();
}

#[tokio::test]
async fn an_interrupted_set_deletion_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = open(dir.path());
        bus.create_set("old", None, None, None).unwrap();
        bus.put_events("old", &[app_event("a")], Producer::Custom)
            .await
            .unwrap();
        bus.shutdown().unwrap();
    }
    // A crash between removing the catalog entry and removing the directory.
    {
        let catalog = eventbus::catalog::Catalog::open(
            &dir.path().join("catalog"),
            eventbus::catalog::CatalogLimits::default(),
        )
        .unwrap();
        catalog.delete_set("old").unwrap();
    }
    assert!(dir.path().join("sets/old").exists());
    let bus = open(dir.path());
    assert!(!dir.path().join("sets/old").exists());
    bus.create_set("old", None, None, None).unwrap();
    assert_eq!(bus.get_set("old").unwrap().stats.next_offset, 0);
}

#[tokio::test]
async fn a_put_dropped_mid_append_is_still_stored_and_its_retry_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    bus.create_set("orders", None, None, None).unwrap();
    // Give up on the put right after its first poll, as a client that disconnects would. On
    // this single-threaded test runtime nothing else runs during that poll, so the put is
    // certainly still waiting for its append when it is dropped.
    {
        use std::future::Future;
        let entries = [app_event("a")];
        let mut put = Box::pin(bus.put_events("orders", &entries, Producer::Custom));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(put.as_mut().poll(&mut cx).is_pending());
    }
    let mut retry = None;
    for _ in 0..200 {
        let out = bus
            .put_events("orders", &[app_event("a")], Producer::Custom)
            .await
            .unwrap();
        match &out.entries[0] {
            PutEntry::Stored { .. } => {
                retry = Some(offset_of(&out.entries[0]));
                break;
            }
            PutEntry::Failed(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
    assert_eq!(retry, Some((0, true)));
    assert_eq!(bus.get_set("orders").unwrap().stats.next_offset, 1);
}
