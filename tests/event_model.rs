//! Parsing and validation of incoming events: one test per rule (code and path), plus the
//! accepted forms (CloudEvents, Tencent PutEvents), time formats, defaults and the size limit.

use eventbus::event::{EventLimits, parse_event};
use eventbus::{Error, Event, RejectKind};
use serde_json::{Value, json};

const INGEST: u64 = 1_700_000_000_000;

fn parse(v: &Value) -> eventbus::Result<Event> {
    parse_event(v, "$[2]", INGEST, &EventLimits::default())
}

fn ok(v: Value) -> Event {
    parse(&v).unwrap_or_else(|e| panic!("rejected {v}: {e}"))
}

/// A minimal valid CloudEvents object.
fn base() -> Value {
    json!({
        "specversion": "1.0",
        "id": "e-1",
        "source": "orders.app",
        "type": "order:created",
    })
}

fn with(key: &str, value: Value) -> Value {
    let mut v = base();
    v[key] = value;
    v
}

fn without(key: &str) -> Value {
    let mut v = base();
    v.as_object_mut().unwrap().remove(key);
    v
}

/// A minimal valid PutEvents entry.
fn put_base() -> Value {
    json!({"Source": "orders.app", "Type": "order:created", "Data": "{\"a\":1}"})
}

fn put_with(key: &str, value: Value) -> Value {
    let mut v = put_base();
    v[key] = value;
    v
}

