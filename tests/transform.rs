//! Transformations (`eventbus::transform`): both forms, every value type, text extraction,
//! filters, and the JSON path of every validation error.

use eventbus::error::Error;
use eventbus::transform::{INVALID_TRANSFORM, Output, TRANSFORM_FAILED, Transform};
use serde_json::{Value, json};

/// 2021-11-20T06:16:06Z = 2021-11-20T14:16:06+08:00, the time in Tencent's example output.
const NOW_MS: u64 = 1_637_388_966_000;

fn compile(spec: Value) -> Transform {
    Transform::compile(&spec).unwrap_or_else(|e| panic!("{spec} should compile: {e:?}"))
}

fn json_out(spec: Value, event: Value) -> Value {
    match compile(spec).apply(&event, NOW_MS) {
        Ok(Some(Output::Json(v))) => v,
        other => panic!("expected JSON output, got {other:?}"),
    }
}

fn text_out(spec: Value, event: Value) -> String {
    match compile(spec).apply(&event, NOW_MS) {
        Ok(Some(Output::Text(s))) => s,
        other => panic!("expected text output, got {other:?}"),
    }
}

/// Asserts that `spec` is refused with the transformation code at `path`.
fn refused_at(spec: Value, path: &str) {
    match Transform::compile(&spec) {
        Err(Error::Rejected {
            code,
            path: p,
            message,
            ..
        }) => {
            assert_eq!(code, INVALID_TRANSFORM, "{spec}: {message}");
            assert_eq!(p.as_deref(), Some(path), "{spec}: {message}");
        }
        Err(e) => panic!("{spec}: unexpected error {e:?}"),
        Ok(_) => panic!("{spec} should be refused at {path}"),
    }
}

/// Asserts that applying fails with the failure code at `path`.
fn fails_at(spec: Value, event: Value, path: &str) {
    match compile(spec).apply(&event, NOW_MS) {
        Err(Error::Rejected { code, path: p, .. }) => {
            assert_eq!(code, TRANSFORM_FAILED);
            assert_eq!(p.as_deref(), Some(path));
        }
        other => panic!("expected a failure at {path}, got {other:?}"),
    }
}

fn structs(list: Value) -> Value {
    json!({"Transform": {"OutputStructs": list}})
}

// ---------------------------------------------------------------------------------------------
// Tencent form

