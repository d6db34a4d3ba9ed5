//! The `notify` target: posts a readable message to a chat robot's webhook — a WeCom group
//! robot (企业微信群机器人), a DingTalk custom robot (钉钉自定义机器人), a Lark / Feishu
//! custom bot (飞书自定义机器人) or a Slack incoming webhook. It is this bus's stand-in for
//! Tencent EventBridge's message-push (`amp`) chat channels.
//!
//! Settings (the object under `"notify"` in a target body; `null` counts as absent, unknown
//! members are refused, every refusal names its field as `$.notify.<field>`):
//!
//! | field        | type             | default          | meaning                                          |
//! |--------------|------------------|------------------|--------------------------------------------------|
//! | `provider`   | string, required | —                | `"wecom"`, `"dingtalk"`, `"lark"` or `"slack"`   |
//! | `url`        | string, required | —                | the robot's `http://` or `https://` webhook URL  |
//! | `format`     | string           | `"text"`         | `"text"` or `"markdown"`                         |
//! | `template`   | string           | the alarm text   | the message, with `${…}` placeholders; ≤ 4096 characters |
//! | `secret`     | string           | none (unsigned)  | DingTalk "加签" / Lark signature secret; only for those two |
//! | `mentions`   | array of strings | `[]`             | who to @: `"all"`, user ids, or (WeCom, DingTalk) mobile numbers; ≤ 20 |
//! | `timeout_ms` | integer          | `5000`           | whole-request timeout, 1..=300000 ms             |
//! | `lang`       | string           | `"en"`           | language of the default template: `"en"` or `"zh"` |
//! | `utc_offset` | string           | `"+00:00"`       | zone of `${time}`: `"+08:00"`, `"-05:30"`, `"Z"` |
//!
//! **Messages.** The template is rendered over the event's CloudEvents JSON: `${path}` is a
//! dotted path into it (`${type}`, `${subject}`, `${data.instanceId}`, `${tags.env}`,
//! `${resource.0}`); a string renders as it is, other JSON values as compact JSON, and a path
//! that leads nowhere renders empty. Four names are computed instead: `${product}` (the
//! product of a cloud source, `cvm.cloud.tencent` → `CVM`; other sources as they are),
//! `${status_text}` (`status` `"1"` → abnormal, `"0"` → recovered, anything else or none →
//! stateless; in the target's `lang`), `${time}` (readable, `2024-05-01 12:00:00 +08:00`, or
//! `… UTC` at offset zero) and `${time_ms}` (the raw `time`). `$${` writes a literal `${`.
//! The default template is Tencent's alarm notification text (product, event, resource,
//! region, time, status), in English or Chinese, with bold labels in markdown.
//!
//! **Transformations.** When the rule has a transformation, its output replaces the event: a
//! text output (or a JSON string) *is* the message (no template, sent as it is), any other
//! JSON output is the document
//! the template is rendered over (so `${time}`, `${product}` read the output's `time` and
//! `source` too). A transformation can thus shape the message completely, or pick fields for
//! a template.
//!
//! **Batches.** A batch (`batch.max_events` > 1) is one message listing every event, the
//! events separated by a `---` line (Lark cards and Slack blocks: one block per event with
//! dividers). Each provider caps the message size (WeCom text 2048 bytes, markdown 4096,
//! DingTalk 20000, Lark 18000, Slack 40000 and 3000 per block): what does not fit is cut at a
//! character boundary and the message ends with "… N more events not shown".
//!
//! **Answers.** WeCom and DingTalk answer HTTP 200 with `{"errcode":0,…}`, Lark with
//! `{"code":0,…}` (older bots `{"StatusCode":0,…}`), Slack with the body `ok`; anything else
//! fails with the provider's code and message (`wecom errcode 93000: invalid webhook url`).
//! Rate limiting (WeCom 45009, DingTalk 130101 and 410100, Lark 11232) and "system busy"
//! (WeCom and DingTalk -1) are retryable, other codes are not. Answers other than 2xx are
//! classified as the `http` target does ([`super::http::failure`]: 408, 429, 5xx and
//! transport errors retryable; `Retry-After` passed on).
//!
//! **Secrets.** The webhook URL carries the robot's key (WeCom `?key=`, DingTalk
//! `?access_token=`, Lark and Slack in the path) and `secret` signs: neither appears in error
//! messages or `Debug` output (the API redacts them in responses, see `api::targets`).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, FixedOffset, Offset, Utc};
use hmac::{Hmac, Mac};
use reqwest::Url;
use reqwest::header::{self, HeaderValue};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::http;
use super::refuse;
use super::{BoxFuture, Delivered, Outgoing, SendError, Target};
use crate::error::Result;
use crate::transform::Output;

/// Default of `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = http::DEFAULT_TIMEOUT_MS;
/// Longest `template`, in characters.
pub const MAX_TEMPLATE_CHARS: usize = 4096;
/// Most `mentions`.
pub const MAX_MENTIONS: usize = 20;
/// Longest mention, in characters.
const MAX_MENTION_CHARS: usize = 64;
/// Longest `secret`, in characters.
const MAX_SECRET_CHARS: usize = 256;
/// How much of an answer is read (robots answer a few dozen bytes).
const ANSWER_LIMIT_BYTES: usize = 64 * 1024;
/// Bytes kept free in a message for the "… N more events not shown" note.
const NOTE_RESERVE_BYTES: usize = 96;
/// Longest DingTalk markdown `title` (the notification preview), in characters.
const MAX_TITLE_CHARS: usize = 64;
/// Slack: a section's text is at most 3000 characters, a message at most 50 blocks.
const SLACK_SECTION_CHARS: usize = 3000;
const SLACK_MAX_SECTIONS: usize = 24;
/// Slack: longest `text` beside blocks (the notification preview), in characters.
const SLACK_FALLBACK_CHARS: usize = 150;

/// Settings members; anything else is refused (a typo must not silently drop a setting).
const FIELDS: &[&str] = &[
    "provider",
    "url",
    "format",
    "template",
    "secret",
    "mentions",
    "timeout_ms",
    "lang",
    "utc_offset",
];

/// The placeholder a PATCH may send back for a redacted value (`api::targets::REDACTED`); a
/// URL still holding it was not restored and is refused rather than stored.
const REDACTED_MARK: &str = "<redacted>";
const REDACTED_MARK_ENCODED: &str = "%3Credacted%3E";

/// Which chat robot API the webhook speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// WeCom (企业微信) group robot: `qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`.
    WeCom,
    /// DingTalk (钉钉) custom robot: `oapi.dingtalk.com/robot/send?access_token=…`.
    DingTalk,
    /// Lark / Feishu (飞书) custom bot: `open.feishu.cn/open-apis/bot/v2/hook/…`.
    Lark,
    /// Slack incoming webhook: `hooks.slack.com/services/…`.
    Slack,
}

impl Provider {
    /// The settings spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::WeCom => "wecom",
            Provider::DingTalk => "dingtalk",
            Provider::Lark => "lark",
            Provider::Slack => "slack",
        }
    }

    fn parse(s: &str) -> Option<Provider> {
        match s {
            "wecom" => Some(Provider::WeCom),
            "dingtalk" => Some(Provider::DingTalk),
            "lark" => Some(Provider::Lark),
            "slack" => Some(Provider::Slack),
            _ => None,
        }
    }

    /// Largest message content in bytes (UTF-8), as each API documents or tolerates.
    fn limit_bytes(self, format: Format) -> usize {
        match (self, format) {
            (Provider::WeCom, Format::Text) => 2048,
            (Provider::WeCom, Format::Markdown) => 4096,
            (Provider::DingTalk, _) => 20_000,
            // The whole request may be 20 KB (cards 30 KB).
            (Provider::Lark, _) => 18_000,
            (Provider::Slack, _) => 40_000,
        }
    }

    /// Error codes in an answer body that mean "too fast / busy, try later".
    fn retryable_code(self, code: i64) -> bool {
        match self {
            // 45009: api freq out of limit; -1: system busy.
            Provider::WeCom => matches!(code, 45009 | -1),
            // 130101: send too fast; 410100: rate limited; -1: system busy.
            Provider::DingTalk => matches!(code, 130101 | 410100 | -1),
            // 11232: frequency limited.
            Provider::Lark => code == 11232,
            Provider::Slack => false,
        }
    }
}