#[track_caller]
fn assert_rejected(v: Value, want_code: &str, want_path: &str) {
    match parse(&v) {
        Err(Error::Rejected {
            kind,
            code,
            path,
            message,
        }) => {
            assert_eq!(kind, RejectKind::Invalid, "{message}");
            assert_eq!(code, want_code, "{message}");
            assert_eq!(path.as_deref(), Some(want_path), "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected {want_code} at {want_path} for {v}, got {other:?}"),
    }
}

// ---- acceptance ----

#[test]
fn canonical_cm_event_parses_and_round_trips() {
    let v = json!({
      "specversion":"1.0",
      "id":"13a3f42d-7258-4ada-da6d-023a333b4662",
      "source":"cvm.cloud.tencent",
      "type":"cvm:ErrorEvent:ping_unreachable",
      "subject":"ins-sjdksjk",
      "time": 1615430559146i64,
      "region":"ap-guangzhou",
      "resource":["qcs::eb:ap-guangzhou:uid1250000000:eventbusid/eventruleid"],
      "datacontenttype":"application/json;charset=utf-8",
      "tags":{"key1":"value1","key2":"value2"},
      "status":"1",
      "data":{"appId":"1250000011","instanceId":"ins-sjdksjk","projectId":"11",
              "dimensions":{"ip":"127.0.0.1"},"additionalMsg":{"IP":"something unnormal"}}
    });
    let ev = ok(v.clone());
    assert_eq!(ev.id, "13a3f42d-7258-4ada-da6d-023a333b4662");
    assert_eq!(ev.source, "cvm.cloud.tencent");
    assert_eq!(ev.ty, "cvm:ErrorEvent:ping_unreachable");
    assert_eq!(ev.subject.as_deref(), Some("ins-sjdksjk"));
    assert_eq!(ev.time_ms, 1_615_430_559_146);
    assert_eq!(ev.region.as_deref(), Some("ap-guangzhou"));
    assert_eq!(ev.resource.len(), 1);
    assert_eq!(ev.tags["key2"], "value2");
    assert_eq!(ev.status.as_deref(), Some("1"));
    assert!(ev.extensions.is_empty());
    assert_eq!(
        serde_json::from_slice::<Value>(&ev.data).unwrap(),
        v["data"]
    );
    // The normalized JSON is the input (time already a number), and parsing it again is stable.
    let out = ev.to_json();
    assert_eq!(out, v);
    assert!(out["time"].is_i64());
    assert_eq!(ok(out), ev);
}

#[test]
fn time_as_number_numeric_string_and_rfc3339_with_offset() {
    assert_eq!(
        ok(with("time", json!(1615430559146i64))).time_ms,
        1_615_430_559_146
    );
    assert_eq!(
        ok(with("time", json!("1615430559146"))).time_ms,
        1_615_430_559_146
    );
    // 2021-03-11T10:42:39.146+08:00 == 2021-03-11T02:42:39.146Z == 1615430559146 ms.
    let ev = ok(with("time", json!("2021-03-11T10:42:39.146+08:00")));
    assert_eq!(ev.time_ms, 1_615_430_559_146);
    assert_eq!(ev.to_json()["time"], json!(1_615_430_559_146i64));
    assert_eq!(
        ok(with("time", json!("2021-03-11T02:42:39Z"))).time_ms,
        1_615_430_559_000
    );
}

#[test]
fn missing_or_null_time_is_ingest_time() {
    assert_eq!(ok(base()).time_ms, INGEST as i64);
    assert_eq!(ok(with("time", Value::Null)).time_ms, INGEST as i64);
}

#[test]
fn missing_or_null_id_gets_a_uuid_v4() {
    for v in [without("id"), with("id", Value::Null)] {
        let ev = ok(v);
        let id = uuid::Uuid::parse_str(&ev.id).expect("a UUID");
        assert_eq!(id.get_version_num(), 4);
    }
    assert_ne!(ok(without("id")).id, ok(without("id")).id);
}

#[test]
fn null_optional_attributes_count_as_absent() {
    let mut v = base();
    for k in [
        "subject",
        "region",
        "resource",
        "datacontenttype",
        "tags",
        "status",
        "data",
        "myext",
    ] {
        v[k] = Value::Null;
    }
    let ev = ok(v);
    assert_eq!(ev.subject, None);
    assert!(ev.tags.is_empty() && ev.resource.is_empty() && ev.extensions.is_empty());
    assert!(ev.data.is_empty());
    let out = ev.to_json();
    assert!(out.get("data").is_none() && out.get("tags").is_none());
}

#[test]
fn extensions_are_stored_as_json_text_and_emitted_back() {
    let mut v = base();
    v["replayname"] = json!("r1");
    v["retries"] = json!(3);
    v["traced"] = json!(true);
    let ev = ok(v);
    assert_eq!(ev.extensions["replayname"], "\"r1\"");
    assert_eq!(ev.extensions["retries"], "3");
    assert_eq!(ev.extensions["traced"], "true");
    let out = ev.to_json();
    assert_eq!(out["replayname"], "r1");
    assert_eq!(out["retries"], 3);
    assert_eq!(out["traced"], true);
}

#[test]
fn data_of_any_json_kind_is_kept() {
    for data in [
        json!("text"),
        json!(42),
        json!([1, 2]),
        json!({"k": {"n": null}}),
    ] {
        let ev = ok(with("data", data.clone()));
        assert_eq!(serde_json::from_slice::<Value>(&ev.data).unwrap(), data);
        assert_eq!(ev.to_json()["data"], data);
    }
}

#[test]
fn put_events_form_with_json_string_data_and_tag_list() {
    let v = json!({
        "Source": "orders.app",
        "Type": "order:created",
        "Subject": "order-7",
        "Data": "{\"orderId\": 7, \"items\": [1,2]}",
        "Time": 1615430559146i64,
        "Region": "ap-guangzhou",
        "Status": "1",
        "Id": "p-1",
        "TagList": [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "a"}]
    });
    let ev = parse_event(&v, "$.EventList[0]", INGEST, &EventLimits::default()).unwrap();
    assert_eq!(ev.specversion, "1.0");
    assert_eq!(ev.id, "p-1");
    assert_eq!(ev.source, "orders.app");
    assert_eq!(ev.ty, "order:created");
    assert_eq!(ev.subject.as_deref(), Some("order-7"));
    assert_eq!(ev.time_ms, 1_615_430_559_146);
    assert_eq!(ev.region.as_deref(), Some("ap-guangzhou"));
    assert_eq!(ev.status.as_deref(), Some("1"));
    assert_eq!(
        ev.datacontenttype.as_deref(),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(ev.tags.len(), 2);
    assert_eq!(ev.tags["env"], "prod");
    // Delivered as lower-case CloudEvents with data as an object.
    let out = ev.to_json();
    assert_eq!(out["data"], json!({"orderId": 7, "items": [1, 2]}));
    assert_eq!(out["tags"], json!({"env": "prod", "team": "a"}));
    assert_eq!(ok(out), ev);
}

#[test]
fn put_events_form_defaults_time_and_id() {
    let ev = ok(put_base());
    assert_eq!(ev.time_ms, INGEST as i64);
    assert!(uuid::Uuid::parse_str(&ev.id).is_ok());
    assert!(ev.tags.is_empty());
    assert_eq!(
        ok(put_with("Time", json!("1615430559146"))).time_ms,
        1_615_430_559_146
    );
}

#[test]
fn size_limit_accepts_exactly_the_limit_and_rejects_one_byte_over() {
    const LIMIT: usize = 300;
    let limits = EventLimits {
        max_event_bytes: LIMIT,
    };
    let sized = |pad: usize| with("data", json!({ "pad": "x".repeat(pad) }));
    let base_len = serde_json::to_vec(&ok(sized(0)).to_json()).unwrap().len();
    assert!(base_len < LIMIT);
    let at_limit = sized(LIMIT - base_len);
    let ev = parse_event(&at_limit, "$[2]", INGEST, &limits).unwrap();
    assert_eq!(serde_json::to_vec(&ev.to_json()).unwrap().len(), LIMIT);

    match parse_event(&sized(LIMIT - base_len + 1), "$[2]", INGEST, &limits) {
        Err(Error::Rejected {
            kind,
            code,
            path,
            message,
        }) => {
            assert_eq!(kind, RejectKind::TooLarge);
            assert_eq!(code, "LimitExceeded.EventSize");
            assert_eq!(path.as_deref(), Some("$[2]"));
            assert!(
                message.contains("301") && message.contains("300"),
                "{message}"
            );
        }
        other => panic!("expected EventSize, got {other:?}"),
    }
}

#[test]
fn default_size_limit_is_64_kib() {
    assert_eq!(EventLimits::default().max_event_bytes, 64 * 1024);
    let big = with("data", json!("x".repeat(64 * 1024)));
    assert!(matches!(
        parse(&big),
        Err(Error::Rejected {
            kind: RejectKind::TooLarge,
            ..
        })
    ));
}

// ---- one test per rule ----

#[test]
fn not_an_object_is_invalid_event() {
    assert_rejected(json!([1]), "InvalidParameterValue.InvalidEvent", "$[2]");
    assert_rejected(json!("e"), "InvalidParameterValue.InvalidEvent", "$[2]");
}

#[test]
fn specversion_is_required() {
    assert_rejected(
        without("specversion"),
        "MissingParameter.SpecVersion",
        "$[2].specversion",
    );
}

#[test]
fn specversion_must_be_1_0() {
    for bad in [json!("0"), json!("1.0.2"), json!(1.0)] {
        assert_rejected(
            with("specversion", bad),
            "InvalidParameterValue.SpecVersion",
            "$[2].specversion",
        );
    }
}

#[test]
fn id_must_be_a_non_empty_string() {
    assert_rejected(with("id", json!(7)), "InvalidParameterValue.Id", "$[2].id");
    assert_rejected(with("id", json!("")), "InvalidParameterValue.Id", "$[2].id");
}

#[test]
fn source_is_required() {
    assert_rejected(without("source"), "MissingParameter.Source", "$[2].source");
    assert_rejected(
        with("source", Value::Null),
        "MissingParameter.Source",
        "$[2].source",
    );
}

#[test]
fn source_must_be_a_non_empty_string() {
    assert_rejected(
        with("source", json!("")),
        "InvalidParameterValue.Source",
        "$[2].source",
    );
    assert_rejected(
        with("source", json!(["a"])),
        "InvalidParameterValue.Source",
        "$[2].source",
    );
}

#[test]
fn type_is_required() {
    assert_rejected(without("type"), "MissingParameter.Type", "$[2].type");
}

#[test]
fn type_must_be_a_non_empty_string() {
    assert_rejected(
        with("type", json!("")),
        "InvalidParameterValue.Type",
        "$[2].type",
    );
    assert_rejected(
        with("type", json!(1)),
        "InvalidParameterValue.Type",
        "$[2].type",
    );
}

#[test]
fn time_must_be_integer_ms_numeric_string_or_rfc3339() {
    for bad in [
        json!(1.5),
        json!("yesterday"),
        json!("2021-03-11 02:42:39"),
        json!(""),
        json!(true),
        json!({"ms": 1}),
        json!("99999999999999999999"),
    ] {
        assert_rejected(with("time", bad), "InvalidParameterValue.Time", "$[2].time");
    }
}

#[test]
fn subject_must_be_a_string() {
    assert_rejected(
        with("subject", json!(1)),
        "InvalidParameterValue.Subject",
        "$[2].subject",
    );
}

#[test]
fn region_must_be_a_string() {
    assert_rejected(
        with("region", json!({})),
        "InvalidParameterValue.Region",
        "$[2].region",
    );
}

#[test]
fn resource_must_be_an_array_of_strings() {
    assert_rejected(
        with("resource", json!("qcs::x")),
        "InvalidParameterValue.Resource",
        "$[2].resource",
    );
    assert_rejected(
        with("resource", json!(["a", 2])),
        "InvalidParameterValue.Resource",
        "$[2].resource[1]",
    );
}

#[test]
fn tags_must_be_an_object_of_strings() {
    assert_rejected(
        with("tags", json!(["a"])),
        "InvalidParameterValue.Tags",
        "$[2].tags",
    );
    assert_rejected(
        with("tags", json!({"ok": "v", "n": 1})),
        "InvalidParameterValue.Tags",
        "$[2].tags.n",
    );
    assert_rejected(
        with("tags", json!({"a b": null})),
        "InvalidParameterValue.Tags",
        "$[2].tags[\"a b\"]",
    );
}

#[test]
fn status_must_be_a_string() {
    assert_rejected(
        with("status", json!(1)),
        "InvalidParameterValue.Status",
        "$[2].status",
    );
}

#[test]
fn data_base64_is_rejected() {
    assert_rejected(
        with("data_base64", json!("aGVsbG8=")),
        "InvalidParameterValue.Data",
        "$[2].data_base64",
    );
}

#[test]
fn datacontenttype_must_be_a_json_type() {
    assert_rejected(
        with("datacontenttype", json!("text/plain")),
        "InvalidParameterValue.DataContentType",
        "$[2].datacontenttype",
    );
    assert_rejected(
        with("datacontenttype", json!(5)),
        "InvalidParameterValue.DataContentType",
        "$[2].datacontenttype",
    );
    let ev = ok(with(
        "datacontenttype",
        json!("application/cloudevents+json"),
    ));
    assert_eq!(
        ev.datacontenttype.as_deref(),
        Some("application/cloudevents+json")
    );
}

#[test]
fn extension_names_must_be_lowercase_alnum_up_to_20_chars() {
    assert_rejected(
        with("dataContentType", json!("x")),
        "InvalidParameterValue.ExtensionName",
        "$[2].dataContentType",
    );
    assert_rejected(
        with("my_ext", json!("x")),
        "InvalidParameterValue.ExtensionName",
        "$[2].my_ext",
    );
    assert_rejected(
        with(&"a".repeat(21), json!("x")),
        "InvalidParameterValue.ExtensionName",
        &format!("$[2].{}", "a".repeat(21)),
    );
    assert_rejected(
        with("", json!("x")),
        "InvalidParameterValue.ExtensionName",
        "$[2][\"\"]",
    );
    assert_eq!(ok(with(&"a".repeat(20), json!("x"))).extensions.len(), 1);
}

#[test]
fn extension_values_must_be_scalar() {
    assert_rejected(
        with("myext", json!({"a": 1})),
        "InvalidParameterValue.ExtensionValue",
        "$[2].myext",
    );
    assert_rejected(
        with("myext", json!([1])),
        "InvalidParameterValue.ExtensionValue",
        "$[2].myext",
    );
}

#[test]
fn put_events_source_and_type_are_required() {
    assert_rejected(
        put_with("Source", Value::Null),
        "MissingParameter.Source",
        "$[2].Source",
    );
    let mut v = put_base();
    v.as_object_mut().unwrap().remove("Type");
    assert_rejected(v, "MissingParameter.Type", "$[2].Type");
}

#[test]
fn put_events_data_is_required() {
    let mut v = put_base();
    v.as_object_mut().unwrap().remove("Data");
    assert_rejected(v, "MissingParameter.Data", "$[2].Data");
}

#[test]
fn put_events_data_must_be_a_string_holding_json() {
    assert_rejected(
        put_with("Data", json!("{not json")),
        "InvalidParameterValue.Data",
        "$[2].Data",
    );
    assert_rejected(
        put_with("Data", json!("")),
        "InvalidParameterValue.Data",
        "$[2].Data",
    );
    assert_rejected(
        put_with("Data", json!({"a": 1})),
        "InvalidParameterValue.Data",
        "$[2].Data",
    );
}

#[test]
fn put_events_fields_are_type_checked() {
    assert_rejected(
        put_with("Time", json!("soon")),
        "InvalidParameterValue.Time",
        "$[2].Time",
    );
    assert_rejected(
        put_with("Id", json!("")),
        "InvalidParameterValue.Id",
        "$[2].Id",
    );
    assert_rejected(
        put_with("Subject", json!(1)),
        "InvalidParameterValue.Subject",
        "$[2].Subject",
    );
    assert_rejected(
        put_with("Region", json!(1)),
        "InvalidParameterValue.Region",
        "$[2].Region",
    );
    assert_rejected(
        put_with("Status", json!(1)),
        "InvalidParameterValue.Status",
        "$[2].Status",
    );
}

#[test]
fn put_events_tag_list_must_be_key_value_objects() {
    assert_rejected(
        put_with("TagList", json!({"env": "prod"})),
        "InvalidParameterValue.Tags",
        "$[2].TagList",
    );
    assert_rejected(
        put_with("TagList", json!(["env"])),
        "InvalidParameterValue.Tags",
        "$[2].TagList[0]",
    );
    assert_rejected(
        put_with(
            "TagList",
            json!([{"Key": "env", "Value": "a"}, {"Key": "x"}]),
        ),
        "InvalidParameterValue.Tags",
        "$[2].TagList[1].Value",
    );
    assert_rejected(
        put_with(
            "TagList",
            json!([{"Key": "env", "Value": "a"}, {"Key": "env", "Value": "b"}]),
        ),
        "InvalidParameterValue.Tags",
        "$[2].TagList[1].Key",
    );
}

#[test]
fn put_events_unknown_member_is_invalid_event() {
    assert_rejected(
        put_with("specversion", json!("1.0")),
        "InvalidParameterValue.InvalidEvent",
        "$[2].specversion",
    );
}

#[test]
fn data_keeps_key_order_and_number_digits() {
    let text = r#"{"specversion":"1.0","id":"e1","source":"s","type":"t",
        "data":{"z":1,"a":0.10000000000000001,"big":12345678901234567890,"e":3.0e2}}"#;
    let v: Value = serde_json::from_str(text).unwrap();
    let ev = parse_event(&v, "$[0]", INGEST, &EventLimits::default()).unwrap();
    assert_eq!(
        String::from_utf8(ev.data.clone()).unwrap(),
        // serde_json writes the exponent with its sign; the digits are untouched.
        r#"{"z":1,"a":0.10000000000000001,"big":12345678901234567890,"e":3.0e+2}"#
    );
}
