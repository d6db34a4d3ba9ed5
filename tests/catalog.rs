//! Catalog scenarios: validation codes and paths, the immutable `default` set, deletion order,
//! limits, and reopening.

use eventbus::catalog::{
    Catalog, CatalogLimits, RetentionSpec, RulePatch, RuleSpec, SetKind, SetPatch,
};
use eventbus::{Error, RejectKind};
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
                transform: Some(json!({"Transformations": []})),
                ..RulePatch::default()
            },
        )
        .unwrap();
    assert!(!r.enabled);
    assert_eq!(r.transform.as_deref(), Some(r#"{"Transformations":[]}"#));
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
        ("notify", json!({"channels": ["email"]})),
        ("file", json!({"path": "/tmp/x"})),
        ("command", json!({"program": "true"})),
        ("event-set", json!({"set": "other"})),
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
        json!({"name": "hook", "type": "file", "file": {},
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
            json!({"type": "file", "file": {"path": "/x"}, "http": null}),
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
        spec.transform = Some(json!({"Transformations": [{"Extraction": {}}]}));
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