/// Plain text or the provider's markdown dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Plain text (`msgtype: text`, Lark `text`, Slack `text`).
    #[default]
    Text,
    /// Markdown: WeCom and DingTalk `markdown`, a Lark `interactive` card with `lark_md`,
    /// Slack `mrkdwn` section blocks.
    Markdown,
}

impl Format {
    /// The settings spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
        }
    }
}

/// Language of the default template and of `${status_text}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

/// Who a message mentions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mention {
    /// Everyone in the group (`"all"` or `"@all"`).
    All,
    /// A mobile number (digits, optionally with a leading `+`): WeCom and DingTalk.
    Mobile(String),
    /// A user id (WeCom userid, DingTalk userId, Lark open_id `ou_…`, Slack `U…`).
    User(String),
}

impl Mention {
    fn parse(s: &str) -> Option<Mention> {
        if s == "all" || s == "@all" {
            return Some(Mention::All);
        }
        if s.is_empty() || s.chars().count() > MAX_MENTION_CHARS {
            return None;
        }
        let digits = s.strip_prefix('+').unwrap_or(s);
        if (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Some(Mention::Mobile(s.to_string()));
        }
        // Ids only: anything that could close or open markup (`<`, `>`, quotes, spaces) is
        // refused, since mentions are written into the message text.
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
            .then(|| Mention::User(s.to_string()))
    }
}

/// A signing secret. Its `Debug` prints nothing of it.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Validated settings of a `notify` target; built only by [`NotifySettings::parse`].
#[derive(Clone)]
pub struct NotifySettings {
    provider: Provider,
    url: Url,
    format: Format,
    template: Template,
    /// The template was given (not the default).
    custom_template: bool,
    secret: Option<Secret>,
    mentions: Vec<Mention>,
    timeout: Duration,
    lang: Lang,
    offset: FixedOffset,
}

impl NotifySettings {
    /// Parses and validates the settings object (see the module docs for the fields).
    pub fn parse(settings: &Value) -> Result<NotifySettings> {
        let obj = super::settings_object("notify", settings, FIELDS, "")?;
        let present = |name: &str| obj.get(name).filter(|v| !v.is_null());

        let provider = match present("provider") {
            None => return Err(refuse("$.notify.provider", "\"provider\" is required")),
            Some(v) => v.as_str().and_then(Provider::parse).ok_or_else(|| {
                refuse(
                    "$.notify.provider",
                    "\"provider\" must be one of \"wecom\", \"dingtalk\", \"lark\", \"slack\"",
                )
            })?,
        };
        let url = http::parse_url_at(present("url"), "$.notify.url")?;
        if url.as_str().contains(REDACTED_MARK_ENCODED) || url.as_str().contains(REDACTED_MARK) {
            return Err(refuse(
                "$.notify.url",
                "\"url\" still holds the redaction placeholder; send the full webhook URL, or \
                 the redacted URL exactly as it was read to keep the stored one",
            ));
        }
        let format = match present("format") {
            None => Format::default(),
            Some(v) => match v.as_str() {
                Some("text") => Format::Text,
                Some("markdown") => Format::Markdown,
                _ => {
                    return Err(refuse(
                        "$.notify.format",
                        "\"format\" must be \"text\" or \"markdown\"",
                    ));
                }
            },
        };
        let lang = match present("lang") {
            None => Lang::default(),
            Some(v) => match v.as_str() {
                Some("en") => Lang::En,
                Some("zh") => Lang::Zh,
                _ => return Err(refuse("$.notify.lang", "\"lang\" must be \"en\" or \"zh\"")),
            },
        };
        let offset = match present("utc_offset") {
            None => Utc.fix(),
            Some(v) => v.as_str().and_then(parse_offset).ok_or_else(|| {
                refuse(
                    "$.notify.utc_offset",
                    "\"utc_offset\" must be \"Z\" or \"+HH:MM\" / \"-HH:MM\" (at most 23:59)",
                )
            })?,
        };
        let (template, custom_template) = match present("template") {
            None => (
                Template::parse(&default_template(provider, format, lang))
                    .map_err(|e| refuse("$.notify.template", e))?,
                false,
            ),
            Some(Value::String(t)) => {
                if t.is_empty() {
                    return Err(refuse(
                        "$.notify.template",
                        "\"template\" must not be empty",
                    ));
                }
                let chars = t.chars().count();
                if chars > MAX_TEMPLATE_CHARS {
                    return Err(refuse(
                        "$.notify.template",
                        format!(
                            "\"template\" is {chars} characters; at most {MAX_TEMPLATE_CHARS} \
                             are allowed"
                        ),
                    ));
                }
                (
                    Template::parse(t).map_err(|e| refuse("$.notify.template", e))?,
                    true,
                )
            }
            Some(_) => return Err(refuse("$.notify.template", "\"template\" must be a string")),
        };
        let secret = match present("secret") {
            None => None,
            Some(Value::String(s)) => {
                if !matches!(provider, Provider::DingTalk | Provider::Lark) {
                    return Err(refuse(
                        "$.notify.secret",
                        format!(
                            "{} webhooks are not signed; \"secret\" is only for \"dingtalk\" \
                             and \"lark\"",
                            provider.as_str()
                        ),
                    ));
                }
                if s.is_empty() || s.chars().count() > MAX_SECRET_CHARS {
                    return Err(refuse(
                        "$.notify.secret",
                        format!("\"secret\" must be 1 to {MAX_SECRET_CHARS} characters"),
                    ));
                }
                Some(Secret(s.clone()))
            }
            Some(_) => return Err(refuse("$.notify.secret", "\"secret\" must be a string")),
        };
        let mentions = match present("mentions") {
            None => Vec::new(),
            Some(v) => parse_mentions(v, provider, format)?,
        };
        let timeout_ms = match present("timeout_ms") {
            None => DEFAULT_TIMEOUT_MS,
            Some(v) => v
                .as_u64()
                .filter(|ms| (1..=http::MAX_TIMEOUT_MS).contains(ms))
                .ok_or_else(|| {
                    refuse(
                        "$.notify.timeout_ms",
                        format!(
                            "\"timeout_ms\" must be an integer from 1 to {} (milliseconds)",
                            http::MAX_TIMEOUT_MS
                        ),
                    )
                })?,
        };
        Ok(NotifySettings {
            provider,
            url,
            format,
            template,
            custom_template,
            secret,
            mentions,
            timeout: Duration::from_millis(timeout_ms),
            lang,
            offset,
        })
    }

    /// The chat robot API.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Text or markdown.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whole-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether requests are signed (a `secret` was given).
    pub fn is_signed(&self) -> bool {
        self.secret.is_some()
    }

    /// Who every message mentions.
    pub fn mentions(&self) -> &[Mention] {
        &self.mentions
    }
}

impl fmt::Debug for NotifySettings {
    /// Prints no secret: the URL is reduced to its scheme and host (the key is in its query
    /// or path), the secret is redacted, the template and mentions are summarized.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = format!(
            "{}://{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or("")
        );
        if let Some(port) = self.url.port() {
            url.push_str(&format!(":{port}"));
        }
        url.push_str("/<redacted>");
        f.debug_struct("NotifySettings")
            .field("provider", &self.provider)
            .field("url", &url)
            .field("format", &self.format)
            .field("custom_template", &self.custom_template)
            .field("secret", &self.secret)
            .field("mentions", &self.mentions.len())
            .field("timeout", &self.timeout)
            .field("lang", &self.lang)
            .field("utc_offset", &self.offset)
            .finish()
    }
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    if s == "Z" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

