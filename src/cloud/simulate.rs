//! The simulator: realistic CloudEvents for catalog event types.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

use super::catalog::{Category, EventType, Product};

/// The `datacontenttype` of cloud-service events (the only one Tencent supports).
pub const DATA_CONTENT_TYPE: &str = "application/json;charset=utf-8";

/// Regions simulated events come from: real Tencent Cloud regions.
pub const REGIONS: &[&str] = &[
    "ap-guangzhou",
    "ap-shanghai",
    "ap-beijing",
    "ap-chengdu",
    "ap-chongqing",
    "ap-nanjing",
    "ap-hongkong",
    "ap-singapore",
    "ap-tokyo",
    "ap-seoul",
    "na-siliconvalley",
    "eu-frankfurt",
];

/// The region the catalog's sample data is written for; the simulator replaces it (and zone
/// names built on it, `ap-guangzhou-3`) with the event's region.
const SAMPLE_REGION: &str = "ap-guangzhou";

/// Alarms at most kept open per event type. Past it, the next event of the type is always a
/// recovery, so the set of open alarms stays small and every alarm soon recovers.
const MAX_OPEN_ALARMS: usize = 16;

/// Makes realistic cloud-service events from the [catalog](super::catalog()).
///
/// Each event has a fresh UUID `id`, the product's `source`, the type, a `subject` shaped like
/// the product's resource ids (`ins-` and 8 characters for CVM, `cdb-…` for MySQL, an IP for
/// DDoS), a real region, `datacontenttype` `application/json;charset=utf-8`, a `status`, and the
/// type's sample `data` with the subject and region filled in.
///
/// `status`: for a recoverable type, each event is either a new alarm (`"1"`, for a new
/// resource) or, half of the time when alarms of the type are open, the recovery (`"0"`) of
/// one of them, with the same subject and region. Stateless types get `"-"`; audit records get
/// no `status` (as in Tencent's CloudAudit event sample).
///
/// Everything but the time (which is the clock's, unless given) follows from the seed.
#[derive(Debug)]
pub struct Simulator {
    rng: StdRng,
    /// Open alarms per type string: (subject, region).
    open: HashMap<String, Vec<(String, &'static str)>>,
}

impl Simulator {
    /// A simulator whose events follow from `seed`.
    pub fn new(seed: u64) -> Simulator {
        Simulator {
            rng: StdRng::seed_from_u64(seed),
            open: HashMap::new(),
        }
    }

    /// A simulator seeded from the operating system.
    pub fn from_entropy() -> Simulator {
        Simulator {
            rng: StdRng::from_entropy(),
            open: HashMap::new(),
        }
    }

    /// An event of type `ty` of `product`, at the current time.
    pub fn event(&mut self, product: &Product, ty: &EventType) -> Value {
        self.event_at(product, ty, crate::config::now_ms())
    }

    /// An event of a type drawn at random from `choices` (as [`super::select`] returns them),
    /// at the current time. Panics if `choices` is empty.
    pub fn next_event(&mut self, choices: &[(&Product, &EventType)]) -> Value {
        self.next_event_at(choices, crate::config::now_ms())
    }

    /// [`Simulator::next_event`] at `time_ms` (epoch milliseconds).
    pub fn next_event_at(&mut self, choices: &[(&Product, &EventType)], time_ms: u64) -> Value {
        let (p, t) = *choices
            .choose(&mut self.rng)
            .expect("Simulator::next_event needs at least one event type");
        self.event_at(p, t, time_ms)
    }

