//! The catalog's typed model and its data (`catalog.json`, embedded at build time).
//!
//! The data is checked once, when first used ([`catalog`]): every type string must be
//! `prefix:Category:Name` with the product's prefix, every source `<x>.cloud.tencent`, keys
//! unique. The unit tests run the same checks, so a bad edit of `catalog.json` fails the build's
//! tests, never a running server.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::event::{cloud_event_type_parts, is_cloud_source};

/// The catalog's data: 23 products, as JSON.
const CATALOG_JSON: &str = include_str!("catalog.json");

/// Where a name (a type prefix or an event name) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Named in Tencent's official documentation (the Cloud Monitor event list, or a type
    /// string quoted verbatim in the EventBridge docs, SDK or CLI examples).
    Documented,
    /// From unofficial notes built from `tccli monitor DescribeAlarmEvents`.
    Unofficial,
    /// Not documented anywhere found: a plausible name chosen for the simulator.
    Assumed,
}

/// The kind of an event type, as the Cloud Monitor event list classes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Something is wrong (an `ErrorEvent` alarm).
    Exception,
    /// A state change worth knowing about (a restart, a failover).
    StatusChange,
    /// A CloudAudit record of a write operation (`CloudEvent:ApiCall` and the like).
    Audit,
}

/// What the `status` attribute of an event of this type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// The condition can clear: `"1"` when it starts (abnormal), `"0"` when it clears
    /// (recovered), for the same subject.
    Recoverable,
    /// No recovery follows: `"-"` (audit events carry no `status` at all).
    Stateless,
}

/// One event type of a product.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventType {
    /// The full type string, `prefix:Category:Name`, e.g. `cvm:ErrorEvent:DiskReadonly`.
    #[serde(rename = "type")]
    pub ty: String,
    /// The event name: the type's last part, e.g. `DiskReadonly`. Filled in from `type`.
    #[serde(default)]
    pub name: String,
    /// What happened.
    pub description: String,
    /// Exception, status change or audit.
    pub category: Category,
    /// Recoverable (`"1"` / `"0"`) or stateless (`"-"`).
    pub status: StatusKind,
    /// Where the event name comes from.
    pub provenance: Provenance,
    /// True when this exact type string is documented: both the product's prefix and the
    /// event name are. Filled in from the two provenances.
    #[serde(default)]
    pub documented: bool,
    /// Caveats (an undocumented recoverability, where sample fields come from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A sample subject when this type's events are about a different resource than the
    /// product's usual one (a VPN connection rather than its gateway). Absent = the product's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A realistic `data` member. Monitoring events follow the Cloud Monitor sample shape
    /// (`appId`, `instanceId`, `projectId`, `dimensions`, `additionalMsg`); the contents of
    /// `dimensions` and `additionalMsg` are illustrative unless a note says otherwise.
    #[schema(value_type = Object)]
    pub sample_data: Value,
}

impl EventType {
    /// Whether events of this type come in alarm (`"1"`) / recovery (`"0"`) pairs.
    pub fn recoverable(&self) -> bool {
        self.status == StatusKind::Recoverable
    }

    /// A summary without the sample data.
    pub fn summary(&self) -> EventTypeSummary {
        EventTypeSummary {
            ty: self.ty.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            category: self.category,
            status: self.status,
            provenance: self.provenance,
            documented: self.documented,
        }
    }
}

/// One cloud product that puts events into the `default` event set.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Stable lower-case key, e.g. `cvm`, `mysql`, `ddos`.
    pub key: String,
    /// English product name.
    pub name: String,
    /// Chinese product name, as the EventBridge docs list the event source.
    pub name_zh: String,
    /// The events' `source`, `<x>.cloud.tencent`.
    pub source: String,
    /// The first part of the events' types (`cvm` in `cvm:ErrorEvent:DiskReadonly`).
    pub type_prefix: String,
    /// Where `source` and `type_prefix` come from.
    pub prefix_provenance: Provenance,
    /// The product's documentation.
    pub docs: String,
    /// A sample subject: the product's resource id (`ins-…`, `cdb-…`) or, for DDoS, an IP.
    pub subject: String,
    /// Caveats: what is documented and what is assumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The product's event types.
    pub event_types: Vec<EventType>,
}

impl Product {
    /// The event type with this full type string (`cvm:ErrorEvent:GuestReboot`) or event name
    /// (`GuestReboot`). Exact match first; then a case-insensitive one, if only one type
    /// matches that way (names such as `oom` and `SystemOOM` differ only in more than case).
    pub fn event_type(&self, ty: &str) -> Option<&EventType> {
        let ty = ty.trim();
        if let Some(t) = self.event_types.iter().find(|t| t.ty == ty || t.name == ty) {
            return Some(t);
        }
        let mut folded = self
            .event_types
            .iter()
            .filter(|t| t.ty.eq_ignore_ascii_case(ty) || t.name.eq_ignore_ascii_case(ty));
        match (folded.next(), folded.next()) {
            (Some(t), None) => Some(t),
            _ => None,
        }
    }