fn parse_mentions(v: &Value, provider: Provider, format: Format) -> Result<Vec<Mention>> {
    let Value::Array(items) = v else {
        return Err(refuse(
            "$.notify.mentions",
            "\"mentions\" must be an array of strings",
        ));
    };
    if items.len() > MAX_MENTIONS {
        return Err(refuse(
            "$.notify.mentions",
            format!("at most {MAX_MENTIONS} mentions are allowed"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("$.notify.mentions[{i}]");
        let mention = item.as_str().and_then(Mention::parse).ok_or_else(|| {
            refuse(
                &path,
                format!(
                    "a mention is \"all\", a user id (letters, digits, _ - . @; at most \
                     {MAX_MENTION_CHARS}) or a mobile number"
                ),
            )
        })?;
        let refused = match (&mention, provider, format) {
            (Mention::Mobile(_), Provider::Lark | Provider::Slack, _) => Some(format!(
                "{} webhooks cannot mention by mobile number; give a user id",
                provider.as_str()
            )),
            (Mention::Mobile(_) | Mention::All, Provider::WeCom, Format::Markdown) => Some(
                "WeCom markdown messages mention user ids only (mobile numbers and \"all\" \
                 work in \"text\" format)"
                    .to_string(),
            ),
            _ => None,
        };
        if let Some(message) = refused {
            return Err(refuse(&path, message));
        }
        if !out.contains(&mention) {
            out.push(mention);
        }
    }
    Ok(out)
}

// ---- templates ----

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// A placeholder: the dotted path, split.
    Field(Vec<String>),
}

/// A parsed message template: literal text and `${path}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `${a.b.c}` placeholders; `$${` is a literal `${`. A placeholder names a dotted
    /// path: segments of any characters but `.`, `{`, `}`, `$` and whitespace, none empty.
    pub fn parse(text: &str) -> std::result::Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("$${") {
                literal.push_str("${");
                rest = after;
            } else if let Some(after) = tail.strip_prefix("${") {
                let Some(end) = after.find('}') else {
                    return Err(format!(
                        "placeholder at character {} is not closed with '}}'",
                        text[..text.len() - tail.len()].chars().count()
                    ));
                };
                let name = &after[..end];
                let segments: Vec<String> = name.split('.').map(str::to_string).collect();
                let bad = |s: &String| {
                    s.is_empty()
                        || s.chars()
                            .any(|c| c.is_whitespace() || matches!(c, '{' | '}' | '$'))
                };
                if segments.iter().any(bad) {
                    return Err(format!(
                        "placeholder \"${{{name}}}\" must be a dotted path such as \
                         ${{data.instanceId}} (no empty segments, spaces, '{{' or '$')"
                    ));
                }
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Field(segments));
                rest = &after[end + 1..];
            } else {
                literal.push('$');
                rest = &tail[1..];
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces })
    }

    /// Renders the template over `input` (the event's JSON or a transformation's JSON
    /// output). Substituted values pass through `escape` (literal text does not).
    pub fn render(&self, input: &Value, ctx: &RenderContext) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Field(path) => {
                    let value = field(input, path, ctx);
                    match ctx.escape {
                        ValueEscape::Slack => out.push_str(&slack_escape(&value)),
                        ValueEscape::Mentions => out.push_str(&defuse_mentions(&value)),
                    }
                }
            }
        }
        out
    }
}

/// What rendering needs besides the input.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext {
    /// Language of `${status_text}`.
    pub lang: Lang,
    /// Zone of `${time}`.
    pub offset: FixedOffset,
    /// How substituted values are made inert.
    pub escape: ValueEscape,
}

/// How event data substituted into a message is kept from acting as markup: a value must not
/// mention (`@all`) or link anyone the template's author did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueEscape {
    /// Slack: `&`, `<`, `>` as entities (Slack parses `<!here>`, `<@U…>`, `<url|text>`).
    Slack,
    /// WeCom, DingTalk, Lark: a zero-width space after `<` where a mention tag would start
    /// (Lark's `<at user_id=…>`, WeCom markdown's `<@userid>`); their mentions otherwise come
    /// only from the `mentions` setting.
    Mentions,
}

/// The value of one placeholder.
fn field(input: &Value, path: &[String], ctx: &RenderContext) -> String {
    if let [name] = path {
        match name.as_str() {
            "product" => {
                return input
                    .get("source")
                    .and_then(Value::as_str)
                    .map(product_name)
                    .unwrap_or_default();
            }
            "status_text" => {
                return status_text(input.get("status").and_then(Value::as_str), ctx.lang)
                    .to_string();
            }
            "time" => {
                return input
                    .get("time")
                    .map(|t| readable_time(t, ctx.offset))
                    .unwrap_or_default();
            }
            "time_ms" => return input.get("time").map(scalar_text).unwrap_or_default(),
            _ => {}
        }
    }
    let mut at = input;
    for segment in path {
        let next = match at {
            Value::Object(m) => m.get(segment.as_str()),
            Value::Array(a) => segment.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return String::new(),
        }
    }
    scalar_text(at)
}

/// A string as it is, `null` as nothing, anything else as compact JSON.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `cvm.cloud.tencent` → `CVM`; a source that is not a Tencent cloud service stays as it is.
pub fn product_name(source: &str) -> String {
    match source.strip_suffix(".cloud.tencent") {
        Some(product) if !product.is_empty() => product.to_ascii_uppercase(),
        _ => source.to_string(),
    }
}

/// Tencent alarm status: `"1"` abnormal, `"0"` recovered, anything else stateless.
pub fn status_text(status: Option<&str>, lang: Lang) -> &'static str {
    match (status, lang) {
        (Some("1"), Lang::En) => "abnormal",
        (Some("0"), Lang::En) => "recovered",
        (_, Lang::En) => "stateless",
        (Some("1"), Lang::Zh) => "异常",
        (Some("0"), Lang::Zh) => "已恢复",
        (_, Lang::Zh) => "无状态",
    }
}

/// `time` as `2024-05-01 12:00:00 +08:00` (`… UTC` at offset zero): epoch ms as a number or
/// numeric string, or an RFC 3339 string; anything else as it is.
fn readable_time(t: &Value, offset: FixedOffset) -> String {
    let at = match t {
        Value::Number(n) => n.as_i64().and_then(DateTime::<Utc>::from_timestamp_millis),
        Value::String(s) => s
            .parse::<i64>()
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .or_else(|| {
                DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            }),
        _ => None,
    };
    let Some(at) = at else {
        return scalar_text(t);
    };
    let local = at.with_timezone(&offset);
    let zone = if offset.local_minus_utc() == 0 {
        "UTC".to_string()
    } else {
        local.format("%:z").to_string()
    };
    format!("{} {zone}", local.format("%Y-%m-%d %H:%M:%S"))
}

fn defuse_mentions(s: &str) -> String {
    if !s.contains('<') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 3);
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let tag = rest.get(..2).is_some_and(|t| t.eq_ignore_ascii_case("at"));
        if tag || rest.starts_with('@') {
            out.push('\u{200b}');
        }
    }
    out.push_str(rest);
    out
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The default template: Tencent's alarm notification (email text template of message push),
/// one labelled line per fact, bold labels in markdown (Slack's `*…*`, others' `**…**`;
/// DingTalk markdown needs a blank line to break lines).
pub fn default_template(provider: Provider, format: Format, lang: Lang) -> String {
    let (title, labels) = match lang {
        Lang::En => (
            "[${product}] Alarm notification",
            ["Event", "Product", "Resource", "Region", "Time", "Status"],
        ),
        Lang::Zh => (
            "【${product}】告警通知",
            ["告警事件", "所属产品", "告警对象", "地域", "时间", "状态"],
        ),
    };
    let values = [
        "${type}",
        "${product}",
        "${subject}",
        "${region}",
        "${time}",
        "${status_text}",
    ];
    let colon = match lang {
        Lang::En => ": ",
        Lang::Zh => "：",
    };
    let (bold, newline) = match (format, provider) {
        (Format::Text, _) => ("", "\n"),
        (Format::Markdown, Provider::Slack) => ("*", "\n"),
        (Format::Markdown, Provider::DingTalk) => ("**", "\n\n"),
        (Format::Markdown, _) => ("**", "\n"),
    };
    let mut out = format!("{bold}{title}{bold}");
    for (label, value) in labels.iter().zip(values) {
        out.push_str(newline);
        out.push_str(&format!("{bold}{label}{bold}{colon}{value}"));
    }
    out
}

