//! Catalog scenarios: validation codes and paths, the immutable `default` set, deletion order,
//! limits, reopening, and the durable delivery state (cursors, retries, dead letters).

use eventbus::catalog::{
    BindingId, Catalog, CatalogLimits, DeadLetter, DeliveryUpdate, RetentionSpec, RetryEntry,
    RulePatch, RuleSpec, SetKind, SetPatch,
};
use eventbus::{Error, Event, RejectKind};
use serde_json::{Value, json};

fn open(dir: &tempfile::TempDir) -> Catalog {
    Catalog::open(&dir.path().join("catalog"), CatalogLimits::default()).unwrap()
}

fn fresh() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let cat = open(&dir);
    (dir, cat)
}

fn rule(name: &str) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        description: String::new(),
        pattern: json!({"source": ["cvm.cloud.tencent"]}),
        enabled: true,
        transform: None,
    }
}

fn http_target(name: &str) -> Value {
    json!({"name": name, "type": "http",
        "http": {"url": "http://127.0.0.1:9000/hook", "headers": {}, "timeout_ms": 5000,
                 "mode": "structured"},
        "retry": {"max_attempts": 10, "max_age_seconds": 86400, "initial_backoff_ms": 1000,
                  "max_backoff_ms": 300000},
        "dead_letter": {"mode": "dlq"},
        "batch": {"max_events": 1, "max_wait_ms": 0},
        "ordered": false})
}

/// A catalog with set `orders` and rule `r1` in it.
fn with_rule() -> (tempfile::TempDir, Catalog) {
    let (dir, cat) = fresh();
    cat.create_set("orders", None, None, None).unwrap();
    cat.create_rule("orders", rule("r1")).unwrap();
    (dir, cat)
}

