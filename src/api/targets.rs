//! `…/rules/{rule}/targets`, one target, its cursor (`seek`) and its dead letters.
//!
//! Target reads carry the binding's live `"delivery"` status. Credentials in a target body
//! (`http.secret`, header values whose names look like credentials, `notify.secret` and the
//! robot key in a `notify.url`) are replaced by [`REDACTED`] in every response; a PATCH that
//! sends the placeholder back keeps the stored value, so read-modify-write round trips do not
//! erase secrets.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::body::{JsonBody, page_limit, query_params};
use super::error::{ApiError, ApiResult, ErrorBody, codes};
use super::{AppState, blocking, created};
use crate::catalog::{BindingId, DeadLetter, TargetMeta};
use crate::delivery::{BindingStatus, SeekTo};

/// What responses show instead of a credential.
pub const REDACTED: &str = "<redacted>";

/// Header names whose values are treated as credentials.
fn is_sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "secret",
        "key",
        "password",
        "signature",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// What responses show instead of a password inside a target URL (`http://user:***@host/`).
pub const REDACTED_URL_PASSWORD: &str = "***";

/// The URL with its password (if any) replaced by [`REDACTED_URL_PASSWORD`].
fn redact_url(url: &str) -> Option<String> {
    let mut u = reqwest::Url::parse(url).ok()?;
    u.password()?;
    u.set_password(Some(REDACTED_URL_PASSWORD)).ok()?;
    Some(u.to_string())
}

