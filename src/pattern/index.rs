//! [`PatternSet`]: many patterns matched against one event at a cost that grows with the
//! rules that could match, not with the rule count.
//!
//! Each alternative of each pattern is filed under one *anchor*: a condition it cannot hold
//! without, chosen among conditions whose alternatives are all literal values or non-empty
//! prefixes, preferring the (path, value) keys that the fewest other alternatives share
//! (`type` or `subject` rather than `source`, which most cloud rules repeat). For an event,
//! each flattened leaf looks up its path's literal table (one hash probe) and prefix table
//! (one probe per distinct prefix length); only the alternatives found that way, plus those
//! with no possible anchor (operators such as `anything-but`, `numeric` or `exists` on every
//! field), are evaluated in full.

use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use super::Pattern;
use std::net::Ipv6Addr;

use super::eval::{Flat, Memo, Program, conj_matches};
use super::matcher::{LeafVal, Lit, Matcher};
use super::number::Decimal;

/// Literal and prefix tables for one path.
#[derive(Clone, Debug, Default)]
struct PathIndex {
    strs: FxHashMap<Box<str>, Vec<u32>>,
    nums: FxHashMap<Decimal, Vec<u32>>,
    trues: Vec<u32>,
    falses: Vec<u32>,
    nulls: Vec<u32>,
    prefixes: FxHashMap<Box<str>, Vec<u32>>,
    /// Distinct prefix lengths in bytes, ascending.
    prefix_lens: Vec<usize>,
    /// IPv6 literals by address, so any spelling of the address finds them.
    ips: FxHashMap<Ipv6Addr, Vec<u32>>,
}

/// How an anchor condition's alternative is filed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Lit(Lit),
    Prefix(Box<str>),
    Ip(Ipv6Addr),
}

fn keys_of(options: &[Matcher]) -> Option<Vec<Key>> {
    options
        .iter()
        .map(|m| match m {
            Matcher::Exact(l) => Some(Key::Lit(l.clone())),
            Matcher::Prefix(p) if !p.is_empty() => Some(Key::Prefix(p.clone())),
            Matcher::Ip(ip) => Some(Key::Ip(*ip)),
            _ => None,
        })
        .collect()
}

/// A cheap pre-check before parsing a value as an IPv6 address (only IPv6 literals are in the
/// `ips` table): a colon within the first five characters. Most strings at a path that also
/// holds IPv6 literals (`ins-…` instance ids next to Anti-DDoS addresses in `subject`) fail it.
fn may_be_ipv6(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 45 && b[..b.len().min(5)].contains(&b':')
}

/// A compiled, indexed set of patterns, each under a key of type `K` (a rule name, say).
#[derive(Clone, Debug)]
pub struct PatternSet<K> {
    keys: Vec<K>,
    program: Program,
    /// Indexed by path id.
    index: Vec<Option<Box<PathIndex>>>,
    /// Alternatives with no literal anchor, by a path they need a value at (a `numeric`
    /// threshold on one metric is only tried on events that carry that metric).
    by_presence: Vec<Vec<u32>>,
    /// Alternatives that need no value at all (only `exists: false`): tried on every event.
    unanchored: Vec<u32>,
}

impl<K> Default for PatternSet<K> {
    fn default() -> Self {
        PatternSet {
            keys: Vec::new(),
            program: Program::default(),
            index: Vec::new(),
            by_presence: Vec::new(),
            unanchored: Vec::new(),
        }
    }
}

