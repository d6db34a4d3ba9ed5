//! `eventbus simulate`: put realistic official cloud-service events into the `default` event
//! set of a running server, from the catalog of [`crate::cloud`]; or, with `--list`, print the
//! catalog (offline).
//!
//! Events go out through `POST /v1/event-sets/default/events`, in requests of at most 100
//! events; with `--rate R` each request carries the events due by then, so the server sees
//! about R events per second however fast it answers. Each event's result is printed as soon as
//! its request is answered.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use reqwest::StatusCode;
use serde_json::{Map, Value};

use super::client::{self, CellStyle, Client, ClientArgs, OutputFormat, Table};
use crate::bus::DEFAULT_SET;
use crate::cloud::{self, EventType, Product, Simulator};

const SIMULATE_HELP: &str = "\
Events: CloudEvents as Tencent Cloud products put them into the cloud service event set, e.g.
source cvm.cloud.tencent, type cvm:ErrorEvent:DiskReadonly, subject ins-k2x9q0mw, a real
region, status \"1\" (alarm) then \"0\" (recovery) of the same resource for recoverable types,
\"-\" for stateless ones, and the type's sample data. Types are drawn at random from the
selection. `--list` shows the catalog, and which names are documented by Tencent and which are
assumed (docs/CLOUD_EVENTS.md).

The server must let this client write to `default`: a token with role `cloud` or `admin`
(--token / EVENTBUS_TOKEN), or no tokens configured (a loopback server).

Output: one line per event as its request is answered: its id and offset, or the server's
error, with its type, subject and status. Exit status: 0 when every event was stored; 1 when
an event was rejected, a request failed, or a product or type is unknown (the error lists the
valid ones).

Examples:
  eventbus simulate --list
  eventbus simulate --list --product cvm
  eventbus simulate --product cvm --count 5
  eventbus simulate --product cvm --type DiskReadonly --count 20 --rate 2
  eventbus simulate --type oceanus:ErrorEvent:OceanusTaskmanagerLoadTooHigh --count 1
  eventbus simulate --count 0 --rate 50 --seed 7      # every product, until Ctrl-C
  EVENTBUS_TOKEN=… eventbus simulate --server http://10.0.0.5:8080 --output json";

/// Events per request, at most. A simulated event is well under 1 KiB.
const MAX_BATCH: u64 = 100;

/// `eventbus simulate`.
#[derive(Debug, Args)]
#[command(after_help = SIMULATE_HELP)]
pub struct SimulateArgs {
    /// Product: its key (`cvm`, `mysql`, `ddos`, …), type prefix (`cdb`) or source
    /// (`cvm.cloud.tencent`). Default: every product.
    #[arg(long, value_name = "P")]
    pub product: Option<String>,
    /// Event type: the full type (`cvm:ErrorEvent:DiskReadonly`) or just the event name
    /// (`DiskReadonly`). Default: every type of the product(s).
    #[arg(long = "type", value_name = "T")]
    pub ty: Option<String>,
    /// Events to put; 0 = until interrupted.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub count: u64,
    /// Events per second; 0 = as fast as the server takes them.
    #[arg(long, value_name = "R", default_value_t = 0.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Seed of the random choices (types, resource ids, regions, event ids, alarm /
    /// recovery); the same seed gives the same events but for their time. Default: random.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Print the catalog (products and event types; filtered by --product / --type) without
    /// contacting a server, and exit.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!(
            "`{s}` is not a rate: events per second, a number ≥ 0"
        )),
    }
}