    /// An event of type `ty` of `product` at `time_ms` (epoch milliseconds).
    pub fn event_at(&mut self, product: &Product, ty: &EventType, time_ms: u64) -> Value {
        let sample_subject = product.subject_for(ty);
        let (subject, region, status) = match (ty.category, ty.recoverable()) {
            (Category::Audit, _) => (self.subject_like(sample_subject), self.region(), None),
            (_, false) => (self.subject_like(sample_subject), self.region(), Some("-")),
            (_, true) => {
                let open = self.open.entry(ty.ty.clone()).or_default();
                let recover =
                    open.len() >= MAX_OPEN_ALARMS || (!open.is_empty() && self.rng.gen_bool(0.5));
                if recover {
                    let i = self.rng.gen_range(0..open.len());
                    let (subject, region) = open.swap_remove(i);
                    (subject, region, Some("0"))
                } else {
                    let subject = self.subject_like(sample_subject);
                    let region = self.region();
                    self.open
                        .entry(ty.ty.clone())
                        .or_default()
                        .push((subject.clone(), region));
                    (subject, region, Some("1"))
                }
            }
        };
        let mut data = ty.sample_data.clone();
        fill_in(&mut data, sample_subject, &subject, region);
        if let Value::Object(m) = &mut data {
            // Audit records: the record's own time and request id.
            if m.contains_key("eventTime") {
                let at = i64::try_from(time_ms)
                    .ok()
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                if let Some(at) = at {
                    m.insert("eventTime".into(), at.into());
                }
            }
            if m.contains_key("requestID") {
                m.insert("requestID".into(), self.uuid().into());
            }
        }

        let mut ev = Map::new();
        ev.insert("specversion".into(), "1.0".into());
        ev.insert("id".into(), self.uuid().into());
        ev.insert("source".into(), product.source.clone().into());
        ev.insert("type".into(), ty.ty.clone().into());
        ev.insert("subject".into(), subject.into());
        ev.insert("time".into(), time_ms.into());
        ev.insert("region".into(), region.into());
        ev.insert("datacontenttype".into(), DATA_CONTENT_TYPE.into());
        if let Some(s) = status {
            ev.insert("status".into(), s.into());
        }
        ev.insert("data".into(), data);
        Value::Object(ev)
    }

    fn uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.r#gen())
            .into_uuid()
            .to_string()
    }

    fn region(&mut self) -> &'static str {
        REGIONS[self.rng.gen_range(0..REGIONS.len())]
    }

    /// A fresh id shaped like `sample`: the same prefix up to the last `-` and as many random
    /// lower-case letters and digits after it (`ins-6o3xm0ta` → `ins-k2x9q0mw`); for an IPv4
    /// sample, an address in a documentation range (RFC 5737), never someone's real one.
    fn subject_like(&mut self, sample: &str) -> String {
        if sample.parse::<Ipv4Addr>().is_ok() {
            let net = if self.rng.gen_bool(0.5) {
                "203.0.113"
            } else {
                "198.51.100"
            };
            return format!("{net}.{}", self.rng.gen_range(1..=254));
        }
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let (prefix, tail) = match sample.rfind('-') {
            Some(i) => sample.split_at(i + 1),
            None => ("", sample),
        };
        let n = tail.len().max(8);
        let mut s = String::with_capacity(prefix.len() + n);
        s.push_str(prefix);
        for _ in 0..n {
            s.push(char::from(CHARS[self.rng.gen_range(0..CHARS.len())]));
        }
        s
    }
}

/// Replaces, in every string of `v`, the sample subject by `subject` (whole strings only, and
/// inside the JSON text of CloudAudit's `requestParameters`), the sample region by `region`
/// (whole strings, and zone names such as `ap-guangzhou-3`), and every other resource id of
/// the sample (`disk-3kx9q2mb`, `vpc-…`) by one derived from `subject`: each simulated
/// resource gets its own disks and networks, the same ones in its alarm and its recovery.
fn fill_in(v: &mut Value, sample_subject: &str, subject: &str, region: &str) {
    match v {
        Value::String(s) => {
            if s == sample_subject {
                *s = subject.to_owned();
            } else if s.contains(&format!("\"{sample_subject}\"")) {
                *s = s.replace(&format!("\"{sample_subject}\""), &format!("\"{subject}\""));
            } else if let Some(rest) = s.strip_prefix(SAMPLE_REGION)
                && (rest.is_empty() || rest.starts_with('-'))
            {
                *s = format!("{region}{rest}");
            } else if let Some(id) = derived_id(s, subject) {
                *s = id;
            }
        }
        Value::Array(items) => {
            for item in items {
                fill_in(item, sample_subject, subject, region);
            }
        }
        Value::Object(m) => {
            for item in m.values_mut() {
                fill_in(item, sample_subject, subject, region);
            }
        }
        _ => {}
    }
}

