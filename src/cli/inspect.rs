//! `eventbus inspect DIR`: offline look at event-set logs — list segments, verify every CRC,
//! print records, repair damage.
//!
//! Everything except `--repair` goes through [`ReadOnlyIo`], a filesystem that opens files
//! read-only and refuses every mutation, so "inspect never modifies data" is enforced by the
//! type system rather than by care. In particular inspect never calls `EventLog::open`, which
//! would cut a torn tail and rebuild indexes.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use crate::codec::decode_record;
use crate::store::frame::{FrameDecode, decode_frame};
use crate::store::index::{self, lookup_offset};
use crate::store::io::{Io, OsIo, ReadOnlyIo, read_exact_at};
use crate::store::recovery::{
    self, ChainLink, Damage, Gap, RepairReport, Repairs, SegmentReport, break_message,
    list_segments, load_repairs, read_header_at, unaccepted_breaks,
};
use crate::store::segment::{
    ScanReport, ScanStart, find_valid_frame_after, index_file_name, parse_segment_name,
    scan_segment, segment_file_name,
};

const AFTER_HELP: &str = "\
DIR is either one event set's directory (it holds the *.log segment files) or any directory
above it, such as a data directory: every directory below DIR that holds segment files is
inspected, in path order (`eventbus serve` keeps the `default` set in DATA/sets/default).

Modes:
  (none)      List segments. Sealed segments are described by their index seal and are NOT
              read; only the tail of the active segment is scanned. Fast on any log size.
  --verify    Read every frame of every segment and check its CRC, the dense offset chain
              and the ingest-time order; report the file and byte of the first damage.
  --records   Print every valid record as one JSON line:
              {\"offset\",\"ingest_time_ms\",\"set\",\"event\"}. Damaged frames are skipped
              with a warning on stderr (reading resumes at the next valid frame).
  --repair    Move damaged bytes into DIR/damaged/, split off the valid records that follow
              the damage into their own segment, and record the lost offsets as an accepted
              gap in REPAIRS.json, so the log opens again. Nothing is deleted. Stop
              `eventbus serve` first: repair takes the directory's lock and refuses to run
              while a server holds it.

Only --repair writes anything. Without it inspect opens every file read-only, so it is
safe to run next to a live server (though it may then see a half-written tail).

A torn tail (a partial or bad last frame in the active segment, with nothing valid after
it) is what a crash leaves behind; opening the log cuts it, and with the default persist
policy it never holds an acknowledged event. It is still reported, and counts as damage.

Exit status: 0 = clean; 1 = damage, a torn tail or an unaccepted gap in the offset chain was
found (after --repair: remains); 2 = inspect could not run (bad DIR, I/O error, bad flags).

Examples:
  eventbus inspect ./data                       # table of every event set's segments
  eventbus inspect ./data/sets/default --verify # full CRC scan; exit 1 on damage
  eventbus inspect ./data --verify --json | jq '.sets[] | {dir, clean}'
  eventbus inspect ./data/sets/default --records --from 1000 --limit 10
  eventbus inspect ./data/sets/default --repair # server stopped first!";

/// Arguments of `inspect`.
#[derive(Debug, Args)]
#[command(
    after_help = "Run with --help for the modes, exit status and examples.",
    after_long_help = AFTER_HELP
)]
pub struct InspectArgs {
    /// An event set's directory, or a directory above event sets (e.g. the data directory).
    pub dir: PathBuf,
    /// Read every frame and check CRCs, offsets and ingest times (default: trust the seals
    /// of sealed segments and scan only the active segment's tail).
    #[arg(long, conflicts_with_all = ["records", "repair"])]
    pub verify: bool,
    /// Repair damage: move damaged bytes to `damaged/`, record lost offsets in REPAIRS.json.
    /// The log must not be open by a server (repair takes the directory lock and fails if it is).
    #[arg(long, conflicts_with = "records")]
    pub repair: bool,
    /// Print each record as one JSON line instead of the segment table.
    #[arg(long)]
    pub records: bool,
    /// With --records: start at this offset (in every event set inspected).
    #[arg(long, value_name = "OFFSET", requires = "records")]
    pub from: Option<u64>,
    /// With --records: print at most N records per event set.
    #[arg(long, value_name = "N", requires = "records")]
    pub limit: Option<u64>,
    /// Print a machine-readable JSON report instead of the table.
    #[arg(long, conflicts_with = "records")]
    pub json: bool,
}