impl<K> PatternSet<K> {
    /// Compiles the patterns into one matcher. The same key may appear twice; it is reported
    /// once per pattern that matches.
    pub fn new<'p>(patterns: impl IntoIterator<Item = (K, &'p Pattern)>) -> PatternSet<K> {
        let mut set = PatternSet::default();
        for (key, pattern) in patterns {
            let owner = set.keys.len() as u32;
            set.keys.push(key);
            set.program.add(owner, &pattern.alts);
        }
        set.program.seal();
        set.build_index();
        set
    }

    fn build_index(&mut self) {
        let program = &self.program;
        // Pass 1: how many alternatives could file under each (path, key).
        let mut freq: FxHashMap<(u32, &Key), u32> = FxHashMap::default();
        let candidates: Vec<Vec<(u32, Vec<Key>)>> = program
            .conjs
            .iter()
            .map(|c| {
                c.conds
                    .iter()
                    .map(|&id| &program.conds[id as usize])
                    .filter(|cond| !cond.absent_ok)
                    .filter_map(|cond| keys_of(&cond.options).map(|k| (cond.path, k)))
                    .collect()
            })
            .collect();
        for cands in &candidates {
            let mut seen: FxHashSet<(u32, &Key)> = FxHashSet::default();
            for (path, keys) in cands {
                for k in keys {
                    if seen.insert((*path, k)) {
                        *freq.entry((*path, k)).or_default() += 1;
                    }
                }
            }
        }
        let mut distinct = vec![0u32; program.path_count() as usize];
        for (path, _) in freq.keys() {
            distinct[*path as usize] += 1;
        }
        // Pass 2: file each alternative under its cheapest anchor.
        let paths = program.path_count() as usize;
        let mut index: Vec<Option<Box<PathIndex>>> = vec![None; paths];
        let mut by_presence: Vec<Vec<u32>> = vec![Vec::new(); paths];
        let mut unanchored: Vec<u32> = Vec::new();
        for (ci, cands) in candidates.iter().enumerate() {
            // Expected candidates per event if filed under this condition: each key's
            // alternatives, times the chance an event carries that key, estimated as one over
            // the number of distinct keys patterns use at the path (so `region`, with a
            // dozen values every event has one of, costs more than `type` with hundreds).
            let best = cands.iter().min_by(|a, b| {
                let cost = |(path, keys): &(u32, Vec<Key>)| -> f64 {
                    let total: u32 = keys.iter().map(|k| freq[&(*path, k)]).sum();
                    f64::from(total) / f64::from(distinct[*path as usize].max(1))
                };
                cost(a).total_cmp(&cost(b))
            });
            let Some((path, keys)) = best else {
                // No literal anchor: file under the required path that the fewest others
                // were filed under so far.
                let required = program.conjs[ci]
                    .conds
                    .iter()
                    .map(|&id| &program.conds[id as usize])
                    .filter(|c| !c.absent_ok)
                    .map(|c| c.path)
                    .min_by_key(|&p| by_presence[p as usize].len());
                match required {
                    Some(p) => by_presence[p as usize].push(ci as u32),
                    None => unanchored.push(ci as u32),
                }
                continue;
            };
            let pi = index[*path as usize].get_or_insert_with(Default::default);
            for k in keys {
                let list = match k {
                    Key::Lit(Lit::Str(s)) => pi.strs.entry(s.clone()).or_default(),
                    Key::Lit(Lit::Num(n)) => pi.nums.entry(n.value.clone()).or_default(),
                    Key::Lit(Lit::Bool(true)) => &mut pi.trues,
                    Key::Lit(Lit::Bool(false)) => &mut pi.falses,
                    Key::Lit(Lit::Null) => &mut pi.nulls,
                    Key::Prefix(p) => {
                        if !pi.prefix_lens.contains(&p.len()) {
                            pi.prefix_lens.push(p.len());
                        }
                        pi.prefixes.entry(p.clone()).or_default()
                    }
                    Key::Ip(ip) => pi.ips.entry(*ip).or_default(),
                };
                if list.last() != Some(&(ci as u32)) {
                    list.push(ci as u32);
                }
            }
        }
        for pi in index.iter_mut().flatten() {
            pi.prefix_lens.sort_unstable();
        }
        self.index = index;
        self.by_presence = by_presence;
        self.unanchored = unanchored;
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys of the patterns that match the event, in insertion order. An event that is
    /// not a JSON object matches nothing.
    pub fn matching(&self, event: &Value) -> Vec<&K> {
        let flat = self.program.flatten(event);
        // Already ascending and distinct (see `matching_owners`).
        self.matching_owners(&flat)
            .into_iter()
            .map(|o| &self.keys[o as usize])
            .collect()
    }

    /// How many alternatives the index hands to full evaluation for this event (the rest
    /// were ruled out by lookups alone). For benchmarks and tuning.
    pub fn candidates(&self, event: &Value) -> usize {
        self.candidate_ids(&self.program.flatten(event)).len()
    }

    /// Indexes of the matching patterns, ascending: candidates are sorted and a pattern's
    /// alternatives have consecutive ids, so owners come out in order, each once.
    fn matching_owners(&self, flat: &Flat<'_>) -> Vec<u32> {
        let cands = self.candidate_ids(flat);
        let mut owners: Vec<u32> = Vec::new();
        Memo::with(&self.program, |memo| {
            for ci in cands {
                let conj = &self.program.conjs[ci as usize];
                // A pattern's alternatives have consecutive ids and `cands` is sorted, so
                // once an owner matched, its remaining alternatives come right after.
                if owners.last() == Some(&conj.owner) {
                    continue;
                }
                if conj_matches(conj, &self.program, flat, memo) {
                    owners.push(conj.owner);
                }
            }
        });
        owners
    }

    /// Alternative ids worth evaluating, sorted, without duplicates.
    fn candidate_ids(&self, flat: &Flat<'_>) -> Vec<u32> {
        let mut cands: Vec<u32> = self.unanchored.clone();
        let mut last_path = u32::MAX;
        for (path, val, _) in &flat.leaves {
            if *path != last_path {
                // Leaves are grouped by path: once per path present in the event.
                last_path = *path;
                cands.extend_from_slice(&self.by_presence[*path as usize]);
            }
            let Some(pi) = &self.index[*path as usize] else {
                continue;
            };
            match val {
                LeafVal::Str(s) => {
                    if let Some(l) = pi.strs.get(*s) {
                        cands.extend_from_slice(l);
                    }
                    if !pi.ips.is_empty()
                        && may_be_ipv6(s)
                        && let Ok(ip) = s.parse::<Ipv6Addr>()
                        && let Some(l) = pi.ips.get(&ip)
                    {
                        cands.extend_from_slice(l);
                    }
                    for &len in &pi.prefix_lens {
                        if len > s.len() {
                            break;
                        }
                        if s.is_char_boundary(len)
                            && let Some(l) = pi.prefixes.get(&s[..len])
                        {
                            cands.extend_from_slice(l);
                        }
                    }
                }
                LeafVal::Num(n) => {
                    // Keyed by value: identical text implies equal value, so this finds
                    // every literal that could match (the full check follows).
                    if let Some(l) = pi.nums.get(&n.value) {
                        cands.extend_from_slice(l);
                    }
                }
                LeafVal::Bool(true) => cands.extend_from_slice(&pi.trues),
                LeafVal::Bool(false) => cands.extend_from_slice(&pi.falses),
                LeafVal::Null => cands.extend_from_slice(&pi.nulls),
            }
        }
        cands.sort_unstable();
        cands.dedup();
        cands
    }

    /// Keys with their patterns' positions, in insertion order.
    pub fn keys(&self) -> &[K] {
        &self.keys
    }
}