// ---- messages ----

/// A rendered message, before it is laid out in the provider's request body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    /// One text per event that fitted (cut to fit where needed).
    parts: Vec<String>,
    /// Events left out for size.
    omitted: usize,
}

/// Cuts `s` to at most `max` bytes at a character boundary, marking a cut with `…`.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Cuts `s` to at most `max` characters, marking a cut with `…`.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Keeps the parts that fit in `budget` bytes (joined by `sep_len`-byte separators, at most
/// `max_parts`); the first one that does not fit is cut to the room left (when there is a
/// useful amount), the rest are counted as omitted.
fn fit(parts: Vec<String>, budget: usize, sep_len: usize, max_parts: usize) -> Message {
    let total = parts.len();
    let budget = budget.saturating_sub(NOTE_RESERVE_BYTES);
    let mut kept = Vec::new();
    let mut used = 0;
    for part in parts {
        if kept.len() == max_parts {
            break;
        }
        let sep = if kept.is_empty() { 0 } else { sep_len };
        if used + sep + part.len() <= budget {
            used += sep + part.len();
            kept.push(part);
            continue;
        }
        let room = budget.saturating_sub(used + sep);
        if kept.is_empty() || room >= 64 {
            kept.push(truncate(&part, room));
        }
        break;
    }
    Message {
        omitted: total - kept.len(),
        parts: kept,
    }
}

fn omitted_note(omitted: usize, lang: Lang) -> String {
    match lang {
        Lang::En if omitted == 1 => "… 1 more event not shown".to_string(),
        Lang::En => format!("… {omitted} more events not shown"),
        Lang::Zh => format!("…… 另有 {omitted} 条事件未显示"),
    }
}

/// The text separating events in one message.
fn separator(format: Format) -> &'static str {
    match format {
        Format::Text => "\n---\n",
        Format::Markdown => "\n\n---\n\n",
    }
}

/// The first line of a message without markdown decoration: DingTalk's `title`.
fn title_of(text: &str) -> String {
    let line = text
        .lines()
        .map(|l| {
            l.replace("**", "")
                .trim_matches(|c: char| c.is_whitespace() || matches!(c, '#' | '>' | '*' | '_'))
                .to_string()
        })
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if line.is_empty() {
        "Notification".to_string()
    } else {
        truncate_chars(&line, MAX_TITLE_CHARS)
    }
}

/// DingTalk's `timestamp` + `sign`: base64 of HMAC-SHA256(key = secret,
/// `"{timestamp_ms}\n{secret}"`); the caller URL-encodes it as a query value.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Lark's `sign`: base64 of HMAC-SHA256 with the key `"{timestamp_s}\n{secret}"` over an
/// empty message (Lark's rule, as its own SDKs compute it).
pub fn lark_sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac = match <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    BASE64.encode(mac.finalize().into_bytes())
}

/// Delivers to one chat robot. One connection pool per target.
pub struct NotifyTarget {
    settings: NotifySettings,
    client: reqwest::Client,
}

