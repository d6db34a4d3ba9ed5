//! Scenario: looking events up by id (`EventLog::find_by_id`) over a log of many small
//! segments: across sealed segments and the active one, after a reopen, after retention
//! removed old segments (their `.ids` files go with them), with debris left in the directory,
//! and with `eventbus inspect` run over a directory that holds `.ids` files.

use std::path::Path;
use std::process::Command;

use eventbus::store::segment::{ids_file_name, parse_ids_name, parse_segment_name};
use eventbus::{Event, EventLog, LogOptions, RetentionPolicy};

fn event(i: u64) -> Event {
    // Ids repeat every 100 events, from another source each round.
    let mut e = Event::new(
        format!("id-{}", i % 100),
        format!("src-{}", i / 100),
        "test:Kind:Name",
    );
    e.data = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes();
    e
}

fn tiny() -> LogOptions {
    LogOptions {
        max_segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogOptions::default()
    }
}

fn append(log: &EventLog, from: u64, to: u64) {
    for chunk in (from..to).collect::<Vec<_>>().chunks(7) {
        let events: Vec<Event> = chunk.iter().map(|&i| event(i)).collect();
        log.append_blocking(&events).unwrap();
    }
}

/// Offsets `find_by_id` returns for `id`, checking each record really has that id.
fn offsets(log: &EventLog, id: &str) -> Vec<u64> {
    log.find_by_id(id)
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(r.event.id, id);
            assert_eq!(r.event, event(r.offset), "offset {}", r.offset);
            r.offset
        })
        .collect()
}

/// What a model of the log says: offsets in `[first, next)` whose event has `id`.
fn expected(id_n: u64, first: u64, next: u64) -> Vec<u64> {
    (first..next).filter(|i| i % 100 == id_n).collect()
}

fn files_with(dir: &Path, parse: fn(&str) -> Option<u64>) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| parse(&e.unwrap().file_name().to_string_lossy()))
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn lookups_cover_sealed_and_active_segments_across_reopen_and_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("set");
    let log = EventLog::open(&dir, tiny()).unwrap();
    append(&log, 0, 450);
    let segments = log.stats().segments;
    assert!(segments > 20, "tiny segments roll: {segments}");
    for n in [0, 1, 49, 99] {
        assert_eq!(offsets(&log, &format!("id-{n}")), expected(n, 0, 450));
    }
    assert!(offsets(&log, "id-100").is_empty());
    assert!(offsets(&log, "nope").is_empty());
    // One .ids per sealed segment, none for the active one.
    let seg_bases = files_with(&dir, parse_segment_name);
    let ids_bases = files_with(&dir, parse_ids_name);
    assert_eq!(ids_bases, seg_bases[..seg_bases.len() - 1]);

    // New appends (some rolling the active segment) are found by the next lookup.
    append(&log, 450, 520);
    assert_eq!(offsets(&log, "id-10"), expected(10, 0, 520));
    assert_eq!(offsets(&log, "id-60"), expected(60, 0, 520));
    drop(log);

    // Reopen: the files are loaded, checked and used; nothing is rebuilt.
    let log = EventLog::open(&dir, tiny()).unwrap();
    for n in [5, 19, 77] {
        assert_eq!(offsets(&log, &format!("id-{n}")), expected(n, 0, 520));
    }
    let s = log.id_index_stats();
    assert_eq!(s.files_rejected, 0, "{s:?}");
    assert!(s.files_loaded > 20, "{s:?}");
    // Only the segments sealed since the last lookup needed building.
    assert!(s.files_built <= 2, "{s:?}");

    // Retention removes old segments, and their .ids files with them.
    let total = log.stats().bytes;
    log.set_retention(RetentionPolicy {
        max_age: None,
        max_bytes: Some(total / 2),
    });
    let out = log.apply_retention_blocking().unwrap();
    assert!(out.segments_deleted > 5, "{out:?}");
    let first = log.first_offset();
    assert!(first > 100, "{first}");
    let seg_bases = files_with(&dir, parse_segment_name);
    let ids_bases = files_with(&dir, parse_ids_name);
    assert_eq!(seg_bases[0], first);
    assert!(
        ids_bases.iter().all(|b| seg_bases.contains(b)),
        "no .ids without its segment: {ids_bases:?} vs {seg_bases:?}"
    );
    for n in [0, 5, 99] {
        assert_eq!(offsets(&log, &format!("id-{n}")), expected(n, first, 520));
    }
    drop(log);
    let log = EventLog::open(&dir, tiny()).unwrap();
    assert_eq!(offsets(&log, "id-3"), expected(3, first, 520));
    assert_eq!(log.id_index_stats().files_built, 0);
}

#[test]
fn leftover_ids_files_are_removed_on_open_and_inspect_accepts_ids_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("set");
    let log = EventLog::open(&dir, tiny()).unwrap();
    append(&log, 0, 200);
    assert_eq!(offsets(&log, "id-7"), vec![7, 107]);
    drop(log);
    // An interrupted build (a .tmp) and an index whose segment is gone are debris.
    let orphan = dir.join(ids_file_name(999_999));
    let tmp_file = dir.join(format!("{}.tmp", ids_file_name(0)));
    std::fs::write(&orphan, b"EBIDS").unwrap();
    std::fs::write(&tmp_file, b"half").unwrap();
    let before = files_with(&dir, parse_ids_name);

    // `inspect` reads the directory without tripping over .ids files (and changes nothing).
    let out = Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .args(["inspect", dir.to_str().unwrap(), "--verify"])
        .env_remove("EVENTBUS_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect --verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_with(&dir, parse_ids_name), before);

    let log = EventLog::open(&dir, tiny()).unwrap();
    assert!(!orphan.exists(), "orphan .ids removed on open");
    assert!(!tmp_file.exists(), ".tmp removed on open");
    assert_eq!(offsets(&log, "id-7"), vec![7, 107]);
    assert_eq!(log.id_index_stats().files_built, 0);
}