/// For a string shaped like a resource id (`disk-3kx9q2mb`: a lower-case prefix, `-`, eight
/// lower-case letters and digits, at least one a digit), an id with the same prefix whose
/// suffix is a hash of the id and `subject`; `None` for anything else.
fn derived_id(id: &str, subject: &str) -> Option<String> {
    let (prefix, suffix) = id.rsplit_once('-')?;
    let shaped = !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_lowercase())
        && suffix.len() == 8
        && suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && suffix.bytes().any(|b| b.is_ascii_digit());
    if !shaped {
        return None;
    }
    // FNV-1a: stable across runs and platforms (a seeded run gives the same events).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain([0]).chain(subject.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(prefix.len() + 9);
    out.push_str(prefix);
    out.push('-');
    for _ in 0..8 {
        out.push(char::from(ALPHABET[(h % 36) as usize]));
        h /= 36;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fill_in_replaces_subject_and_region_only_where_they_stand() {
        let mut v = json!({"instanceId": "ins-aaaaaaaa", "other": "ins-aaaaaaaab",
            "zone": "ap-guangzhou-3", "region": "ap-guangzhou", "x": "ap-guangzhoux",
            "params": "{\"InstanceIds\":[\"ins-aaaaaaaa\"]}", "n": [1, "ins-aaaaaaaa"]});
        fill_in(&mut v, "ins-aaaaaaaa", "ins-bbbbbbbb", "ap-tokyo");
        assert_eq!(
            v,
            json!({"instanceId": "ins-bbbbbbbb", "other": "ins-aaaaaaaab",
                "zone": "ap-tokyo-3", "region": "ap-tokyo", "x": "ap-guangzhoux",
                "params": "{\"InstanceIds\":[\"ins-bbbbbbbb\"]}", "n": [1, "ins-bbbbbbbb"]})
        );
    }

    #[test]
    fn other_resource_ids_follow_the_subject() {
        let sample =
            json!({"diskId": "disk-3kx9q2mb", "word": "ap-shanghai", "name": "data-disk1"});
        let (mut a, mut b, mut a2) = (sample.clone(), sample.clone(), sample.clone());
        fill_in(&mut a, "ins-aaaaaaaa", "ins-11111111", "ap-tokyo");
        fill_in(&mut b, "ins-aaaaaaaa", "ins-22222222", "ap-tokyo");
        fill_in(&mut a2, "ins-aaaaaaaa", "ins-11111111", "ap-tokyo");
        let disk = a["diskId"].as_str().unwrap();
        assert!(disk.starts_with("disk-") && disk.len() == 13, "{disk}");
        assert_ne!(disk, "disk-3kx9q2mb");
        assert_ne!(a["diskId"], b["diskId"], "each instance has its own disk");
        assert_eq!(a, a2, "the same instance keeps its disk");
        // Not ids: words, and names without a digit-bearing 8-character suffix.
        assert_eq!(a["word"], "ap-shanghai");
        assert_eq!(a["name"], "data-disk1");
    }

    #[test]
    fn subjects_keep_the_sample_s_shape() {
        let mut sim = Simulator::new(9);
        let s = sim.subject_like("cynosdbmysql-3kq9x7bd");
        assert!(s.starts_with("cynosdbmysql-") && s.len() == "cynosdbmysql-3kq9x7bd".len());
        let s = sim.subject_like("ckafka-2z8qm5xo");
        assert!(s.starts_with("ckafka-") && s.len() == 15, "{s}");
        let ip: Ipv4Addr = sim.subject_like("203.0.113.25").parse().unwrap();
        assert!(ip.is_documentation(), "{ip}");
    }
}