impl fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyTarget")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl NotifyTarget {
    /// Builds the target and its HTTP client (as the `http` target's: rustls, no redirects).
    pub fn new(settings: NotifySettings) -> Result<NotifyTarget> {
        let client = http::client(settings.timeout, "a notify target")?;
        Ok(NotifyTarget { settings, client })
    }

    /// The target's settings.
    pub fn settings(&self) -> &NotifySettings {
        &self.settings
    }

    /// The text of each item: a transformation's text output as it is, else the template
    /// over the transformation's JSON output or the event's JSON.
    fn texts(&self, batch: &[Outgoing]) -> Vec<String> {
        let s = &self.settings;
        let ctx = RenderContext {
            lang: s.lang,
            offset: s.offset,
            escape: if s.provider == Provider::Slack {
                ValueEscape::Slack
            } else {
                ValueEscape::Mentions
            },
        };
        batch
            .iter()
            .map(|o| match o.output.as_deref() {
                Some(Output::Text(text)) => text.clone(),
                // A JSON string is text too (Tencent transformations can only make JSON).
                Some(Output::Json(Value::String(text))) => text.clone(),
                Some(Output::Json(v)) => s.template.render(v, &ctx),
                None => s.template.render(&o.event.to_json(), &ctx),
            })
            .collect()
    }

    /// The request for `batch`: the URL (with DingTalk's signature) and the JSON body, signed
    /// as of `now`.
    pub fn request(&self, batch: &[Outgoing], now: DateTime<Utc>) -> (Url, Value) {
        let s = &self.settings;
        let texts = self.texts(batch);
        let mentions = &s.mentions;
        let mut url = s.url.clone();
        let body = match s.provider {
            Provider::WeCom => {
                let tail = match s.format {
                    // Text mentions travel in the lists; markdown mentions are `<@userid>`.
                    Format::Text => String::new(),
                    Format::Markdown => mention_tail(mentions, "\n", |m| match m {
                        Mention::User(u) => Some(format!("<@{u}>")),
                        _ => None,
                    }),
                };
                let content = self.joined(texts, &tail);
                match s.format {
                    Format::Text => {
                        let mut text = Map::new();
                        text.insert("content".into(), Value::String(content));
                        let users: Vec<Value> = mentions
                            .iter()
                            .filter_map(|m| match m {
                                Mention::All => Some(json!("@all")),
                                Mention::User(u) => Some(json!(u)),
                                Mention::Mobile(_) => None,
                            })
                            .collect();
                        let mobiles: Vec<Value> = mentions
                            .iter()
                            .filter_map(|m| match m {
                                Mention::Mobile(p) => Some(json!(p)),
                                _ => None,
                            })
                            .collect();
                        if !users.is_empty() {
                            text.insert("mentioned_list".into(), Value::Array(users));
                        }
                        if !mobiles.is_empty() {
                            text.insert("mentioned_mobile_list".into(), Value::Array(mobiles));
                        }
                        json!({"msgtype": "text", "text": text})
                    }
                    Format::Markdown => {
                        json!({"msgtype": "markdown", "markdown": {"content": content}})
                    }
                }
            }
            Provider::DingTalk => {
                // DingTalk highlights a mention only when the content also names it.
                let newline = match s.format {
                    Format::Text => "\n",
                    Format::Markdown => "\n\n",
                };
                let tail = mention_tail(mentions, newline, |m| match m {
                    Mention::All => None,
                    Mention::Mobile(p) | Mention::User(p) => Some(format!("@{p}")),
                });
                let content = self.joined(texts, &tail);
                let mut body = match s.format {
                    Format::Text => json!({"msgtype": "text", "text": {"content": content}}),
                    Format::Markdown => json!({"msgtype": "markdown", "markdown": {
                        "title": title_of(&content), "text": content}}),
                };
                if !mentions.is_empty() {
                    let of = |f: fn(&Mention) -> Option<&String>| -> Vec<Value> {
                        mentions.iter().filter_map(f).map(|v| json!(v)).collect()
                    };
                    body["at"] = json!({
                        "atMobiles": of(|m| match m { Mention::Mobile(p) => Some(p), _ => None }),
                        "atUserIds": of(|m| match m { Mention::User(u) => Some(u), _ => None }),
                        "isAtAll": mentions.contains(&Mention::All),
                    });
                }
                if let Some(secret) = &s.secret {
                    let ts = now.timestamp_millis();
                    let sign = dingtalk_sign(&secret.0, ts);
                    let kept: Vec<(String, String)> = url
                        .query_pairs()
                        .filter(|(k, _)| k != "timestamp" && k != "sign")
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                    url.query_pairs_mut()
                        .clear()
                        .extend_pairs(kept)
                        .append_pair("timestamp", &ts.to_string())
                        .append_pair("sign", &sign);
                }
                body
            }
            Provider::Lark => {
                let mut body = match s.format {
                    Format::Text => {
                        let tail = mention_tail(mentions, "\n", |m| match m {
                            Mention::All => Some("<at user_id=\"all\">所有人</at>".to_string()),
                            Mention::User(u) => Some(format!("<at user_id=\"{u}\"></at>")),
                            Mention::Mobile(_) => None,
                        });
                        let content = self.joined(texts, &tail);
                        json!({"msg_type": "text", "content": {"text": content}})
                    }
                    Format::Markdown => {
                        let tail = mention_tail(mentions, "", |m| match m {
                            Mention::All => Some("<at id=all></at>".to_string()),
                            Mention::User(u) => Some(format!("<at id={u}></at>")),
                            Mention::Mobile(_) => None,
                        });
                        let limit = s.provider.limit_bytes(s.format);
                        let msg = fit(texts, limit.saturating_sub(tail.len()), 64, usize::MAX);
                        let mut elements = Vec::new();
                        for (i, part) in msg.parts.into_iter().enumerate() {
                            if i > 0 {
                                elements.push(json!({"tag": "hr"}));
                            }
                            elements.push(lark_div(part));
                        }
                        if msg.omitted > 0 {
                            elements.push(lark_div(omitted_note(msg.omitted, s.lang)));
                        }
                        if !tail.is_empty() {
                            elements.push(lark_div(tail));
                        }
                        json!({"msg_type": "interactive", "card": {
                            "config": {"wide_screen_mode": true},
                            "elements": elements}})
                    }
                };
                if let Some(secret) = &s.secret {
                    let ts = now.timestamp();
                    body["timestamp"] = json!(ts.to_string());
                    body["sign"] = json!(lark_sign(&secret.0, ts));
                }
                body
            }
            Provider::Slack => {
                let tail = mention_tail(mentions, "", |m| match m {
                    Mention::All => Some("<!channel>".to_string()),
                    Mention::User(u) => Some(format!("<@{u}>")),
                    Mention::Mobile(_) => None,
                });
                match s.format {
                    Format::Text => {
                        let tail = if tail.is_empty() {
                            tail
                        } else {
                            format!("\n{tail}")
                        };
                        json!({"text": self.joined(texts, &tail)})
                    }
                    Format::Markdown => {
                        // The notification text: the first line, as mrkdwn like the blocks.
                        let fallback = texts
                            .first()
                            .and_then(|t| t.lines().map(str::trim).find(|l| !l.is_empty()))
                            .map(|l| truncate_chars(l, SLACK_FALLBACK_CHARS))
                            .unwrap_or_default();
                        let parts: Vec<String> = texts
                            .into_iter()
                            .map(|t| truncate_chars(&t, SLACK_SECTION_CHARS))
                            .collect();
                        let limit = s.provider.limit_bytes(s.format);
                        let msg = fit(parts, limit, 0, SLACK_MAX_SECTIONS);
                        let mut blocks = Vec::new();
                        for (i, part) in msg.parts.into_iter().enumerate() {
                            if i > 0 {
                                blocks.push(json!({"type": "divider"}));
                            }
                            blocks.push(slack_section(part));
                        }
                        if msg.omitted > 0 {
                            blocks.push(slack_section(omitted_note(msg.omitted, s.lang)));
                        }
                        if !tail.is_empty() {
                            blocks.push(slack_section(tail));
                        }
                        json!({"text": fallback, "blocks": blocks})
                    }
                }
            }
        };
        (url, body)
    }

    /// The events' texts joined into one message that fits the provider's limit, the
    /// omitted-events note and `tail` (mentions) at the end.
    fn joined(&self, texts: Vec<String>, tail: &str) -> String {
        let s = &self.settings;
        let sep = separator(s.format);
        let limit = s.provider.limit_bytes(s.format).saturating_sub(tail.len());
        let msg = fit(texts, limit, sep.len(), usize::MAX);
        let mut out = msg.parts.join(sep);
        if msg.omitted > 0 {
            out.push_str(sep);
            out.push_str(&omitted_note(msg.omitted, s.lang));
        }
        out.push_str(tail);
        out
    }

    async fn deliver(&self, batch: &[Outgoing]) -> std::result::Result<Delivered, SendError> {
        if batch.is_empty() {
            return Ok(Delivered::default());
        }
        let (url, body) = self.request(batch, Utc::now());
        let response = self
            .client
            .post(url)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )
            .body(body.to_string())
            .send()
            .await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => return Err(http::transport_error(e, self.settings.timeout)),
        };
        let status = response.status();
        let retry_after = http::retry_after(response.headers());
        let answer = http::read_body(&mut response, ANSWER_LIMIT_BYTES).await;
        check_answer(self.settings.provider, status, retry_after, &answer)
    }
}

/// `"{newline}{token} {token}…"` for the mentions `token` writes, or `""`.
fn mention_tail(
    mentions: &[Mention],
    newline: &str,
    token: impl Fn(&Mention) -> Option<String>,
) -> String {
    let tokens: Vec<String> = mentions.iter().filter_map(token).collect();
    if tokens.is_empty() {
        String::new()
    } else {
        format!("{newline}{}", tokens.join(" "))
    }
}

fn lark_div(content: String) -> Value {
    json!({"tag": "div", "text": {"tag": "lark_md", "content": content}})
}