    /// Whether `name` names this product: its key, its type prefix or its source, any case.
    pub fn is_named(&self, name: &str) -> bool {
        let name = name.trim();
        self.key.eq_ignore_ascii_case(name)
            || self.type_prefix.eq_ignore_ascii_case(name)
            || self.source.eq_ignore_ascii_case(name)
    }

    /// The sample subject of events of type `ty` (the type's own, else the product's).
    pub fn subject_for<'a>(&'a self, ty: &'a EventType) -> &'a str {
        ty.subject.as_deref().unwrap_or(&self.subject)
    }

    /// A summary: the product and its event types, without sample data.
    pub fn summary(&self) -> ProductSummary {
        ProductSummary {
            key: self.key.clone(),
            name: self.name.clone(),
            name_zh: self.name_zh.clone(),
            source: self.source.clone(),
            type_prefix: self.type_prefix.clone(),
            prefix_provenance: self.prefix_provenance,
            note: self.note.clone(),
            event_types: self.event_types.iter().map(EventType::summary).collect(),
        }
    }
}

/// An event type without its sample data (`GET /v1/catalog`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventTypeSummary {
    /// The full type string.
    #[serde(rename = "type")]
    pub ty: String,
    /// The event name (the type's last part).
    pub name: String,
    /// What happened.
    pub description: String,
    /// Exception, status change or audit.
    pub category: Category,
    /// Recoverable or stateless.
    pub status: StatusKind,
    /// Where the event name comes from.
    pub provenance: Provenance,
    /// Whether this exact type string is documented.
    pub documented: bool,
}

/// A product without sample data (`GET /v1/catalog`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductSummary {
    /// Stable key.
    pub key: String,
    /// English name.
    pub name: String,
    /// Chinese name.
    pub name_zh: String,
    /// The events' source.
    pub source: String,
    /// The events' type prefix.
    pub type_prefix: String,
    /// Where source and prefix come from.
    pub prefix_provenance: Provenance,
    /// Caveats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The event types.
    pub event_types: Vec<EventTypeSummary>,
}

/// The whole catalog.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Every product, in the order the EventBridge docs list the event sources.
    pub products: Vec<Product>,
}

impl Catalog {
    /// The product named `name` (key, type prefix or source; any case).
    pub fn product(&self, name: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.is_named(name))
    }

    /// The product and event type of a full type string such as `cvm:ErrorEvent:DiskReadonly`.
    pub fn find_type(&self, ty: &str) -> Option<(&Product, &EventType)> {
        self.products
            .iter()
            .find_map(|p| p.event_types.iter().find(|t| t.ty == ty).map(|t| (p, t)))
    }

    /// Every (product, event type) pair, in catalog order.
    pub fn event_types(&self) -> impl Iterator<Item = (&Product, &EventType)> {
        self.products
            .iter()
            .flat_map(|p| p.event_types.iter().map(move |t| (p, t)))
    }

    /// The product keys, in catalog order.
    pub fn keys(&self) -> Vec<&str> {
        self.products.iter().map(|p| p.key.as_str()).collect()
    }

    /// Summaries of every product.
    pub fn summary(&self) -> Vec<ProductSummary> {
        self.products.iter().map(Product::summary).collect()
    }
}

/// The catalog, parsed and checked on first use.
pub fn catalog() -> &'static Catalog {
    static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
        // The data is compiled in and checked by the unit tests (`embedded_catalog_loads`),
        // so this cannot fail in a tested build.
        load(CATALOG_JSON).unwrap_or_else(|e| panic!("the embedded cloud event catalog: {e}"))
    });
    &CATALOG
}

/// Parses catalog JSON, fills in the derived fields (`name`, `documented`) and checks it.
pub(crate) fn load(text: &str) -> Result<Catalog, String> {
    let mut cat: Catalog = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut keys = std::collections::HashSet::new();
    let mut types = std::collections::HashSet::new();
    for p in &mut cat.products {
        if !keys.insert(p.key.clone()) {
            return Err(format!("product key `{}` is listed twice", p.key));
        }
        if p.key.is_empty()
            || !p
                .key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(format!(
                "product key `{}`: lower-case letters and digits only",
                p.key
            ));
        }
        if !is_cloud_source(&p.source) {
            return Err(format!(
                "{}: source `{}` is not `<x>.cloud.tencent`",
                p.key, p.source
            ));
        }
        if p.event_types.is_empty() {
            return Err(format!("{}: no event types", p.key));
        }
        for t in &mut p.event_types {
            let Some((prefix, _, name)) = cloud_event_type_parts(&t.ty) else {
                return Err(format!(
                    "{}: type `{}` is not prefix:Category:Name",
                    p.key, t.ty
                ));
            };
            if prefix != p.type_prefix {
                return Err(format!(
                    "{}: type `{}` does not start with the product's prefix `{}`",
                    p.key, t.ty, p.type_prefix
                ));
            }
            if !types.insert(t.ty.clone()) {
                return Err(format!("type `{}` is listed twice", t.ty));
            }
            if !t.sample_data.is_object() {
                return Err(format!("{}: the sample data is not a JSON object", t.ty));
            }
            t.name = name.to_owned();
            t.documented = t.provenance == Provenance::Documented
                && p.prefix_provenance == Provenance::Documented;
        }
    }
    Ok(cat)
}
