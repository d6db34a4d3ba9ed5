//! Official cloud-service events: the catalog of what Tencent Cloud products put into the
//! built-in `default` event set, and a simulator that makes realistic events from it.
//!
//! - [`catalog()`]: the 23 products the EventBridge docs list as cloud-service event sources
//!   (CVM, CLB, TKE, MySQL, Redis, CKafka, Oceanus, DDoS, …), each with its `source`
//!   (`cvm.cloud.tencent`), its event types (`cvm:ErrorEvent:DiskReadonly`) with their
//!   category (exception / status change / audit), their `status` semantics (recoverable
//!   `"1"`/`"0"` or stateless `"-"`) and a sample `data`.
//! - [`Simulator`]: CloudEvents for a product and type with fresh UUIDs, the current time, a
//!   resource id shaped like the product's (`ins-…`, `cdb-…`, `crs-…`), a real region, and
//!   alarms followed by recoveries of the same resource; deterministic for a seed.
//! - [`select`]: resolves a product and type given by a person (`--product cvm --type
//!   DiskReadonly`) into catalog entries, or an error listing the valid names.
//!
//! ## What is documented and what is assumed
//! Tencent documents the event names of most products (the Cloud Monitor event list) but the
//! type prefix of only a few (`cvm`, `ckafka`, `antiddos`; `redis` in unofficial notes), and
//! for some products (EMR, DTF, CFS, SD-WAN, bare metal, TSF, DBbrain, DTS, TDSQL-C) no names
//! at all. The catalog says so for every entry: [`Product::prefix_provenance`],
//! [`EventType::provenance`] and [`EventType::documented`] (true only when the whole type
//! string is documented), with notes. docs/CLOUD_EVENTS.md has the table.
//!
//! Every event the simulator makes is accepted by the `default` set's validation (source
//! `<x>.cloud.tencent`, type `product:Category:Name`); the tests check all of them.

mod catalog;
mod simulate;

pub use catalog::{
    Catalog, Category, EventType, EventTypeSummary, Product, ProductSummary, Provenance,
    StatusKind, catalog,
};
pub use simulate::{DATA_CONTENT_TYPE, REGIONS, Simulator};

/// A product or event type that is not in the catalog. The message lists the valid names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    /// No product has this key, type prefix or source.
    #[error("unknown product `{given}`; valid products: {}", .valid.join(", "))]
    UnknownProduct {
        /// What was asked for.
        given: String,
        /// The product keys.
        valid: Vec<String>,
    },
    /// No event type has this type string or name (in the product, when one was given).
    #[error("unknown event type `{given}`{}; valid types: {}",
        .product.as_ref().map(|p| format!(" for product `{p}`")).unwrap_or_default(),
        .valid.join(", "))]
    UnknownType {
        /// What was asked for.
        given: String,
        /// The product it was looked up in, if one was given.
        product: Option<String>,
        /// The valid full type strings (of that product, or of every product).
        valid: Vec<String>,
    },
}

/// The product named `name`: its key (`cvm`), type prefix (`cdb`) or source
/// (`cvm.cloud.tencent`), in any case.
pub fn product(name: &str) -> Option<&'static Product> {
    catalog().product(name)
}

/// The product and event type of a full type string, e.g. `cvm:ErrorEvent:GuestReboot`.
pub fn find_type(ty: &str) -> Option<(&'static Product, &'static EventType)> {
    catalog().find_type(ty)
}