/// Tencent's CheckTransformation example (reference §4, tccli examples.json), verbatim.
#[test]
fn tencent_worked_example_gives_documented_output() {
    let input: Value = serde_json::from_str(
        r#"{"data":{"msgBody":"{\"city\":\"shenzhen\",\"temp\":32,\"weather\":\"sunny\"}"}}"#,
    )
    .unwrap();
    let spec = json!({
        "Extraction": {"ExtractionInputPath": "$.data.msgBody", "Format": "JSON"},
        "EtlFilter": {"Filter": "{\"city\":[{\"contain\":\"shen\"}]}"},
        "Transform": {"OutputStructs": [
            {"Key": "city",  "Value": "$.city", "ValueType": "JSONPATH"},
            {"Key": "const", "Value": "11",     "ValueType": "NUMBER"},
            {"Key": "sdate", "Value": "date",   "ValueType": "SYS_VARIABLE"}
        ]}
    });
    let expected: Value = serde_json::from_str(
        r#"{"sdate":"2021-11-20T14:16:06+08:00","city":"shenzhen","const":11}"#,
    )
    .unwrap();
    assert_eq!(json_out(spec.clone(), input.clone()), expected);

    // Modulo time: any other instant renders in the same shape.
    let out = match compile(spec).apply(&input, 1_700_000_000_123).unwrap() {
        Some(Output::Json(v)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(out["sdate"], json!("2023-11-15T06:13:20+08:00"));
    assert_eq!(out["city"], json!("shenzhen"));
    assert_eq!(out["const"], json!(11));
}

#[test]
fn tencent_worked_example_filter_drops_other_cities() {
    let spec = json!({
        "Extraction": {"ExtractionInputPath": "$.data.msgBody", "Format": "JSON"},
        "EtlFilter": {"Filter": "{\"city\":[{\"contain\":\"shen\"}]}"},
        "Transform": {"OutputStructs": [{"Key": "city", "Value": "$.city", "ValueType": "JSONPATH"}]}
    });
    let event = json!({"data": {"msgBody": "{\"city\":\"beijing\"}"}});
    assert_eq!(compile(spec).apply(&event, NOW_MS).unwrap(), None);
}

#[test]
fn tencent_each_value_type() {
    let spec = structs(json!([
        {"Key": "s", "Value": "hello", "ValueType": "STRING"},
        {"Key": "empty", "Value": "", "ValueType": "STRING"},
        {"Key": "i", "Value": "-42", "ValueType": "NUMBER"},
        {"Key": "f", "Value": "2.5", "ValueType": "NUMBER"},
        {"Key": "t", "Value": "true", "ValueType": "BOOLEAN"},
        {"Key": "b", "Value": "false", "ValueType": "BOOLEAN"},
        {"Key": "n", "ValueType": "NULL"},
        {"Key": "n2", "Value": "ignored", "ValueType": "NULL"},
        {"Key": "d", "Value": "$.date", "ValueType": "SYS_VARIABLE"},
        {"Key": "d2", "Value": "DATE", "ValueType": "SYS_VARIABLE"},
        {"Key": "p", "Value": "$.data.x", "ValueType": "JSONPATH"},
        {"Key": "obj", "Value": "$.data", "ValueType": "JSONPATH"},
        {"Key": "all", "Value": "$.data.list[*].v", "ValueType": "JSONPATH"},
        {"Key": "missing", "Value": "$.data.nope", "ValueType": "JSONPATH"}
    ]));
    let event = json!({"id": "e1", "data": {"x": 7, "list": [{"v": 1}, {"v": 2}]}});
    let out = json_out(spec, event);
    assert_eq!(
        out,
        json!({
            "s": "hello", "empty": "", "i": -42, "f": 2.5, "t": true, "b": false,
            "n": null, "n2": null,
            "d": "2021-11-20T14:16:06+08:00", "d2": "2021-11-20T14:16:06+08:00",
            "p": 7, "obj": {"x": 7, "list": [{"v": 1}, {"v": 2}]}, "all": [1, 2],
            "missing": null
        })
    );
    // Keys come out in OutputStructs order.
    let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
    assert_eq!(keys[..3], ["s", "empty", "i"]);
}

#[test]
fn tencent_json_string_is_parsed_only_when_it_holds_an_object_or_array() {
    let spec = |path: &str| json!({"Extraction": {"ExtractionInputPath": path, "Format": "JSON"}});
    let event = json!({"data": {"o": "{\"a\":[1,2]}", "arr": "[true]", "num": "32", "bad": "{x"}});
    assert_eq!(
        json_out(spec("$.data.o"), event.clone()),
        json!({"a": [1, 2]})
    );
    assert_eq!(json_out(spec("$.data.arr"), event.clone()), json!([true]));
    assert_eq!(json_out(spec("$.data.num"), event.clone()), json!("32"));
    assert_eq!(json_out(spec("$.data.bad"), event), json!("{x"));
}

#[test]
fn tencent_empty_spec_and_defaults_pass_the_event_through() {
    let event = json!({"id": "e1", "data": {"a": 1}});
    assert_eq!(json_out(json!({}), event.clone()), event);
    assert_eq!(
        json_out(
            json!({"Extraction": {"ExtractionInputPath": "$.data"}}),
            event.clone()
        ),
        json!({"a": 1})
    );
    // The filter and the output paths see the extracted document, not the event.
    let spec = json!({
        "Extraction": {"ExtractionInputPath": "$.data"},
        "EtlFilter": {"Filter": "{\"a\":[1]}"},
        "Transform": {"OutputStructs": [
            {"Key": "a", "Value": "$.a", "ValueType": "JSONPATH"},
            {"Key": "id", "Value": "$.id", "ValueType": "JSONPATH"}
        ]}
    });
    assert_eq!(json_out(spec, event), json!({"a": 1, "id": null}));
}

#[test]
fn tencent_text_with_separator_splits_into_numbered_fields() {
    let spec = json!({
        "Extraction": {"ExtractionInputPath": "$.data.line", "Format": "TEXT",
                       "TextParams": {"Separator": ","}},
        "Transform": {"OutputStructs": [
            {"Key": "host", "Value": "$.0", "ValueType": "JSONPATH"},
            {"Key": "level", "Value": "$.2", "ValueType": "JSONPATH"},
            {"Key": "none", "Value": "$.9", "ValueType": "JSONPATH"}
        ]}
    });
    let event = json!({"data": {"line": "web-1,2021-11-20,ERROR,disk full"}});
    assert_eq!(
        json_out(spec, event.clone()),
        json!({"host": "web-1", "level": "ERROR", "none": null})
    );

    // Without Transform the split document itself comes out; fields are strings.
    let whole = json!({"Extraction": {"ExtractionInputPath": "$.data.line", "Format": "TEXT",
                                      "TextParams": {"Separator": ","}}});
    assert_eq!(
        json_out(whole, event),
        json!({"0": "web-1", "1": "2021-11-20", "2": "ERROR", "3": "disk full"})
    );
}

#[test]
fn tencent_text_separators_tab_and_escape_forms() {
    for sep in ["\t", "\\t"] {
        let spec = json!({"Extraction": {"ExtractionInputPath": "$.data", "Format": "TEXT",
                                         "TextParams": {"Separator": sep}}});
        assert_eq!(
            json_out(spec, json!({"data": "a\tb"})),
            json!({"0": "a", "1": "b"})
        );
    }
    // A non-string value is split as its JSON text.
    let spec = json!({"Extraction": {"ExtractionInputPath": "$.data", "Format": "TEXT",
                                     "TextParams": {"Separator": "|"}}});
    assert_eq!(
        json_out(spec, json!({"data": [1, 2]})),
        json!({"0": "[1,2]"})
    );
}

#[test]
fn tencent_text_with_regex_gives_groups_and_filter_applies() {
    let spec = json!({
        "Extraction": {"ExtractionInputPath": "$.data.msg", "Format": "TEXT",
                       "TextParams": {"Regex": "user=(\\w+) action=(?P<action>\\w+)( extra)?"}},
        "EtlFilter": {"Filter": "{\"action\":[\"login\"]}"},
        "Transform": {"OutputStructs": [
            {"Key": "all", "Value": "$.0", "ValueType": "JSONPATH"},
            {"Key": "user", "Value": "$.1", "ValueType": "JSONPATH"},
            {"Key": "action", "Value": "$.action", "ValueType": "JSONPATH"},
            {"Key": "two", "Value": "$.2", "ValueType": "JSONPATH"},
            {"Key": "extra", "Value": "$.3", "ValueType": "JSONPATH"}
        ]}
    });
    let t = compile(spec.clone());
    let out = t
        .apply(
            &json!({"data": {"msg": "ts=1 user=ann action=login"}}),
            NOW_MS,
        )
        .unwrap();
    assert_eq!(
        out,
        Some(Output::Json(json!({
            "all": "user=ann action=login", "user": "ann", "action": "login",
            "two": "login", "extra": null
        })))
    );
    // Filter drop on a regex document.
    assert_eq!(
        t.apply(&json!({"data": {"msg": "user=bob action=logout"}}), NOW_MS)
            .unwrap(),
        None
    );
    // No match: an error naming the regex, not a silent drop.
    fails_at(
        spec,
        json!({"data": {"msg": "nothing here"}}),
        "$.Extraction.TextParams.Regex",
    );
}

#[test]
fn tencent_etl_filter_keeps_and_drops() {
    let spec = json!({
        "EtlFilter": {"Filter": "{\"source\":[\"cvm.cloud.tencent\"],\"data\":{\"n\":[{\"numeric\":[\">\",10]}]}}"}
    });
    let t = compile(spec);
    let keep = json!({"source": "cvm.cloud.tencent", "data": {"n": 11}});
    assert_eq!(
        t.apply(&keep, NOW_MS).unwrap(),
        Some(Output::Json(keep.clone()))
    );
    let drop = json!({"source": "cvm.cloud.tencent", "data": {"n": 3}});
    assert_eq!(t.apply(&drop, NOW_MS).unwrap(), None);

    // A pattern object is accepted in place of its text.
    let t = compile(json!({"EtlFilter": {"Filter": {"source": ["x"]}}}));
    assert_eq!(t.apply(&json!({"source": "y"}), NOW_MS).unwrap(), None);
}

#[test]
fn tencent_extraction_path_that_matches_nothing_fails() {
    fails_at(
        json!({"Extraction": {"ExtractionInputPath": "$.data.msgBody"}}),
        json!({"data": {}}),
        "$.Extraction.ExtractionInputPath",
    );
}

#[test]
fn tencent_loose_dot_names_work_in_paths() {
    let spec = structs(json!([
        {"Key": "id", "Value": "$.data.instance-id", "ValueType": "JSONPATH"},
        {"Key": "q", "Value": "$.data['a.b']", "ValueType": "JSONPATH"}
    ]));
    assert_eq!(
        json_out(spec, json!({"data": {"instance-id": "ins-1", "a.b": 2}})),
        json!({"id": "ins-1", "q": 2})
    );
}

#[test]
fn tencent_validation_errors_name_their_path() {
    let ok_struct = json!({"Key": "k", "Value": "v", "ValueType": "STRING"});
    let with = |s: Value| structs(json!([ok_struct.clone(), s]));
    let cases: Vec<(Value, &str)> = vec![
        (json!("not an object"), "$"),
        (json!([]), "$"),
        (json!({"Extract": {}}), "$.Extract"),
        (json!({"Extraction": "x"}), "$.Extraction"),
        (json!({"Extraction": {"Path": "$"}}), "$.Extraction.Path"),
        (
            json!({"Extraction": {"ExtractionInputPath": 3}}),
            "$.Extraction.ExtractionInputPath",
        ),
        (
            json!({"Extraction": {"ExtractionInputPath": "data.x"}}),
            "$.Extraction.ExtractionInputPath",
        ),
        (
            json!({"Extraction": {"ExtractionInputPath": "$.a["}}),
            "$.Extraction.ExtractionInputPath",
        ),
        (
            json!({"Extraction": {"Format": "XML"}}),
            "$.Extraction.Format",
        ),
        (
            json!({"Extraction": {"Format": "json"}}),
            "$.Extraction.Format",
        ),
        (
            json!({"Extraction": {"Format": "JSON", "TextParams": {"Separator": ","}}}),
            "$.Extraction.TextParams",
        ),
        (
            json!({"Extraction": {"Format": "TEXT"}}),
            "$.Extraction.TextParams",
        ),
        (
            json!({"Extraction": {"Format": "TEXT", "TextParams": {}}}),
            "$.Extraction.TextParams",
        ),
        (
            json!({"Extraction": {"Format": "TEXT", "TextParams": {"Separator": ",", "Regex": "x"}}}),
            "$.Extraction.TextParams",
        ),
        (
            json!({"Extraction": {"Format": "TEXT", "TextParams": {"Sep": ","}}}),
            "$.Extraction.TextParams.Sep",
        ),
        (
            json!({"Extraction": {"Format": "TEXT", "TextParams": {"Separator": ",,"}}}),
            "$.Extraction.TextParams.Separator",
        ),
        (
            json!({"Extraction": {"Format": "TEXT", "TextParams": {"Separator": ";"}}}),
            "$.Extraction.TextParams.Separator",
        ),
        (
            json!({"Extraction": {"Format": "TEXT", "TextParams": {"Separator": 1}}}),
            "$.Extraction.TextParams.Separator",
        ),
        (
            json!({"Extraction": {"Format": "TEXT", "TextParams": {"Regex": "("}}}),
            "$.Extraction.TextParams.Regex",
        ),
        (
            json!({"Extraction": {"Format": "TEXT", "TextParams": {"Regex": ""}}}),
            "$.Extraction.TextParams.Regex",
        ),
        (
            json!({"Extraction": {"Format": "TEXT", "TextParams": {"Regex": "a".repeat(129)}}}),
            "$.Extraction.TextParams.Regex",
        ),
        (json!({"EtlFilter": "x"}), "$.EtlFilter"),
        (json!({"EtlFilter": {}}), "$.EtlFilter.Filter"),
        (
            json!({"EtlFilter": {"Filter": "{not json"}}),
            "$.EtlFilter.Filter",
        ),
        (
            json!({"EtlFilter": {"Filter": "{\"a\":[{\"bogus\":1}]}"}}),
            "$.EtlFilter.Filter",
        ),
        (
            json!({"EtlFilter": {"Filter": {"a": [{"bogus": 1}]}}}),
            "$.EtlFilter.Filter.a[0].bogus",
        ),
        (json!({"EtlFilter": {"Filter": 5}}), "$.EtlFilter.Filter"),
        (
            json!({"EtlFilter": {"Filter": "{}", "X": 1}}),
            "$.EtlFilter.X",
        ),
        (json!({"Transform": []}), "$.Transform"),
        (json!({"Transform": {}}), "$.Transform.OutputStructs"),
        (
            json!({"Transform": {"OutputStructs": {}}}),
            "$.Transform.OutputStructs",
        ),
        (structs(json!([])), "$.Transform.OutputStructs"),
        (
            structs(Value::Array(vec![ok_struct.clone(); 101])),
            "$.Transform.OutputStructs",
        ),
        (with(json!("x")), "$.Transform.OutputStructs[1]"),
        (
            with(json!({"Key": "a", "Value": "v", "ValueType": "STRING", "Extra": 1})),
            "$.Transform.OutputStructs[1].Extra",
        ),
        (
            with(json!({"Value": "v", "ValueType": "STRING"})),
            "$.Transform.OutputStructs[1].Key",
        ),
        (
            with(json!({"Key": "", "Value": "v", "ValueType": "STRING"})),
            "$.Transform.OutputStructs[1].Key",
        ),
        (
            with(json!({"Key": 1, "Value": "v", "ValueType": "STRING"})),
            "$.Transform.OutputStructs[1].Key",
        ),
        (
            with(json!({"Key": "k", "Value": "v", "ValueType": "STRING"})),
            "$.Transform.OutputStructs[1].Key",
        ),
        (
            with(json!({"Key": "a", "Value": "v"})),
            "$.Transform.OutputStructs[1].ValueType",
        ),
        (
            with(json!({"Key": "a", "Value": "v", "ValueType": "TEXT"})),
            "$.Transform.OutputStructs[1].ValueType",
        ),
        (
            with(json!({"Key": "a", "ValueType": "string"})),
            "$.Transform.OutputStructs[1].ValueType",
        ),
        (
            with(json!({"Key": "a", "Value": "v", "ValueType": 1})),
            "$.Transform.OutputStructs[1].ValueType",
        ),
        (
            with(json!({"Key": "a", "ValueType": "STRING"})),
            "$.Transform.OutputStructs[1].Value",
        ),
        (
            with(json!({"Key": "a", "Value": 11, "ValueType": "NUMBER"})),
            "$.Transform.OutputStructs[1].Value",
        ),
        (
            with(json!({"Key": "a", "Value": "eleven", "ValueType": "NUMBER"})),
            "$.Transform.OutputStructs[1].Value",
        ),
        (
            with(json!({"Key": "a", "Value": " 11", "ValueType": "NUMBER"})),
            "$.Transform.OutputStructs[1].Value",
        ),
        (
            with(json!({"Key": "a", "Value": "\"11\"", "ValueType": "NUMBER"})),
            "$.Transform.OutputStructs[1].Value",
        ),
        (
            with(json!({"Key": "a", "Value": "yes", "ValueType": "BOOLEAN"})),
            "$.Transform.OutputStructs[1].Value",
        ),
        (
            with(json!({"Key": "a", "Value": "time", "ValueType": "SYS_VARIABLE"})),
            "$.Transform.OutputStructs[1].Value",
        ),
        (
            with(json!({"Key": "a", "Value": "city", "ValueType": "JSONPATH"})),
            "$.Transform.OutputStructs[1].Value",
        ),
        (
            with(json!({"Key": "a", "Value": "$[?", "ValueType": "JSONPATH"})),
            "$.Transform.OutputStructs[1].Value",
        ),
    ];
    for (spec, path) in cases {
        refused_at(spec, path);
    }
}

#[test]
fn tencent_regex_limit_counts_characters() {
    let spec = |re: String| json!({"Extraction": {"Format": "TEXT", "TextParams": {"Regex": re}}});
    compile(spec("a".repeat(128)));
    compile(spec("é".repeat(128)));
}

// ---------------------------------------------------------------------------------------------
// EventBridge form

#[test]
fn eventbridge_input_path_selects_part_of_the_event() {
    let event = json!({"id": "e1", "data": {"a": {"b": 1}, "s": "str"}});
    assert_eq!(
        json_out(json!({"input_path": "$.data.a"}), event.clone()),
        json!({"b": 1})
    );
    assert_eq!(
        json_out(json!({"input_path": "$.data.s"}), event.clone()),
        json!("str")
    );
    assert_eq!(json_out(json!({"input_path": "$"}), event.clone()), event);
    // Missing: JSON null.
    assert_eq!(
        json_out(json!({"input_path": "$.data.nope"}), event),
        Value::Null
    );
}

#[test]
fn eventbridge_json_template_fills_strings_and_values() {
    let spec = json!({"input_transformer": {
        "input_paths_map": {"id": "$.id", "n": "$.data.n", "obj": "$.data.o", "q": "$.data.q",
                            "nope": "$.data.nope", "instance-id": "$.data.instance-id"},
        "input_template": "{\"msg\": \"event <id> has n=<n> o=<obj> q=<q> [<nope>]\", \"n\": <n>, \"o\": <obj>, \"id\": <id>, \"missing\": <nope>, \"ins\": \"<instance-id>\"}"
    }});
    let event = json!({"id": "e1", "data": {"n": 5, "o": {"k": [1]}, "q": "say \"hi\"\n", "instance-id": "ins-9"}});
    assert_eq!(
        json_out(spec, event),
        json!({
            "msg": "event e1 has n=5 o={\"k\":[1]} q=say \"hi\"\n []",
            "n": 5, "o": {"k": [1]}, "id": "e1", "missing": null, "ins": "ins-9"
        })
    );
}

#[test]
fn eventbridge_text_template_gives_text() {
    let spec = json!({"input_transformer": {
        "input_paths_map": {"id": "$.data.instance", "state": "$.data.state", "nope": "$.data.nope",
                            "o": "$.data.o"},
        "input_template": "Instance <id> is in state <state>.<nope> o=<o> x<3"
    }});
    let event = json!({"data": {"instance": "i-1", "state": "running", "o": {"a": 1}}});
    assert_eq!(
        text_out(spec, event),
        "Instance i-1 is in state running. o={\"a\":1} x<3"
    );
}

#[test]
fn eventbridge_output_kind_is_fixed_by_the_template() {
    // A text template stays text even when the filled text happens to be JSON.
    let spec = json!({"input_transformer": {
        "input_paths_map": {"a": "$.a", "b": "$.b"},
        "input_template": "<a> <b>"
    }});
    assert_eq!(text_out(spec, json!({"a": 1, "b": ""})), "1 ");
    // A lone bare placeholder is a JSON template: the value itself.
    let spec = json!({"input_transformer": {
        "input_paths_map": {"a": "$.a"}, "input_template": "<a>"
    }});
    assert_eq!(json_out(spec.clone(), json!({"a": "s"})), json!("s"));
    assert_eq!(json_out(spec, json!({})), Value::Null);
    // A template without placeholders.
    let spec = json!({"input_transformer": {"input_template": "{\"fixed\": true}"}});
    assert_eq!(json_out(spec, json!({})), json!({"fixed": true}));
    let spec = json!({"input_transformer": {"input_template": "fixed text"}});
    assert_eq!(text_out(spec, json!({})), "fixed text");
}

#[test]
fn eventbridge_reserved_event_variables() {
    let spec = json!({"input_transformer": {
        "input_template": "{\"meta\": <aws.events.event>, \"full\": <aws.events.event.json>}"
    }});
    let event = json!({"id": "e1", "source": "s", "data": {"x": 1}});
    assert_eq!(
        json_out(spec, event.clone()),
        json!({"meta": {"id": "e1", "source": "s"}, "full": event})
    );
}

#[test]
fn eventbridge_validation_errors_name_their_path() {
    let many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("v{i}"), json!("$.a"))).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"input_path": "$", "input_transformer": {"input_template": "x"}}),
            "$.input_transformer",
        ),
        (json!({"input_path": "$", "Extraction": {}}), "$.Extraction"),
        (json!({"input_path": 1}), "$.input_path"),
        (json!({"input_path": "data"}), "$.input_path"),
        (json!({"input_path": "$.a["}), "$.input_path"),
        (json!({"input_transformer": "x"}), "$.input_transformer"),
        (
            json!({"input_transformer": {"input_template": "x", "InputTemplate": "y"}}),
            "$.input_transformer.InputTemplate",
        ),
        (
            json!({"input_transformer": {}}),
            "$.input_transformer.input_template",
        ),
        (
            json!({"input_transformer": {"input_template": ""}}),
            "$.input_transformer.input_template",
        ),
        (
            json!({"input_transformer": {"input_template": "x".repeat(8193)}}),
            "$.input_transformer.input_template",
        ),
        (
            json!({"input_transformer": {"input_template": 3}}),
            "$.input_transformer.input_template",
        ),
        (
            json!({"input_transformer": {"input_template": "hi <who>"}}),
            "$.input_transformer.input_template",
        ),
        (
            json!({"input_transformer": {"input_paths_map": [], "input_template": "x"}}),
            "$.input_transformer.input_paths_map",
        ),
        (
            json!({"input_transformer": {"input_paths_map": many, "input_template": "x"}}),
            "$.input_transformer.input_paths_map",
        ),
        (
            json!({"input_transformer": {"input_paths_map": {"a": "a.b"}, "input_template": "<a>"}}),
            "$.input_transformer.input_paths_map.a",
        ),
        (
            json!({"input_transformer": {"input_paths_map": {"a": 1}, "input_template": "<a>"}}),
            "$.input_transformer.input_paths_map.a",
        ),
        (
            json!({"input_transformer": {"input_paths_map": {"aws.x": "$"}, "input_template": "x"}}),
            "$.input_transformer.input_paths_map[\"aws.x\"]",
        ),
        (
            json!({"input_transformer": {"input_paths_map": {"a b": "$"}, "input_template": "x"}}),
            "$.input_transformer.input_paths_map[\"a b\"]",
        ),
    ];
    for (spec, path) in cases {
        refused_at(spec, path);
    }
    // Exactly at the limits is fine.
    let hundred: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("v{i}"), json!("$.a"))).collect();
    compile(
        json!({"input_transformer": {"input_paths_map": hundred, "input_template": "x".repeat(8192)}}),
    );
}

#[test]
fn compile_under_prefixes_paths_for_callers() {
    let e = Transform::compile_under(&json!({"input_path": 1}), "$.transform").unwrap_err();
    assert!(
        matches!(&e, Error::Rejected { path: Some(p), .. } if p == "$.transform.input_path"),
        "{e:?}"
    );
}
