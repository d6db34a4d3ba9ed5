//! A deterministic cloud-service workload for the pattern-matching benchmarks
//! (`eventbus bench match` and `benches/match.rs`): Tencent cloud-service events as the bus
//! stores them, and the rules a large tenant writes against them.
//!
//! Both are drawn from one fixed *fleet* of [`FLEET_RESOURCES`] resources (CVM instances,
//! MySQL, Redis and MongoDB instances, CLB, NAT and VPN gateways, TKE clusters, Kafka
//! instances, Oceanus jobs, Anti-DDoS IPs…) owned by [`TEAMS`] teams (the `team` tag), spread
//! over 16 regions. An event is an alarm from a uniformly chosen resource of the fleet; a
//! rule refers to resources, teams, regions and event types of the same fleet, so rules
//! match real events and a set of 10 000 rules is 10 000 different rules, not 100 repeated.
//!
//! The rule mix (shares of the rule count, the same at every N; see docs/BENCHMARKS.md):
//!
//! | share | rule | index anchor |
//! |---|---|---|
//! | 34 % | `source` + 1–3 `type`s + 1–4 `subject` ids | subject |
//! | 10 % | `source` + `subject` ids (every event of those resources), half with `status` | subject |
//! | 6 % | `source` + `resource` ARNs, or `type`s + `data.instanceId` ids | resource / instanceId |
//! | 18 % | `source` + `type`s + `tags.team`; some with `tags.env`, `status`, `subject` anything-but | tags.team |
//! | 8 % | team rule + a data filter: numeric threshold, `deviceName` prefix, `cidr` on `data.ip`, `region` | tags.team |
//! | 15 % | product-wide: `source` + 1–2 `type`s, most with `region`, `subject` anything-but, a numeric threshold, a prefix or a cidr | type |
//! | 8 % | `$or`, `contain`, `suffix`, `wildcard`, `equals-ignore-case`, `exists` | mixed |
//! | 1 % | no exact anchor: a `deviceName` prefix only, or only numeric / anything-but | none |
//!
//! The generator is a splitmix64 stream, so the same seed gives the same JSON on every
//! machine.

use serde_json::{Value, json};

/// Resources in the fleet that events come from and rules refer to.
pub const FLEET_RESOURCES: usize = 20_000;
/// Teams (the `team` tag) owning the fleet.
pub const TEAMS: u64 = 1_000;
/// The fleet is the same whatever seed the events and rules use.
const FLEET_SEED: u64 = 0x00c0_ffee_2026;
/// Milliseconds since the epoch of the first event (2026-01-01T00:00:00Z).
const T0_MS: u64 = 1_767_225_600_000;
const APP_ID: u64 = 1_250_000_000;

/// splitmix64: tiny, fast, and good enough for picking test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A stream starting at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `percent` / 100.
    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// An index into `weights`, chosen in proportion to them.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < u64::from(w) {
                return i;
            }
            r -= u64::from(w);
        }
        weights.len() - 1
    }

    /// A number in `lo..hi` with one decimal.
    fn tenths(&mut self, lo: u64, hi: u64) -> f64 {
        (lo * 10 + self.below((hi - lo) * 10)) as f64 / 10.0
    }

    /// `k` distinct picks (fewer if `xs` is shorter), in the order drawn.
    fn distinct<T: Clone + PartialEq>(&mut self, xs: &[T], k: usize) -> Vec<T> {
        let mut out: Vec<T> = Vec::with_capacity(k);
        for _ in 0..k.min(xs.len()) * 4 {
            if out.len() == k.min(xs.len()) {
                break;
            }
            let x = self.pick(xs);
            if !out.contains(x) {
                out.push(x.clone());
            }
        }
        out
    }

    fn hex(&mut self, digits: usize) -> String {
        let v = self.next_u64();
        format!("{v:016x}")[..digits].to_string()
    }

    /// Lowercase base-36 characters, as in Tencent resource ids (`ins-5h3k9q2m`).
    fn base36(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        (0..len).map(|_| *self.pick(CHARS) as char).collect()
    }
}