/// Runs `eventbus simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let choices = cloud::select(args.product.as_deref(), args.ty.as_deref())?;
    if args.list {
        list(&choices, args.client.output.unwrap_or(OutputFormat::Table))?;
        return Ok(ExitCode::SUCCESS);
    }
    let format = args.client.output.unwrap_or(OutputFormat::Table);
    let client = Client::new(&args.client)?;
    let url = client.url(&["v1", "event-sets", DEFAULT_SET, "events"])?;
    let mut sim = match args.seed {
        Some(seed) => Simulator::new(seed),
        None => Simulator::from_entropy(),
    };
    let out = Printer::new(format, &choices, args.count);
    let (count, rate) = (args.count, args.rate);

    let mut sent: u64 = 0;
    let mut failed: u64 = 0;
    let outcome: anyhow::Result<()> = client::block_on(async {
        let started = tokio::time::Instant::now();
        out.header()?;
        while count == 0 || sent < count {
            let remaining = if count == 0 { u64::MAX } else { count - sent };
            let n = if rate == 0.0 {
                MAX_BATCH.min(remaining)
            } else {
                // Event k (from 0) is due k / rate seconds after the start.
                let elapsed = started.elapsed().as_secs_f64();
                let due = (elapsed * rate).floor() as u64 + 1;
                if due <= sent {
                    let at = started + Duration::from_secs_f64(sent as f64 / rate);
                    tokio::time::sleep_until(at).await;
                    continue;
                }
                (due - sent).min(MAX_BATCH).min(remaining)
            };
            let events: Vec<Value> = (0..n).map(|_| sim.next_event(&choices)).collect();
            let bodies = super::put::encode(&events)?;
            let entries = super::put::put_chunk(&client, &url, &bodies)
                .await
                .map_err(|e| {
                    let denied = e
                        .downcast_ref::<client::ApiError>()
                        .is_some_and(|a| a.status == StatusCode::FORBIDDEN);
                    let e = if denied {
                        e.context(format!(
                            "only `cloud` and `admin` tokens may put events into `{DEFAULT_SET}`; \
                         pass one with --token or EVENTBUS_TOKEN"
                        ))
                    } else {
                        e
                    };
                    if sent > 0 {
                        e.context(format!(
                            "events 1-{sent} were put (results above); event {} and later were not \
                         (or are not confirmed)",
                            sent + 1
                        ))
                    } else {
                        e
                    }
                })?;
            for (ev, entry) in events.iter().zip(&entries) {
                sent += 1;
                if entry.get("error").is_some() {
                    failed += 1;
                }
                out.row(sent, ev, entry)?;
            }
        }
        Ok::<(), anyhow::Error>(())
    })?;
    outcome?;
    if failed > 0 {
        eprintln!("error: {failed} of {sent} events were rejected (see their errors above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints results as they come: JSON lines, or table rows of widths fixed up front (the
/// widest type and subject of the selection), so that rows printed one request at a time
/// still line up.
struct Printer {
    format: OutputFormat,
    widths: [usize; 5],
}

const HEADERS: [&str; 7] = ["#", "ID", "OFFSET", "TYPE", "SUBJECT", "STATUS", "ERROR"];

impl Printer {
    fn new(format: OutputFormat, choices: &[(&Product, &EventType)], count: u64) -> Printer {
        let type_w = choices.iter().map(|(_, t)| t.ty.len()).max().unwrap_or(0);
        // Simulated subjects are as long as the sample's, at least 8 after the prefix, or an
        // IPv4 address.
        let subject_w = choices
            .iter()
            .map(|(p, t)| p.subject_for(t).len().max(15))
            .max()
            .unwrap_or(0);
        let n_w = if count == 0 {
            6
        } else {
            count.to_string().len()
        };
        Printer {
            format,
            // #, ID (a UUID), OFFSET, TYPE, SUBJECT; STATUS and ERROR end the line.
            widths: [n_w, 36, 8, type_w, subject_w],
        }
    }

    fn line(&self, cells: [&str; 7]) -> String {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            if let Some(w) = self.widths.get(i) {
                line.extend(std::iter::repeat_n(
                    ' ',
                    w.saturating_sub(c.chars().count()),
                ));
            } else if i == 5 {
                line.extend(std::iter::repeat_n(' ', 6usize.saturating_sub(c.len())));
            }
        }
        let mut line = line.trim_end().to_owned();
        line.push('\n');
        line
    }

    fn header(&self) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Json => Ok(()),
            OutputFormat::Table => client::emit(&self.line(HEADERS)),
        }
    }

    /// Event `n` (1-based), its event and the server's entry for it.
    fn row(&self, n: u64, event: &Value, entry: &Value) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Json => {
                let mut m = match entry {
                    Value::Object(m) => m.clone(),
                    other => {
                        let mut m = Map::new();
                        m.insert("entry".into(), other.clone());
                        m
                    }
                };
                for key in ["type", "subject", "status"] {
                    if let Some(v) = event.get(key) {
                        m.insert(key.into(), v.clone());
                    }
                }
                client::emit(&client::json_lines(&[Value::Object(m)])?)
            }
            OutputFormat::Table => {
                let plain = |v: Option<&Value>| client::cell(v, CellStyle::Plain);
                let n = n.to_string();
                let id = plain(entry.get("id"));
                let offset = plain(entry.get("offset"));
                let ty = plain(event.get("type"));
                let subject = plain(event.get("subject"));
                let status = plain(event.get("status"));
                let error = match entry.get("error") {
                    Some(e) => client::cell(Some(e), CellStyle::Error),
                    None => String::new(),
                };
                client::emit(&self.line([&n, &id, &offset, &ty, &subject, &status, &error]))
            }
        }
    }
}