/// A `notify` webhook URL as responses show it: the robot's key is in its query (WeCom
/// `?key=`, DingTalk `?access_token=`) or its path (Lark, Slack), so every query value is
/// [`REDACTED`], and so is the whole path except for WeCom and DingTalk, whose paths are the
/// fixed API paths; a password becomes [`REDACTED_URL_PASSWORD`] and a fragment is dropped.
/// An unparsable URL is [`REDACTED`] whole.
pub fn redact_notify_url(url: &str, provider: Option<&str>) -> String {
    let Ok(u) = reqwest::Url::parse(url) else {
        return REDACTED.into();
    };
    let mut out = format!("{}://", u.scheme());
    if !u.username().is_empty() || u.password().is_some() {
        out.push_str(u.username());
        if u.password().is_some() {
            out.push(':');
            out.push_str(REDACTED_URL_PASSWORD);
        }
        out.push('@');
    }
    out.push_str(u.host_str().unwrap_or_default());
    if let Some(port) = u.port() {
        out.push_str(&format!(":{port}"));
    }
    let path = u.path();
    if matches!(provider, Some("wecom" | "dingtalk")) || path.is_empty() || path == "/" {
        out.push_str(path);
    } else {
        out.push('/');
        out.push_str(REDACTED);
    }
    if let Some(query) = u.query() {
        let pairs: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| format!("{}={REDACTED}", p.split('=').next().unwrap_or_default()))
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Redacts a `notify` target's webhook URL ([`redact_notify_url`]) and `secret`.
fn redact_notify(body: &mut Value) {
    let Some(notify) = body.get_mut("notify").and_then(Value::as_object_mut) else {
        return;
    };
    let provider = notify
        .get("provider")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(Value::String(url)) = notify.get_mut("url") {
        *url = redact_notify_url(url, provider.as_deref());
    }
    if let Some(s) = notify.get_mut("secret")
        && s.is_string()
    {
        *s = Value::String(REDACTED.into());
    }
}

/// Removes a `notify` target's placeholders from a merge patch (`stored`: the stored body): a
/// `secret` of [`REDACTED`] keeps the stored secret; a `url` equal to the stored URL's
/// redacted form keeps the stored URL; in another URL, redacted query values, a redacted path
/// and a redacted password are filled in from the stored URL (a placeholder left over is
/// refused by validation, never stored).
fn drop_notify_placeholders(patch: &mut Value, stored: &Value) {
    let Some(notify) = patch.get_mut("notify").and_then(Value::as_object_mut) else {
        return;
    };
    if notify.get("secret").and_then(Value::as_str) == Some(REDACTED) {
        notify.remove("secret");
    }
    let Some(stored_url) = stored.pointer("/notify/url").and_then(Value::as_str) else {
        return;
    };
    let provider = stored.pointer("/notify/provider").and_then(Value::as_str);
    let Some(Value::String(url)) = notify.get_mut("url") else {
        return;
    };
    if !url.contains(REDACTED) && !url.contains(REDACTED_URL_PASSWORD) {
        return;
    }
    if *url == redact_notify_url(stored_url, provider) {
        notify.remove("url");
    } else if let Some(restored) = restore_url(url, stored_url) {
        *url = restored;
    }
}

/// `url` with its redacted parts taken from `stored`: the password, a path holding the
/// placeholder, and query values that are the placeholder (by name).
fn restore_url(url: &str, stored: &str) -> Option<String> {
    const ENCODED: &str = "%3Credacted%3E";
    let mut u = reqwest::Url::parse(url).ok()?;
    let s = reqwest::Url::parse(stored).ok()?;
    if u.password() == Some(REDACTED_URL_PASSWORD) {
        u.set_password(s.password()).ok()?;
    }
    if u.path().contains(ENCODED) {
        u.set_path(s.path());
    }
    if u.query_pairs().any(|(_, v)| v == REDACTED) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if v == REDACTED {
                    s.query_pairs()
                        .find(|(sk, _)| *sk == k)
                        .map_or(v.clone(), |(_, sv)| sv)
                } else {
                    v
                };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Some(u.to_string())
}

/// Replaces credentials in a target body by [`REDACTED`] (a URL's password by
/// [`REDACTED_URL_PASSWORD`]): `http.secret`, credential-like `http.headers`, an `http.url`
/// password, and a `notify` target's webhook URL key and `secret` ([`redact_notify_url`]).
pub fn redact(body: &mut Value) {
    redact_notify(body);
    let Some(http) = body.get_mut("http").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(Value::String(url)) = http.get_mut("url")
        && let Some(redacted) = redact_url(url)
    {
        *url = redacted;
    }
    if let Some(s) = http.get_mut("secret")
        && s.is_string()
    {
        *s = Value::String(REDACTED.into());
    }
    if let Some(headers) = http.get_mut("headers").and_then(Value::as_object_mut) {
        for (name, v) in headers.iter_mut() {
            if is_sensitive_header(name) && v.is_string() {
                *v = Value::String(REDACTED.into());
            }
        }
    }
}

/// Removes [`REDACTED`] placeholders from a merge patch, so they keep the stored values; a
/// URL whose password is the placeholder gets the stored URL's password back (`stored_url`).
fn drop_placeholders(patch: &mut Value, stored_url: Option<&str>) {
    let Some(http) = patch.get_mut("http").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(Value::String(url)) = http.get_mut("url")
        && let Ok(mut u) = reqwest::Url::parse(url)
        && u.password() == Some(REDACTED_URL_PASSWORD)
    {
        let stored = stored_url.and_then(|s| reqwest::Url::parse(s).ok());
        let password = stored.as_ref().and_then(|s| s.password());
        if u.set_password(password).is_ok() {
            *url = u.to_string();
        }
    }
    if http.get("secret").and_then(Value::as_str) == Some(REDACTED) {
        http.remove("secret");
    }
    if let Some(headers) = http.get_mut("headers").and_then(Value::as_object_mut) {
        headers.retain(|_, v| v.as_str() != Some(REDACTED));
    }
}

/// A target: its body (as created, credentials redacted), where it belongs, and its binding's
/// delivery status.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetView {
    /// The event set.
    pub set: String,
    /// The rule.
    pub rule: String,
    /// The target body: `name`, `type`, the type's settings, `retry`, `dead_letter`, `batch`,
    /// `ordered`, `start`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub body: Map<String, Value>,
    /// Created, epoch ms.
    pub created_ms: u64,
    /// Last changed, epoch ms.
    pub updated_ms: u64,
    /// The binding's delivery status: `state` (`running`, `paused` while the rule is
    /// disabled, `failed`, `starting`), `cursor`, `lag`, `in_flight`, `delivered`, `retrying`,
    /// `dead_lettered`, `dropped`, `failed_attempts`, `lost_to_retention`, `following`,
    /// `last_error` (docs/DELIVERY.md "Status").
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub delivery: Option<BindingStatus>,
}

fn view(meta: TargetMeta, delivery: Option<BindingStatus>) -> TargetView {
    let mut body: Value = serde_json::from_str(&meta.config).unwrap_or(Value::Null);
    redact(&mut body);
    TargetView {
        set: meta.set,
        rule: meta.rule,
        body: match body {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        created_ms: meta.created_ms,
        updated_ms: meta.updated_ms,
        delivery,
    }
}

/// `GET …/targets` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetList {
    /// The rule's targets, by name.
    pub targets: Vec<TargetView>,
}

type RulePath = Path<(String, String)>;
type TargetPath = Path<(String, String, String)>;

/// List a rule's targets, each with its delivery status.
#[utoipa::path(get, path = "/v1/event-sets/{set}/rules/{rule}/targets", tag = "targets",
    params(("set" = String, Path), ("rule" = String, Path)),
    responses((status = 200, body = TargetList), (status = 404, body = ErrorBody)))]
