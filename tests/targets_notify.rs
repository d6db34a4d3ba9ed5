//! Scenario: `notify` targets against local stand-in chat robots (WeCom, DingTalk, Lark,
//! Slack) on 127.0.0.1: each provider gets the body its API documents, robot error codes fail
//! the send (retryably for rate limits), signatures are checked by the robot the way the real
//! one does, and through the delivery engine a rate-limited message is delivered on the
//! second attempt while a refused one is dead-lettered with the robot's code.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::Uri;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use eventbus::bus::{BusConfig, EventBus, Producer, PutEntry};
use eventbus::catalog::{BindingId, RuleSpec};
use eventbus::delivery::{BindingStatus, Engine, EngineOptions};
use eventbus::event::Event;
use eventbus::targets::{Outgoing, SendError, Target, TargetEnv};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "SECb6f4e9d2c1a0";
/// Rules on the cloud service event set, as Tencent's alarm push has them.
const SET: &str = eventbus::catalog::DEFAULT_SET;

/// Which API the stand-in speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    WeCom,
    DingTalk,
    Lark,
    Slack,
}

/// One request as the robot saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: BTreeMap<String, String>,
    body: Value,
}

#[derive(Clone)]
struct Robot {
    kind: Kind,
    /// The signing secret the robot is configured with (DingTalk, Lark).
    secret: Option<String>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Scripted answers (status, body), used in order; then the provider's success answer.
    script: Arc<Mutex<VecDeque<(u16, String)>>>,
    url: String,
}