/// The catalog entries a `--product` / `--type` choice stands for.
///
/// - neither: every event type of every product;
/// - a product: all its event types;
/// - a type: a full type string (`cvm:ErrorEvent:DiskReadonly`) or an event name
///   (`DiskReadonly`); within the product when one is given, else in every product (a name
///   several products share, such as `PacketDroppedByQosWanOutBandwidth`, stands for all of
///   them).
///
/// The result is never empty.
pub fn select(
    product: Option<&str>,
    ty: Option<&str>,
) -> Result<Vec<(&'static Product, &'static EventType)>, CloudError> {
    let cat = catalog();
    let products: Vec<&'static Product> = match product {
        Some(name) => match cat.product(name) {
            Some(p) => vec![p],
            None => {
                return Err(CloudError::UnknownProduct {
                    given: name.to_owned(),
                    valid: cat.keys().into_iter().map(str::to_owned).collect(),
                });
            }
        },
        None => cat.products.iter().collect(),
    };
    let Some(ty) = ty else {
        return Ok(products
            .into_iter()
            .flat_map(|p| p.event_types.iter().map(move |t| (p, t)))
            .collect());
    };
    let found: Vec<_> = products
        .iter()
        .filter_map(|p| p.event_type(ty).map(|t| (*p, t)))
        .collect();
    if found.is_empty() {
        return Err(CloudError::UnknownType {
            given: ty.to_owned(),
            product: product.map(|_| products[0].key.clone()),
            valid: products
                .iter()
                .flat_map(|p| p.event_types.iter().map(|t| t.ty.clone()))
                .collect(),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::*;
    use crate::event::{EventLimits, cloud_event_type_parts, is_cloud_source, parse_event};

    /// The Chinese names of the 23 event sources of the seed page ("支持事件源列表"), in its
    /// order.
    const SEED_SOURCES: [&str; 23] = [
        "容器服务",
        "负载均衡",
        "云服务器",
        "VPN 连接",
        "对等连接",
        "黑石物理服务器",
        "弹性 MapReduce",
        "云数据库 MySQL",
        "云原生数据库 TDSQL-C",
        "分布式事务 DTF",
        "腾讯云数据库 MongoDB",
        "NAT 网关",
        "数据传输服务 DTS",
        "流计算 Oceanus",
        "物理专线",
        "专用通道",
        "腾讯微服务平台",
        "云数据库 Redis",
        "SD-WAN 接入服务",
        "消息队列 CKafka",
        "文件存储",
        "数据库智能管家 DBbrain",
        "DDoS 高防包",
    ];

    #[test]
    fn embedded_catalog_loads() {
        let cat = catalog::load(include_str!("catalog.json")).unwrap();
        assert_eq!(cat.products.len(), catalog().products.len());
    }

    #[test]
    fn catalog_covers_exactly_the_23_seed_sources_in_order() {
        let names: Vec<&str> = catalog()
            .products
            .iter()
            .map(|p| p.name_zh.as_str())
            .collect();
        assert_eq!(names, SEED_SOURCES);
        let keys: BTreeSet<&str> = catalog().keys().into_iter().collect();
        assert_eq!(keys.len(), 23, "keys are unique");
        let sources: BTreeSet<&str> = catalog()
            .products
            .iter()
            .map(|p| p.source.as_str())
            .collect();
        assert_eq!(sources.len(), 23, "sources are unique");
    }

    #[test]
    fn catalog_type_strings_are_well_formed_and_match_their_product() {
        for (p, t) in catalog().event_types() {
            assert!(is_cloud_source(&p.source), "{}", p.source);
            assert_eq!(p.source, format!("{}.cloud.tencent", p.type_prefix));
            let (prefix, category, name) =
                cloud_event_type_parts(&t.ty).unwrap_or_else(|| panic!("{}", t.ty));
            assert_eq!(prefix, p.type_prefix, "{}", t.ty);
            assert_eq!(name, t.name, "{}", t.ty);
            let expected = if t.category == Category::Audit {
                "CloudEvent"
            } else {
                "ErrorEvent"
            };
            assert_eq!(category, expected, "{}", t.ty);
            assert!(!t.description.is_empty(), "{}", t.ty);
            assert!(t.sample_data.is_object(), "{}", t.ty);
            // A recoverable event is an alarm; audit records have no state.
            if t.recoverable() {
                assert_eq!(t.category, Category::Exception, "{}", t.ty);
            }
            assert!(
                t.category != Category::Audit || t.status == StatusKind::Stateless,
                "{}",
                t.ty
            );
            // The sample subject appears in the sample data (the simulator replaces it).
            let subject = p.subject_for(t);
            assert!(
                t.sample_data
                    .to_string()
                    .contains(&format!("\"{subject}\"")),
                "{}: the sample data does not mention {subject}",
                t.ty
            );
        }
    }

    #[test]
    fn catalog_marks_what_is_documented() {
        let cat = catalog();
        let cvm = cat.product("cvm").unwrap();
        assert_eq!(cvm.source, "cvm.cloud.tencent");
        assert_eq!(cvm.prefix_provenance, Provenance::Documented);
        for name in ["DiskReadonly", "GuestReboot", "PingUnreachable", "GuestOom"] {
            let t = cvm.event_type(name).unwrap();
            assert_eq!(t.ty, format!("cvm:ErrorEvent:{name}"));
            assert!(t.documented, "{name}");
        }
        assert!(cvm.event_type("DiskReadonly").unwrap().recoverable());
        assert_eq!(
            cvm.event_type("GuestReboot").unwrap().category,
            Category::StatusChange
        );
        let (oceanus, t) = find_type("oceanus:ErrorEvent:OceanusTaskmanagerLoadTooHigh").unwrap();
        assert_eq!(oceanus.key, "oceanus");
        assert_eq!(t.provenance, Provenance::Documented);
        assert!(!t.documented, "the oceanus prefix is assumed");
        assert!(oceanus.note.as_deref().unwrap().contains("assumed"));
        assert!(
            find_type("ckafka:ErrorEvent:ConsumerGroupMemberHeartbeatTimeout")
                .unwrap()
                .1
                .documented
        );
        assert!(
            find_type("antiddos:ErrorEvent:DDoSAlaram")
                .unwrap()
                .1
                .documented
        );
        // Products without any documented names say so on every type.
        for key in [
            "emr",
            "dtf",
            "cfs",
            "sdwan",
            "baremetal",
            "tsf",
            "dbbrain",
            "dts",
            "tdsqlc",
        ] {
            let p = cat.product(key).unwrap();
            assert_eq!(p.prefix_provenance, Provenance::Assumed, "{key}");
            assert!(p.note.as_deref().unwrap().contains("assumed"), "{key}");
            for t in &p.event_types {
                assert_eq!(t.provenance, Provenance::Assumed, "{}", t.ty);
                assert!(!t.documented);
            }
        }
        let redis = cat.product("redis").unwrap();
        assert_eq!(redis.prefix_provenance, Provenance::Unofficial);
    }

    #[test]
    fn products_are_found_by_key_prefix_or_source() {
        assert_eq!(product("mysql").unwrap().key, "mysql");
        assert_eq!(product("cdb").unwrap().key, "mysql");
        assert_eq!(product("CDB.cloud.tencent").unwrap().key, "mysql");
        assert_eq!(product("antiddos").unwrap().key, "ddos");
        assert!(product("s3").is_none());
        let tke = product("tke").unwrap();
        // `oom` and `SystemOOM` are different events.
        assert_eq!(tke.event_type("oom").unwrap().name, "oom");
        assert_eq!(tke.event_type("OOM").unwrap().name, "oom");
        assert_eq!(tke.event_type("systemoom").unwrap().name, "SystemOOM");
    }

    #[test]
    fn select_resolves_names_and_lists_valid_ones_on_error() {
        assert_eq!(
            select(None, None).unwrap().len(),
            catalog().event_types().count()
        );
        let cvm = select(Some("cvm"), None).unwrap();
        assert_eq!(cvm.len(), product("cvm").unwrap().event_types.len());
        let one = select(Some("cvm"), Some("DiskReadonly")).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].1.ty, "cvm:ErrorEvent:DiskReadonly");
        let full = select(None, Some("cvm:ErrorEvent:GuestReboot")).unwrap();
        assert_eq!(full.len(), 1);
        // A shared name without a product stands for each product's type.
        let shared = select(None, Some("PacketDroppedByQosWanOutBandwidth")).unwrap();
        let keys: Vec<&str> = shared.iter().map(|(p, _)| p.key.as_str()).collect();
        assert_eq!(keys, ["cvm", "vpn"]);

        let e = select(Some("s3"), None).unwrap_err();
        assert!(matches!(e, CloudError::UnknownProduct { .. }));
        let msg = e.to_string();
        assert!(msg.contains("unknown product `s3`"), "{msg}");
        assert!(msg.contains("cvm") && msg.contains("ddos"), "{msg}");
        let e = select(Some("cvm"), Some("Nope")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("for product `cvm`"), "{msg}");
        assert!(msg.contains("cvm:ErrorEvent:DiskReadonly"), "{msg}");
        assert!(!msg.contains("redis:"), "{msg}");
        // A real type of another product is unknown within this one.
        assert!(select(Some("cvm"), Some("redis:ErrorEvent:ServiceNotAvailable")).is_err());
    }

    /// The `default` set's checks on top of event validation (bus.rs `check_set_rules`).
    fn accepted_by_default_set(event: &Value) -> crate::Result<()> {
        let e = parse_event(event, "$", crate::config::now_ms(), &EventLimits::default())?;
        assert!(is_cloud_source(&e.source), "source {}", e.source);
        assert!(cloud_event_type_parts(&e.ty).is_some(), "type {}", e.ty);
        Ok(())
    }

    #[test]
    fn every_simulated_event_passes_default_set_validation() {
        let mut sim = Simulator::new(7);
        for (p, t) in catalog().event_types() {
            // Several draws: alarm and recovery both.
            for _ in 0..4 {
                let ev = sim.event(p, t);
                accepted_by_default_set(&ev).unwrap_or_else(|e| panic!("{}: {e}: {ev}", t.ty));
                assert_eq!(ev["source"], p.source.as_str());
                assert_eq!(ev["type"], t.ty.as_str());
            }
        }
    }

    #[test]
    fn simulated_events_look_like_the_product_s() {
        let mut sim = Simulator::new(1);
        let cvm = product("cvm").unwrap();
        let t = cvm.event_type("DiskReadonly").unwrap();
        let ev = sim.event(cvm, t);
        let id = ev["id"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let subject = ev["subject"].as_str().unwrap();
        assert!(
            subject.starts_with("ins-") && subject.len() == 12,
            "{subject}"
        );
        assert!(
            subject[4..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(ev["data"]["instanceId"], subject);
        assert_eq!(ev["data"]["dimensions"]["unInstanceId"], subject);
        assert_eq!(ev["datacontenttype"], "application/json;charset=utf-8");
        assert!(REGIONS.contains(&ev["region"].as_str().unwrap()));
        assert_eq!(
            ev["status"], "1",
            "the first event of a recoverable type is an alarm"
        );
        let now = crate::config::now_ms();
        let time = ev["time"].as_u64().unwrap();
        assert!(time <= now && now - time < 60_000, "{time} vs {now}");

        for (key, prefix) in [
            ("mysql", "cdb-"),
            ("redis", "crs-"),
            ("ckafka", "ckafka-"),
            ("clb", "lb-"),
            ("tke", "cls-"),
            ("tdsqlc", "cynosdbmysql-"),
        ] {
            let p = product(key).unwrap();
            let ev = sim.event(p, &p.event_types[0]);
            let s = ev["subject"].as_str().unwrap();
            assert!(s.starts_with(prefix), "{key}: {s}");
            assert_ne!(s, p.subject, "{key}: a fresh id, not the sample's");
        }
        // DDoS events are about an IP.
        let ddos = product("ddos").unwrap();
        let ev = sim.event(ddos, ddos.event_type("DDoSAlaram").unwrap());
        let ip = ev["subject"].as_str().unwrap();
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
        assert_eq!(ev["data"]["Ip"], ip);
        assert_eq!(ev["data"]["Region"], ev["region"]);
        // Stateless events say "-"; audit records carry no status.
        let ev = sim.event(cvm, cvm.event_type("GuestReboot").unwrap());
        assert_eq!(ev["status"], "-");
        let ev = sim.event(cvm, cvm.event_type("cvm:CloudEvent:ApiCall").unwrap());
        assert!(ev.get("status").is_none(), "{ev}");
        assert_eq!(ev["data"]["resourceName"], ev["subject"]);
    }

    #[test]
    fn seeded_simulator_is_deterministic() {
        let choices = select(None, None).unwrap();
        let run = |seed| {
            let mut sim = Simulator::new(seed);
            (0..200)
                .map(|i| sim.next_event_at(&choices, 1_700_000_000_000 + i))
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42));
        assert_ne!(a, run(43));
        let ids: BTreeSet<&str> = a.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), a.len(), "ids are unique");
        assert_eq!(a[5]["time"], json!(1_700_000_000_005_u64));
        // The draws cover many products.
        let products: BTreeSet<&str> = a.iter().map(|e| e["source"].as_str().unwrap()).collect();
        assert!(products.len() > 10, "{products:?}");
    }

    #[test]
    fn recoverable_events_alarm_then_recover_the_same_resource() {
        let cvm = product("cvm").unwrap();
        let t = cvm.event_type("PingUnreachable").unwrap();
        let mut sim = Simulator::new(3);
        let mut open: Vec<(String, String)> = Vec::new();
        let (mut alarms, mut recoveries) = (0, 0);
        for _ in 0..500 {
            let ev = sim.event(cvm, t);
            let key = (
                ev["subject"].as_str().unwrap().to_owned(),
                ev["region"].as_str().unwrap().to_owned(),
            );
            match ev["status"].as_str().unwrap() {
                "1" => {
                    alarms += 1;
                    open.push(key);
                }
                "0" => {
                    recoveries += 1;
                    let at = open.iter().position(|k| *k == key);
                    let at = at.unwrap_or_else(|| panic!("recovery of {key:?} without an alarm"));
                    open.swap_remove(at);
                }
                other => panic!("status {other}"),
            }
        }
        assert!(alarms > 100 && recoveries > 100, "{alarms} / {recoveries}");
    }
}