fn slack_section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// Success or a classified failure from the robot's answer (`body`: its first bytes).
fn check_answer(
    provider: Provider,
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> std::result::Result<Delivered, SendError> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    // (code, message) as the provider's JSON answer states them.
    let code = parsed.as_ref().and_then(|v| {
        let (code, msg) = match provider {
            Provider::WeCom | Provider::DingTalk => ("errcode", "errmsg"),
            Provider::Lark if v.get("code").is_some() => ("code", "msg"),
            Provider::Lark => ("StatusCode", "StatusMessage"),
            Provider::Slack => return None,
        };
        let n = v.get(code)?.as_i64()?;
        let text = v.get(msg).and_then(Value::as_str).unwrap_or_default();
        Some((code, n, http::snippet(text.as_bytes())))
    });
    let label = match provider {
        Provider::Lark => "lark",
        other => other.as_str(),
    };
    if !status.is_success() {
        let mut err = http::failure(status, retry_after, body);
        if let Some((_, n, _)) = code
            && provider.retryable_code(n)
        {
            // Lark answers its rate limit with HTTP 400 and code 11232.
            err.retryable = true;
        }
        return Err(err);
    }
    let fail = |retryable: bool, message: String| SendError {
        retryable,
        retry_after,
        status: Some(status.as_u16()),
        message,
    };
    match provider {
        Provider::Slack => {
            if body.trim_ascii() == b"ok" {
                Ok(Delivered {
                    status: Some(status.as_u16()),
                })
            } else {
                Err(fail(
                    false,
                    format!(
                        "slack answered HTTP {} without \"ok\": {}",
                        status.as_u16(),
                        http::snippet(body)
                    ),
                ))
            }
        }
        _ => match code {
            Some((_, 0, _)) => Ok(Delivered {
                status: Some(status.as_u16()),
            }),
            Some((field, n, text)) => {
                let mut message = format!("{label} {field} {n}");
                if !text.is_empty() {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                Err(fail(provider.retryable_code(n), message))
            }
            None => Err(fail(
                false,
                format!(
                    "{label} answered HTTP {} without a result code: {}",
                    status.as_u16(),
                    http::snippet(body)
                ),
            )),
        },
    }
}

impl Target for NotifyTarget {
    fn send<'a>(
        &'a self,
        batch: &'a [Outgoing],
    ) -> BoxFuture<'a, std::result::Result<Delivered, SendError>> {
        Box::pin(self.deliver(batch))
    }

    // A batch is one message listing its events (the trait's default: batches supported).
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::event::Event;

    const SECRET: &str = "SEC0123456789abcdef";
    /// 2024-05-01T04:00:00Z.
    const T0_MS: i64 = 1_714_536_000_000;

    fn event(id: &str) -> Arc<Event> {
        let mut e = Event::new(id, "cvm.cloud.tencent", "cvm:ErrorEvent:PingUnreachable");
        e.time_ms = T0_MS;
        e.subject = Some("ins-1".into());
        e.region = Some("ap-guangzhou".into());
        e.status = Some("1".into());
        e.tags.insert("env".into(), "prod".into());
        e.resource = vec!["qcs::cvm:ap-guangzhou:uin/1:instance/ins-1".into()];
        e.data = serde_json::to_vec(&json!({"instanceId": "ins-1", "n": 2,
            "dimensions": {"ip": "10.0.0.1"}, "list": ["a", "b"]}))
        .unwrap();
        Arc::new(e)
    }

    fn target(settings: Value) -> NotifyTarget {
        NotifyTarget::new(NotifySettings::parse(&settings).unwrap()).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(T0_MS).unwrap()
    }

    fn body_of(settings: Value, batch: &[Outgoing]) -> (Url, Value) {
        target(settings).request(batch, now())
    }

    fn plain(ids: &[&str]) -> Vec<Outgoing> {
        ids.iter().map(|id| Outgoing::plain(event(id))).collect()
    }

    fn ctx() -> RenderContext {
        RenderContext {
            lang: Lang::En,
            offset: Utc.fix(),
            escape: ValueEscape::Mentions,
        }
    }

    const URL: &str = "https://robot.example.com/send?key=k3y";

    // ---- templates ----

    #[test]
    fn template_renders_dotted_paths_and_unknown_fields_empty() {
        let t = Template::parse(
            "${type}|${source}|${subject}|${region}|${id}|${status}|${data.instanceId}|\
             ${data.n}|${data.dimensions}|${data.dimensions.ip}|${data.list.1}|${tags.env}|\
             ${resource.0}|${data.nope}|${nope}|${data.list.x}",
        )
        .unwrap();
        let out = t.render(&event("e1").to_json(), &ctx());
        assert_eq!(
            out,
            "cvm:ErrorEvent:PingUnreachable|cvm.cloud.tencent|ins-1|ap-guangzhou|e1|1|ins-1|2|\
             {\"ip\":\"10.0.0.1\"}|10.0.0.1|b|prod|qcs::cvm:ap-guangzhou:uin/1:instance/ins-1|||"
        );
    }

    #[test]
    fn template_computed_names() {
        let t = Template::parse("${product} ${status_text} ${time} ${time_ms}").unwrap();
        let input = event("e1").to_json();
        assert_eq!(
            t.render(&input, &ctx()),
            "CVM abnormal 2024-05-01 04:00:00 UTC 1714536000000"
        );
        let zh = RenderContext {
            lang: Lang::Zh,
            offset: parse_offset("+08:00").unwrap(),
            escape: ValueEscape::Mentions,
        };
        assert_eq!(
            t.render(&input, &zh),
            "CVM 异常 2024-05-01 12:00:00 +08:00 1714536000000"
        );
        // Other inputs: recovered, stateless, RFC 3339 and unreadable times, other sources.
        let t = Template::parse("${product}/${status_text}/${time}").unwrap();
        let other = |v: Value| t.render(&v, &ctx());
        assert_eq!(
            other(json!({"source": "shop", "status": "0", "time": "2024-05-01T12:00:00+08:00"})),
            "shop/recovered/2024-05-01 04:00:00 UTC"
        );
        assert_eq!(
            other(json!({"status": "-", "time": "yesterday"})),
            "/stateless/yesterday"
        );
        assert_eq!(
            other(json!({"time": "1714536000000"})),
            "/stateless/2024-05-01 04:00:00 UTC"
        );
        assert_eq!(other(json!("text")), "/stateless/");
        assert_eq!(product_name("cdb.cloud.tencent"), "CDB");
        assert_eq!(product_name(".cloud.tencent"), ".cloud.tencent");
    }

    #[test]
    fn template_literal_dollars_and_syntax_errors() {
        let t = Template::parse("cost $5, $${type} is literal, $$ stays, ${id}$").unwrap();
        assert_eq!(
            t.render(&json!({"id": "x"}), &ctx()),
            "cost $5, ${type} is literal, $$ stays, x$"
        );
        for bad in [
            "${", "a ${type", "${}", "${a..b}", "${a b}", "${.a}", "${a.}", "${a${b}}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mention_tags_in_values_are_defused_but_the_template_is_not() {
        let t = Template::parse("<at user_id=\"ou_1\"></at> ${data.m}").unwrap();
        let out = t.render(
            &json!({"data": {"m": "<at user_id=\"all\"></at> <@alice> a<b"}}),
            &ctx(),
        );
        assert_eq!(
            out,
            "<at user_id=\"ou_1\"></at> <\u{200b}at user_id=\"all\"></at> <\u{200b}@alice> a<b"
        );
    }

    #[test]
    fn slack_values_are_escaped_but_the_template_is_not() {
        let t = Template::parse("<!here> ${data.m}").unwrap();
        let c = RenderContext {
            escape: ValueEscape::Slack,
            ..ctx()
        };
        assert_eq!(
            t.render(&json!({"data": {"m": "a<b>&c"}}), &c),
            "<!here> a&lt;b&gt;&amp;c"
        );
    }

    #[test]
    fn default_text_is_the_tencent_alarm_notification() {
        let (_, body) = body_of(json!({"provider": "wecom", "url": URL}), &plain(&["e1"]));
        assert_eq!(
            body["text"]["content"],
            "[CVM] Alarm notification\nEvent: cvm:ErrorEvent:PingUnreachable\nProduct: CVM\n\
             Resource: ins-1\nRegion: ap-guangzhou\nTime: 2024-05-01 04:00:00 UTC\n\
             Status: abnormal"
        );
        let (_, body) = body_of(
            json!({"provider": "wecom", "url": URL, "lang": "zh", "utc_offset": "+08:00"}),
            &plain(&["e1"]),
        );
        assert_eq!(
            body["text"]["content"],
            "【CVM】告警通知\n告警事件：cvm:ErrorEvent:PingUnreachable\n所属产品：CVM\n\
             告警对象：ins-1\n地域：ap-guangzhou\n时间：2024-05-01 12:00:00 +08:00\n状态：异常"
        );
        assert_eq!(
            default_template(Provider::Slack, Format::Markdown, Lang::En)
                .lines()
                .next(),
            Some("*[${product}] Alarm notification*")
        );
        assert!(
            default_template(Provider::DingTalk, Format::Markdown, Lang::En)
                .contains("**\n\n**Event**: ${type}")
        );
    }

    // ---- request bodies ----

    #[test]
    fn wecom_bodies() {
        let settings = json!({"provider": "wecom", "url": URL, "template": "${id} down",
            "mentions": ["all", "zhangsan", "13800001111"]});
        let (url, body) = body_of(settings, &plain(&["e1"]));
        assert_eq!(url.as_str(), URL);
        assert_eq!(
            body,
            json!({"msgtype": "text", "text": {"content": "e1 down",
                "mentioned_list": ["@all", "zhangsan"],
                "mentioned_mobile_list": ["13800001111"]}})
        );
        let settings = json!({"provider": "wecom", "url": URL, "format": "markdown",
            "template": "**${id}** down", "mentions": ["zhangsan"]});
        let (_, body) = body_of(settings, &plain(&["e1"]));
        assert_eq!(
            body,
            json!({"msgtype": "markdown", "markdown": {"content": "**e1** down\n<@zhangsan>"}})
        );
    }

    #[test]
    fn dingtalk_bodies_and_signature() {
        let url = "https://oapi.dingtalk.com/robot/send?access_token=t0k";
        let settings = json!({"provider": "dingtalk", "url": url, "template": "${id} down",
            "mentions": ["13800001111", "user1", "all"]});
        let (u, body) = body_of(settings, &plain(&["e1"]));
        assert_eq!(u.as_str(), url);
        assert_eq!(
            body,
            json!({"msgtype": "text", "text": {"content": "e1 down\n@13800001111 @user1"},
                "at": {"atMobiles": ["13800001111"], "atUserIds": ["user1"], "isAtAll": true}})
        );
        let settings = json!({"provider": "dingtalk", "url": format!("{url}&timestamp=1&sign=x"),
            "format": "markdown", "template": "## ${product} alarm\n\n${id}", "secret": SECRET});
        let (u, body) = body_of(settings, &plain(&["e1"]));
        assert_eq!(
            body,
            json!({"msgtype": "markdown",
                "markdown": {"title": "CVM alarm", "text": "## CVM alarm\n\ne1"}})
        );
        // Any stale timestamp/sign is replaced; the sign is base64, then URL-encoded.
        assert_eq!(
            u.as_str(),
            "https://oapi.dingtalk.com/robot/send?access_token=t0k&timestamp=1714536000000\
             &sign=sbD%2F6qd2N6OnXj3plTIZowX0QSCzoW1RaVfQO9vYiWo%3D"
        );
        assert_eq!(
            dingtalk_sign(SECRET, T0_MS),
            "sbD/6qd2N6OnXj3plTIZowX0QSCzoW1RaVfQO9vYiWo="
        );
    }

    #[test]
    fn lark_bodies_and_signature() {
        let url = "https://open.feishu.cn/open-apis/bot/v2/hook/h00k";
        let settings = json!({"provider": "lark", "url": url, "template": "${id} down",
            "mentions": ["ou_1", "all"], "secret": SECRET});
        let (u, body) = body_of(settings, &plain(&["e1"]));
        assert_eq!(u.as_str(), url);
        assert_eq!(
            body,
            json!({"msg_type": "text", "content": {"text":
                "e1 down\n<at user_id=\"ou_1\"></at> <at user_id=\"all\">所有人</at>"},
                "timestamp": "1714536000",
                "sign": "DBL9kZoUsNGvl+X78cn/ScFiyI+gSkkjZFKOsetOBaU="})
        );
        let settings = json!({"provider": "lark", "url": url, "format": "markdown",
            "template": "**${id}**", "mentions": ["ou_1"]});
        let (_, body) = body_of(settings, &plain(&["e1", "e2"]));
        assert_eq!(
            body,
            json!({"msg_type": "interactive", "card": {
            "config": {"wide_screen_mode": true},
            "elements": [
                {"tag": "div", "text": {"tag": "lark_md", "content": "**e1**"}},
                {"tag": "hr"},
                {"tag": "div", "text": {"tag": "lark_md", "content": "**e2**"}},
                {"tag": "div", "text": {"tag": "lark_md", "content": "<at id=ou_1></at>"}},
            ]}})
        );
    }

    #[test]
    fn slack_bodies() {
        let url = "https://hooks.slack.com/services/T0/B0/s3cr3t";
        let settings = json!({"provider": "slack", "url": url, "template": "${id} <${data.m}>",
            "mentions": ["U123", "all"]});
        let mut e = (*event("e1")).clone();
        e.data = br#"{"m":"a&b"}"#.to_vec();
        let batch = [Outgoing::plain(Arc::new(e))];
        let (_, body) = body_of(settings, &batch);
        assert_eq!(body, json!({"text": "e1 <a&amp;b>\n<@U123> <!channel>"}));
        let settings = json!({"provider": "slack", "url": url, "format": "markdown"});
        let (_, body) = body_of(settings, &plain(&["e1", "e2"]));
        let section = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            section.starts_with("*[CVM] Alarm notification*\n*Event*: cvm:ErrorEvent:"),
            "{section}"
        );
        assert_eq!(body["text"], "*[CVM] Alarm notification*");
        assert_eq!(body["blocks"][0]["type"], "section");
        assert_eq!(body["blocks"][0]["text"]["type"], "mrkdwn");
        assert_eq!(body["blocks"][1], json!({"type": "divider"}));
        assert_eq!(body["blocks"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn transformation_outputs_replace_the_event() {
        let t = target(json!({"provider": "wecom", "url": URL,
            "template": "${msg} at ${time} (${type})"}));
        let batch = [
            Outgoing::transformed(event("e1"), Output::Text("exactly ${this}".into())),
            Outgoing::transformed(event("e3"), Output::Json(json!("a JSON string"))),
            Outgoing::transformed(
                event("e2"),
                Output::Json(json!({"msg": "disk full", "time": T0_MS})),
            ),
        ];
        let (_, body) = t.request(&batch, now());
        assert_eq!(
            body["text"]["content"],
            "exactly ${this}\n---\na JSON string\n---\ndisk full at 2024-05-01 04:00:00 UTC ()"
        );
    }

    #[test]
    fn batches_are_one_message_and_long_ones_are_cut_to_the_limit() {
        let t = target(json!({"provider": "wecom", "url": URL, "template": "${id}"}));
        let (_, body) = t.request(&plain(&["e1", "e2", "e3"]), now());
        assert_eq!(body["text"]["content"], "e1\n---\ne2\n---\ne3");
        assert!(t.supports_batches());

        // WeCom text holds 2048 bytes: 100 events of ~100 bytes do not fit.
        let t = target(json!({"provider": "wecom", "url": URL,
            "template": format!("${{id}} {}", "é".repeat(48)), "mentions": ["u1"]}));
        let ids: Vec<String> = (0..100).map(|i| format!("e{i:02}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (_, body) = t.request(&plain(&ids), now());
        let content = body["text"]["content"].as_str().unwrap();
        assert!(content.len() <= 2048, "{}", content.len());
        assert!(content.starts_with("e00 é"));
        let shown = content.matches("\n---\n").count();
        assert!(
            content.ends_with(&format!("… {} more events not shown", 100 - shown)),
            "{content}"
        );
        // One event longer than the limit is cut, not dropped.
        let t = target(json!({"provider": "wecom", "url": URL, "template": "${data.big}"}));
        let mut e = (*event("e1")).clone();
        e.data = serde_json::to_vec(&json!({"big": "x".repeat(5000)})).unwrap();
        let (_, body) = t.request(&[Outgoing::plain(Arc::new(e))], now());
        let content = body["text"]["content"].as_str().unwrap();
        assert!(
            content.len() <= 2048 && content.ends_with("x…"),
            "{}",
            content.len()
        );
    }

    // ---- answers ----

    fn answer(
        provider: Provider,
        status: u16,
        body: &str,
    ) -> std::result::Result<Delivered, SendError> {
        check_answer(
            provider,
            reqwest::StatusCode::from_u16(status).unwrap(),
            None,
            body.as_bytes(),
        )
    }

    #[test]
    fn robot_answers_are_checked() {
        let ok = Ok(Delivered { status: Some(200) });
        assert_eq!(
            answer(Provider::WeCom, 200, r#"{"errcode":0,"errmsg":"ok"}"#),
            ok
        );
        assert_eq!(
            answer(Provider::DingTalk, 200, r#"{"errcode":0,"errmsg":"ok"}"#),
            ok
        );
        assert_eq!(
            answer(
                Provider::Lark,
                200,
                r#"{"code":0,"msg":"success","data":{}}"#
            ),
            ok
        );
        assert_eq!(
            answer(
                Provider::Lark,
                200,
                r#"{"Extra":null,"StatusCode":0,"StatusMessage":"success"}"#
            ),
            ok
        );
        assert_eq!(answer(Provider::Slack, 200, "ok"), ok);

        let err = answer(
            Provider::WeCom,
            200,
            r#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [x]"}"#,
        )
        .unwrap_err();
        assert_eq!(
            (err.retryable, err.status, err.message.as_str()),
            (
                false,
                Some(200),
                "wecom errcode 93000: invalid webhook url, hint: [x]"
            )
        );
        for (provider, body) in [
            (
                Provider::WeCom,
                r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#,
            ),
            (Provider::WeCom, r#"{"errcode":-1,"errmsg":"system busy"}"#),
            (
                Provider::DingTalk,
                r#"{"errcode":130101,"errmsg":"send too fast"}"#,
            ),
            (
                Provider::DingTalk,
                r#"{"errcode":410100,"errmsg":"rate limited"}"#,
            ),
            (
                Provider::Lark,
                r#"{"code":11232,"msg":"frequency limited"}"#,
            ),
        ] {
            let err = answer(provider, 200, body).unwrap_err();
            assert!(err.retryable, "{body}");
        }
        // Lark answers rate limits with HTTP 400.
        let err = answer(
            Provider::Lark,
            400,
            r#"{"code":11232,"msg":"frequency limited"}"#,
        )
        .unwrap_err();
        assert!(err.retryable);
        assert_eq!(err.status, Some(400));
        let err = answer(
            Provider::Lark,
            200,
            r#"{"code":19021,"msg":"sign match fail"}"#,
        )
        .unwrap_err();
        assert_eq!(
            (err.retryable, err.message.as_str()),
            (false, "lark code 19021: sign match fail")
        );
        let err = answer(
            Provider::DingTalk,
            200,
            r#"{"errcode":310000,"errmsg":"sign not match"}"#,
        )
        .unwrap_err();
        assert_eq!(err.message, "dingtalk errcode 310000: sign not match");
        assert!(!err.retryable);
        let err = answer(Provider::WeCom, 200, "<html>proxy</html>").unwrap_err();
        assert!(!err.retryable);
        assert!(
            err.message.contains("without a result code"),
            "{}",
            err.message
        );
        // Slack says what is wrong with a 4xx and a word.
        let err = answer(Provider::Slack, 404, "channel_not_found").unwrap_err();
        assert_eq!(
            (err.retryable, err.message.as_str()),
            (false, "HTTP 404 Not Found: channel_not_found")
        );
        let err = answer(Provider::Slack, 200, "invalid_payload").unwrap_err();
        assert!(!err.retryable);
        for status in [429, 500, 503] {
            assert!(answer(Provider::WeCom, status, "").unwrap_err().retryable);
        }
    }

    // ---- settings ----

    fn refused_path(settings: Value) -> String {
        super::super::refused_path(
            NotifySettings::parse(&settings),
            &settings,
            &["k3y", SECRET],
        )
    }

    #[test]
    fn defaults_and_accepted_settings() {
        let s = NotifySettings::parse(&json!({"provider": "slack", "url": URL})).unwrap();
        assert_eq!(s.provider(), Provider::Slack);
        assert_eq!(s.format(), Format::Text);
        assert_eq!(s.timeout(), Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert!(!s.is_signed());
        assert!(s.mentions().is_empty());
        let s = NotifySettings::parse(&json!({
            "provider": "dingtalk", "url": URL, "format": "markdown", "template": "x",
            "secret": SECRET, "mentions": ["all", "+8613800001111", "all"], "timeout_ms": 1,
            "lang": "zh", "utc_offset": "-05:30",
        }))
        .unwrap();
        assert!(s.is_signed());
        assert_eq!(
            s.mentions(),
            [Mention::All, Mention::Mobile("+8613800001111".into())]
        );
        let nulls = json!({"provider": "lark", "url": URL, "format": null, "template": null,
            "secret": null, "mentions": null, "timeout_ms": null, "lang": null,
            "utc_offset": null});
        assert!(NotifySettings::parse(&nulls).is_ok());
        assert!(
            NotifySettings::parse(&json!({"provider": "wecom", "url": URL,
            "template": "é".repeat(MAX_TEMPLATE_CHARS)}))
            .is_ok()
        );
        assert!(
            super::super::validate("notify", &json!({"provider": "wecom", "url": URL})).is_ok()
        );
        assert!(
            super::super::build(
                &json!({"type": "notify", "notify": {"provider": "wecom", "url": URL}}),
                &super::super::TargetEnv::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn every_refusal_names_its_field() {
        let base = |extra: Value| {
            let mut v = json!({"provider": "wecom", "url": URL});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let cases = [
            (json!(null), "$.notify"),
            (json!([]), "$.notify"),
            (json!({"url": URL}), "$.notify.provider"),
            (base(json!({"provider": "teams"})), "$.notify.provider"),
            (base(json!({"provider": 1})), "$.notify.provider"),
            (json!({"provider": "wecom"}), "$.notify.url"),
            (base(json!({"url": "ftp://x/y"})), "$.notify.url"),
            (base(json!({"url": "not a url"})), "$.notify.url"),
            (base(json!({"url": 5})), "$.notify.url"),
            (
                base(json!({"url": "https://h/send?key=<redacted>"})),
                "$.notify.url",
            ),
            (base(json!({"format": "html"})), "$.notify.format"),
            (base(json!({"template": ""})), "$.notify.template"),
            (base(json!({"template": 5})), "$.notify.template"),
            (base(json!({"template": "${unclosed"})), "$.notify.template"),
            (
                base(json!({"template": "x".repeat(MAX_TEMPLATE_CHARS + 1)})),
                "$.notify.template",
            ),
            (base(json!({"secret": SECRET})), "$.notify.secret"),
            (
                base(json!({"provider": "slack", "secret": SECRET})),
                "$.notify.secret",
            ),
            (
                base(json!({"provider": "lark", "secret": ""})),
                "$.notify.secret",
            ),
            (
                base(json!({"provider": "lark", "secret": 7})),
                "$.notify.secret",
            ),
            (base(json!({"mentions": "all"})), "$.notify.mentions"),
            (
                base(json!({"mentions": vec!["u"; MAX_MENTIONS + 1]})),
                "$.notify.mentions",
            ),
            (
                base(json!({"mentions": ["ok", "<at>"]})),
                "$.notify.mentions[1]",
            ),
            (base(json!({"mentions": [""]})), "$.notify.mentions[0]"),
            (base(json!({"mentions": [5]})), "$.notify.mentions[0]"),
            (
                base(json!({"provider": "lark", "mentions": ["13800001111"]})),
                "$.notify.mentions[0]",
            ),
            (
                base(json!({"provider": "slack", "mentions": ["13800001111"]})),
                "$.notify.mentions[0]",
            ),
            (
                base(json!({"format": "markdown", "mentions": ["all"]})),
                "$.notify.mentions[0]",
            ),
            (base(json!({"timeout_ms": 0})), "$.notify.timeout_ms"),
            (base(json!({"timeout_ms": 300_001})), "$.notify.timeout_ms"),
            (base(json!({"timeout_ms": "5"})), "$.notify.timeout_ms"),
            (base(json!({"lang": "fr"})), "$.notify.lang"),
            (base(json!({"utc_offset": "+8"})), "$.notify.utc_offset"),
            (base(json!({"utc_offset": "+24:00"})), "$.notify.utc_offset"),
            (base(json!({"utc_offset": 8})), "$.notify.utc_offset"),
            (base(json!({"channels": ["email"]})), "$.notify.channels"),
        ];
        for (settings, path) in cases {
            assert_eq!(refused_path(settings.clone()), path, "{settings}");
        }
    }

    #[test]
    fn debug_output_redacts_the_url_key_and_secret() {
        for url in [
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k3y",
            "https://open.feishu.cn/open-apis/bot/v2/hook/k3y",
        ] {
            let s = NotifySettings::parse(&json!({"provider": "lark", "url": url,
                "secret": SECRET}))
            .unwrap();
            let t = NotifyTarget::new(s.clone()).unwrap();
            for text in [format!("{s:?}"), format!("{t:?}")] {
                for leak in ["k3y", SECRET, "hook", "webhook"] {
                    assert!(!text.contains(leak), "{leak} in {text}");
                }
                assert!(text.contains("https://"), "{text}");
            }
        }
    }
}