pub async fn list_targets(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule)): RulePath,
) -> ApiResult<Json<TargetList>> {
    caller.require_admin()?;
    let targets = blocking(&st, move |bus| bus.catalog().list_targets(&set, &rule)).await?;
    let mut views = Vec::with_capacity(targets.len());
    for t in targets {
        // A target deleted since the listing has no status any more; list it without.
        let status = st
            .inner
            .engine
            .status(&BindingId::new(&t.set, &t.rule, &t.name))
            .await
            .ok();
        views.push(view(t, status));
    }
    Ok(Json(TargetList { targets: views }))
}

/// Create a target (see the target body in INTERFACE.md).
#[utoipa::path(post, path = "/v1/event-sets/{set}/rules/{rule}/targets", tag = "targets",
    request_body(content = Object, description = "target body: name, type, http, retry, dead_letter, batch, ordered, start"),
    params(("set" = String, Path), ("rule" = String, Path)),
    responses((status = 201, body = TargetView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_target(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule)): RulePath,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    // What only the server knows: a `command` target must name a configured program.
    st.inner.engine.target_env().check(&body)?;
    let meta = blocking(&st, move |bus| {
        bus.catalog().create_target(&set, &rule, body)
    })
    .await?;
    Ok(created(view(meta, None)))
}

/// Read a target with its delivery status.
#[utoipa::path(get, path = "/v1/event-sets/{set}/rules/{rule}/targets/{target}", tag = "targets",
    params(("set" = String, Path), ("rule" = String, Path), ("target" = String, Path)),
    responses((status = 200, body = TargetView), (status = 404, body = ErrorBody)))]
pub async fn get_target(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule, target)): TargetPath,
) -> ApiResult<Json<TargetView>> {
    caller.require_admin()?;
    let id = BindingId::new(&set, &rule, &target);
    let meta = blocking(&st, move |bus| {
        bus.catalog().get_target(&set, &rule, &target)
    })
    .await?;
    let status = st.inner.engine.status(&id).await?;
    Ok(Json(view(meta, Some(status))))
}

/// Update a target with a JSON merge patch (RFC 7386) of its body.
#[utoipa::path(patch, path = "/v1/event-sets/{set}/rules/{rule}/targets/{target}", tag = "targets",
    request_body(content = Object, description = "JSON merge patch of the target body"),
    params(("set" = String, Path), ("rule" = String, Path), ("target" = String, Path)),
    responses((status = 200, body = TargetView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_target(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule, target)): TargetPath,
    JsonBody(mut patch): JsonBody<Value>,
) -> ApiResult<Json<TargetView>> {
    caller.require_admin()?;
    let env = st.inner.engine.target_env().clone();
    let meta = blocking(&st, move |bus| {
        let cat = bus.catalog();
        let stored: Value = serde_json::from_str(&cat.get_target(&set, &rule, &target)?.config)
            .unwrap_or(Value::Null);
        drop_placeholders(
            &mut patch,
            stored.pointer("/http/url").and_then(Value::as_str),
        );
        drop_notify_placeholders(&mut patch, &stored);
        // The body as it would be stored, against what only the server knows.
        cat.update_target_checked(&set, &rule, &target, patch, |body| env.check(body))
    })
    .await?;
    Ok(Json(view(meta, None)))
}

