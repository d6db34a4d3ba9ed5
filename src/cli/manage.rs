//! Management commands over the HTTP API: `eventbus sets`, `rules`, `targets` and
//! `dead-letters`. Each subcommand is one request (a listing of dead letters may page); the
//! answer is printed as a table or as the server's JSON. Errors from the server are printed as
//! `error: <code>: <message> (at <path>)` with exit status 1 (see `client::ApiError`).

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{self, CellStyle, Client, ClientArgs, Column, OutputFormat};

const SETS_HELP: &str = "\
Examples:
  eventbus sets list
  eventbus sets get orders --output json
  eventbus sets create orders --description 'shop orders' --max-age-hours 72
  eventbus sets update orders --max-bytes 1073741824
  eventbus sets delete orders        # refused (409) while the set has rules";

const RULES_HELP: &str = "\
A JSON argument (--pattern, --transform) is JSON text, or @path/to/file.json to read a file.

Examples:
  eventbus rules list orders
  eventbus rules create orders big-orders --pattern '{\"data\":{\"total\":[{\"numeric\":[\">\",100]}]}}'
  eventbus rules create default cvm-down --pattern @cvm-down.json --description 'CVM ping loss'
  eventbus rules update orders big-orders --disable
  eventbus rules delete orders big-orders   # refused (409) while the rule has targets";