#[track_caller]
fn assert_rejected<T: std::fmt::Debug>(
    r: eventbus::Result<T>,
    kind: RejectKind,
    code: &str,
    path: Option<&str>,
) {
    match r {
        Err(Error::Rejected {
            kind: k,
            code: c,
            path: p,
            ..
        }) => {
            assert_eq!(k, kind, "kind");
            assert_eq!(c, code, "code");
            assert_eq!(p.as_deref(), path, "path");
        }
        other => panic!("expected {code} rejection, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(r: eventbus::Result<T>, code: &str, path: &str) {
    assert_rejected(r, RejectKind::Invalid, code, Some(path));
}

#[track_caller]
fn assert_target_invalid(body: Value, code: &str, path: &str) {
    let (_dir, cat) = with_rule();
    assert_invalid(cat.create_target("orders", "r1", body), code, path);
}

fn patched(mut body: Value, f: impl FnOnce(&mut Value)) -> Value {
    f(&mut body);
    body
}

// ----- first open ----------------------------------------------------------------------------

#[test]
fn open_creates_the_default_cloud_set() {
    let (_dir, cat) = fresh();
    let sets = cat.list_sets().unwrap();
    assert_eq!(sets.len(), 1);
    let d = &sets[0];
    assert_eq!(d.name, "default");
    assert_eq!(d.kind, SetKind::Cloud);
    assert_eq!(d.description, "Tencent Cloud service event set");
    assert_eq!(d.retention.max_age_hours, Some(30 * 24));
    assert_eq!(d.retention.max_bytes, None);
}

#[test]
fn custom_set_defaults_are_seven_days_and_120s_dedup() {
    let (_dir, cat) = fresh();
    let s = cat.create_set("orders", None, None, None).unwrap();
    assert_eq!(s.kind, SetKind::Custom);
    assert_eq!(s.description, "");
    assert_eq!(s.retention.max_age_hours, Some(7 * 24));
    assert_eq!(s.retention.max_bytes, None);
    assert_eq!(s.dedup_window_ms, 120_000);
    let s = cat
        .create_set(
            "nodedup",
            Some("d"),
            Some(RetentionSpec::default()),
            Some(0),
        )
        .unwrap();
    assert_eq!(s.dedup_window_ms, 0);
    assert_eq!(s.retention, RetentionSpec::default());
    assert_eq!(cat.get_set("nodedup").unwrap(), s);
}

// ----- validation: sets ----------------------------------------------------------------------

#[test]
fn set_name_too_short_too_long_or_bad_chars_is_rejected() {
    let (_dir, cat) = fresh();
    let long = "a".repeat(61);
    for bad in ["a", "1abc", "-abc", "ab c", "ab.c", "ab\0c", long.as_str()] {
        assert_invalid(
            cat.create_set(bad, None, None, None),
            "InvalidParameterValue.EventSetName",
            "$.name",
        );
    }
    assert!(cat.create_set(&"a".repeat(60), None, None, None).is_ok());
    assert!(cat.create_set("a1_-", None, None, None).is_ok());
}

#[test]
fn set_description_over_200_chars_is_rejected() {
    let (_dir, cat) = fresh();
    let long = "é".repeat(201);
    assert_invalid(
        cat.create_set("orders", Some(&long), None, None),
        "InvalidParameterValue.Description",
        "$.description",
    );
    assert!(
        cat.create_set("orders", Some(&"é".repeat(200)), None, None)
            .is_ok()
    );
    assert_invalid(
        cat.update_set(
            "orders",
            SetPatch {
                description: Some(long),
                ..SetPatch::default()
            },
        ),
        "InvalidParameterValue.Description",
        "$.description",
    );
}

#[test]
fn set_retention_zero_is_rejected() {
    let (_dir, cat) = fresh();
    let age0 = RetentionSpec {
        max_age_hours: Some(0),
        max_bytes: None,
    };
    let bytes0 = RetentionSpec {
        max_age_hours: None,
        max_bytes: Some(0),
    };
    assert_invalid(
        cat.create_set("orders", None, Some(age0), None),
        "InvalidParameterValue.Retention",
        "$.retention.max_age_hours",
    );
    assert_invalid(
        cat.create_set("orders", None, Some(bytes0), None),
        "InvalidParameterValue.Retention",
        "$.retention.max_bytes",
    );
}

// ----- validation: rules ---------------------------------------------------------------------

#[test]
fn rule_name_is_validated() {
    let (_dir, cat) = fresh();
    cat.create_set("orders", None, None, None).unwrap();
    assert_invalid(
        cat.create_rule("orders", rule("9r")),
        "InvalidParameterValue.RuleName",
        "$.name",
    );
}

#[test]
fn rule_description_is_validated() {
    let (_dir, cat) = fresh();
    cat.create_set("orders", None, None, None).unwrap();
    let mut spec = rule("r1");
    spec.description = "x".repeat(201);
    assert_invalid(
        cat.create_rule("orders", spec),
        "InvalidParameterValue.Description",
        "$.description",
    );
}

#[test]
fn rule_pattern_is_compiled_and_rejections_name_the_offending_part() {
    let (_dir, cat) = fresh();
    cat.create_set("orders", None, None, None).unwrap();
    let big = json!({"source": ["x".repeat(eventbus::catalog::MAX_PATTERN_BYTES)]});
    let cases = [
        (json!({}), "$.pattern"),
        (json!([1]), "$.pattern"),
        (json!("s"), "$.pattern"),
        (json!(null), "$.pattern"),
        (big, "$.pattern"),
        (json!({"data": {"n": []}}), "$.pattern.data.n"),
        (
            json!({"data": {"n": [{"numeric": [">", "5"]}]}}),
            "$.pattern.data.n[0].numeric[1]",
        ),
        (
            json!({"data": {"ip": [{"cidr": "10.0.0.0/40"}]}}),
            "$.pattern.data.ip[0].cidr",
        ),
        (
            json!({"type": [{"begins-with": "cvm"}]}),
            "$.pattern.type[0].begins-with",
        ),
    ];
    for (bad, path) in cases {
        let mut spec = rule("r1");
        spec.pattern = bad;
        assert_invalid(
            cat.create_rule("orders", spec),
            "InvalidParameterValue.EventPattern",
            path,
        );
    }
    assert_invalid(
        cat.update_rule(
            "default",
            "nope",
            RulePatch {
                pattern: Some(json!({})),
                ..RulePatch::default()
            },
        ),
        "InvalidParameterValue.EventPattern",
        "$.pattern",
    );
    // Every operator of both dialects is accepted.
    let mut spec = rule("r2");
    spec.pattern = json!({
        "source": "cvm.cloud.tencent",
        "subject": [{"anything-but": {"prefix": "ins-test"}}],
        "data": {"topic": [{"contain": ["topic-1", "appid"]}], "ip": [{"cidr": "10.0.0.0/24"}],
                 "n": [{"numeric": [">", 0, "<=", 5]}], "x": [{"exists": false}]}
    });
    cat.create_rule("orders", spec).unwrap();
}

#[test]
fn rule_transform_must_be_an_object() {
    let (_dir, cat) = fresh();
    cat.create_set("orders", None, None, None).unwrap();
    let mut spec = rule("r1");
    spec.transform = Some(json!("$.data"));
    assert_invalid(
        cat.create_rule("orders", spec),
        "InvalidParameterValue.Transformations",
        "$.transform",
    );
}

#[test]
fn rule_update_applies_patch_and_removes_transform_with_null() {
    let (_dir, cat) = with_rule();
    let r = cat
        .update_rule(
            "orders",
            "r1",
            RulePatch {
                enabled: Some(false),
                transform: Some(json!({"input_path": "$.data"})),
                ..RulePatch::default()
            },
        )
        .unwrap();
    assert!(!r.enabled);
    assert_eq!(r.transform.as_deref(), Some(r#"{"input_path":"$.data"}"#));
    let r = cat
        .update_rule(
            "orders",
            "r1",
            RulePatch {
                transform: Some(Value::Null),
                description: Some("d".into()),
                ..RulePatch::default()
            },
        )
        .unwrap();
    assert_eq!(r.transform, None);
    assert_eq!(r.description, "d");
    assert!(!r.enabled);
    assert_eq!(cat.get_rule("orders", "r1").unwrap(), r);
}

// ----- validation: targets -------------------------------------------------------------------

#[test]
fn target_valid_body_is_stored_whole() {
    let (_dir, cat) = with_rule();
    let t = cat
        .create_target("orders", "r1", http_target("hook"))
        .unwrap();
    assert_eq!(t.target_type, "http");
    assert_eq!(t.name, "hook");
    let stored: Value = serde_json::from_str(&t.config).unwrap();
    assert_eq!(stored, http_target("hook"));
    for (ty, settings) in [
        (
            "notify",
            json!({"provider": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"}),
        ),
        ("file", json!({"path": "alerts/x.jsonl"})),
        ("command", json!({"name": "backup"})),
        ("event-set", json!({"name": "other"})),
    ] {
        let name = format!("t-{}", ty.replace('-', ""));
        let body = json!({"name": name, "type": ty, ty: settings});
        assert_eq!(
            cat.create_target("orders", "r1", body).unwrap().target_type,
            ty
        );
    }
}

#[test]
fn target_body_must_be_an_object() {
    assert_target_invalid(json!([1]), "InvalidParameterValue", "$");
}

#[test]
fn target_name_is_validated() {
    assert_target_invalid(
        patched(http_target("x"), |b| b["name"] = json!("x y")),
        "InvalidParameterValue.TargetName",
        "$.name",
    );
    assert_target_invalid(
        patched(http_target("x"), |b| {
            b.as_object_mut().unwrap().remove("name");
        }),
        "InvalidParameterValue.TargetName",
        "$.name",
    );
}

#[test]
fn target_type_must_be_known() {
    for ty in [json!("scf"), json!(null), json!(1)] {
        assert_target_invalid(
            patched(http_target("hook"), |b| b["type"] = ty),
            "InvalidParameterValue.TargetType",
            "$.type",
        );
    }
}

#[test]
fn target_settings_object_named_by_type_must_be_present() {
    assert_target_invalid(
        patched(http_target("hook"), |b| b["type"] = json!("file")),
        "InvalidParameterValue.TargetDescription",
        "$.file",
    );
    assert_target_invalid(
        patched(http_target("hook"), |b| b["http"] = json!("http://x")),
        "InvalidParameterValue.TargetDescription",
        "$.http",
    );
}

#[test]
fn target_http_url_must_be_http_or_https() {
    for url in [
        json!("ftp://x/y"),
        json!("http://"),
        json!("localhost:80"),
        json!(5),
    ] {
        assert_target_invalid(
            patched(http_target("hook"), |b| b["http"]["url"] = url),
            "InvalidParameterValue.TargetDescription",
            "$.http.url",
        );
    }
    let (_dir, cat) = with_rule();
    let body = patched(http_target("hook"), |b| {
        b["http"]["url"] = json!("https://example.com/x")
    });
    assert!(cat.create_target("orders", "r1", body).is_ok());
}

#[test]
fn target_dead_letter_mode_must_be_dlq_drop_or_ignore() {
    assert_target_invalid(
        patched(http_target("hook"), |b| {
            b["dead_letter"]["mode"] = json!("keep")
        }),
        "InvalidParameterValue.DeadLetterConfig",
        "$.dead_letter.mode",
    );
    assert_target_invalid(
        patched(http_target("hook"), |b| b["dead_letter"] = json!("dlq")),
        "InvalidParameterValue.DeadLetterConfig",
        "$.dead_letter",
    );
}

#[test]
fn target_batch_max_events_must_be_1_to_10000() {
    for n in [json!(0), json!(10_001), json!(-1), json!(1.5)] {
        assert_target_invalid(
            patched(http_target("hook"), |b| b["batch"]["max_events"] = n),
            "InvalidParameterValue.BatchEventCount",
            "$.batch.max_events",
        );
    }
    let (_dir, cat) = with_rule();
    let body = patched(http_target("hook"), |b| {
        b["batch"]["max_events"] = json!(10_000)
    });
    assert!(cat.create_target("orders", "r1", body).is_ok());
}

#[test]
fn target_batch_max_wait_must_be_0_to_60000() {
    for w in [json!(60_001), json!(-1), json!("5")] {
        assert_target_invalid(
            patched(http_target("hook"), |b| b["batch"]["max_wait_ms"] = w),
            "InvalidParameterValue.BatchTimeout",
            "$.batch.max_wait_ms",
        );
    }
    assert_target_invalid(
        patched(http_target("hook"), |b| b["batch"] = json!(5)),
        "InvalidParameterValue",
        "$.batch",
    );
}

#[test]
fn target_retry_numbers_must_be_non_negative_integers() {
    for field in [
        "max_attempts",
        "max_age_seconds",
        "initial_backoff_ms",
        "max_backoff_ms",
    ] {
        assert_target_invalid(
            patched(http_target("hook"), |b| b["retry"][field] = json!(-1)),
            "InvalidParameterValue.RetryPolicy",
            &format!("$.retry.{field}"),
        );
    }
    assert_target_invalid(
        patched(http_target("hook"), |b| b["retry"] = json!([])),
        "InvalidParameterValue.RetryPolicy",
        "$.retry",
    );
}

#[test]
fn target_retry_initial_backoff_must_not_exceed_max() {
    assert_target_invalid(
        patched(http_target("hook"), |b| {
            b["retry"]["initial_backoff_ms"] = json!(5000);
            b["retry"]["max_backoff_ms"] = json!(4000);
        }),
        "InvalidParameterValue.RetryPolicy",
        "$.retry.initial_backoff_ms",
    );
    // Against the default max (300 s) when max_backoff_ms is left out.
    assert_target_invalid(
        json!({"name": "hook", "type": "file", "file": {"path": "hook.jsonl"},
               "retry": {"initial_backoff_ms": 300_001}}),
        "InvalidParameterValue.RetryPolicy",
        "$.retry.initial_backoff_ms",
    );
}

#[test]
fn target_ordered_must_be_boolean() {
    assert_target_invalid(
        patched(http_target("hook"), |b| b["ordered"] = json!("yes")),
        "InvalidParameterValue",
        "$.ordered",
    );
}

#[test]
fn target_update_merges_patch_validates_and_refuses_rename() {
    let (_dir, cat) = with_rule();
    cat.create_target("orders", "r1", http_target("hook"))
        .unwrap();
    let t = cat
        .update_target(
            "orders",
            "r1",
            "hook",
            json!({"batch": {"max_events": 50}, "ordered": null}),
        )
        .unwrap();
    let body: Value = serde_json::from_str(&t.config).unwrap();
    assert_eq!(body["batch"], json!({"max_events": 50, "max_wait_ms": 0}));
    assert!(body.get("ordered").is_none());
    assert_eq!(body["name"], "hook");
    assert_invalid(
        cat.update_target("orders", "r1", "hook", json!({"batch": {"max_events": 0}})),
        "InvalidParameterValue.BatchEventCount",
        "$.batch.max_events",
    );
    assert_invalid(
        cat.update_target("orders", "r1", "hook", json!({"name": "other"})),
        "InvalidParameterValue.TargetName",
        "$.name",
    );
    let t2 = cat
        .update_target(
            "orders",
            "r1",
            "hook",
            json!({"type": "file", "file": {"path": "x.jsonl"}, "http": null}),
        )
        .unwrap();
    assert_eq!(t2.target_type, "file");
    assert_eq!(cat.get_target("orders", "r1", "hook").unwrap(), t2);
}

// ----- duplicates and missing ----------------------------------------------------------------

#[test]
fn duplicates_are_conflicts_with_resource_in_use() {
    let (_dir, cat) = with_rule();
    assert_rejected(
        cat.create_set("orders", None, None, None),
        RejectKind::Conflict,
        "ResourceInUse.EventSet",
        None,
    );
    assert_rejected(
        cat.create_rule("orders", rule("r1")),
        RejectKind::Conflict,
        "ResourceInUse.Rule",
        None,
    );
    cat.create_target("orders", "r1", http_target("hook"))
        .unwrap();
    assert_rejected(
        cat.create_target("orders", "r1", http_target("hook")),
        RejectKind::Conflict,
        "ResourceInUse.Target",
        None,
    );
    // Same names under another parent are fine.
    cat.create_rule("default", rule("r1")).unwrap();
    cat.create_target("default", "r1", http_target("hook"))
        .unwrap();
}

#[test]
fn missing_resources_are_not_found_at_the_right_level() {
    let (_dir, cat) = with_rule();
    let nf = |r: eventbus::Result<_>, code| assert_rejected(r, RejectKind::NotFound, code, None);
    nf(cat.get_set("nope").map(drop), "ResourceNotFound.EventSet");
    nf(
        cat.create_rule("nope", rule("rx")).map(drop),
        "ResourceNotFound.EventSet",
    );
    nf(
        cat.get_rule("nope", "r1").map(drop),
        "ResourceNotFound.EventSet",
    );
    nf(
        cat.get_rule("orders", "r2").map(drop),
        "ResourceNotFound.Rule",
    );
    nf(
        cat.list_rules("nope").map(drop),
        "ResourceNotFound.EventSet",
    );
    nf(
        cat.list_targets("orders", "r2").map(drop),
        "ResourceNotFound.Rule",
    );
    nf(
        cat.create_target("orders", "r2", http_target("tx"))
            .map(drop),
        "ResourceNotFound.Rule",
    );
    nf(
        cat.get_target("orders", "r1", "t").map(drop),
        "ResourceNotFound.Target",
    );
    nf(
        cat.delete_target("orders", "r1", "t"),
        "ResourceNotFound.Target",
    );
    nf(
        cat.get_cursor("orders", "r1", "t").map(drop),
        "ResourceNotFound.Target",
    );
    nf(
        cat.put_cursor("orders", "r1", "t", 1),
        "ResourceNotFound.Target",
    );
    nf(cat.delete_rule("orders", "r2"), "ResourceNotFound.Rule");
    nf(cat.delete_set("nope"), "ResourceNotFound.EventSet");
    nf(
        cat.update_set("nope", SetPatch::default()).map(drop),
        "ResourceNotFound.EventSet",
    );
}

// ----- the default set -----------------------------------------------------------------------

#[test]
fn default_set_is_immutable_but_takes_rules_and_targets() {
    let (_dir, cat) = fresh();
    assert_rejected(
        cat.update_set(
            "default",
            SetPatch {
                description: Some("mine".into()),
                ..SetPatch::default()
            },
        ),
        RejectKind::Denied,
        "OperationDenied.ResourceImmutable",
        None,
    );
    assert_rejected(
        cat.delete_set("default"),
        RejectKind::Denied,
        "OperationDenied.ResourceImmutable",
        None,
    );
    assert_rejected(
        cat.create_set("default", None, None, None),
        RejectKind::Conflict,
        "ResourceInUse.EventSet",
        None,
    );
    cat.create_rule("default", rule("alarms")).unwrap();
    cat.create_target("default", "alarms", http_target("hook"))
        .unwrap();
    assert_eq!(cat.list_rules("default").unwrap().len(), 1);
    assert_eq!(cat.get_set("default").unwrap().kind, SetKind::Cloud);
}

#[test]
fn custom_set_update_changes_only_given_fields() {
    let (_dir, cat) = fresh();
    let before = cat.create_set("orders", Some("d"), None, None).unwrap();
    let after = cat
        .update_set(
            "orders",
            SetPatch {
                dedup_window_ms: Some(0),
                ..SetPatch::default()
            },
        )
        .unwrap();
    assert_eq!(after.dedup_window_ms, 0);
    assert_eq!(after.description, "d");
    assert_eq!(after.retention, before.retention);
    assert_eq!(after.created_ms, before.created_ms);
    assert!(after.updated_ms >= before.updated_ms);
}

// ----- deletion order ------------------------------------------------------------------------

#[test]
fn deletion_order_targets_then_rules_then_set() {
    let (_dir, cat) = with_rule();
    cat.create_target("orders", "r1", http_target("hook"))
        .unwrap();
    cat.put_cursor("orders", "r1", "hook", 42).unwrap();
    assert_rejected(
        cat.delete_set("orders"),
        RejectKind::Conflict,
        "ResourceInUse.EventSet",
        None,
    );
    assert_rejected(
        cat.delete_rule("orders", "r1"),
        RejectKind::Conflict,
        "ResourceInUse.Rule",
        None,
    );
    cat.delete_target("orders", "r1", "hook").unwrap();
    assert_rejected(
        cat.delete_set("orders"),
        RejectKind::Conflict,
        "ResourceInUse.EventSet",
        None,
    );
    cat.delete_rule("orders", "r1").unwrap();
    cat.delete_set("orders").unwrap();
    assert_eq!(cat.list_sets().unwrap().len(), 1);
    // Recreating the chain starts a binding without the old cursor.
    cat.create_set("orders", None, None, None).unwrap();
    cat.create_rule("orders", rule("r1")).unwrap();
    cat.create_target("orders", "r1", http_target("hook"))
        .unwrap();
    assert_eq!(cat.get_cursor("orders", "r1", "hook").unwrap(), None);
}

#[test]
fn deleting_a_set_leaves_sets_with_prefix_names_alone() {
    let (_dir, cat) = fresh();
    cat.create_set("ab", None, None, None).unwrap();
    cat.create_set("abc", None, None, None).unwrap();
    cat.create_rule("abc", rule("r1")).unwrap();
    cat.delete_set("ab").unwrap();
    assert_eq!(cat.list_rules("abc").unwrap().len(), 1);
}

// ----- limits --------------------------------------------------------------------------------

#[test]
fn limits_on_sets_rules_and_targets() {
    let dir = tempfile::tempdir().unwrap();
    let limits = CatalogLimits {
        max_sets: 2,
        max_rules_per_set: 2,
        max_targets_per_rule: 2,
    };
    let cat = Catalog::open(dir.path(), limits).unwrap();
    let lim =
        |r: eventbus::Result<_>, code| assert_rejected(r, RejectKind::LimitExceeded, code, None);
    cat.create_set("s1", None, None, None).unwrap();
    cat.create_set("s2", None, None, None).unwrap(); // `default` does not count
    lim(
        cat.create_set("s3", None, None, None).map(drop),
        "LimitExceeded.EventSet",
    );
    cat.create_rule("s1", rule("r1")).unwrap();
    cat.create_rule("s1", rule("r2")).unwrap();
    lim(
        cat.create_rule("s1", rule("r3")).map(drop),
        "LimitExceeded.Rule",
    );
    cat.create_rule("s2", rule("r3")).unwrap(); // per set
    cat.create_target("s1", "r1", http_target("t1")).unwrap();
    cat.create_target("s1", "r1", http_target("t2")).unwrap();
    lim(
        cat.create_target("s1", "r1", http_target("t3")).map(drop),
        "LimitExceeded.Target",
    );
    cat.create_target("s1", "r2", http_target("t3")).unwrap(); // per rule
    // Deleting frees room.
    cat.delete_target("s1", "r1", "t2").unwrap();
    cat.create_target("s1", "r1", http_target("t3")).unwrap();
    cat.delete_rule("s2", "r3").unwrap();
    cat.delete_set("s2").unwrap();
    cat.create_set("s3", None, None, None).unwrap();
    assert_eq!(cat.limits(), limits);
}

#[test]
fn default_limits_are_generous() {
    let l = CatalogLimits::default();
    assert_eq!(
        (l.max_sets, l.max_rules_per_set, l.max_targets_per_rule),
        (1000, 1000, 50)
    );
}

// ----- cursors and reopen --------------------------------------------------------------------

#[test]
fn cursor_put_then_get() {
    let (_dir, cat) = with_rule();
    cat.create_target("orders", "r1", http_target("hook"))
        .unwrap();
    assert_eq!(cat.get_cursor("orders", "r1", "hook").unwrap(), None);
    cat.put_cursor("orders", "r1", "hook", 7).unwrap();
    cat.put_cursor("orders", "r1", "hook", u64::MAX).unwrap();
    assert_eq!(
        cat.get_cursor("orders", "r1", "hook").unwrap(),
        Some(u64::MAX)
    );
}

#[test]
fn reopen_after_drop_returns_identical_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = |cat: &Catalog| {
        let sets = cat.list_sets().unwrap();
        let mut rules = Vec::new();
        let mut targets = Vec::new();
        let mut cursors = Vec::new();
        for s in &sets {
            for r in cat.list_rules(&s.name).unwrap() {
                for t in cat.list_targets(&s.name, &r.name).unwrap() {
                    cursors.push(cat.get_cursor(&s.name, &r.name, &t.name).unwrap());
                    targets.push(t);
                }
                rules.push(r);
            }
        }
        (sets, rules, targets, cursors)
    };
    let before = {
        let cat = open(&dir);
        cat.create_set(
            "orders",
            Some("shop orders"),
            Some(RetentionSpec {
                max_age_hours: Some(1),
                max_bytes: Some(1 << 20),
            }),
            Some(5),
        )
        .unwrap();
        cat.create_set("ab", None, None, None).unwrap();
        cat.create_rule("orders", rule("r1")).unwrap();
        let mut spec = rule("r2");
        spec.enabled = false;
        spec.transform = Some(json!({"Extraction": {}}));
        cat.create_rule("orders", spec).unwrap();
        cat.create_rule("default", rule("alarms")).unwrap();
        cat.create_target("orders", "r1", http_target("ta"))
            .unwrap();
        cat.create_target("orders", "r1", http_target("tb"))
            .unwrap();
        cat.create_target("default", "alarms", http_target("ta"))
            .unwrap();
        cat.put_cursor("orders", "r1", "ta", 12).unwrap();
        cat.put_cursor("default", "alarms", "ta", 3).unwrap();
        cat.delete_target("orders", "r1", "tb").unwrap();
        snapshot(&cat)
    };
    assert_eq!(before.0.len(), 3);
    assert_eq!(before.1.len(), 3);
    assert_eq!(before.2.len(), 2);
    assert_eq!(before.3, vec![Some(3), Some(12)]);
    let cat = open(&dir);
    assert_eq!(snapshot(&cat), before);
    drop(cat);
    // A third open does not recreate or alter `default`.
    let cat = open(&dir);
    assert_eq!(snapshot(&cat), before);
}

#[test]
fn dedup_window_above_24_hours_is_rejected() {
    let (_d, c) = fresh();
    let day = eventbus::catalog::MAX_DEDUP_WINDOW_MS;
    assert_invalid(
        c.create_set("big", None, None, Some(day + 1)),
        "InvalidParameterValue",
        "$.dedup_window_ms",
    );
    c.create_set("ok", None, None, Some(day)).unwrap();
    let patch: eventbus::catalog::SetPatch =
        serde_json::from_value(serde_json::json!({"dedup_window_ms": day + 1})).unwrap();
    assert_invalid(
        c.update_set("ok", patch),
        "InvalidParameterValue",
        "$.dedup_window_ms",
    );
}

// ----- validation: delivery settings ---------------------------------------------------------

#[test]
fn target_retry_max_attempts_must_be_at_least_one() {
    assert_target_invalid(
        patched(http_target("hook"), |b| {
            b["retry"]["max_attempts"] = json!(0)
        }),
        "InvalidParameterValue.RetryPolicy",
        "$.retry.max_attempts",
    );
    let (_dir, cat) = with_rule();
    let body = patched(http_target("hook"), |b| {
        b["retry"]["max_attempts"] = json!(1)
    });
    assert!(cat.create_target("orders", "r1", body).is_ok());
}

#[test]
fn target_max_in_flight_must_be_1_to_1000() {
    for n in [json!(0), json!(1001), json!(-1), json!(2.5), json!("8")] {
        assert_target_invalid(
            patched(http_target("hook"), |b| b["max_in_flight"] = n),
            "InvalidParameterValue",
            "$.max_in_flight",
        );
    }
    let (_dir, cat) = with_rule();
    for (name, n) in [("t1", 1), ("t2", 1000)] {
        let body = patched(http_target(name), |b| b["max_in_flight"] = json!(n));
        assert!(cat.create_target("orders", "r1", body).is_ok());
    }
    assert_eq!(eventbus::catalog::DEFAULT_MAX_IN_FLIGHT, 64);
    assert_eq!(eventbus::catalog::MAX_IN_FLIGHT_LIMIT, 1000);
}

#[test]
fn target_start_must_be_latest_earliest_or_a_time() {
    for bad in [
        json!("now"),
        json!("Latest"),
        json!(0),
        json!(null),
        json!({"time": -1}),
        json!({"time": "1700000000000"}),
        json!({"time": 1.5}),
        json!({}),
        json!({"time": 1, "offset": 2}),
        json!({"offset": 2}),
    ] {
        assert_target_invalid(
            patched(http_target("hook"), |b| b["start"] = bad),
            "InvalidParameterValue",
            "$.start",
        );
    }
    let (_dir, cat) = with_rule();
    for (name, start) in [
        ("t1", json!("latest")),
        ("t2", json!("earliest")),
        ("t3", json!({"time": 1_700_000_000_000u64})),
    ] {
        let body = patched(http_target(name), |b| b["start"] = start);
        assert!(cat.create_target("orders", "r1", body).is_ok());
    }
}

#[test]
fn target_binary_http_mode_refuses_batches() {
    assert_target_invalid(
        patched(http_target("hook"), |b| {
            b["http"]["mode"] = json!("binary");
            b["batch"]["max_events"] = json!(2);
        }),
        "InvalidParameterValue.BatchEventCount",
        "$.batch.max_events",
    );
    let (_dir, cat) = with_rule();
    let body = patched(http_target("hook"), |b| b["http"]["mode"] = json!("binary"));
    cat.create_target("orders", "r1", body).unwrap();
    // A patch that makes the stored body invalid is refused too.
    assert_invalid(
        cat.update_target("orders", "r1", "hook", json!({"batch": {"max_events": 10}})),
        "InvalidParameterValue.BatchEventCount",
        "$.batch.max_events",
    );
    // Batches are fine in structured mode.
    let body = patched(http_target("batched"), |b| {
        b["batch"]["max_events"] = json!(10)
    });
    cat.create_target("orders", "r1", body).unwrap();
}

#[test]
fn target_http_settings_go_through_the_target_type_validation() {
    assert_target_invalid(
        patched(http_target("hook"), |b| {
            b["http"]["mode"] = json!("telepathy")
        }),
        "InvalidParameterValue.TargetDescription",
        "$.http.mode",
    );
    assert_target_invalid(
        patched(http_target("hook"), |b| b["http"]["timeout_ms"] = json!(0)),
        "InvalidParameterValue.TargetDescription",
        "$.http.timeout_ms",
    );
    let (_dir, cat) = with_rule();
    cat.create_target("orders", "r1", http_target("hook"))
        .unwrap();
    assert_invalid(
        cat.update_target("orders", "r1", "hook", json!({"http": {"mode": 5}})),
        "InvalidParameterValue.TargetDescription",
        "$.http.mode",
    );
}

// ----- delivery state ------------------------------------------------------------------------

fn event(i: u64) -> Event {
    let mut e = Event::new(format!("ev-{i}"), "shop", "order.created");
    e.data = format!(r#"{{"n":{i}}}"#).into_bytes();
    e
}

fn retry(offset: u64, attempts: u32) -> RetryEntry {
    RetryEntry {
        offset,
        ingest_time_ms: offset.wrapping_add(1_000),
        event: event(offset),
        attempts,
        next_attempt_ms: offset.wrapping_add(5_000),
        age_from_ms: 2_000,
        last_error: format!("HTTP 503 after attempt {attempts}"),
    }
}

fn dead(offset: u64) -> DeadLetter {
    DeadLetter {
        offset,
        ingest_time_ms: offset.wrapping_add(1_000),
        event: event(offset),
        attempts: 10,
        last_error: "HTTP 500".into(),
        dead_lettered_ms: offset.wrapping_add(9_000),
    }
}

/// A catalog with set `orders`, rule `r1` and http targets of the given names on it.
fn with_targets(names: &[&str]) -> (tempfile::TempDir, Catalog) {
    let (dir, cat) = with_rule();
    for name in names {
        cat.create_target("orders", "r1", http_target(name))
            .unwrap();
    }
    (dir, cat)
}

fn binding(target: &str) -> BindingId {
    BindingId::new("orders", "r1", target)
}

fn all_dead(cat: &Catalog, id: &BindingId) -> Vec<DeadLetter> {
    cat.list_dead_letters(id, None, usize::MAX).unwrap()
}

#[test]
fn apply_delivery_round_trip_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let hook = binding("hook");
    let other = binding("other");
    {
        let cat = open(&dir);
        cat.create_set("orders", None, None, None).unwrap();
        cat.create_rule("orders", rule("r1")).unwrap();
        cat.create_target("orders", "r1", http_target("hook"))
            .unwrap();
        cat.create_target("orders", "r1", http_target("other"))
            .unwrap();
        assert_eq!(cat.load_delivery_state(&hook).unwrap(), (None, vec![]));

        // Cycle 1: offsets 3, 1 and 2 fail, the cursor passes them; `other` advances too.
        cat.apply_delivery(&[
            (
                hook.clone(),
                DeliveryUpdate {
                    cursor: Some(4),
                    put_retries: vec![retry(3, 1), retry(1, 1), retry(2, 1)],
                    ..DeliveryUpdate::default()
                },
            ),
            (
                other.clone(),
                DeliveryUpdate {
                    cursor: Some(9),
                    ..DeliveryUpdate::default()
                },
            ),
        ])
        .unwrap();
        assert_eq!(
            cat.load_delivery_state(&hook).unwrap(),
            (Some(4), vec![retry(1, 1), retry(2, 1), retry(3, 1)])
        );

        // Cycle 2: 1 delivered, 2 failed again, 3 exhausted → dead letter.
        cat.apply_delivery(&[(
            hook.clone(),
            DeliveryUpdate {
                cursor: Some(6),
                remove_retries: vec![1, 2, 3],
                put_retries: vec![retry(2, 2)],
                put_dead_letters: vec![dead(3)],
                target_created_ms: None,
                ..DeliveryUpdate::default()
            },
        )])
        .unwrap();
        // Empty batches and empty updates are no-ops.
        cat.apply_delivery(&[]).unwrap();
        cat.apply_delivery(&[(hook.clone(), DeliveryUpdate::default())])
            .unwrap();
    }
    let cat = open(&dir);
    assert_eq!(
        cat.load_delivery_state(&hook).unwrap(),
        (Some(6), vec![retry(2, 2)])
    );
    assert_eq!(all_dead(&cat, &hook), vec![dead(3)]);
    assert_eq!(cat.count_delivery_entries(&hook).unwrap(), (1, 1));
    assert_eq!(cat.get_cursor("orders", "r1", "other").unwrap(), Some(9));
    assert_eq!(cat.count_delivery_entries(&other).unwrap(), (0, 0));
}

#[test]
fn apply_delivery_never_moves_a_cursor_back_but_put_cursor_does() {
    let (_dir, cat) = with_targets(&["hook"]);
    let id = binding("hook");
    let advance = |to| {
        let update = DeliveryUpdate {
            cursor: Some(to),
            ..DeliveryUpdate::default()
        };
        cat.apply_delivery(&[(id.clone(), update)]).unwrap();
    };
    advance(10);
    advance(7);
    assert_eq!(cat.get_cursor("orders", "r1", "hook").unwrap(), Some(10));
    // Within one batch too: the later, lower cursor loses.
    let update = |to| DeliveryUpdate {
        cursor: Some(to),
        ..DeliveryUpdate::default()
    };
    cat.apply_delivery(&[(id.clone(), update(15)), (id.clone(), update(12))])
        .unwrap();
    assert_eq!(cat.get_cursor("orders", "r1", "hook").unwrap(), Some(15));
    // An explicit seek moves it back; the engine then advances from there.
    cat.put_cursor("orders", "r1", "hook", 2).unwrap();
    assert_eq!(cat.get_cursor("orders", "r1", "hook").unwrap(), Some(2));
    advance(3);
    assert_eq!(cat.get_cursor("orders", "r1", "hook").unwrap(), Some(3));
}

#[test]
fn apply_delivery_skips_a_deleted_target_and_resurrects_nothing() {
    let (_dir, cat) = with_targets(&["hook", "live"]);
    cat.delete_target("orders", "r1", "hook").unwrap();
    let full = DeliveryUpdate {
        cursor: Some(5),
        put_retries: vec![retry(1, 1)],
        remove_retries: vec![],
        put_dead_letters: vec![dead(2)],
        target_created_ms: None,
        ..DeliveryUpdate::default()
    };
    cat.apply_delivery(&[(binding("hook"), full.clone()), (binding("live"), full)])
        .unwrap();
    // The live binding of the same batch got its update.
    assert_eq!(
        cat.load_delivery_state(&binding("live")).unwrap(),
        (Some(5), vec![retry(1, 1)])
    );
    // Nothing of the deleted one reappears when a target of that name is created again.
    assert_rejected(
        cat.load_delivery_state(&binding("hook")),
        RejectKind::NotFound,
        "ResourceNotFound.Target",
        None,
    );
    cat.create_target("orders", "r1", http_target("hook"))
        .unwrap();
    assert_eq!(
        cat.load_delivery_state(&binding("hook")).unwrap(),
        (None, vec![])
    );
    assert_eq!(
        cat.count_delivery_entries(&binding("hook")).unwrap(),
        (0, 0)
    );
    // A binding on a missing rule or set is skipped as well.
    cat.apply_delivery(&[(
        BindingId::new("nope", "r1", "hook"),
        DeliveryUpdate {
            cursor: Some(1),
            ..DeliveryUpdate::default()
        },
    )])
    .unwrap();
}

#[test]
fn delete_target_removes_retries_and_dead_letters_and_recreate_starts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let id = binding("hook");
    {
        let cat = open(&dir);
        cat.create_set("orders", None, None, None).unwrap();
        cat.create_rule("orders", rule("r1")).unwrap();
        cat.create_target("orders", "r1", http_target("hook"))
            .unwrap();
        cat.apply_delivery(&[(
            id.clone(),
            DeliveryUpdate {
                cursor: Some(100),
                put_retries: (0..50).map(|o| retry(o, 1)).collect(),
                put_dead_letters: (50..80).map(dead).collect(),
                ..DeliveryUpdate::default()
            },
        )])
        .unwrap();
        assert_eq!(cat.count_delivery_entries(&id).unwrap(), (50, 30));
        cat.delete_target("orders", "r1", "hook").unwrap();
        assert_rejected(
            cat.count_delivery_entries(&id),
            RejectKind::NotFound,
            "ResourceNotFound.Target",
            None,
        );
    }
    // Gone durably, and a new target of the same name starts without any of it.
    let cat = open(&dir);
    cat.create_target("orders", "r1", http_target("hook"))
        .unwrap();
    assert_eq!(cat.load_delivery_state(&id).unwrap(), (None, vec![]));
    assert_eq!(cat.count_delivery_entries(&id).unwrap(), (0, 0));
    assert!(all_dead(&cat, &id).is_empty());
    // With its children gone, the rule and set delete.
    cat.delete_target("orders", "r1", "hook").unwrap();
    cat.delete_rule("orders", "r1").unwrap();
    cat.delete_set("orders").unwrap();
}

#[test]
fn targets_with_prefix_names_keep_separate_delivery_state() {
    let (_dir, cat) = with_targets(&["ab", "abc"]);
    let (ab, abc) = (binding("ab"), binding("abc"));
    cat.apply_delivery(&[
        (
            ab.clone(),
            DeliveryUpdate {
                cursor: Some(1),
                put_retries: vec![retry(1, 1)],
                put_dead_letters: vec![dead(2)],
                ..DeliveryUpdate::default()
            },
        ),
        (
            abc.clone(),
            DeliveryUpdate {
                cursor: Some(2),
                put_retries: vec![retry(7, 3)],
                put_dead_letters: vec![dead(8), dead(9)],
                ..DeliveryUpdate::default()
            },
        ),
    ])
    .unwrap();
    assert_eq!(
        cat.load_delivery_state(&ab).unwrap(),
        (Some(1), vec![retry(1, 1)])
    );
    assert_eq!(all_dead(&cat, &ab), vec![dead(2)]);
    assert_eq!(cat.count_delivery_entries(&abc).unwrap(), (1, 2));
    // Redriving or deleting `ab` leaves `abc` alone.
    assert_eq!(cat.redrive_dead_letters(&ab, None, 50).unwrap().len(), 1);
    assert_eq!(all_dead(&cat, &abc), vec![dead(8), dead(9)]);
    cat.delete_target("orders", "r1", "ab").unwrap();
    assert_eq!(
        cat.load_delivery_state(&abc).unwrap(),
        (Some(2), vec![retry(7, 3)])
    );
    assert_eq!(cat.count_delivery_entries(&abc).unwrap(), (1, 2));
}

#[test]
fn list_dead_letters_pages_in_offset_order() {
    let (_dir, cat) = with_targets(&["hook"]);
    let id = binding("hook");
    let offsets = [40, 3, 17, 0, 5, u64::MAX];
    cat.apply_delivery(&[(
        id.clone(),
        DeliveryUpdate {
            put_dead_letters: offsets.iter().map(|&o| dead(o)).collect(),
            ..DeliveryUpdate::default()
        },
    )])
    .unwrap();
    let page = |after, limit| -> Vec<u64> {
        cat.list_dead_letters(&id, after, limit)
            .unwrap()
            .iter()
            .map(|d| d.offset)
            .collect()
    };
    assert_eq!(page(None, 2), [0, 3]);
    assert_eq!(page(Some(3), 2), [5, 17]);
    assert_eq!(page(Some(17), 2), [40, u64::MAX]);
    assert_eq!(page(Some(4), 1), [5], "after need not be a stored offset");
    assert_eq!(page(Some(u64::MAX), 10), Vec::<u64>::new());
    assert_eq!(page(None, 0), Vec::<u64>::new());
    assert_eq!(page(None, 100).len(), 6);
    // Whole values come back.
    assert_eq!(
        cat.list_dead_letters(&id, Some(16), 1).unwrap(),
        vec![dead(17)]
    );
    let nf = |r: eventbus::Result<Vec<DeadLetter>>, code| {
        assert_rejected(r, RejectKind::NotFound, code, None)
    };
    nf(
        cat.list_dead_letters(&binding("nope"), None, 10),
        "ResourceNotFound.Target",
    );
    nf(
        cat.list_dead_letters(&BindingId::new("orders", "r9", "hook"), None, 10),
        "ResourceNotFound.Rule",
    );
    nf(
        cat.list_dead_letters(&BindingId::new("nope", "r1", "hook"), None, 10),
        "ResourceNotFound.EventSet",
    );
}

#[test]
fn redrive_moves_dead_letters_to_retries_with_a_fresh_budget() {
    let dir = tempfile::tempdir().unwrap();
    let id = binding("hook");
    {
        let cat = open(&dir);
        cat.create_set("orders", None, None, None).unwrap();
        cat.create_rule("orders", rule("r1")).unwrap();
        cat.create_target("orders", "r1", http_target("hook"))
            .unwrap();
        cat.apply_delivery(&[(
            id.clone(),
            DeliveryUpdate {
                cursor: Some(10),
                put_retries: vec![retry(9, 2)],
                put_dead_letters: vec![dead(1), dead(4), dead(6)],
                ..DeliveryUpdate::default()
            },
        )])
        .unwrap();
        // Chosen offsets; unknown ones and duplicates are ignored.
        let moved = cat
            .redrive_dead_letters(&id, Some(&[6, 4, 8, 4]), 77_000)
            .unwrap();
        let expect = |d: DeadLetter| RetryEntry {
            offset: d.offset,
            ingest_time_ms: d.ingest_time_ms,
            event: d.event,
            attempts: 0,
            next_attempt_ms: 77_000,
            age_from_ms: 77_000,
            last_error: d.last_error,
        };
        assert_eq!(moved, vec![expect(dead(4)), expect(dead(6))]);
        assert_eq!(all_dead(&cat, &id), vec![dead(1)]);
        assert_eq!(
            cat.load_delivery_state(&id).unwrap(),
            (
                Some(10),
                vec![expect(dead(4)), expect(dead(6)), retry(9, 2)]
            )
        );
        assert!(
            cat.redrive_dead_letters(&id, Some(&[]), 1)
                .unwrap()
                .is_empty()
        );
    }
    // Durable; `None` redrives the rest.
    let cat = open(&dir);
    assert_eq!(cat.count_delivery_entries(&id).unwrap(), (3, 1));
    let moved = cat.redrive_dead_letters(&id, None, 88_000).unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!((moved[0].offset, moved[0].attempts), (1, 0));
    assert_eq!(moved[0].next_attempt_ms, 88_000);
    assert_eq!(moved[0].last_error, "HTTP 500");
    assert_eq!(cat.count_delivery_entries(&id).unwrap(), (4, 0));
    assert!(cat.redrive_dead_letters(&id, None, 1).unwrap().is_empty());
    assert_rejected(
        cat.redrive_dead_letters(&binding("nope"), None, 1),
        RejectKind::NotFound,
        "ResourceNotFound.Target",
        None,
    );
}

#[test]
fn subscribe_sees_configuration_changes_but_not_delivery_writes() {
    let (_dir, cat) = fresh();
    let mut rx = cat.subscribe();
    assert!(!rx.has_changed().unwrap());
    let mut expect_change = |what: &str, changed: bool| {
        assert_eq!(rx.has_changed().unwrap(), changed, "after {what}");
        rx.borrow_and_update();
    };
    cat.create_set("orders", None, None, None).unwrap();
    expect_change("create_set", true);
    cat.create_rule("orders", rule("r1")).unwrap();
    expect_change("create_rule", true);
    cat.create_target("orders", "r1", http_target("hook"))
        .unwrap();
    expect_change("create_target", true);
    cat.update_rule(
        "orders",
        "r1",
        RulePatch {
            enabled: Some(false),
            ..RulePatch::default()
        },
    )
    .unwrap();
    expect_change("update_rule", true);
    cat.update_target("orders", "r1", "hook", json!({"ordered": true}))
        .unwrap();
    expect_change("update_target", true);
    cat.put_cursor("orders", "r1", "hook", 3).unwrap();
    expect_change("put_cursor", true);
    cat.apply_delivery(&[(
        binding("hook"),
        DeliveryUpdate {
            cursor: Some(9),
            put_dead_letters: vec![dead(4)],
            ..DeliveryUpdate::default()
        },
    )])
    .unwrap();
    expect_change("apply_delivery", false);
    // A refused mutation changes nothing.
    assert!(cat.create_rule("orders", rule("r1")).is_err());
    expect_change("a refused create_rule", false);
    cat.redrive_dead_letters(&binding("hook"), None, 1).unwrap();
    expect_change("redrive_dead_letters", true);
    cat.delete_target("orders", "r1", "hook").unwrap();
    expect_change("delete_target", true);
    cat.delete_rule("orders", "r1").unwrap();
    expect_change("delete_rule", true);
    cat.update_set("orders", SetPatch::default()).unwrap();
    expect_change("update_set", true);
    cat.delete_set("orders").unwrap();
    expect_change("delete_set", true);
    // Each change bumps the generation by one.
    let before = *cat.subscribe().borrow();
    cat.create_set("again", None, None, None).unwrap();
    assert_eq!(*cat.subscribe().borrow(), before + 1);
}

#[test]
fn apply_delivery_for_an_earlier_incarnation_of_a_recreated_target_is_skipped() {
    let (_dir, cat) = with_targets(&["hook"]);
    let old = cat.get_target("orders", "r1", "hook").unwrap().created_ms;
    cat.delete_target("orders", "r1", "hook").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3));
    let body = serde_json::json!({"name": "hook", "type": "http", "http": {"url": "http://127.0.0.1:1/x"}});
    let new = cat.create_target("orders", "r1", body).unwrap().created_ms;
    assert_ne!(old, new);
    let update = |created| DeliveryUpdate {
        cursor: Some(9),
        put_dead_letters: vec![dead(2)],
        target_created_ms: Some(created),
        ..DeliveryUpdate::default()
    };
    cat.apply_delivery(&[(binding("hook"), update(old))])
        .unwrap();
    assert_eq!(cat.get_cursor("orders", "r1", "hook").unwrap(), None);
    assert_eq!(
        cat.count_delivery_entries(&binding("hook")).unwrap(),
        (0, 0)
    );
    cat.apply_delivery(&[(binding("hook"), update(new))])
        .unwrap();
    assert_eq!(cat.get_cursor("orders", "r1", "hook").unwrap(), Some(9));
    assert_eq!(
        cat.count_delivery_entries(&binding("hook")).unwrap(),
        (0, 1)
    );
}

#[test]
fn target_unknown_fields_are_refused_with_their_path() {
    let (_dir, cat) = with_targets(&[]);
    let base = || serde_json::json!({"name": "t1", "type": "http", "http": {"url": "http://127.0.0.1:1/x"}});
    for (patch, path) in [
        (serde_json::json!({"orderd": true}), "$.orderd"),
        (
            serde_json::json!({"retry": {"max_attempt": 3}}),
            "$.retry.max_attempt",
        ),
        (serde_json::json!({"batch": {"size": 3}}), "$.batch.size"),
        (
            serde_json::json!({"dead_letter": {"mod": "dlq"}}),
            "$.dead_letter.mod",
        ),
        (serde_json::json!({"notify": {}}), "$.notify"),
    ] {
        let mut body = base();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let e = cat.create_target("orders", "r1", body).unwrap_err();
        assert!(
            matches!(&e, eventbus::Error::Rejected { path: Some(p), code, .. } if p == path && code == "InvalidParameterValue"),
            "{path}: {e:?}"
        );
    }
}

/// Two attempts at one event in one commit cycle (a quick retry, or merged updates): the trace
/// keeps both, building the second on the first instead of on the stored record.
#[test]
fn trace_attempts_of_one_event_in_one_cycle_are_all_kept() {
    use eventbus::catalog::{TraceAttempt, TraceOutcome, TraceUpdate};
    let (_dir, cat) = fresh();
    cat.create_set("orders", None, None, None).unwrap();
    cat.create_rule("orders", rule("r1")).unwrap();
    cat.create_target("orders", "r1", http_target("hook"))
        .unwrap();
    let hook = binding("hook");
    let update = |t: u64, ok: bool, first: bool| TraceUpdate {
        offset: 0,
        attempt: TraceAttempt {
            time_ms: t,
            ok,
            status: Some(if ok { 200 } else { 503 }),
            error: None,
            latency_us: 1,
            batch: 1,
        },
        outcome: if ok {
            TraceOutcome::Delivered
        } else {
            TraceOutcome::Retrying
        },
        first,
    };
    let cycle = |trace: Vec<TraceUpdate>| {
        cat.apply_delivery(&[(
            hook.clone(),
            DeliveryUpdate {
                trace,
                ..DeliveryUpdate::default()
            },
        )])
        .unwrap()
    };
    // Cycle 1: the first attempt and a retry; cycle 2: two more, one of each update's kind.
    cycle(vec![update(1, false, true), update(2, false, false)]);
    cycle(vec![update(3, false, false), update(4, true, false)]);
    let trace = cat.event_trace("orders", 0).unwrap();
    assert_eq!(trace.len(), 1, "{trace:?}");
    let record = &trace[0].1;
    assert_eq!(record.attempts, 4, "{record:?}");
    let times: Vec<u64> = record.first.iter().map(|a| a.time_ms).collect();
    assert_eq!(times, [1, 2, 3, 4]);
    assert_eq!(record.outcome, Some(TraceOutcome::Delivered));
}