/// Delete a target with its cursor, retries and dead letters.
#[utoipa::path(delete, path = "/v1/event-sets/{set}/rules/{rule}/targets/{target}", tag = "targets",
    params(("set" = String, Path), ("rule" = String, Path), ("target" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_target(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule, target)): TargetPath,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    blocking(&st, move |bus| {
        bus.catalog().delete_target(&set, &rule, &target)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/seek` body: exactly one of `offset` and `time`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeekBody {
    /// Move the cursor to this offset (at most the end of the log).
    pub offset: Option<u64>,
    /// Move the cursor to the first event ingested at or after this time (epoch ms).
    pub time: Option<u64>,
}

/// `POST …/seek` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeekResult {
    /// The cursor now, durable.
    pub cursor: u64,
}

/// Move a binding's cursor; durable before the response. Retries and dead letters stay.
#[utoipa::path(post, path = "/v1/event-sets/{set}/rules/{rule}/targets/{target}/seek", tag = "targets",
    request_body = SeekBody,
    params(("set" = String, Path), ("rule" = String, Path), ("target" = String, Path)),
    responses((status = 200, body = SeekResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn seek(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule, target)): TargetPath,
    JsonBody(body): JsonBody<SeekBody>,
) -> ApiResult<Json<SeekResult>> {
    caller.require_admin()?;
    let to = match (body.offset, body.time) {
        (Some(o), None) => SeekTo::Offset(o),
        (None, Some(t)) => SeekTo::Time(t),
        _ => {
            return Err(ApiError::invalid(
                codes::INVALID_PARAMETER,
                "$",
                "give exactly one of `offset` and `time`",
            ));
        }
    };
    let id = BindingId::new(&set, &rule, &target);
    let cursor = st.inner.engine.seek(&id, to).await?;
    Ok(Json(SeekResult { cursor }))
}

/// Query of `GET …/dead-letters`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// Only dead letters with an offset above this (the previous page's `after`).
    pub after: Option<u64>,
    /// Page size, 1–1000. Default = 100.
    pub limit: Option<usize>,
}

/// One dead letter.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// The event's offset.
    pub offset: u64,
    /// When the log accepted it, epoch ms.
    pub ingest_time_ms: u64,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: String,
    /// When it was dead-lettered, epoch ms.
    pub dead_lettered_ms: u64,
    /// The event.
    #[schema(value_type = Object)]
    pub event: Value,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        DeadLetterView {
            offset: d.offset,
            ingest_time_ms: d.ingest_time_ms,
            attempts: d.attempts,
            last_error: d.last_error,
            dead_lettered_ms: d.dead_lettered_ms,
            event: d.event.to_json(),
        }
    }
}

/// `GET …/dead-letters` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterList {
    /// Oldest offset first.
    pub dead_letters: Vec<DeadLetterView>,
    /// Pass as `after` for the next page; null on the last page.
    pub after: Option<u64>,
}

/// List a binding's dead letters, oldest first.
#[utoipa::path(get, path = "/v1/event-sets/{set}/rules/{rule}/targets/{target}/dead-letters", tag = "targets",
    params(("set" = String, Path), ("rule" = String, Path), ("target" = String, Path), DeadLetterQuery),
    responses((status = 200, body = DeadLetterList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_dead_letters(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule, target)): TargetPath,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<DeadLetterList>> {
    caller.require_admin()?;
    let q = query_params(query)?;
    let limit = page_limit(q.limit)?;
    let id = BindingId::new(&set, &rule, &target);
    // The existence check (404 for an unknown set, rule or target).
    blocking(&st, move |bus| {
        bus.catalog().get_target(&set, &rule, &target)
    })
    .await?;
    let letters = st.inner.engine.dead_letters(&id, q.after, limit).await?;
    let after = (letters.len() == limit)
        .then(|| letters.last().map(|d| d.offset))
        .flatten();
    Ok(Json(DeadLetterList {
        dead_letters: letters.into_iter().map(Into::into).collect(),
        after,
    }))
}

/// `POST …/dead-letters/redrive` body; empty or `{}` redrives all.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveBody {
    /// Only these offsets. Default = all.
    pub offsets: Option<Vec<u64>>,
}

/// `POST …/dead-letters/redrive` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedriveResult {
    /// Dead letters sent back to delivery (with a fresh attempt count).
    pub redriven: usize,
}

/// Send dead letters through delivery again.
#[utoipa::path(post, path = "/v1/event-sets/{set}/rules/{rule}/targets/{target}/dead-letters/redrive", tag = "targets",
    request_body = RedriveBody,
    params(("set" = String, Path), ("rule" = String, Path), ("target" = String, Path)),
    responses((status = 200, body = RedriveResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn redrive_dead_letters(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule, target)): TargetPath,
    super::body::RawBody(raw): super::body::RawBody,
) -> ApiResult<Json<RedriveResult>> {
    caller.require_admin()?;
    let body: RedriveBody = if raw.iter().all(u8::is_ascii_whitespace) {
        RedriveBody::default()
    } else {
        super::body::parse_json(&raw)?
    };
    let id = BindingId::new(&set, &rule, &target);
    blocking(&st, move |bus| {
        bus.catalog().get_target(&set, &rule, &target)
    })
    .await?;
    let redriven = st.inner.engine.redrive(&id, body.offsets).await?;
    Ok(Json(RedriveResult { redriven }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redact_hides_the_secret_and_credential_headers_only() {
        let mut b = json!({"name":"t","type":"http","http":{"url":"http://x","secret":"whsec_abc",
            "headers":{"Authorization":"Bearer s3cret","X-Api-Key":"k","X-Team":"ops"}}});
        redact(&mut b);
        let text = b.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("whsec_abc"),
            "{text}"
        );
        assert_eq!(b["http"]["headers"]["X-Team"], "ops");
        assert_eq!(b["http"]["headers"]["X-Api-Key"], REDACTED);
        assert_eq!(b["http"]["secret"], REDACTED);
        let mut b = json!({"http":{"url":"http://user:pa55@127.0.0.1:9/hook"}});
        redact(&mut b);
        assert_eq!(b["http"]["url"], "http://user:***@127.0.0.1:9/hook");
    }

    #[test]
    fn redact_hides_notify_keys_and_secret() {
        let cases = [
            (
                "wecom",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<redacted>",
            ),
            (
                "dingtalk",
                "https://oapi.dingtalk.com/robot/send?access_token=abc123&x=1",
                "https://oapi.dingtalk.com/robot/send?access_token=<redacted>&x=<redacted>",
            ),
            (
                "lark",
                "https://open.feishu.cn/open-apis/bot/v2/hook/abc123",
                "https://open.feishu.cn/<redacted>",
            ),
            (
                "slack",
                "https://hooks.slack.com/services/T000/B000/abc123",
                "https://hooks.slack.com/<redacted>",
            ),
            (
                "slack",
                "http://u:abc123@127.0.0.1:9000/services/T0/B0/abc123?k=abc123#frag",
                "http://u:***@127.0.0.1:9000/<redacted>?k=<redacted>",
            ),
        ];
        for (provider, url, shown) in cases {
            let mut b = json!({"name": "t", "type": "notify",
                "notify": {"provider": provider, "url": url, "secret": "SECabc123",
                    "template": "${subject}"}});
            redact(&mut b);
            assert!(!b.to_string().contains("abc123"), "{b}");
            assert_eq!(b["notify"]["url"], shown);
            assert_eq!(b["notify"]["secret"], REDACTED);
            assert_eq!(b["notify"]["template"], "${subject}");
        }
        assert_eq!(
            redact_notify_url("not a url abc123", Some("wecom")),
            REDACTED
        );
    }

    #[test]
    fn notify_placeholders_in_a_patch_keep_stored_values() {
        let stored = json!({"notify": {"provider": "wecom",
            "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k3y", "secret": "s"}});
        // The body as read, sent back with one change.
        let mut read = stored.clone();
        redact(&mut read);
        let mut p = json!({"notify": read["notify"].clone()});
        p["notify"]["format"] = json!("markdown");
        drop_notify_placeholders(&mut p, &stored);
        assert_eq!(
            p,
            json!({"notify": {"provider": "wecom", "format": "markdown"}})
        );
        // A changed URL keeps the stored key where it still shows the placeholder.
        let mut p = json!({"notify": {
            "url": "https://new.example.com/cgi-bin/webhook/send?key=<redacted>&debug=1"}});
        drop_notify_placeholders(&mut p, &stored);
        assert_eq!(
            p["notify"]["url"],
            "https://new.example.com/cgi-bin/webhook/send?key=k3y&debug=1"
        );
        // Lark and Slack: the path is the key.
        let stored = json!({"notify": {"provider": "slack",
            "url": "https://hooks.slack.com/services/T0/B0/s3cr3t"}});
        let mut p = json!({"notify": {"url": "https://hooks.slack.com/<redacted>"}});
        drop_notify_placeholders(&mut p, &stored);
        assert_eq!(p, json!({"notify": {}}));
        let mut p = json!({"notify": {"url": "http://proxy:8080/<redacted>"}});
        drop_notify_placeholders(&mut p, &stored);
        assert_eq!(
            p["notify"]["url"],
            "http://proxy:8080/services/T0/B0/s3cr3t"
        );
        // A new URL is left alone.
        let mut p = json!({"notify": {"url": "https://hooks.slack.com/services/T1/B1/new"}});
        drop_notify_placeholders(&mut p, &stored);
        assert_eq!(
            p["notify"]["url"],
            "https://hooks.slack.com/services/T1/B1/new"
        );
    }

    #[test]
    fn placeholders_in_a_patch_keep_stored_values() {
        let mut p = json!({"http":{"secret":REDACTED,"timeout_ms":10,
            "headers":{"Authorization":REDACTED,"X-New":"v"}}});
        drop_placeholders(&mut p, None);
        assert_eq!(p, json!({"http":{"timeout_ms":10,"headers":{"X-New":"v"}}}));
        let mut p = json!({"http":{"url":"http://u:***@h:1/new"}});
        drop_placeholders(&mut p, Some("http://u:pw@h:1/old"));
        assert_eq!(p, json!({"http":{"url":"http://u:pw@h:1/new"}}));
    }
}