fn hmac(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    BASE64.encode(mac.finalize().into_bytes())
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

impl Robot {
    async fn start(kind: Kind, secret: Option<&str>) -> Robot {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The provider's URL shape, with the key where the real one carries it.
        let url = match kind {
            Kind::WeCom => format!("http://{addr}/cgi-bin/webhook/send?key=k3y"),
            Kind::DingTalk => format!("http://{addr}/robot/send?access_token=t0k3n"),
            Kind::Lark => format!("http://{addr}/open-apis/bot/v2/hook/h00k"),
            Kind::Slack => format!("http://{addr}/services/T0/B0/s1ack"),
        };
        let robot = Robot {
            kind,
            secret: secret.map(str::to_string),
            seen: Arc::default(),
            script: Arc::default(),
            url,
        };
        let app = Router::new().fallback(answer).with_state(robot.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        robot
    }

    fn then(&self, status: u16, body: &str) -> &Robot {
        self.script
            .lock()
            .unwrap()
            .push_back((status, body.to_string()));
        self
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn ok_answer(&self) -> String {
        match self.kind {
            Kind::WeCom | Kind::DingTalk => r#"{"errcode":0,"errmsg":"ok"}"#.into(),
            Kind::Lark => r#"{"code":0,"msg":"success","data":{}}"#.into(),
            Kind::Slack => "ok".into(),
        }
    }

    /// Checks the request the way the real robot does; `Some(answer)` refuses it.
    fn refusal(
        &self,
        path: &str,
        query: &BTreeMap<String, String>,
        body: &Value,
    ) -> Option<String> {
        match self.kind {
            Kind::WeCom => {
                if path != "/cgi-bin/webhook/send"
                    || query.get("key").map(String::as_str) != Some("k3y")
                {
                    return Some(r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#.into());
                }
            }
            Kind::DingTalk => {
                if query.get("access_token").map(String::as_str) != Some("t0k3n") {
                    return Some(r#"{"errcode":300001,"errmsg":"token is not exist"}"#.into());
                }
                if let Some(secret) = &self.secret {
                    // DingTalk: timestamp (ms) within an hour; sign = base64(HMAC-SHA256(secret,
                    // "{timestamp}\n{secret}")), URL-encoded (decoded here by the query parser).
                    let ts = query.get("timestamp").and_then(|t| t.parse::<i64>().ok());
                    let sign = query.get("sign");
                    let fresh = ts.is_some_and(|ts| (now_ms() - ts).abs() < 3_600_000);
                    let expected =
                        ts.map(|ts| hmac(secret.as_bytes(), format!("{ts}\n{secret}").as_bytes()));
                    if !fresh || sign.is_none() || sign != expected.as_ref() {
                        return Some(r#"{"errcode":310000,"errmsg":"sign not match"}"#.into());
                    }
                }
            }
            Kind::Lark => {
                if let Some(secret) = &self.secret {
                    // Lark: timestamp (s) and sign in the body; sign = base64(HMAC-SHA256(key =
                    // "{timestamp}\n{secret}", empty message)).
                    let ts = body["timestamp"]
                        .as_str()
                        .and_then(|t| t.parse::<i64>().ok());
                    let fresh = ts.is_some_and(|ts| (now_ms() / 1000 - ts).abs() < 3600);
                    let expected = ts.map(|ts| hmac(format!("{ts}\n{secret}").as_bytes(), b""));
                    if !fresh || body["sign"].as_str() != expected.as_deref() {
                        return Some(
                            r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#
                                .into(),
                        );
                    }
                }
            }
            Kind::Slack => {}
        }
        None
    }
}

async fn answer(
    State(robot): State<Robot>,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> (axum::http::StatusCode, String) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    robot.seen.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        query: query.clone(),
        body: body.clone(),
    });
    if let Some(refusal) = robot.refusal(uri.path(), &query, &body) {
        return (axum::http::StatusCode::OK, refusal);
    }
    let (status, text) = robot
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| (200, robot.ok_answer()));
    (axum::http::StatusCode::from_u16(status).unwrap(), text)
}

fn alarm(id: &str) -> Arc<Event> {
    let mut e = Event::new(id, "cvm.cloud.tencent", "cvm:ErrorEvent:PingUnreachable");
    e.time_ms = 1_714_536_000_000;
    e.subject = Some("ins-7".into());
    e.region = Some("ap-guangzhou".into());
    e.status = Some("1".into());
    e.data = br#"{"instanceId":"ins-7","ip":"10.0.0.7"}"#.to_vec();
    Arc::new(e)
}

fn notify(settings: Value) -> Arc<dyn Target> {
    eventbus::targets::build(
        &json!({"name": "t", "type": "notify", "notify": settings}),
        &TargetEnv::default(),
    )
    .unwrap()
}

async fn send(target: &Arc<dyn Target>, ids: &[&str]) -> Result<(), SendError> {
    let batch: Vec<Outgoing> = ids.iter().map(|id| Outgoing::plain(alarm(id))).collect();
    target.send(&batch).await.map(drop)
}

const DEFAULT_EN: &str = "[CVM] Alarm notification\nEvent: cvm:ErrorEvent:PingUnreachable\n\
    Product: CVM\nResource: ins-7\nRegion: ap-guangzhou\nTime: 2024-05-01 12:00:00 +08:00\n\
    Status: abnormal";

#[tokio::test]
async fn notify_each_provider_gets_its_documented_body() {
    // WeCom: text with mentions, then markdown.
    let wecom = Robot::start(Kind::WeCom, None).await;
    let t = notify(
        json!({"provider": "wecom", "url": wecom.url, "utc_offset": "+08:00",
        "mentions": ["all", "13800001111"]}),
    );
    send(&t, &["e1"]).await.unwrap();
    let t = notify(
        json!({"provider": "wecom", "url": wecom.url, "format": "markdown",
        "template": "**${product}** ${subject}: ${data.ip}"}),
    );
    send(&t, &["e2"]).await.unwrap();
    let seen = wecom.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].body,
        json!({"msgtype": "text", "text": {"content": DEFAULT_EN,
            "mentioned_list": ["@all"], "mentioned_mobile_list": ["13800001111"]}})
    );
    assert_eq!(
        seen[1].body,
        json!({"msgtype": "markdown", "markdown": {"content": "**CVM** ins-7: 10.0.0.7"}})
    );

    // DingTalk: text, then markdown with a title; a batch is one message.
    let ding = Robot::start(Kind::DingTalk, None).await;
    let t = notify(json!({"provider": "dingtalk", "url": ding.url,
        "template": "${id} ${status_text}", "mentions": ["13800001111"]}));
    send(&t, &["e1", "e2"]).await.unwrap();
    let t = notify(
        json!({"provider": "dingtalk", "url": ding.url, "format": "markdown",
        "lang": "zh", "utc_offset": "+08:00"}),
    );
    send(&t, &["e3"]).await.unwrap();
    let seen = ding.seen();
    assert_eq!(
        seen[0].body,
        json!({"msgtype": "text",
            "text": {"content": "e1 abnormal\n---\ne2 abnormal\n@13800001111"},
            "at": {"atMobiles": ["13800001111"], "atUserIds": [], "isAtAll": false}})
    );
    assert_eq!(seen[1].body["msgtype"], "markdown");
    assert_eq!(seen[1].body["markdown"]["title"], "【CVM】告警通知");
    assert_eq!(
        seen[1].body["markdown"]["text"],
        "**【CVM】告警通知**\n\n**告警事件**：cvm:ErrorEvent:PingUnreachable\n\n\
         **所属产品**：CVM\n\n**告警对象**：ins-7\n\n**地域**：ap-guangzhou\n\n\
         **时间**：2024-05-01 12:00:00 +08:00\n\n**状态**：异常"
    );
    assert!(
        !seen[1].query.contains_key("sign"),
        "unsigned without a secret"
    );

    // Lark: text, then an interactive card with a lark_md div per event.
    let lark = Robot::start(Kind::Lark, None).await;
    let t = notify(json!({"provider": "lark", "url": lark.url, "template": "${id} on ${subject}"}));
    send(&t, &["e1"]).await.unwrap();
    let t = notify(
        json!({"provider": "lark", "url": lark.url, "format": "markdown",
        "template": "**${id}** on ${subject}"}),
    );
    send(&t, &["e2", "e3"]).await.unwrap();
    let seen = lark.seen();
    assert_eq!(
        seen[0].body,
        json!({"msg_type": "text", "content": {"text": "e1 on ins-7"}})
    );
    assert_eq!(seen[0].path, "/open-apis/bot/v2/hook/h00k");
    assert_eq!(
        seen[1].body,
        json!({"msg_type": "interactive", "card": {"config": {"wide_screen_mode": true},
            "elements": [
                {"tag": "div", "text": {"tag": "lark_md", "content": "**e2** on ins-7"}},
                {"tag": "hr"},
                {"tag": "div", "text": {"tag": "lark_md", "content": "**e3** on ins-7"}}]}})
    );

    // Slack: text, then mrkdwn section blocks.
    let slack = Robot::start(Kind::Slack, None).await;
    let t = notify(
        json!({"provider": "slack", "url": slack.url, "template": "${id} <${subject}>",
        "mentions": ["U024BE7LH"]}),
    );
    send(&t, &["e1"]).await.unwrap();
    let t = notify(
        json!({"provider": "slack", "url": slack.url, "format": "markdown",
        "template": "*${product}* `${subject}`"}),
    );
    send(&t, &["e2"]).await.unwrap();
    let seen = slack.seen();
    assert_eq!(seen[0].body, json!({"text": "e1 <ins-7>\n<@U024BE7LH>"}));
    assert_eq!(
        seen[1].body,
        json!({"text": "*CVM* `ins-7`", "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*CVM* `ins-7`"}}]})
    );
}