/// One cloud product of the catalog in shared/reference/tencent-eb.md §8.
struct Product {
    /// `type` prefix and `source` host (`cvm` → `cvm.cloud.tencent`, `cvm:ErrorEvent:…`).
    name: &'static str,
    /// Resource id prefix (`ins-`); empty for Anti-DDoS, whose subject is an IP.
    id_prefix: &'static str,
    /// The resource kind in the QCS ARN (`qcs::cvm:ap-guangzhou:uin/…:instance/ins-…`).
    arn_kind: &'static str,
    /// Share of the fleet.
    weight: u32,
    /// `type` suffixes (after `name:`).
    types: &'static [&'static str],
    /// Alarm metrics reported in `data.alarmMetrics`: name and value range.
    metrics: &'static [(&'static str, u64, u64)],
}

const PRODUCTS: &[Product] = &[
    Product {
        name: "cvm",
        id_prefix: "ins-",
        arn_kind: "instance",
        weight: 34,
        types: &[
            "ErrorEvent:PingUnreachable",
            "ErrorEvent:GuestOom",
            "ErrorEvent:DiskReadonly",
            "ErrorEvent:GuestReboot",
            "ErrorEvent:GuestCoreError",
            "ErrorEvent:NvmeError",
            "ErrorEvent:PacketDroppedByQosWanOutBandwidth",
            "ErrorEvent:GuestRestarted_HostFailure",
            "ErrorEvent:GuestScheduledToRes",
            "ErrorEvent:InstanceRunningRisksExecuting",
            "CloudEvent:ApiCall",
        ],
        metrics: &[
            ("cpuUsage", 0, 100),
            ("memUsage", 0, 100),
            ("lanOutpkg", 0, 900_000),
        ],
    },
    Product {
        name: "cdb",
        id_prefix: "cdb-",
        arn_kind: "instanceId",
        weight: 10,
        types: &[
            "ErrorEvent:OutOfMemory",
            "ErrorEvent:PrimarySwitch",
            "ErrorEvent:RORemoval",
            "ErrorEvent:ServerfailureInstanceMigration",
            "ErrorEvent:InstRepStatus",
            "ErrorEvent:ProxyNotAvailable",
        ],
        metrics: &[
            ("cpuUseRate", 0, 100),
            ("memoryUseRate", 0, 100),
            ("slaveDelay", 0, 3600),
        ],
    },
    Product {
        name: "redis",
        id_prefix: "crs-",
        arn_kind: "instance",
        weight: 8,
        types: &[
            "ErrorEvent:MasterSlaveSwitched",
            "ErrorEvent:ServiceNotAvailable",
            "ErrorEvent:ReadonlyReplicaSwitched",
            "ErrorEvent:ReadonlyReplicaNotAvailable",
        ],
        metrics: &[("memUsage", 0, 100), ("connections", 0, 10_000)],
    },
    Product {
        name: "clb",
        id_prefix: "lb-",
        arn_kind: "clb",
        weight: 8,
        types: &["ErrorEvent:VipBlockInfo", "ErrorEvent:RsPortStatusChange"],
        metrics: &[("unhealthRsCount", 0, 20)],
    },
    Product {
        name: "tke",
        id_prefix: "cls-",
        arn_kind: "cluster",
        weight: 8,
        types: &[
            "ErrorEvent:oom",
            "ErrorEvent:NodeNotReady",
            "ErrorEvent:NodeHasDiskPressure",
            "ErrorEvent:NodeHasInsufficientMemory",
            "ErrorEvent:NodeNetworkUnavailable",
        ],
        metrics: &[("nodeCpuUsage", 0, 100), ("podRestarts", 0, 50)],
    },
    Product {
        name: "ckafka",
        id_prefix: "ckafka-",
        arn_kind: "ckafkaId",
        weight: 6,
        types: &[
            "ErrorEvent:ConsumerGroupMemberHeartbeatTimeout",
            "ErrorEvent:DiskUsageHigh",
            "ErrorEvent:BrokerNotAvailable",
        ],
        metrics: &[("lag", 0, 2_000_000), ("diskUsage", 0, 100)],
    },
    Product {
        name: "mongodb",
        id_prefix: "cmgo-",
        arn_kind: "instance",
        weight: 5,
        types: &[
            "ErrorEvent:oplogInsufficient",
            "ErrorEvent:connectionOverlimit",
            "ErrorEvent:primarywitch",
            "ErrorEvent:instanceOutOfDisk",
            "ErrorEvent:NodeCPUAbnormal",
        ],
        metrics: &[("oplogHours", 0, 72), ("connUsage", 0, 100)],
    },
    Product {
        name: "nat",
        id_prefix: "nat-",
        arn_kind: "natGateway",
        weight: 4,
        types: &[
            "ErrorEvent:PacketDroppedByConnLimit",
            "ErrorEvent:PacketDroppedByBandwidthLimit",
        ],
        metrics: &[("droppedPkts", 0, 500_000), ("connUsage", 0, 100)],
    },
    Product {
        name: "postgres",
        id_prefix: "postgres-",
        arn_kind: "DBInstanceId",
        weight: 4,
        types: &["ErrorEvent:HASwitch"],
        metrics: &[("cpuUsage", 0, 100)],
    },
    Product {
        name: "antiddos",
        id_prefix: "",
        arn_kind: "bgpip",
        weight: 4,
        types: &[
            "ErrorEvent:DDoSAbnormalFlow",
            "ErrorEvent:DDoSAlaram",
            "ErrorEvent:DDoSBlock",
            "ErrorEvent:CCAlaram",
        ],
        metrics: &[
            ("attackBandwidthMbps", 0, 50_000),
            ("attackPps", 0, 10_000_000),
        ],
    },
    Product {
        name: "vpngw",
        id_prefix: "vpngw-",
        arn_kind: "vpngw",
        weight: 3,
        types: &[
            "ErrorEvent:PacketDroppedByQosWanOutBandwidth",
            "ErrorEvent:PacketDroppedByQosConnectionSession",
            "ErrorEvent:VpnconnDisconnected",
        ],
        metrics: &[("outBandwidthMbps", 0, 1_000)],
    },
    Product {
        name: "oceanus",
        id_prefix: "cql-",
        arn_kind: "job",
        weight: 3,
        types: &[
            "ErrorEvent:OceanusBackpressureHigh",
            "ErrorEvent:OceanusTaskmanagerLoadTooHigh",
            "ErrorEvent:OceanusJobmanagerPodExitUnexpectedly",
            "ErrorEvent:OceanusTaskmanagerFullGcTooLong",
        ],
        metrics: &[("backpressureRatio", 0, 100), ("tmLoad", 0, 100)],
    },
    Product {
        name: "dc",
        id_prefix: "dc-",
        arn_kind: "dc",
        weight: 3,
        types: &[
            "ErrorEvent:DirectConnectTunnelDown",
            "ErrorEvent:DirectConnectTunnelBGPSessionDown",
            "ErrorEvent:DirectConnectTunnelBFDDown",
        ],
        metrics: &[("packetLoss", 0, 100)],
    },
];