/// Runs `inspect`. Errors are reported here (exit 2) so that exit 1 always means "damage".
pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    match run_inner(&args) {
        Ok(clean) => Ok(if clean {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Returns whether everything inspected was clean.
fn run_inner(args: &InspectArgs) -> anyhow::Result<bool> {
    let root = &args.dir;
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let sets = find_sets(root)?;
    if sets.is_empty() {
        bail!(
            "no event-set log under {}: no directory there holds segment files named like {}",
            root.display(),
            segment_file_name(0)
        );
    }
    let ro = ReadOnlyIo;
    if args.records {
        let out = io::stdout().lock();
        return print_records(&ro, root, &sets, args.from.unwrap_or(0), args.limit, out);
    }
    let mut reports = Vec::with_capacity(sets.len());
    for dir in &sets {
        let name = set_name(root, dir);
        let report = if args.repair {
            let repair = recovery::repair(&OsIo, dir)
                .with_context(|| format!("repairing {}", dir.display()))?;
            let mut r = full_report(&ro, dir, name)?;
            r.repair = Some(RepairView::from(&repair));
            r
        } else if args.verify {
            full_report(&ro, dir, name)?
        } else {
            quick_report(&ro, dir, name)?
        };
        reports.push(report);
    }
    let clean = reports.iter().all(|r| r.clean);
    let mut out = io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &JsonReport {
                clean,
                sets: &reports,
            },
        )
        .map_err(io::Error::from)
        .and_then(|()| writeln!(out))
    } else {
        reports.iter().try_for_each(|r| write_table(&mut out, r))
    };
    ignore_broken_pipe(written)?;
    for r in &reports {
        for problem in problems(r) {
            eprintln!("{problem}");
        }
    }
    Ok(clean)
}

fn ignore_broken_pipe(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Finding event sets
// ---------------------------------------------------------------------------------------------

fn holds_segments(dir: &Path) -> io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if parse_segment_name(&entry.file_name().to_string_lossy()).is_some()
            && entry.file_type()?.is_file()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `root` itself when it holds segments, else every directory below it that does (not
/// descending into a set: a set's `damaged/` folder is not a set). Symlinks are not followed.
fn find_sets(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if holds_segments(&dir).with_context(|| format!("listing {}", dir.display()))? {
            found.push(dir);
            continue;
        }
        let rd = std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in rd {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A short name for a set: its path below `root` without a leading `sets/`, or the directory's
/// own name when `root` is the set.
fn set_name(root: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let rel = rel.strip_prefix("sets").unwrap_or(rel);
    if rel.as_os_str().is_empty() {
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        return abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
    }
    rel.display().to_string()
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct JsonReport<'a> {
    /// True when every set is clean.
    clean: bool,
    sets: &'a [SetReport],
}

/// One event set as inspect saw it.
#[derive(Debug, Serialize)]
struct SetReport {
    name: String,
    dir: PathBuf,
    /// `"seals"`: sealed segments described by their index seal, only the active tail read;
    /// `"full"`: every frame read and checked.
    check: &'static str,
    segments: Vec<SegmentView>,
    /// Breaks in the offset chain that no repair accepted.
    gaps: Vec<String>,
    /// Breaks accepted by an earlier repair (REPAIRS.json).
    accepted_gaps: Vec<Gap>,
    records: u64,
    bytes: u64,
    clean: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    repair: Option<RepairView>,
}

#[derive(Debug, Serialize)]
struct SegmentView {
    file: String,
    base_offset: u64,
    bytes: u64,
    records: u64,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
    first_ingest_time_ms: Option<u64>,
    last_ingest_time_ms: Option<u64>,
    active: bool,
    /// `"seal"` (described by its index seal, not read), `"tail"` (active segment: read from
    /// its last valid index entry) or `"full"` (every frame read).
    checked: &'static str,
    /// `"ok"`, `"torn_tail"` or `"damaged"`.
    status: &'static str,
    damage: Option<Damage>,
    /// Set when a sealed segment has no usable seal (opening the log would rebuild its index).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unsealed: bool,
}

#[derive(Debug, Serialize)]
struct MovedView {
    segment: PathBuf,
    position: u64,
    moved_to: PathBuf,
}

#[derive(Debug, Serialize)]
struct RepairView {
    moved: Vec<MovedView>,
    split_segments: Vec<PathBuf>,
    gaps: Vec<Gap>,
}

impl From<&RepairReport> for RepairView {
    fn from(r: &RepairReport) -> Self {
        RepairView {
            moved: r
                .moved
                .iter()
                .map(|(s, p, m)| MovedView {
                    segment: s.clone(),
                    position: *p,
                    moved_to: m.clone(),
                })
                .collect(),
            split_segments: r.split_segments.clone(),
            gaps: r.gaps.clone(),
        }
    }
}

fn status_of(active: bool, damage: &Option<Damage>) -> &'static str {
    match damage {
        None => "ok",
        // Exactly the rule `EventLog::open` applies: nothing valid after it → torn tail.
        Some(d) if active && d.resumes_at.is_none() => "torn_tail",
        Some(_) => "damaged",
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn finish(
    name: String,
    dir: &Path,
    check: &'static str,
    segments: Vec<SegmentView>,
    gaps: Vec<String>,
    repairs: Repairs,
) -> SetReport {
    let clean = gaps.is_empty() && segments.iter().all(|s| s.damage.is_none());
    SetReport {
        name,
        dir: dir.to_path_buf(),
        check,
        records: segments.iter().map(|s| s.records).sum(),
        bytes: segments.iter().map(|s| s.bytes).sum(),
        segments,
        gaps,
        accepted_gaps: repairs.gaps,
        clean,
        repair: None,
    }
}

/// `--verify` (and after `--repair`): the library's full scan.
fn full_report(io: &dyn Io, dir: &Path, name: String) -> anyhow::Result<SetReport> {
    let v = recovery::verify(io, dir).with_context(|| format!("verifying {}", dir.display()))?;
    let segments: Vec<SegmentView> = v.segments.iter().map(view_of_verified).collect();
    let repairs = Repairs {
        gaps: v.accepted_gaps,
    };
    // Recomputed rather than taken from `v.gaps`, which also lists the "gap" every damaged
    // segment leaves behind it (its count stops at the damage): that is the damage again.
    let gaps = chain_gaps(dir, &segments, &repairs);
    Ok(finish(name, dir, "full", segments, gaps, repairs))
}

fn view_of_verified(s: &SegmentReport) -> SegmentView {
    SegmentView {
        file: file_name(&s.path),
        base_offset: s.base_offset,
        bytes: s.bytes,
        records: s.records,
        first_offset: s.first_offset,
        last_offset: s.last_offset,
        first_ingest_time_ms: s.first_time_ms,
        last_ingest_time_ms: s.last_time_ms,
        active: s.active,
        checked: "full",
        status: status_of(s.active, &s.damage),
        damage: s.damage.clone(),
        unsealed: false,
    }
}

/// Plain inspect: the same trust rules as opening the log, without its writes. A sealed
/// segment whose seal matches its length is described by the seal; anything else is scanned.
fn quick_report(io: &dyn Io, dir: &Path, name: String) -> anyhow::Result<SetReport> {
    let ctx = || format!("inspecting {}", dir.display());
    let repairs = load_repairs(io, dir).with_context(ctx)?;
    let bases = list_segments(io, dir, false).with_context(ctx)?;
    let mut segments: Vec<SegmentView> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let active = i + 1 == bases.len();
        segments.push(quick_segment(io, dir, base, active).with_context(ctx)?);
    }
    let gaps = chain_gaps(dir, &segments, &repairs);
    Ok(finish(name, dir, "seals", segments, gaps, repairs))
}

fn chain_gaps(dir: &Path, segments: &[SegmentView], repairs: &Repairs) -> Vec<String> {
    let links: Vec<ChainLink> = segments
        .iter()
        .map(|s| ChainLink {
            base: s.base_offset,
            end: s
                .damage
                .is_none()
                .then(|| s.last_offset.map_or(s.base_offset, |o| o + 1)),
        })
        .collect();
    unaccepted_breaks(&links, repairs)
        .into_iter()
        .map(|(i, end, base)| {
            let (prev, next) = (dir.join(&segments[i].file), dir.join(&segments[i + 1].file));
            break_message(&prev, &next, end, base)
        })
        .collect()
}

fn quick_segment(io: &dyn Io, dir: &Path, base: u64, active: bool) -> crate::Result<SegmentView> {
    let io_err = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |e| crate::Error::io(op, p, e)
    };
    let path = dir.join(segment_file_name(base));
    let ipath = dir.join(index_file_name(base));
    let file = io.open(&path, false).map_err(io_err("open", &path))?;
    let bytes = file.len().map_err(io_err("stat", &path))?;
    let contents = if io.exists(&ipath) {
        let ifile = io.open(&ipath, false).map_err(io_err("open", &ipath))?;
        index::read_index(ifile.as_ref(), base).map_err(io_err("read", &ipath))?
    } else {
        index::IndexContents::default()
    };
    let mut view = SegmentView {
        file: file_name(&path),
        base_offset: base,
        bytes,
        records: 0,
        first_offset: None,
        last_offset: None,
        first_ingest_time_ms: None,
        last_ingest_time_ms: None,
        active,
        checked: "seal",
        status: "ok",
        damage: None,
        unsealed: false,
    };
    let first = contents.entries.first().copied();
    if !active
        && let (Some(seal), Some(first)) = (contents.seal, first)
        && seal.end_position == bytes
        && first.offset == base
    {
        view.records = seal.last_offset - base + 1;
        view.first_offset = Some(base);
        view.first_ingest_time_ms = Some(first.ingest_time_ms);
        view.last_offset = Some(seal.last_offset);
        view.last_ingest_time_ms = Some(seal.last_time_ms);
        return Ok(view);
    }
    // The active segment: start from the last index entry that really points at its record
    // (entries are written without fsync), as recovery does. A sealed segment without a
    // usable seal is read whole.
    let mut start = ScanStart {
        position: 0,
        offset: base,
        min_time_ms: 0,
        last_indexed: None,
    };
    view.checked = "full";
    if active {
        let holds = |e: &index::IndexEntry| {
            read_header_at(file.as_ref(), e.position) == Some((e.offset, e.ingest_time_ms))
        };
        if let Some(e) = contents.entries.iter().rev().find(|e| holds(e)) {
            start = ScanStart {
                position: e.position,
                offset: e.offset,
                min_time_ms: e.ingest_time_ms,
                last_indexed: Some(e.position),
            };
            view.checked = "tail";
        }
    } else {
        view.unsealed = true;
    }
    let scan: ScanReport = scan_segment(file.as_ref(), &path, start, u64::MAX)?;
    let first_time = match first {
        Some(f) if start.position > 0 => Some(f.ingest_time_ms),
        _ => scan.first.map(|f| f.1),
    };
    if let Some((last, last_time)) = scan.last {
        view.records = last - base + 1;
        view.first_offset = Some(base);
        view.first_ingest_time_ms = first_time;
        view.last_offset = Some(last);
        view.last_ingest_time_ms = Some(last_time);
    }
    if let Some(stop) = scan.stop {
        let resumes_at =
            find_valid_frame_after(file.as_ref(), &path, stop.position, scan.last.map(|l| l.0))?;
        view.damage = Some(Damage {
            position: stop.position,
            detail: stop.detail,
            resumes_at,
        });
        view.status = status_of(active, &view.damage);
    }
    Ok(view)
}

/// One line per problem, naming file and byte, for stderr.
fn problems(r: &SetReport) -> Vec<String> {
    let mut out = Vec::new();
    for s in &r.segments {
        let Some(d) = &s.damage else { continue };
        let path = r.dir.join(&s.file);
        let what = if s.status == "torn_tail" {
            "torn tail"
        } else {
            "damaged"
        };
        let mut line = format!(
            "{}: {what} at byte {}: {}",
            path.display(),
            d.position,
            d.detail
        );
        match d.resumes_at {
            Some(p) => line.push_str(&format!("; valid records resume at byte {p}")),
            None if s.status == "torn_tail" => {
                line.push_str("; nothing valid follows (opening the log cuts it)")
            }
            None => line.push_str("; nothing valid follows in this file"),
        }
        out.push(line);
    }
    for g in &r.gaps {
        out.push(format!("{}: gap in the offset chain: {g}", r.dir.display()));
    }
    if !r.clean && r.repair.is_none() {
        out.push(format!(
            "{}: not clean; with the server stopped, `eventbus inspect {} --repair` moves the \
             damage aside and keeps every valid record",
            r.dir.display(),
            r.dir.display()
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn time(v: Option<u64>) -> String {
    v.map(rfc3339_ms).unwrap_or_else(|| "-".into())
}

fn status_text(s: &SegmentView) -> String {
    let mut t = match &s.damage {
        None if s.checked == "seal" => "sealed".to_string(),
        None => "OK".to_string(),
        Some(d) => {
            let kind = if s.status == "torn_tail" {
                "TORN TAIL"
            } else {
                "DAMAGED"
            };
            let resume = d
                .resumes_at
                .map(|p| format!("; valid again at byte {p}"))
                .unwrap_or_default();
            format!("{kind} at byte {} ({}{resume})", d.position, d.detail)
        }
    };
    if s.unsealed {
        t.push_str(", no valid seal");
    }
    if s.active {
        t.push_str(", active");
    }
    t
}

fn write_table(out: &mut impl Write, r: &SetReport) -> io::Result<()> {
    let span = match (
        r.segments.iter().find_map(|s| s.first_offset),
        r.segments.iter().rev().find_map(|s| s.last_offset),
    ) {
        (Some(a), Some(b)) => format!("offsets {a}..={b}"),
        _ => "no records".into(),
    };
    writeln!(
        out,
        "event set {} ({}): {} segment(s), {} record(s), {} bytes, {span}",
        r.name,
        r.dir.display(),
        r.segments.len(),
        r.records,
        r.bytes
    )?;
    let header = [
        "FILE",
        "BASE",
        "BYTES",
        "RECORDS",
        "FIRST",
        "LAST",
        "FIRST INGEST",
        "LAST INGEST",
        "STATUS",
    ];
    let rows: Vec<[String; 9]> = r
        .segments
        .iter()
        .map(|s| {
            [
                s.file.clone(),
                s.base_offset.to_string(),
                s.bytes.to_string(),
                s.records.to_string(),
                opt(s.first_offset),
                opt(s.last_offset),
                time(s.first_ingest_time_ms),
                time(s.last_ingest_time_ms),
                status_text(s),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let header: [String; 9] = header.map(String::from);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            let numeric = (1..=5).contains(&i);
            if i == row.len() - 1 {
                line.push_str(cell);
            } else if numeric {
                line.push_str(&format!("{cell:>w$}  "));
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    for g in &r.accepted_gaps {
        let kept = if g.moved_to.is_empty() {
            "no bytes kept (segment file was missing)".to_string()
        } else {
            format!("bytes kept in {}", g.moved_to)
        };
        writeln!(
            out,
            "accepted gap: offsets {}..{} lost, {kept}",
            g.from, g.to
        )?;
    }
    for g in &r.gaps {
        writeln!(out, "GAP: {g}")?;
    }
    if let Some(rep) = &r.repair {
        if rep.moved.is_empty() && rep.gaps.is_empty() {
            writeln!(out, "repair: nothing to repair")?;
        }
        for m in &rep.moved {
            writeln!(
                out,
                "repair: moved {} from byte {} to {}",
                m.segment.display(),
                m.position,
                m.moved_to.display()
            )?;
        }
        for s in &rep.split_segments {
            writeln!(
                out,
                "repair: valid records after the damage now in {}",
                s.display()
            )?;
        }
        for g in &rep.gaps {
            writeln!(
                out,
                "repair: offsets {}..{} declared lost (REPAIRS.json)",
                g.from, g.to
            )?;
        }
    }
    let note = match r.check {
        "seals" => {
            "sealed segments listed from their index seals, not read (--verify reads every frame)"
        }
        _ => "every frame read and checked",
    };
    writeln!(
        out,
        "{}: {note}\n",
        if r.clean { "clean" } else { "NOT CLEAN" }
    )
}

/// `1700000000123` → `2023-11-14T22:13:20.123Z` (UTC, proleptic Gregorian).
fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

// ---------------------------------------------------------------------------------------------
// --records
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct RecordLine<'a> {
    offset: u64,
    ingest_time_ms: u64,
    set: &'a str,
    event: serde_json::Value,
}

/// Prints records; returns whether no damage was met.
fn print_records(
    io: &dyn Io,
    root: &Path,
    sets: &[PathBuf],
    from: u64,
    limit: Option<u64>,
    out: impl Write,
) -> anyhow::Result<bool> {
    let mut out = BufWriter::new(out);
    let mut clean = true;
    for dir in sets {
        let name = set_name(root, dir);
        let bases = list_segments(io, dir, false)?;
        let mut left = limit.unwrap_or(u64::MAX);
        for (i, &base) in bases.iter().enumerate() {
            if left == 0 {
                break;
            }
            // Every record of this segment is below the next segment's base.
            if bases.get(i + 1).is_some_and(|&next| next <= from) {
                continue;
            }
            let mut emit = |offset: u64, time: u64, ev: serde_json::Value| -> io::Result<bool> {
                if offset < from {
                    return Ok(true);
                }
                let line = RecordLine {
                    offset,
                    ingest_time_ms: time,
                    set: &name,
                    event: ev,
                };
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
                left -= 1;
                Ok(left > 0)
            };
            match read_segment(io, dir, base, from, &mut emit) {
                Ok(seg_clean) => clean &= seg_clean,
                Err(ReadError::Out(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Ok(clean);
                }
                Err(ReadError::Out(e)) => return Err(e.into()),
                Err(ReadError::Store(e)) => return Err(e.into()),
            }
        }
    }
    ignore_broken_pipe(out.flush())?;
    Ok(clean)
}

enum ReadError {
    /// Writing the output failed.
    Out(io::Error),
    /// Reading the log failed.
    Store(crate::Error),
}

impl From<crate::Error> for ReadError {
    fn from(e: crate::Error) -> Self {
        ReadError::Store(e)
    }
}

const READ_CHUNK: usize = 1 << 20;

/// Feeds every valid record of one segment to `emit` (until it returns false). Damaged frames
/// are reported on stderr and skipped: reading resumes at the next valid frame. Returns whether
/// the segment was undamaged.
fn read_segment(
    io: &dyn Io,
    dir: &Path,
    base: u64,
    from: u64,
    emit: &mut dyn FnMut(u64, u64, serde_json::Value) -> io::Result<bool>,
) -> Result<bool, ReadError> {
    let path = dir.join(segment_file_name(base));
    let ipath = dir.join(index_file_name(base));
    let file = io
        .open(&path, false)
        .map_err(|e| crate::Error::io("open", &path, e))?;
    let len = file.len().map_err(|e| crate::Error::io("stat", &path, e))?;
    // Seek with the index when it can be trusted for this entry (checked against the data).
    let mut pos = 0u64;
    if from > base && io.exists(&ipath) {
        let entries = io
            .open(&ipath, false)
            .and_then(|f| index::read_index(f.as_ref(), base))
            .map(|c| c.entries)
            .unwrap_or_default();
        if let Some(e) = lookup_offset(&entries, from)
            && read_header_at(file.as_ref(), e.position) == Some((e.offset, e.ingest_time_ms))
        {
            pos = e.position;
        }
    }
    let mut clean = true;
    let mut last_offset: Option<u64> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = pos;
    while pos < len {
        let at = (pos - buf_pos) as usize;
        let bad = match decode_frame(&buf[at.min(buf.len())..]) {
            FrameDecode::Incomplete { needed } if pos + needed as u64 <= len => {
                buf.drain(..at.min(buf.len()));
                buf_pos = pos;
                let have = buf.len();
                let want = needed.max(READ_CHUNK).min((len - pos) as usize);
                buf.resize(want.max(have), 0);
                read_exact_at(file.as_ref(), &mut buf[have..], pos + have as u64)
                    .map_err(|e| crate::Error::io("read", &path, e))?;
                continue;
            }
            FrameDecode::Incomplete { needed } => {
                format!(
                    "partial frame: needs {needed} bytes, {} left in file",
                    len - pos
                )
            }
            FrameDecode::Corrupt(defect) => defect.to_string(),
            FrameDecode::Frame { payload, size } => match decode_record(payload) {
                Ok(rec) => {
                    last_offset = Some(rec.offset);
                    pos += size as u64;
                    if !emit(rec.offset, rec.ingest_time_ms, rec.event.to_json())
                        .map_err(ReadError::Out)?
                    {
                        return Ok(clean);
                    }
                    continue;
                }
                Err(e) => format!("undecodable record: {e}"),
            },
        };
        clean = false;
        let resume = find_valid_frame_after(file.as_ref(), &path, pos, last_offset)?;
        eprintln!(
            "warning: {}: damaged at byte {pos}: {bad}; {}",
            path.display(),
            match resume {
                Some(p) => format!("skipping to the next valid frame at byte {p}"),
                None => "nothing valid follows in this file".into(),
            }
        );
        match resume {
            Some(p) => {
                pos = p;
                buf.clear();
                buf_pos = p;
            }
            None => break,
        }
    }
    Ok(clean)
}

// ---------------------------------------------------------------------------------------------
// The read-only filesystem
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_epoch_ms_in_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn read_only_io_refuses_every_mutation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let io = ReadOnlyIo;
        assert!(io.open(&dir.path().join("new"), true).is_err());
        assert!(io.remove_file(&p).is_err());
        assert!(io.rename(&p, &dir.path().join("g")).is_err());
        let f = io.open(&p, false).unwrap();
        assert!(f.write_all_at(b"x", 0).is_err());
        assert!(f.set_len(0).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
    }

    #[test]
    fn set_names_drop_the_sets_folder() {
        let root = Path::new("/data");
        assert_eq!(set_name(root, Path::new("/data/sets/default")), "default");
        assert_eq!(set_name(root, Path::new("/data/other/x")), "other/x");
    }
}