#[tokio::test]
async fn notify_errcode_answers_fail_with_the_code() {
    let wecom = Robot::start(Kind::WeCom, None).await;
    wecom
        .then(200, r#"{"errcode":40008,"errmsg":"invalid message type"}"#)
        .then(200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#);
    let t = notify(json!({"provider": "wecom", "url": wecom.url}));
    let err = send(&t, &["e1"]).await.unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.status, Some(200));
    assert_eq!(err.message, "wecom errcode 40008: invalid message type");
    let err = send(&t, &["e1"]).await.unwrap_err();
    assert!(err.retryable, "rate limiting is retryable");
    assert!(err.message.contains("45009"), "{}", err.message);
    send(&t, &["e1"]).await.unwrap();

    // A wrong key: the robot's own refusal, and the key is nowhere in the message.
    let bad = notify(json!({"provider": "wecom",
        "url": wecom.url.replace("key=k3y", "key=wr0ng")}));
    let err = send(&bad, &["e1"]).await.unwrap_err();
    assert_eq!(err.message, "wecom errcode 93000: invalid webhook url");
    assert!(!err.message.contains("wr0ng"));

    let ding = Robot::start(Kind::DingTalk, None).await;
    ding.then(
        200,
        r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#,
    );
    let t = notify(json!({"provider": "dingtalk", "url": ding.url}));
    let err = send(&t, &["e1"]).await.unwrap_err();
    assert!(err.retryable);
    assert!(
        err.message.starts_with("dingtalk errcode 130101"),
        "{}",
        err.message
    );

    let lark = Robot::start(Kind::Lark, None).await;
    lark.then(400, r#"{"code":11232,"msg":"frequency limited"}"#)
        .then(200, r#"{"code":9499,"msg":"Bad Request"}"#);
    let t = notify(json!({"provider": "lark", "url": lark.url}));
    let err = send(&t, &["e1"]).await.unwrap_err();
    assert!(err.retryable);
    assert_eq!(err.status, Some(400));
    let err = send(&t, &["e1"]).await.unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.message, "lark code 9499: Bad Request");

    let slack = Robot::start(Kind::Slack, None).await;
    slack.then(404, "no_service").then(503, "");
    let t = notify(json!({"provider": "slack", "url": slack.url}));
    let err = send(&t, &["e1"]).await.unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.message, "HTTP 404 Not Found: no_service");
    assert!(send(&t, &["e1"]).await.unwrap_err().retryable);
}

#[tokio::test]
async fn notify_dingtalk_signature_is_verified_by_the_robot() {
    let ding = Robot::start(Kind::DingTalk, Some(SECRET)).await;
    // Unsigned: the robot refuses.
    let err = send(
        &notify(json!({"provider": "dingtalk", "url": ding.url})),
        &["e1"],
    )
    .await
    .unwrap_err();
    assert_eq!(err.message, "dingtalk errcode 310000: sign not match");
    // Signed with another secret: refused, and neither secret is in the message.
    let err = send(
        &notify(json!({"provider": "dingtalk", "url": ding.url, "secret": "SECwrong"})),
        &["e1"],
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("310000") && !err.message.contains("SEC"));
    // Signed right: accepted, twice (a fresh timestamp and sign each time).
    let t = notify(
        json!({"provider": "dingtalk", "url": ding.url, "secret": SECRET,
        "format": "markdown"}),
    );
    send(&t, &["e1"]).await.unwrap();
    send(&t, &["e2"]).await.unwrap();
    let seen = ding.seen();
    let signed = &seen[seen.len() - 1];
    assert_eq!(signed.query["access_token"], "t0k3n");
    assert!(signed.query["timestamp"].parse::<i64>().is_ok());
    assert_eq!(signed.query.len(), 3);
}

#[tokio::test]
async fn notify_lark_signature_is_verified_by_the_robot() {
    let lark = Robot::start(Kind::Lark, Some(SECRET)).await;
    let err = send(
        &notify(json!({"provider": "lark", "url": lark.url})),
        &["e1"],
    )
    .await
    .unwrap_err();
    assert!(
        err.message.starts_with("lark code 19021"),
        "{}",
        err.message
    );
    let t = notify(
        json!({"provider": "lark", "url": lark.url, "secret": SECRET,
        "format": "markdown"}),
    );
    send(&t, &["e1"]).await.unwrap();
    let seen = lark.seen();
    let body = &seen[1].body;
    assert_eq!(body["msg_type"], "interactive");
    assert!(body["timestamp"].as_str().is_some() && body["sign"].as_str().is_some());
}

// ---- through the delivery engine ----

struct Fixture {
    _dir: tempfile::TempDir,
    bus: Arc<EventBus>,
    engine: Engine,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(
        EventBus::open(BusConfig {
            data_dir: dir.path().to_path_buf(),
            max_segment_bytes: 64 * 1024,
            ..BusConfig::default()
        })
        .unwrap(),
    );
    bus.catalog()
        .create_rule(
            SET,
            RuleSpec {
                name: "cvm".into(),
                description: String::new(),
                pattern: json!({"source": ["cvm.cloud.tencent"]}),
                enabled: true,
                transform: None,
            },
        )
        .unwrap();
    let engine = Engine::start(
        bus.clone(),
        EngineOptions {
            restart_delay: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(2),
            ..EngineOptions::default()
        },
    );
    Fixture {
        _dir: dir,
        bus,
        engine,
    }
}

async fn notify_binding(f: &Fixture, name: &str, settings: Value, max_attempts: u32) -> BindingId {
    f.bus
        .catalog()
        .create_target(
            SET,
            "cvm",
            json!({"name": name, "type": "notify", "notify": settings,
                "retry": {"max_attempts": max_attempts, "initial_backoff_ms": 10,
                    "max_backoff_ms": 40},
                "dead_letter": {"mode": "dlq"}, "start": "earliest"}),
        )
        .unwrap();
    f.engine.sync().await.unwrap();
    BindingId::new(SET, "cvm", name)
}

async fn put_alarm(f: &Fixture, id: &str) {
    let out = f
        .bus
        .put_events(
            SET,
            &[
                json!({"specversion": "1.0", "id": id, "source": "cvm.cloud.tencent",
                "type": "cvm:ErrorEvent:PingUnreachable", "subject": "ins-7",
                "region": "ap-guangzhou", "status": "1", "time": 1_714_536_000_000i64,
                "data": {"instanceId": "ins-7"}}),
            ],
            Producer::Cloud,
        )
        .await
        .unwrap();
    assert!(
        matches!(out.entries[0], PutEntry::Stored { .. }),
        "{:?}",
        out.entries
    );
}

async fn wait_status(
    f: &Fixture,
    id: &BindingId,
    what: &str,
    cond: impl Fn(&BindingStatus) -> bool,
) -> BindingStatus {
    common::wait_status(&f.engine, id, 15, what, cond).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_rate_limited_message_is_delivered_on_the_second_attempt() {
    let f = fixture().await;
    let wecom = Robot::start(Kind::WeCom, None).await;
    wecom.then(200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#);
    let id = notify_binding(
        &f,
        "oncall",
        json!({"provider": "wecom", "url": wecom.url, "template": "${id}: ${subject} ${status_text}"}),
        4,
    )
    .await;
    put_alarm(&f, "a-1").await;
    let s = wait_status(&f, &id, "one delivery", |s| {
        s.delivered == 1 && s.cursor == 1
    })
    .await;
    assert_eq!((s.retrying, s.dead_lettered, s.failed_attempts), (0, 0, 1));
    let seen = wecom.seen();
    assert_eq!(seen.len(), 2, "one failed attempt, one delivered");
    for s in &seen {
        assert_eq!(
            s.body,
            json!({"msgtype": "text", "text": {"content": "a-1: ins-7 abnormal"}})
        );
    }
    f.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_refused_message_is_dead_lettered_with_the_errcode() {
    let f = fixture().await;
    let ding = Robot::start(Kind::DingTalk, Some(SECRET)).await;
    // Signed with the wrong secret: DingTalk refuses every attempt with 310000, which is not
    // retryable, so one attempt and a dead letter.
    let id = notify_binding(
        &f,
        "ding",
        json!({"provider": "dingtalk", "url": ding.url, "secret": "SECnot-the-one"}),
        4,
    )
    .await;
    put_alarm(&f, "a-2").await;
    wait_status(&f, &id, "a dead letter", |s| s.dead_lettered == 1).await;
    let dl = common::wait_dead_letters(&f.engine, &id, 1).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].attempts, 1);
    assert_eq!(dl[0].last_error, "dingtalk errcode 310000: sign not match");
    assert_eq!(ding.seen().len(), 1);
    f.engine.shutdown().await;
}