const TARGETS_HELP: &str = "\
A target is created from its full JSON body (--body, or --body @file.json), or, for a plain
webhook, from a name and --url. The body's shape:
  {\"name\":\"alerts-hook\",\"type\":\"http\",\"http\":{\"url\":\"http://127.0.0.1:9000/hook\"},
   \"retry\":{\"max_attempts\":10},\"dead_letter\":{\"mode\":\"dlq\"},\"batch\":{\"max_events\":1}}

Examples:
  eventbus targets list orders big-orders
  eventbus targets create orders big-orders hook --url http://127.0.0.1:9000/hook
  eventbus targets create orders big-orders --body @target.json
  eventbus targets update orders big-orders hook --patch '{\"retry\":{\"max_attempts\":3}}'
  eventbus targets seek orders big-orders hook --offset 0        # deliver everything again
  eventbus targets seek orders big-orders hook --time 2024-05-01T00:00:00Z";

const DEAD_LETTERS_HELP: &str = "\
Examples:
  eventbus dead-letters list orders big-orders hook
  eventbus dead-letters list orders big-orders hook --limit 10 --output json | jq .event
  eventbus dead-letters redrive orders big-orders hook                  # all of them
  eventbus dead-letters redrive orders big-orders hook --offsets 17,42";

// ---------------------------------------------------------------------------------------------
// sets

/// `eventbus sets …`.
#[derive(Debug, Args)]
#[command(after_help = SETS_HELP)]
pub struct SetsArgs {
    #[command(subcommand)]
    pub command: SetsCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Event set subcommands.
#[derive(Debug, Subcommand)]
pub enum SetsCommand {
    /// List event sets with their event counts.
    List,
    /// Show one event set, with its retention and stats.
    Get {
        /// Event set name.
        name: String,
    },
    /// Create an event set.
    Create(SetFields),
    /// Change an event set's description, retention or de-duplication (only the flags given;
    /// a retention limit not named keeps its value).
    Update(SetUpdate),
    /// Delete an event set and its events (refused while it has rules, and for `default`).
    Delete {
        /// Event set name.
        name: String,
    },
}

/// Name and settable fields of an event set.
#[derive(Debug, Args)]
pub struct SetFields {
    /// Event set name.
    pub name: String,
    /// Free-text description.
    #[arg(long)]
    pub description: Option<String>,
    /// Delete events older than this many hours.
    #[arg(long)]
    pub max_age_hours: Option<u64>,
    /// Delete the oldest events while the set holds more than this many bytes.
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// Do not store an event whose (source, id) was seen within this many ms (0 = off).
    #[arg(long)]
    pub dedup_window_ms: Option<u64>,
}

/// `sets update`: the settable fields, plus switches that lift a retention limit.
#[derive(Debug, Args)]
pub struct SetUpdate {
    #[command(flatten)]
    pub fields: SetFields,
    /// Remove the age limit: keep events however old.
    #[arg(long, conflicts_with = "max_age_hours")]
    pub no_max_age: bool,
    /// Remove the size limit.
    #[arg(long, conflicts_with = "max_bytes")]
    pub no_max_bytes: bool,
}

impl SetFields {
    /// The request body with only the fields given; `name` included for a create.
    fn body(&self, with_name: bool) -> Value {
        let mut body = Map::new();
        if with_name {
            body.insert("name".into(), json!(self.name));
        }
        if let Some(d) = &self.description {
            body.insert("description".into(), json!(d));
        }
        let mut retention = Map::new();
        if let Some(h) = self.max_age_hours {
            retention.insert("max_age_hours".into(), json!(h));
        }
        if let Some(b) = self.max_bytes {
            retention.insert("max_bytes".into(), json!(b));
        }
        if !retention.is_empty() {
            body.insert("retention".into(), Value::Object(retention));
        }
        if let Some(w) = self.dedup_window_ms {
            body.insert("dedup_window_ms".into(), json!(w));
        }
        Value::Object(body)
    }
}

impl SetUpdate {
    /// Whether any retention limit changes (so the current policy must be read first).
    fn touches_retention(&self) -> bool {
        self.fields.max_age_hours.is_some()
            || self.fields.max_bytes.is_some()
            || self.no_max_age
            || self.no_max_bytes
    }

    /// The PATCH body. The server replaces the whole retention policy, so the limits not
    /// named on the command line are copied from `current` (the set's `retention` as read)
    /// and `--max-bytes` alone does not silently lift an age limit.
    fn body(&self, current: Option<&Value>) -> Value {
        let mut body = self.fields.body(false);
        if self.touches_retention() {
            let mut retention = current
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            // Null members mean "no limit", the same as absent ones.
            retention.retain(|_, v| !v.is_null());
            let given = [
                ("max_age_hours", self.fields.max_age_hours, self.no_max_age),
                ("max_bytes", self.fields.max_bytes, self.no_max_bytes),
            ];
            for (key, value, clear) in given {
                if let Some(v) = value {
                    retention.insert(key.into(), json!(v));
                } else if clear {
                    retention.remove(key);
                }
            }
            if let Some(obj) = body.as_object_mut() {
                obj.insert("retention".into(), Value::Object(retention));
            }
        }
        body
    }
}

const SET_COLUMNS: &[Column] = &[
    Column::new("NAME", "name"),
    Column::new("KIND", "kind"),
    Column::new("EVENTS", "stats.events"),
    Column::new("BYTES", "stats.bytes"),
    Column::new("FIRST_OFFSET", "stats.first_offset"),
    Column::new("LAST_OFFSET", "stats.last_offset"),
    Column::new("DESCRIPTION", "description"),
];

/// Runs `eventbus sets …`.
pub fn run_sets(args: SetsArgs) -> anyhow::Result<ExitCode> {
    let out = args.client.output.unwrap_or(OutputFormat::Table);
    let c = Client::new(&args.client)?;
    client::block_on(async {
        match &args.command {
            SetsCommand::List => {
                let answer = c
                    .call_json(Method::GET, c.url(&["v1", "event-sets"])?, None)
                    .await?;
                client::print_list(
                    &client::list_field(&answer, "event_sets")?,
                    out,
                    SET_COLUMNS,
                )
            }
            SetsCommand::Get { name } => {
                let v = c.call_json(Method::GET, set_url(&c, name)?, None).await?;
                client::print_resource(&v, out)
            }
            SetsCommand::Create(f) => {
                let v = c
                    .call(
                        Method::POST,
                        c.url(&["v1", "event-sets"])?,
                        Some(&f.body(true)),
                    )
                    .await?;
                print_written(v, out, &format!("created event set {:?}", f.name))
            }
            SetsCommand::Update(u) => {
                let name = &u.fields.name;
                let current = if u.touches_retention() {
                    let set = c.call_json(Method::GET, set_url(&c, name)?, None).await?;
                    set.get("retention").cloned()
                } else {
                    None
                };
                let body = u.body(current.as_ref());
                if is_empty(&body) {
                    bail!(
                        "nothing to update: give --description, --max-age-hours, --max-bytes, \
                         --no-max-age, --no-max-bytes or --dedup-window-ms"
                    );
                }
                let v = c
                    .call(Method::PATCH, set_url(&c, name)?, Some(&body))
                    .await?;
                print_written(v, out, &format!("updated event set {name:?}"))
            }
            SetsCommand::Delete { name } => {
                let v = c.call(Method::DELETE, set_url(&c, name)?, None).await?;
                print_written(v, out, &format!("deleted event set {name:?}"))
            }
        }
    })??;
    Ok(ExitCode::SUCCESS)
}

fn set_url(c: &Client, set: &str) -> anyhow::Result<reqwest::Url> {
    c.url(&["v1", "event-sets", set])
}

// ---------------------------------------------------------------------------------------------
// rules

/// `eventbus rules …`.
#[derive(Debug, Args)]
#[command(after_help = RULES_HELP)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Rule subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List the rules of an event set.
    List {
        /// Event set name.
        set: String,
    },
    /// Show one rule.
    Get {
        /// Event set name.
        set: String,
        /// Rule name.
        rule: String,
    },
    /// Create a rule: an event pattern, enabled unless --disabled.
    Create {
        /// Event set name.
        set: String,
        /// Rule name.
        rule: String,
        /// Event pattern (JSON text, or @file.json).
        #[arg(long)]
        pattern: String,
        /// Free-text description.
        #[arg(long)]
        description: Option<String>,
        /// Create the rule disabled: it matches nothing until enabled.
        #[arg(long)]
        disabled: bool,
        /// Transformation applied to matching events (JSON text, or @file.json).
        #[arg(long)]
        transform: Option<String>,
    },
    /// Change a rule (only the flags given).
    Update {
        /// Event set name.
        set: String,
        /// Rule name.
        rule: String,
        /// New event pattern (JSON text, or @file.json).
        #[arg(long)]
        pattern: Option<String>,
        /// Enable the rule.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the rule: its targets get no new events (cursors stay where they are).
        #[arg(long)]
        disable: bool,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        /// New transformation (JSON text, or @file.json).
        #[arg(long, conflicts_with = "no_transform")]
        transform: Option<String>,
        /// Remove the transformation: targets get the events as stored.
        #[arg(long)]
        no_transform: bool,
    },
    /// Delete a rule (refused while it has targets).
    Delete {
        /// Event set name.
        set: String,
        /// Rule name.
        rule: String,
    },
}

const RULE_COLUMNS: &[Column] = &[
    Column::new("NAME", "name"),
    Column::new("ENABLED", "enabled"),
    Column::new("PATTERN", "pattern"),
    Column::new("DESCRIPTION", "description"),
];

/// Runs `eventbus rules …`.
pub fn run_rules(args: RulesArgs) -> anyhow::Result<ExitCode> {
    let out = args.client.output.unwrap_or(OutputFormat::Table);
    // JSON arguments are read before anything is sent, so a bad file fails fast.
    let c = Client::new(&args.client)?;
    let rules_url = |set: &str| c.url(&["v1", "event-sets", set, "rules"]);
    let rule_url = |set: &str, rule: &str| c.url(&["v1", "event-sets", set, "rules", rule]);
    match &args.command {
        RulesCommand::List { set } => client::block_on(async {
            let answer = c.call_json(Method::GET, rules_url(set)?, None).await?;
            client::print_list(&client::list_field(&answer, "rules")?, out, RULE_COLUMNS)
        })??,
        RulesCommand::Get { set, rule } => client::block_on(async {
            let v = c.call_json(Method::GET, rule_url(set, rule)?, None).await?;
            client::print_resource(&v, out)
        })??,
        RulesCommand::Create {
            set,
            rule,
            pattern,
            description,
            disabled,
            transform,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(rule));
            body.insert("pattern".into(), client::json_arg(pattern, "--pattern")?);
            body.insert("enabled".into(), json!(!disabled));
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(t) = transform {
                body.insert("transform".into(), client::json_arg(t, "--transform")?);
            }
            let body = Value::Object(body);
            client::block_on(async {
                let v = c.call(Method::POST, rules_url(set)?, Some(&body)).await?;
                print_written(
                    v,
                    out,
                    &format!("created rule {rule:?} in event set {set:?}"),
                )
            })??
        }
        RulesCommand::Update {
            set,
            rule,
            pattern,
            enable,
            disable,
            description,
            transform,
            no_transform,
        } => {
            let mut body = Map::new();
            if let Some(p) = pattern {
                body.insert("pattern".into(), client::json_arg(p, "--pattern")?);
            }
            if *enable || *disable {
                body.insert("enabled".into(), json!(*enable));
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(t) = transform {
                body.insert("transform".into(), client::json_arg(t, "--transform")?);
            }
            if *no_transform {
                // The server reads an explicit null as "remove".
                body.insert("transform".into(), Value::Null);
            }
            if body.is_empty() {
                bail!(
                    "nothing to update: give --pattern, --enable, --disable, --description, \
                     --transform or --no-transform"
                );
            }
            let body = Value::Object(body);
            client::block_on(async {
                let v = c
                    .call(Method::PATCH, rule_url(set, rule)?, Some(&body))
                    .await?;
                print_written(
                    v,
                    out,
                    &format!("updated rule {rule:?} in event set {set:?}"),
                )
            })??
        }
        RulesCommand::Delete { set, rule } => client::block_on(async {
            let v = c.call(Method::DELETE, rule_url(set, rule)?, None).await?;
            print_written(
                v,
                out,
                &format!("deleted rule {rule:?} from event set {set:?}"),
            )
        })??,
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// targets

/// `eventbus targets …`.
#[derive(Debug, Args)]
#[command(after_help = TARGETS_HELP)]
pub struct TargetsArgs {
    #[command(subcommand)]
    pub command: TargetsCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A target's place: event set, rule, target name.
#[derive(Debug, Args)]
pub struct TargetRef {
    /// Event set name.
    pub set: String,
    /// Rule name.
    pub rule: String,
    /// Target name.
    pub target: String,
}

/// Target subcommands.
#[derive(Debug, Subcommand)]
pub enum TargetsCommand {
    /// List a rule's targets with their delivery status (state, cursor, lag, errors).
    List {
        /// Event set name.
        set: String,
        /// Rule name.
        rule: String,
    },
    /// Show one target: its settings and delivery status.
    Get(TargetRef),
    /// Create a target from a JSON body, or a webhook from a name and --url.
    #[command(group(ArgGroup::new("source").required(true).args(["body", "url"])))]
    Create {
        /// Event set name.
        set: String,
        /// Rule name.
        rule: String,
        /// Target name: required with --url; with --body, fills in or must equal its "name".
        target: Option<String>,
        /// The target as JSON (text, or @file.json).
        #[arg(long)]
        body: Option<String>,
        /// Shortcut: an `http` target posting to this URL, other settings at their defaults.
        #[arg(long, requires = "target")]
        url: Option<String>,
    },
    /// Change a target's settings with a partial JSON body.
    Update {
        #[command(flatten)]
        target: TargetRef,
        /// The fields to change (JSON text, or @file.json).
        #[arg(long)]
        patch: String,
    },
    /// Delete a target (its cursor and dead letters go with it).
    Delete(TargetRef),
    /// Move the target's cursor: deliver again from an offset, or from an ingest time.
    #[command(group(ArgGroup::new("position").required(true).args(["offset", "time"])))]
    Seek {
        #[command(flatten)]
        target: TargetRef,
        /// The next offset to deliver.
        #[arg(long)]
        offset: Option<u64>,
        /// The first event ingested at or after this time: epoch milliseconds or RFC 3339.
        #[arg(long)]
        time: Option<String>,
    },
}

const TARGET_COLUMNS: &[Column] = &[
    Column::new("NAME", "name"),
    Column::new("TYPE", "type"),
    Column::new("STATE", "delivery.state"),
    Column::new("CURSOR", "delivery.cursor"),
    Column::new("LAG", "delivery.lag"),
    Column::new("RETRYING", "delivery.retrying"),
    Column::new("DEAD_LETTERED", "delivery.dead_lettered"),
    Column::styled("LAST_ERROR", "delivery.last_error", CellStyle::Error),
];

impl TargetRef {
    fn url(&self, c: &Client, tail: &[&str]) -> anyhow::Result<reqwest::Url> {
        let mut segments = vec![
            "v1",
            "event-sets",
            &self.set,
            "rules",
            &self.rule,
            "targets",
            &self.target,
        ];
        segments.extend_from_slice(tail);
        c.url(&segments)
    }

    fn describe(&self) -> String {
        format!(
            "target {:?} of rule {:?} in event set {:?}",
            self.target, self.rule, self.set
        )
    }
}

/// The body of `targets create`: `--body` (with the positional name filled in or checked), or
/// the `--url` shortcut's minimal http target.
pub fn target_body(
    target: Option<&str>,
    body: Option<&str>,
    url: Option<&str>,
) -> anyhow::Result<Value> {
    match (body, url) {
        (Some(body), None) => {
            let mut v = client::json_arg(body, "--body")?;
            let Some(obj) = v.as_object_mut() else {
                bail!("--body: a target must be a JSON object");
            };
            match (target, obj.get("name")) {
                (Some(t), None) => {
                    obj.insert("name".into(), json!(t));
                }
                (Some(t), Some(n)) if n.as_str() != Some(t) => {
                    bail!("the target name {t:?} differs from the body's \"name\" {n}");
                }
                _ => {}
            }
            Ok(v)
        }
        (None, Some(url)) => {
            let Some(name) = target else {
                bail!("--url needs the target's name");
            };
            Ok(json!({"name": name, "type": "http", "http": {"url": url}}))
        }
        _ => bail!("give exactly one of --body and --url"),
    }
}

/// Fills in `delivery` for list items without it by reading each target: the list answer
/// may leave the (per-binding, live) status out, and a table of targets without state, lag
/// and errors would hide what a person listing them looks for. A target deleted between the
/// list and its read keeps its row, without status.
async fn add_delivery_status(
    c: &Client,
    set: &str,
    rule: &str,
    targets: &mut [Value],
) -> anyhow::Result<()> {
    for t in targets.iter_mut() {
        if t.get("delivery").is_some() {
            continue;
        }
        let Some(name) = t.get("name").and_then(Value::as_str) else {
            continue;
        };
        let r = TargetRef {
            set: set.to_owned(),
            rule: rule.to_owned(),
            target: name.to_owned(),
        };
        match c.call_json(Method::GET, r.url(c, &[])?, None).await {
            Ok(full) => {
                if let (Some(d), Some(obj)) = (full.get("delivery"), t.as_object_mut()) {
                    obj.insert("delivery".into(), d.clone());
                }
            }
            Err(e)
                if e.downcast_ref::<client::ApiError>()
                    .is_some_and(|a| a.status == reqwest::StatusCode::NOT_FOUND) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `--time`: epoch milliseconds, or an RFC 3339 time converted to them.
pub fn parse_time_ms(text: &str) -> anyhow::Result<u64> {
    parse_time_ms_for("--time", text)
}

/// A time argument (`flag` names it in errors): epoch milliseconds, or an RFC 3339 time
/// converted to them.
pub fn parse_time_ms_for(flag: &str, text: &str) -> anyhow::Result<u64> {
    if let Ok(ms) = text.trim().parse::<u64>() {
        return Ok(ms);
    }
    let t = chrono::DateTime::parse_from_rfc3339(text.trim()).with_context(|| {
        format!("{flag} {text:?}: expected epoch milliseconds or an RFC 3339 time (2024-05-01T00:00:00Z)")
    })?;
    u64::try_from(t.timestamp_millis())
        .with_context(|| format!("{flag} {text:?}: before 1970 (ingest times are epoch ms)"))
}

/// Runs `eventbus targets …`.
pub fn run_targets(args: TargetsArgs) -> anyhow::Result<ExitCode> {
    let out = args.client.output.unwrap_or(OutputFormat::Table);
    let c = Client::new(&args.client)?;
    let targets_url =
        |set: &str, rule: &str| c.url(&["v1", "event-sets", set, "rules", rule, "targets"]);
    match &args.command {
        TargetsCommand::List { set, rule } => client::block_on(async {
            let answer = c
                .call_json(Method::GET, targets_url(set, rule)?, None)
                .await?;
            let mut targets = client::list_field(&answer, "targets")?;
            if out == OutputFormat::Table {
                add_delivery_status(&c, set, rule, &mut targets).await?;
            }
            client::print_list(&targets, out, TARGET_COLUMNS)
        })??,
        TargetsCommand::Get(t) => client::block_on(async {
            let v = c.call_json(Method::GET, t.url(&c, &[])?, None).await?;
            client::print_resource(&v, out)
        })??,
        TargetsCommand::Create {
            set,
            rule,
            target,
            body,
            url,
        } => {
            let body = target_body(target.as_deref(), body.as_deref(), url.as_deref())?;
            let name = body.get("name").cloned().unwrap_or(Value::Null);
            client::block_on(async {
                let v = c
                    .call(Method::POST, targets_url(set, rule)?, Some(&body))
                    .await?;
                print_written(
                    v,
                    out,
                    &format!("created target {name} of rule {rule:?} in event set {set:?}"),
                )
            })??
        }
        TargetsCommand::Update { target, patch } => {
            let body = client::json_arg(patch, "--patch")?;
            if !body.is_object() {
                bail!("--patch: must be a JSON object of the fields to change");
            }
            client::block_on(async {
                let v = c
                    .call(Method::PATCH, target.url(&c, &[])?, Some(&body))
                    .await?;
                print_written(v, out, &format!("updated {}", target.describe()))
            })??
        }
        TargetsCommand::Delete(t) => client::block_on(async {
            let v = c.call(Method::DELETE, t.url(&c, &[])?, None).await?;
            print_written(v, out, &format!("deleted {}", t.describe()))
        })??,
        TargetsCommand::Seek {
            target,
            offset,
            time,
        } => {
            let body = match (offset, time) {
                (Some(o), _) => json!({ "offset": o }),
                (None, Some(t)) => json!({ "time": parse_time_ms(t)? }),
                (None, None) => bail!("give --offset or --time"),
            };
            client::block_on(async {
                let v = c
                    .call_json(Method::POST, target.url(&c, &["seek"])?, Some(&body))
                    .await?;
                match out {
                    OutputFormat::Json => client::print_resource(&v, out),
                    OutputFormat::Table => {
                        let cursor = client::cell(v.get("cursor"), CellStyle::Plain);
                        client::emit(&format!(
                            "{}: cursor now at offset {cursor}\n",
                            target.describe()
                        ))
                    }
                }
            })??
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// dead letters

/// `eventbus dead-letters …`.
#[derive(Debug, Args)]
#[command(after_help = DEAD_LETTERS_HELP)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    pub command: DeadLettersCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Dead-letter subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List a target's dead letters, oldest first: the event, attempts, and last error.
    List {
        #[command(flatten)]
        target: TargetRef,
        /// Show at most this many.
        #[arg(long, default_value_t = 100,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        limit: usize,
        /// Start after this offset (as printed by a previous listing that stopped at --limit).
        #[arg(long)]
        after: Option<u64>,
    },
    /// Deliver dead letters again: all of them, or those at --offsets.
    Redrive {
        #[command(flatten)]
        target: TargetRef,
        /// Only these offsets (comma separated).
        #[arg(long, value_delimiter = ',')]
        offsets: Vec<u64>,
    },
}

const DEAD_LETTER_COLUMNS: &[Column] = &[
    Column::new("OFFSET", "offset"),
    Column::new("ATTEMPTS", "attempts"),
    Column::styled("DEAD_LETTERED", "dead_lettered_ms", CellStyle::TimeMs),
    Column::new("EVENT_ID", "event.id"),
    Column::new("EVENT_TYPE", "event.type"),
    Column::styled("LAST_ERROR", "last_error", CellStyle::Error),
];

/// Runs `eventbus dead-letters …`.
pub fn run_dead_letters(args: DeadLettersArgs) -> anyhow::Result<ExitCode> {
    let out = args.client.output.unwrap_or(OutputFormat::Table);
    let c = Client::new(&args.client)?;
    match &args.command {
        DeadLettersCommand::List {
            target,
            limit,
            after,
        } => client::block_on(async {
            let (items, more_after) = list_dead_letters(&c, target, *limit, *after).await?;
            client::print_list(&items, out, DEAD_LETTER_COLUMNS)?;
            if let Some(next) = more_after {
                eprintln!("(showing {}; continue with --after {next})", items.len());
            }
            anyhow::Ok(())
        })??,
        DeadLettersCommand::Redrive { target, offsets } => {
            let body = if offsets.is_empty() {
                json!({})
            } else {
                json!({ "offsets": offsets })
            };
            client::block_on(async {
                let url = target.url(&c, &["dead-letters", "redrive"])?;
                let v = c.call_json(Method::POST, url, Some(&body)).await?;
                match out {
                    OutputFormat::Json => client::print_resource(&v, out),
                    OutputFormat::Table => {
                        let n = client::cell(v.get("redriven"), CellStyle::Plain);
                        client::emit(&format!(
                            "{}: {n} dead letter(s) redriven\n",
                            target.describe()
                        ))
                    }
                }
            })??
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Largest `limit` the server takes for one page of dead letters.
const MAX_DEAD_LETTER_PAGE: usize = 1000;

/// Pages through `GET …/dead-letters?after=&limit=` until `limit` items or the end. Returns
/// the items and, when it stopped at `limit` with more left, the `after` to continue from.
async fn list_dead_letters(
    c: &Client,
    target: &TargetRef,
    limit: usize,
    after: Option<u64>,
) -> anyhow::Result<(Vec<Value>, Option<String>)> {
    let mut items = Vec::new();
    let mut after = after.map(|a| a.to_string());
    loop {
        let remaining = limit - items.len();
        // The server serves pages of at most MAX_DEAD_LETTER_PAGE; bigger limits take pages.
        let page_size = remaining.min(MAX_DEAD_LETTER_PAGE);
        let mut url = target.url(c, &["dead-letters"])?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(a) = &after {
                q.append_pair("after", a);
            }
            q.append_pair("limit", &page_size.to_string());
        }
        let answer = c.call_json(Method::GET, url, None).await?;
        let page = client::list_field(&answer, "dead_letters")?;
        let next = match answer.get("after") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let page_len = page.len();
        items.extend(page.into_iter().take(remaining));
        // An empty page with a token would loop forever; treat it as the end.
        if next.is_none() || page_len == 0 {
            return Ok((items, None));
        }
        if items.len() >= limit {
            return Ok((items, next));
        }
        after = next;
    }
}

// ---------------------------------------------------------------------------------------------
// shared

/// Prints the answer to a create, update or delete: the resource the server sent back, or, if
/// it sent none (204), `done` in table mode (JSON mode prints nothing then, so that its output
/// stays parseable).
fn print_written(answer: Option<Value>, out: OutputFormat, done: &str) -> anyhow::Result<()> {
    match (answer, out) {
        (Some(v), _) => client::print_resource(&v, out),
        (None, OutputFormat::Table) => client::emit(&format!("{done}\n")),
        (None, OutputFormat::Json) => Ok(()),
    }
}

fn is_empty(v: &Value) -> bool {
    v.as_object().is_none_or(Map::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_fields_send_only_what_was_given() {
        let f = SetFields {
            name: "orders".into(),
            description: None,
            max_age_hours: Some(72),
            max_bytes: None,
            dedup_window_ms: None,
        };
        assert_eq!(
            f.body(true),
            json!({"name":"orders","retention":{"max_age_hours":72}})
        );
        assert_eq!(f.body(false), json!({"retention":{"max_age_hours":72}}));
        let none = SetFields {
            name: "x".into(),
            description: None,
            max_age_hours: None,
            max_bytes: None,
            dedup_window_ms: Some(0),
        };
        assert_eq!(none.body(false), json!({"dedup_window_ms":0}));
    }

    fn update(
        max_age_hours: Option<u64>,
        max_bytes: Option<u64>,
        no_age: bool,
        no_bytes: bool,
    ) -> SetUpdate {
        SetUpdate {
            fields: SetFields {
                name: "orders".into(),
                description: None,
                max_age_hours,
                max_bytes,
                dedup_window_ms: None,
            },
            no_max_age: no_age,
            no_max_bytes: no_bytes,
        }
    }

    #[test]
    fn set_update_keeps_the_retention_limits_not_named() {
        let current = json!({"max_age_hours":168,"max_bytes":null});
        let u = update(None, Some(1000), false, false);
        assert!(u.touches_retention());
        assert_eq!(
            u.body(Some(&current)),
            json!({"retention":{"max_age_hours":168,"max_bytes":1000}})
        );
        let u = update(None, None, true, false);
        assert_eq!(
            u.body(Some(&json!({"max_age_hours":168,"max_bytes":5}))),
            json!({"retention":{"max_bytes":5}})
        );
        let u = update(Some(1), None, false, true);
        assert_eq!(
            u.body(Some(&json!({"max_age_hours":168,"max_bytes":5}))),
            json!({"retention":{"max_age_hours":1}})
        );
        // Nothing about retention: no read needed, no retention sent.
        let u = update(None, None, false, false);
        assert!(!u.touches_retention());
        assert!(is_empty(&u.body(None)));
    }

    #[test]
    fn url_shortcut_builds_a_minimal_http_target() {
        let v = target_body(Some("hook"), None, Some("http://127.0.0.1:9000/h")).unwrap();
        assert_eq!(
            v,
            json!({"name":"hook","type":"http","http":{"url":"http://127.0.0.1:9000/h"}})
        );
    }

    #[test]
    fn body_gets_the_positional_name_or_must_agree_with_it() {
        let body = r#"{"type":"http","http":{"url":"u"}}"#;
        let v = target_body(Some("t"), Some(body), None).unwrap();
        assert_eq!(v["name"], "t");
        let named = r#"{"name":"a","type":"http"}"#;
        assert_eq!(target_body(None, Some(named), None).unwrap()["name"], "a");
        assert_eq!(
            target_body(Some("a"), Some(named), None).unwrap()["name"],
            "a"
        );
        let e = target_body(Some("b"), Some(named), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"b\"") && e.contains("\"a\""), "{e}");
        let e = target_body(None, Some("[1]"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("JSON object"), "{e}");
    }

    #[test]
    fn time_is_epoch_ms_or_rfc3339() {
        assert_eq!(parse_time_ms("1700000000123").unwrap(), 1_700_000_000_123);
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20.123Z").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_time_ms("2023-11-15T06:13:20.123+08:00").unwrap(),
            1_700_000_000_123
        );
        let e = format!("{:#}", parse_time_ms("1969-12-31T23:59:59Z").unwrap_err());
        assert!(e.contains("before 1970"), "{e}");
        let e = parse_time_ms("yesterday").unwrap_err().to_string();
        assert!(e.contains("--time") && e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn target_table_shows_delivery_status() {
        let t = client::list_table(
            &[
                json!({"name":"hook","type":"http","delivery":{"state":"running","cursor":12,
                "lag":3,"in_flight":1,"delivered":9,"retrying":1,"dead_lettered":0,
                "last_error":{"code":"Http.Status","message":"HTTP 503"}}}),
            ],
            TARGET_COLUMNS,
        );
        assert_eq!(
            t.render(),
            "NAME  TYPE  STATE    CURSOR  LAG  RETRYING  DEAD_LETTERED  LAST_ERROR\n\
             hook  http  running  12      3    1         0              Http.Status: HTTP 503\n"
        );
    }
}