const REGIONS: &[&str] = &[
    "ap-guangzhou",
    "ap-shanghai",
    "ap-beijing",
    "ap-chengdu",
    "ap-nanjing",
    "ap-chongqing",
    "ap-hongkong",
    "ap-singapore",
    "ap-bangkok",
    "ap-jakarta",
    "ap-seoul",
    "ap-tokyo",
    "na-siliconvalley",
    "na-ashburn",
    "eu-frankfurt",
    "sa-saopaulo",
];
const REGION_WEIGHTS: &[u32] = &[30, 20, 15, 6, 5, 4, 4, 3, 2, 2, 2, 2, 2, 1, 1, 1];
const ENVS: &[&str] = &["prod", "staging", "test", "dev"];
const ENV_WEIGHTS: &[u32] = &[50, 20, 15, 15];
const APPS: &[&str] = &[
    "web", "api", "checkout", "orders", "payment", "search", "feed", "auth", "gateway", "media",
    "billing", "report", "etl", "cache", "mq", "im", "push", "cdn", "game", "match", "rank", "ads",
    "risk", "audit", "crm", "erp", "wiki", "ci", "log", "metrics",
];

/// One resource of the fleet.
#[derive(Clone, Debug)]
struct Resource {
    product: usize,
    id: String,
    region: &'static str,
    team: u64,
    env: &'static str,
    app: &'static str,
    /// The instance name (`prod-checkout-07`).
    name: String,
    /// Private address, inside the team's /20 of 10.0.0.0/8.
    ip: String,
}

