//! Scenario: the `eventbus` binary — help, and `inspect` on a real log written through the
//! library: listing, records, damage found by `--verify`, fixed by `--repair`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eventbus::store::frame::{FrameDecode, decode_frame};
use eventbus::{Event, EventLog, LogOptions, ReadOutcome};
use serde_json::Value;

const EVENTS: u64 = 120;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eventbus"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run eventbus")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tiny() -> LogOptions {
    LogOptions {
        max_segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogOptions::default()
    }
}

/// A data directory laid out like `eventbus serve` does, holding `EVENTS` events in the
/// `default` set across several 4 KiB segments. Returns (tempdir guard, data dir, set dir).
fn data_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let set = data.join("sets").join("default");
    let log = EventLog::open(&set, tiny()).unwrap();
    for i in 0..EVENTS {
        let mut e = Event::new(format!("id-{i}"), "cvm.cloud.tencent", "cvm:Ev:Test");
        e.data = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(100)).into_bytes();
        log.append_blocking(&[e]).unwrap();
    }
    assert!(log.stats().segments >= 4, "tiny segments must roll");
    log.close().unwrap();
    (tmp, data, set)
}

fn segment_files(set: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(set)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Every file below `dir` with its bytes, to prove a command changed nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Start positions of the frames of a segment file.
/// A segment file's base offset, from its name.
fn segment_base(segment: &Path) -> u64 {
    segment
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match decode_frame(&bytes[at..]) {
            FrameDecode::Frame { size, .. } => {
                starts.push(at);
                at += size;
            }
            other => panic!("unexpected {other:?} at {at}"),
        }
    }
    starts
}

fn json_report(dir: &Path, extra: &[&str]) -> (Value, Output) {
    let mut args = vec!["inspect", dir.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (v, out)
}

#[test]
fn cli_help_works_for_the_binary_and_inspect() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("inspect"));
    let out = run(&["inspect", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "--verify",
        "--repair",
        "--records",
        "--from",
        "--limit",
        "--json",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
    assert!(help.contains("Examples:") && help.contains("Exit status"));
}

#[test]
fn inspect_lists_segments_with_correct_counts_from_data_dir_or_set_dir() {
    let (_tmp, data, set) = data_dir();
    let before = snapshot(&data);
    let files = segment_files(&set);
    for dir in [&data, &set] {
        let (v, out) = json_report(dir, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(v["clean"], true);
        let sets = v["sets"].as_array().unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0]["name"], "default");
        assert_eq!(sets[0]["records"], EVENTS);
        let segs = sets[0]["segments"].as_array().unwrap();
        assert_eq!(segs.len(), files.len());
        let mut next = 0;
        for (s, f) in segs.iter().zip(&files) {
            assert_eq!(s["file"], f.file_name().unwrap().to_str().unwrap());
            assert_eq!(s["bytes"], std::fs::metadata(f).unwrap().len());
            assert_eq!(s["base_offset"], next);
            assert_eq!(s["first_offset"], next);
            let records = s["records"].as_u64().unwrap();
            assert!(records > 0);
            next += records;
            assert_eq!(s["last_offset"], next - 1);
            assert_eq!(s["status"], "ok");
        }
        assert_eq!(next, EVENTS);
        assert_eq!(segs.last().unwrap()["active"], true);
    }
    // The table names every segment and says the set is clean.
    let out = run(&["inspect", data.to_str().unwrap()]);
    assert!(out.status.success());
    let table = text(&out.stdout);
    for f in &files {
        assert!(table.contains(f.file_name().unwrap().to_str().unwrap()));
    }
    assert!(table.contains("120 record(s)") && table.contains("clean"));
    // --verify agrees, and nothing of the above wrote a byte.
    let (v, out) = json_report(&data, &["--verify"]);
    assert!(out.status.success());
    assert_eq!(v["sets"][0]["check"], "full");
    assert_eq!(v["sets"][0]["records"], EVENTS);
    assert_eq!(snapshot(&data), before);
}

#[test]
fn inspect_records_prints_every_record_as_a_json_line() {
    let (_tmp, data, set) = data_dir();
    let out = run(&["inspect", set.to_str().unwrap(), "--records"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, EVENTS);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["offset"], i as u64);
        assert!(l["ingest_time_ms"].as_u64().unwrap() > 0);
        assert_eq!(l["event"]["id"], format!("id-{i}"));
        assert_eq!(l["event"]["data"]["i"], i as u64);
        assert_eq!(l["event"]["type"], "cvm:Ev:Test");
    }
    let out = run(&[
        "inspect",
        data.to_str().unwrap(),
        "--records",
        "--from",
        "50",
        "--limit",
        "5",
    ]);
    assert!(out.status.success());
    let offsets: Vec<u64> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(offsets, vec![50, 51, 52, 53, 54]);
}