/// `--list`: the selected part of the catalog.
fn list(choices: &[(&Product, &EventType)], format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => {
            // One product per line, with the selected types.
            let mut lines = Vec::new();
            let mut i = 0;
            while i < choices.len() {
                let product = choices[i].0;
                let mut summary = product.summary();
                summary.event_types.clear();
                while i < choices.len() && std::ptr::eq(choices[i].0, product) {
                    summary.event_types.push(choices[i].1.summary());
                    i += 1;
                }
                lines.push(serde_json::to_value(&summary).context("encoding the catalog")?);
            }
            client::emit(&client::json_lines(&lines)?)
        }
        OutputFormat::Table => {
            let mut t = Table::new(&[
                "PRODUCT",
                "SOURCE",
                "TYPE",
                "CATEGORY",
                "STATUS",
                "DOCUMENTED",
            ]);
            for (p, ty) in choices {
                let category = match ty.category {
                    cloud::Category::Exception => "exception",
                    cloud::Category::StatusChange => "status change",
                    cloud::Category::Audit => "audit",
                };
                let status = if ty.recoverable() {
                    "1/0"
                } else if ty.category == cloud::Category::Audit {
                    "none"
                } else {
                    "-"
                };
                let documented = if ty.documented {
                    "yes".to_owned()
                } else {
                    let mut what = Vec::new();
                    if p.prefix_provenance != cloud::Provenance::Documented {
                        what.push(format!("prefix {}", provenance(p.prefix_provenance)));
                    }
                    if ty.provenance != cloud::Provenance::Documented {
                        what.push(format!("name {}", provenance(ty.provenance)));
                    }
                    format!("no ({})", what.join(", "))
                };
                t.push(vec![
                    p.key.clone(),
                    p.source.clone(),
                    ty.ty.clone(),
                    category.to_owned(),
                    status.to_owned(),
                    documented,
                ]);
            }
            client::emit(&t.render())
        }
    }
}

fn provenance(p: cloud::Provenance) -> &'static str {
    match p {
        cloud::Provenance::Documented => "documented",
        cloud::Provenance::Unofficial => "unofficial",
        cloud::Provenance::Assumed => "assumed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_must_be_a_finite_non_negative_number() {
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("inf").is_err());
        assert!(parse_rate("NaN").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn table_rows_line_up_with_the_header() {
        let choices = cloud::select(Some("cvm"), Some("DiskReadonly")).unwrap();
        let p = Printer::new(OutputFormat::Table, &choices, 5);
        let header = p.line(HEADERS);
        let row = p.line([
            "1",
            "6ad369be-0000-4000-8000-000000000000",
            "0",
            "cvm:ErrorEvent:DiskReadonly",
            "ins-k2x9q0mw",
            "1",
            "",
        ]);
        assert_eq!(header.find("TYPE"), row.find("cvm:"), "{header}{row}");
        assert_eq!(header.find("STATUS"), row.rfind("  1").map(|i| i + 2));
        assert!(!row.ends_with(" \n"));
    }
}