impl Resource {
    fn product(&self) -> &'static Product {
        &PRODUCTS[self.product]
    }

    fn arn(&self) -> String {
        format!(
            "qcs::{}:{}:uin/{}:{}/{}",
            self.product().name,
            self.region,
            APP_ID,
            self.product().arn_kind,
            self.id
        )
    }
}

/// The first three octets' worth of a team's /20 (`10.a.b.0/20`).
fn team_net(team: u64) -> (u64, u64) {
    (team >> 4 & 255, (team & 15) * 16)
}

struct Fleet {
    resources: Vec<Resource>,
    /// Resource positions by product.
    by_product: Vec<Vec<usize>>,
}

impl Fleet {
    fn new() -> Fleet {
        let weights: Vec<u32> = PRODUCTS.iter().map(|p| p.weight).collect();
        let mut resources = Vec::with_capacity(FLEET_RESOURCES);
        let mut by_product = vec![Vec::new(); PRODUCTS.len()];
        for k in 0..FLEET_RESOURCES {
            let mut r = Rng::new(FLEET_SEED ^ (k as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let product = r.weighted(&weights);
            let team = r.below(TEAMS);
            let (a, b) = team_net(team);
            let ip = format!("10.{a}.{}.{}", b + r.below(16), 1 + r.below(254));
            let id = if PRODUCTS[product].id_prefix.is_empty() {
                // Anti-DDoS resources are public IPs.
                format!(
                    "{}.{}.{}.{}",
                    1 + r.below(223),
                    r.below(256),
                    r.below(256),
                    1 + r.below(254)
                )
            } else {
                format!("{}{}", PRODUCTS[product].id_prefix, r.base36(8))
            };
            let env = ENVS[r.weighted(ENV_WEIGHTS)];
            let app = *r.pick(APPS);
            by_product[product].push(k);
            resources.push(Resource {
                product,
                id,
                region: REGIONS[r.weighted(REGION_WEIGHTS)],
                team,
                env,
                app,
                name: format!("{env}-{app}-{:02}", r.below(40)),
                ip,
            });
        }
        Fleet {
            resources,
            by_product,
        }
    }

    fn pick_product(&self, r: &mut Rng) -> usize {
        let weights: Vec<u32> = PRODUCTS.iter().map(|p| p.weight).collect();
        r.weighted(&weights)
    }

    /// `k` distinct resources of one product.
    fn pick_of(&self, r: &mut Rng, product: usize, k: usize) -> Vec<&Resource> {
        r.distinct(&self.by_product[product], k)
            .into_iter()
            .map(|i| &self.resources[i])
            .collect()
    }
}

fn product_index(name: &str) -> usize {
    PRODUCTS.iter().position(|p| p.name == name).unwrap_or(0)
}

fn team_name(team: u64) -> String {
    format!("team-{team:04}")
}

fn source(p: &Product) -> String {
    format!("{}.cloud.tencent", p.name)
}

fn full_type(p: &Product, t: &str) -> String {
    format!("{}:{t}", p.name)
}

/// `n` cloud-service events (CloudEvents 1.0, Tencent flavour), each from a resource of the
/// fleet chosen uniformly.
pub fn cloud_events(n: usize, seed: u64) -> Vec<Value> {
    let fleet = Fleet::new();
    let mut r = Rng::new(seed ^ 0x6576_656e_7473);
    (0..n)
        .map(|i| {
            let res = &fleet.resources[r.below(FLEET_RESOURCES as u64) as usize];
            event(&mut r, i as u64, res)
        })
        .collect()
}

fn event(r: &mut Rng, i: u64, res: &Resource) -> Value {
    let p = res.product();
    let ty = *r.pick(p.types);
    let id = format!(
        "{}-{}-4{}-a{}-{}",
        r.hex(8),
        r.hex(4),
        r.hex(3),
        r.hex(3),
        r.hex(12)
    );
    let metrics: serde_json::Map<String, Value> = p
        .metrics
        .iter()
        .map(|&(m, lo, hi)| {
            let v = if hi > 1_000 {
                json!(lo + r.below(hi - lo))
            } else {
                json!(r.tenths(lo, hi))
            };
            (m.to_string(), v)
        })
        .collect();
    let mut data = json!({
        "appId": APP_ID,
        "uin": "100000000001",
        "instanceId": res.id,
        "projectId": res.team % 7,
        "deviceName": res.name,
        "ip": res.ip,
        "dimensions": {"ip": res.ip, "objId": res.id},
        "alarmMetrics": metrics,
    });
    let extra = match p.name {
        "cvm" if ty == "CloudEvent:ApiCall" => json!({
            "action": *r.pick(&["RebootInstances", "StopInstances", "ResetInstance", "ModifyInstancesAttribute"]),
            "sourceIPAddress": format!("203.0.113.{}", 1 + r.below(254)),
            "userIdentity": {"type": "CAMUser", "principalId": "100000000001", "userName": format!("dev{}", r.below(50))},
        }),
        "cvm" => json!({
            "diskIds": (0..1 + r.below(3)).map(|_| format!("disk-{}", r.base36(8))).collect::<Vec<_>>(),
            "additionalMsg": {"IP": res.ip, "reason": *r.pick(&["ping timeout", "kernel panic", "host maintenance"])},
        }),
        "clb" => json!({
            "vip": format!("118.89.{}.{}", r.below(256), 1 + r.below(254)),
            "listenerId": format!("lbl-{}", r.base36(8)),
            "protocol": *r.pick(&["TCP", "HTTP", "HTTPS"]),
            "port": *r.pick(&[80, 443, 8080]),
            "rsList": (0..1 + r.below(3)).map(|_| json!({
                "ip": format!("10.{}.{}.{}", team_net(res.team).0, team_net(res.team).1, 1 + r.below(254)),
                "port": 8080, "status": *r.pick(&["dead", "alive"]),
            })).collect::<Vec<_>>(),
        }),
        "tke" => json!({
            "clusterId": res.id,
            "nodeName": format!("{}-node-{}", res.app, r.below(30)),
            "conditions": [{"type": "Ready", "status": *r.pick(&["False", "Unknown"])}],
        }),
        "ckafka" => json!({
            "topic": format!("{}-{}-{}", res.env, res.app, *r.pick(&["orders", "events", "logs", "clicks"])),
            "consumerGroup": format!("{}-consumer-{}", res.app, res.env),
            "partition": r.below(12),
        }),
        "redis" | "cdb" | "mongodb" | "postgres" => json!({
            "role": *r.pick(&["master", "slave", "readonly"]),
            "vport": *r.pick(&[3306, 6379, 27017, 5432]),
            "engineVersion": *r.pick(&["5.7", "8.0", "6.2", "4.4", "14"]),
        }),
        "antiddos" => json!({
            "Ip": res.id, "NickName": res.name, "Region": res.region,
            "attackType": *r.pick(&["UDPFLOOD", "SYNFLOOD", "ACKFLOOD", "CC"]),
        }),
        _ => json!({"peerIp": format!("198.51.100.{}", 1 + r.below(254))}),
    };
    if let (Value::Object(d), Value::Object(x)) = (&mut data, extra) {
        d.extend(x);
    }
    json!({
        "specversion": "1.0",
        "id": id,
        "source": source(p),
        "type": full_type(p, ty),
        "subject": res.id,
        "time": T0_MS + i * 37 + r.below(37),
        "region": res.region,
        "resource": [res.arn()],
        "datacontenttype": "application/json;charset=utf-8",
        "status": if r.percent(80) { "1" } else { "0" },
        "tags": {"team": team_name(res.team), "env": res.env, "app": res.app},
        "data": data,
    })
}

/// Rule kinds and their shares of the rule count, in percent (the table in the module docs).
pub const RULE_MIX: &[(&str, u32)] = &[
    ("resource-alarm", 34),
    ("resource-all", 10),
    ("resource-arn", 6),
    ("team", 18),
    ("team-data", 8),
    ("product-wide", 15),
    ("operators", 8),
    ("unanchored", 1),
];

/// `n` event patterns in the mix of [`RULE_MIX`], as JSON.
pub fn cloud_rules(n: usize, seed: u64) -> Vec<Value> {
    cloud_rules_by_kind(n, seed)
        .into_iter()
        .map(|(_, rule)| rule)
        .collect()
}

/// [`cloud_rules`] with the kind of each rule (a name from [`RULE_MIX`]).
pub fn cloud_rules_by_kind(n: usize, seed: u64) -> Vec<(&'static str, Value)> {
    rules_in_mix(n, seed, false)
}

/// Kinds of [`RULE_MIX`] that name specific resources or teams: a tenant's rule count grows
/// in these, while the product-wide and operator rules stay few.
pub const SCOPED_KINDS: &[&str] = &[
    "resource-alarm",
    "resource-all",
    "resource-arn",
    "team",
    "team-data",
];

/// Like [`cloud_rules`] for the first 100 rules (so the 100-rule sets are the same); beyond
/// 100, only [`SCOPED_KINDS`] in their [`RULE_MIX`] proportions. The number of rules an event
/// matches then stays about the same as the set grows, which isolates the cost of the index
/// from the cost of reporting more matches.
pub fn cloud_rules_scoped(n: usize, seed: u64) -> Vec<Value> {
    rules_in_mix(n, seed, true)
        .into_iter()
        .map(|(_, rule)| rule)
        .collect()
}

fn rules_in_mix(n: usize, seed: u64, scoped: bool) -> Vec<(&'static str, Value)> {
    let fleet = Fleet::new();
    let mut r = Rng::new(seed ^ 0x0072_756c_6573);
    let weights: Vec<u32> = RULE_MIX.iter().map(|&(_, w)| w).collect();
    let scoped_weights: Vec<u32> = RULE_MIX
        .iter()
        .map(|&(k, w)| if SCOPED_KINDS.contains(&k) { w } else { 0 })
        .collect();
    (0..n)
        .map(|i| {
            let w = if scoped && i >= 100 {
                &scoped_weights
            } else {
                &weights
            };
            let kind = RULE_MIX[r.weighted(w)].0;
            (kind, rule(&mut r, &fleet, kind))
        })
        .collect()
}

fn types(r: &mut Rng, p: &Product, k: usize) -> Vec<String> {
    r.distinct(p.types, k)
        .into_iter()
        .map(|t| full_type(p, t))
        .collect()
}

fn ids(rs: &[&Resource]) -> Vec<String> {
    rs.iter().map(|x| x.id.clone()).collect()
}

/// A condition on one data field a rule of this product would filter on.
fn data_filter(r: &mut Rng, p: &Product, owner: &Resource) -> Value {
    match r.below(3) {
        0 => {
            let (m, lo, hi) = *r.pick(p.metrics);
            let threshold = lo + (hi - lo) * (70 + r.below(25)) / 100;
            json!({"alarmMetrics": {m: [{"numeric": [">=", threshold]}]}})
        }
        1 => json!({"deviceName": [{"prefix": format!("{}-{}-", owner.env, owner.app)}]}),
        _ => {
            let (a, b) = team_net(owner.team);
            json!({"ip": [{"cidr": format!("10.{a}.{b}.0/20")}]})
        }
    }
}

fn rule(r: &mut Rng, fleet: &Fleet, kind: &str) -> Value {
    let pi = fleet.pick_product(r);
    let p = &PRODUCTS[pi];
    let src = source(p);
    match kind {
        "resource-alarm" => {
            let k = 1 + r.below(4) as usize;
            let t = 1 + r.below(3) as usize;
            json!({"source": src, "type": types(r, p, t), "subject": ids(&fleet.pick_of(r, pi, k))})
        }
        "resource-all" => {
            let k = 1 + r.below(4) as usize;
            let mut v = json!({"source": src, "subject": ids(&fleet.pick_of(r, pi, k))});
            if r.percent(50) {
                v["status"] = json!(["1"]);
            }
            v
        }
        "resource-arn" => {
            let k = 1 + r.below(3) as usize;
            let rs = fleet.pick_of(r, pi, k);
            if r.percent(50) {
                let arns: Vec<String> = rs.iter().map(|x| x.arn()).collect();
                json!({"source": src, "resource": arns})
            } else {
                json!({"source": src, "type": types(r, p, 2), "data": {"instanceId": ids(&rs)}})
            }
        }
        "team" | "team-data" => {
            let owner = fleet.pick_of(r, pi, 1)[0];
            let t = 1 + r.below(3) as usize;
            let mut v = json!({"source": src, "type": types(r, p, t), "tags": {"team": [team_name(owner.team)]}});
            if kind == "team-data" {
                if r.percent(25) {
                    v["region"] = json!([owner.region]);
                } else {
                    v["data"] = data_filter(r, p, owner);
                }
                return v;
            }
            if r.percent(30) {
                v["tags"]["env"] = json!(["prod"]);
            }
            if r.percent(30) {
                v["status"] = json!(["1"]);
            }
            if r.percent(30) {
                let k = 1 + r.below(3) as usize;
                v["subject"] = json!([{"anything-but": ids(&fleet.pick_of(r, pi, k))}]);
            }
            v
        }
        "product-wide" => {
            let t = 1 + r.below(2) as usize;
            let mut v = json!({"source": src, "type": types(r, p, t)});
            match r.below(20) {
                0..=3 => {}
                4..=9 => {
                    let k = 1 + r.below(2) as usize;
                    v["region"] = json!(r.distinct(REGIONS, k));
                }
                10..=14 => {
                    let k = 1 + r.below(4) as usize;
                    v["subject"] = json!([{"anything-but": ids(&fleet.pick_of(r, pi, k))}]);
                }
                _ => {
                    let owner = fleet.pick_of(r, pi, 1)[0];
                    v["data"] = data_filter(r, p, owner);
                }
            }
            v
        }
        "operators" => {
            let owner = fleet.pick_of(r, pi, 1)[0];
            match r.below(6) {
                0 => {
                    let a = ids(&fleet.pick_of(r, pi, 2));
                    let b = ids(&fleet.pick_of(r, pi, 2));
                    json!({"source": src, "$or": [{"subject": a}, {"data": {"instanceId": b}}]})
                }
                1 => json!({
                    "source": "ckafka.cloud.tencent",
                    "type": ["ckafka:ErrorEvent:ConsumerGroupMemberHeartbeatTimeout"],
                    "data": {"topic": [{"contain": [owner.app, owner.env]}]},
                }),
                2 => json!({
                    "source": "ckafka.cloud.tencent",
                    "tags": {"team": [team_name(owner.team)]},
                    "data": {"consumerGroup": [{"suffix": format!("-{}", owner.env)}]},
                }),
                3 => json!({
                    "source": src, "type": types(r, p, 1),
                    "data": {"deviceName": [{"wildcard": format!("prod-*{}*", owner.app)}]},
                }),
                4 => json!({
                    "source": "redis.cloud.tencent",
                    "subject": ids(&fleet.pick_of(r, product_index("redis"), 3)),
                    "data": {"role": [{"equals-ignore-case": "MASTER"}]},
                }),
                _ => json!({
                    "source": "cvm.cloud.tencent",
                    "tags": {"team": [team_name(owner.team)]},
                    "data": {"diskIds": [{"exists": true}]},
                }),
            }
        }
        _ => {
            // No exact anchor anywhere.
            let owner = fleet.pick_of(r, pi, 1)[0];
            match r.below(3) {
                0 => {
                    json!({"data": {"deviceName": [{"prefix": format!("{}-{}-", owner.env, owner.app)}]}})
                }
                1 => {
                    let (m, lo, hi) = *r.pick(p.metrics);
                    json!({"data": {"alarmMetrics": {m: [{"numeric": [">", lo + (hi - lo) * 95 / 100]}]}}})
                }
                _ => json!({
                    "status": [{"anything-but": ["0"]}],
                    "region": [{"anything-but": {"prefix": "ap-"}}],
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{Pattern, PatternSet};

    #[test]
    fn generator_is_deterministic_and_seeded() {
        assert_eq!(cloud_events(50, 7), cloud_events(50, 7));
        assert_eq!(cloud_rules(200, 7), cloud_rules(200, 7));
        assert_ne!(cloud_events(50, 7), cloud_events(50, 8));
        assert_ne!(cloud_rules(50, 7), cloud_rules(50, 8));
    }

    #[test]
    fn events_are_tencent_cloud_events() {
        for e in cloud_events(500, 1) {
            let o = e.as_object().expect("an object");
            for k in [
                "specversion",
                "id",
                "source",
                "type",
                "subject",
                "time",
                "region",
                "resource",
                "datacontenttype",
                "status",
                "tags",
                "data",
            ] {
                assert!(o.contains_key(k), "{k} missing in {e}");
            }
            let src = e["source"].as_str().unwrap();
            let product = src.strip_suffix(".cloud.tencent").expect("cloud source");
            assert!(
                e["type"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{product}:"))
            );
            assert!(e["time"].is_u64());
            assert!(e["data"].is_object());
            // Small enough to be a realistic alarm.
            assert!(serde_json::to_vec(&e).unwrap().len() < 2048);
        }
    }

    #[test]
    fn rules_parse_differ_and_cover_the_mix() {
        let rules = cloud_rules(2_000, 3);
        for (i, r) in rules.iter().enumerate() {
            Pattern::parse(r).unwrap_or_else(|e| panic!("rule {i} {r}: {e:?}"));
        }
        let distinct: std::collections::HashSet<String> =
            rules.iter().map(Value::to_string).collect();
        assert!(distinct.len() > 1_900, "{} distinct", distinct.len());
        let unanchored = rules.iter().filter(|r| r.get("source").is_none()).count();
        assert!(
            unanchored <= 2_000 * 2 / 100,
            "{unanchored} rules without source"
        );
        assert_eq!(RULE_MIX.iter().map(|m| m.1).sum::<u32>(), 100);
    }

    #[test]
    fn events_match_some_of_a_thousand_rules() {
        let rules: Vec<Pattern> = cloud_rules(1_000, 5)
            .iter()
            .map(|r| Pattern::parse(r).unwrap())
            .collect();
        let set = PatternSet::new(rules.iter().enumerate());
        let events = cloud_events(2_000, 5);
        let matched: usize = events.iter().map(|e| set.matching(e).len()).sum();
        let avg = matched as f64 / events.len() as f64;
        assert!(avg > 0.2 && avg < 20.0, "{avg} rules matched per event");
        // The set agrees with the patterns one by one.
        for e in events.iter().take(100) {
            let one_by_one: Vec<usize> =
                (0..rules.len()).filter(|&i| rules[i].matches(e)).collect();
            let by_set: Vec<usize> = set.matching(e).into_iter().copied().collect();
            assert_eq!(one_by_one, by_set);
        }
    }
}