#[test]
fn inspect_verify_names_a_flipped_byte_and_repair_makes_the_log_open_again() {
    let (_tmp, data, set) = data_dir();
    let files = segment_files(&set);
    // Damage the middle frame of the second (sealed) segment.
    let victim = &files[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let starts = frame_starts(&bytes);
    let k = starts.len() / 2;
    let frame_at = starts[k];
    bytes[frame_at + 20] ^= 0x40;
    std::fs::write(victim, &bytes).unwrap();
    let base = segment_base(victim);
    let lost = base + k as u64;

    // Plain inspect trusts seals (documented), so only --verify reads the damaged frame.
    let out = run(&["inspect", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = snapshot(&data);
    let out = run(&["inspect", data.to_str().unwrap(), "--verify"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(name) && err.contains(&format!("damaged at byte {frame_at}")),
        "{err}"
    );
    assert!(err.contains("CRC"), "{err}");
    assert!(text(&out.stdout).contains(&format!("DAMAGED at byte {frame_at}")));
    // --records skips the damaged record, warns, and reports it in the exit status.
    let out = run(&["inspect", set.to_str().unwrap(), "--records"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout).lines().count() as u64, EVENTS - 1);
    assert!(text(&out.stderr).contains(&format!("damaged at byte {frame_at}")));
    assert_eq!(snapshot(&data), before, "inspect without --repair wrote");
    // The library agrees. Opening trusts the seal (it never scans sealed segments), so the
    // damage surfaces when a reader reaches it.
    {
        let log = EventLog::open(&set, tiny()).unwrap();
        let mut reader = log.read_from(0);
        let err = loop {
            match reader.next() {
                Ok(ReadOutcome::Record(_)) => continue,
                Ok(ReadOutcome::EndOfLog) => panic!("read past the damage"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(err, eventbus::Error::Corrupt { position, .. } if position == frame_at as u64),
            "{err}"
        );
        log.close().unwrap();
    }

    let out = run(&["inspect", data.to_str().unwrap(), "--repair"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("repair: moved"));
    assert!(set.join("REPAIRS.json").exists());
    assert_eq!(std::fs::read_dir(set.join("damaged")).unwrap().count(), 1);

    let (v, out) = json_report(&data, &["--verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(v["sets"][0]["records"], EVENTS - 1);
    let gaps = v["sets"][0]["accepted_gaps"].as_array().unwrap();
    assert_eq!(
        (gaps[0]["from"].as_u64(), gaps[0]["to"].as_u64()),
        (Some(lost), Some(lost + 1))
    );

    let log = EventLog::open(&set, tiny()).unwrap();
    let mut reader = log.read_from(0);
    let mut offsets = Vec::new();
    while let ReadOutcome::Record(r) = reader.next().unwrap() {
        assert_eq!(r.event.id, format!("id-{}", r.offset));
        offsets.push(r.offset);
    }
    let expected: Vec<u64> = (0..EVENTS).filter(|&o| o != lost).collect();
    assert_eq!(offsets, expected);
    assert_eq!(log.next_offset(), EVENTS);
}

#[test]
fn inspect_reports_a_torn_tail_without_cutting_it() {
    let (_tmp, _data, set) = data_dir();
    let active = segment_files(&set).pop().unwrap();
    let len = std::fs::metadata(&active).unwrap().len();
    let mut bytes = std::fs::read(&active).unwrap();
    bytes.extend_from_slice(&[0x30, 0, 0, 0, 1, 2, 3]); // a frame header cut short
    std::fs::write(&active, &bytes).unwrap();
    // The plain listing scans the active tail, so it sees this without --verify.
    for extra in [&[][..], &["--verify"][..]] {
        let (v, out) = json_report(&set, extra);
        assert_eq!(out.status.code(), Some(1));
        let seg = v["sets"][0]["segments"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(seg["status"], "torn_tail");
        assert_eq!(seg["damage"]["position"], len);
        assert!(text(&out.stderr).contains(&format!("torn tail at byte {len}")));
    }
    assert_eq!(
        std::fs::metadata(&active).unwrap().len(),
        bytes.len() as u64
    );
}

#[test]
fn inspect_of_a_directory_without_logs_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["inspect", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no event-set log"));
}

#[test]
fn inspect_reports_a_missing_segment_as_a_gap_and_repair_accepts_it() {
    let (_tmp, data, set) = data_dir();
    let files = segment_files(&set);
    let gone = &files[1];
    let from = segment_base(gone);
    let to = segment_base(&files[2]);
    std::fs::remove_file(gone).unwrap();
    std::fs::remove_file(gone.with_extension("idx")).unwrap();
    let out = run(&["inspect", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("gap in the offset chain"),
        "{}",
        text(&out.stderr)
    );
    assert!(EventLog::open(&set, tiny()).is_err());

    let out = run(&["inspect", data.to_str().unwrap(), "--repair"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&format!("offsets {from}..{to} declared lost")));
    let out = run(&["inspect", data.to_str().unwrap(), "--verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = EventLog::open(&set, tiny()).unwrap();
    let mut reader = log.read_from(0);
    let mut n = 0;
    while let ReadOutcome::Record(r) = reader.next().unwrap() {
        assert!(r.offset < from || r.offset >= to);
        n += 1;
    }
    assert_eq!(n, EVENTS - (to - from));
}

/// `eventbus serve` on a fresh data directory creates the catalog and the built-in `default`
/// event set, and shuts down cleanly on SIGINT.
#[test]
fn serve_on_a_fresh_data_dir_creates_the_default_event_set() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("eventbus: listening on http://127.0.0.1:"),
        "{first}"
    );
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let last = lines.map(|l| l.unwrap()).last().unwrap_or_default();
    assert!(last.contains("closed cleanly"), "{last}");
    let bus = eventbus::bus::EventBus::open(eventbus::bus::BusConfig {
        data_dir: data,
        ..Default::default()
    })
    .unwrap();
    let default = bus.get_set(eventbus::bus::DEFAULT_SET).unwrap();
    assert_eq!(default.meta.kind, eventbus::catalog::SetKind::Cloud);
    assert_eq!(default.meta.retention.max_age_hours, Some(30 * 24));
}

/// Runs `eventbus ARGS` with `input` on stdin; it must succeed; its stdout's JSON lines.
fn json_lines_out(args: &[&str], input: &str) -> Vec<Value> {
    use std::io::Write;
    use std::process::Stdio;

    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn pattern_check_answers_every_stdin_line_in_order() {
    let input = concat!(
        r#"{"pattern":{"source":["cvm.cloud.tencent"],"subject":[{"anything-but":["ins-1"]}]},"event":{"source":"cvm.cloud.tencent","subject":"ins-2"}}"#,
        "\n",
        r#"{"pattern":{"source":["cvm.cloud.tencent"],"subject":[{"anything-but":["ins-1"]}]},"event":{"source":"cvm.cloud.tencent","subject":"ins-1"}}"#,
        "\n",
        r#"{"pattern":{"data":{"ip":[{"cidr":"10.0.0.0/33"}]}},"event":{"data":{"ip":"10.0.0.1"}}}"#,
        "\n",
        "{broken\n",
        r#"{"pattern":"{\"a\":[5]}","event":"{\"a\":5.0}"}"#,
        "\n",
    );
    let lines = json_lines_out(&["pattern", "check"], input);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], serde_json::json!({"matched": true}));
    assert_eq!(lines[1], serde_json::json!({"matched": false}));
    let cidr_error = lines[2]["error"].as_str().unwrap();
    assert!(cidr_error.contains("$.data.ip[0].cidr"), "{cidr_error}");
    assert!(lines[3]["error"].as_str().unwrap().contains("not JSON"));
    assert_eq!(lines[4], serde_json::json!({"matched": true}));

    let bad = run(&["pattern", "check", "--pattern", "{\"a\":[]}"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--pattern"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn cli_transform_check_answers_each_line_and_refuses_a_bad_fixed_transform() {
    let input = concat!(
        r#"{"transform":{"Transform":{"OutputStructs":[{"Key":"host","Value":"$.subject","ValueType":"JSONPATH"},{"Key":"n","Value":"3","ValueType":"NUMBER"}]}},"event":{"subject":"ins-1"}}"#,
        "\n",
        r#"{"transform":{"EtlFilter":{"Filter":{"status":["1"]}}},"event":{"status":"0"}}"#,
        "\n",
        r#"{"transform":{"Extraction":{"Format":"XML"}},"event":{}}"#,
        "\n",
    );
    let lines = json_lines_out(&["transform", "check"], input);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[0],
        serde_json::json!({"output": {"host": "ins-1", "n": 3}})
    );
    assert_eq!(lines[1], serde_json::json!({"dropped": true}));
    assert_eq!(
        lines[2]["path"], "$.transform.Extraction.Format",
        "{lines:?}"
    );

    let bad = run(&["transform", "check", "--transform", "{\"Nope\":1}"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--transform"),
        "{}",
        text(&bad.stderr)
    );
}
