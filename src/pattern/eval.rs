//! Flattening events into leaves and deciding whether a conjunction of conditions holds.
//!
//! The model (event-ruler's): an event is the list of its scalar values ("leaves"), each with
//! the dotted path of object keys that leads to it (array positions are not part of the
//! path; arrays of arrays flatten) and its *trail*: which element of which array it sits in.
//! A conjunction holds when every condition can pick a leaf at its path that one of its
//! matchers accepts, and the picked leaves agree on the element of every array they share
//! ("array consistency": `{"d": {"a": [1], "b": [2]}}` must find `a = 1` and `b = 2` in the
//! same element of `d`). `exists: false` needs the path to have no leaf anywhere in the
//! event; `[]`, `{}` and objects are not leaves, so they count as absent.
//!
//! [`Program`] interns the pattern paths once, so an event is flattened only along paths some
//! pattern names: a subtree no pattern reaches into is skipped without being visited.

use rustc_hash::FxHashMap;
use serde_json::Value;
use smallvec::SmallVec;

use super::matcher::{LeafVal, Matcher, Num};
use super::parse::Conjunct;

/// (array id, element index) for each array between the event root and a leaf, outermost
/// first. Array ids are unique within one flattened event.
pub(crate) type Trail = SmallVec<[(u32, u32); 2]>;

/// Whether two leaves can be chosen together: they sit in the same element of every array
/// both are inside. Trails are root-first chains in a tree, so the shared arrays are a common
/// prefix; once the array ids differ the chains never meet again.
pub(crate) fn consistent(a: &Trail, b: &Trail) -> bool {
    for (x, y) in a.iter().zip(b.iter()) {
        if x.0 != y.0 {
            return true;
        }
        if x.1 != y.1 {
            return false;
        }
    }
    true
}

fn leaf_val(v: &Value) -> Option<LeafVal<'_>> {
    Some(match v {
        Value::String(s) => LeafVal::Str(s),
        Value::Number(n) => LeafVal::Num(Num::parse(n.as_str())?),
        Value::Bool(b) => LeafVal::Bool(*b),
        Value::Null => LeafVal::Null,
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// One condition with its path interned.
#[derive(Clone, Debug)]
pub(crate) struct Cond {
    pub(crate) path: u32,
    pub(crate) options: Box<[Matcher]>,
    pub(crate) absent_ok: bool,
}

/// One alternative of one pattern.
#[derive(Clone, Debug)]
pub(crate) struct Conj {
    /// Index of the pattern it belongs to.
    pub(crate) owner: u32,
    pub(crate) conds: Box<[Cond]>,
}

#[derive(Clone, Debug)]
struct PathEntry {
    /// The path's id when a condition names it.
    id: Option<u32>,
    /// Whether a condition names a longer path under it (`a` for `a.b`).
    descend: bool,
}

/// Compiled alternatives of one or more patterns over one table of interned paths.
#[derive(Clone, Debug, Default)]
pub(crate) struct Program {
    paths: FxHashMap<Box<str>, PathEntry>,
    path_count: u32,
    pub(crate) conjs: Vec<Conj>,
}

/// An event's leaves along the paths a [`Program`] knows, sorted by path id.
pub(crate) struct Flat<'a> {
    pub(crate) leaves: Vec<(u32, LeafVal<'a>, Trail)>,
}

impl Flat<'_> {
    /// The leaves at one path.
    pub(crate) fn at(&self, path: u32) -> &[(u32, LeafVal<'_>, Trail)] {
        let start = self.leaves.partition_point(|l| l.0 < path);
        let end = start + self.leaves[start..].partition_point(|l| l.0 == path);
        &self.leaves[start..end]
    }
}

impl Program {
    fn intern(&mut self, path: &str) -> u32 {
        // Mark every dotted prefix so the flattener knows to walk into it.
        for (i, _) in path.match_indices('.') {
            self.paths
                .entry(path[..i].into())
                .or_insert(PathEntry {
                    id: None,
                    descend: false,
                })
                .descend = true;
        }
        let next = self.path_count;
        let entry = self.paths.entry(path.into()).or_insert(PathEntry {
            id: None,
            descend: false,
        });
        match entry.id {
            Some(id) => id,
            None => {
                entry.id = Some(next);
                self.path_count += 1;
                next
            }
        }
    }

    /// Adds a pattern's alternatives under `owner`.
    pub(crate) fn add(&mut self, owner: u32, alts: &[Conjunct]) {
        for alt in alts {
            let conds = alt
                .iter()
                .map(|c| Cond {
                    path: self.intern(&c.path),
                    options: c.options.clone(),
                    absent_ok: c.absent_ok,
                })
                .collect();
            self.conjs.push(Conj { owner, conds });
        }
    }

    /// Number of distinct condition paths.
    pub(crate) fn path_count(&self) -> u32 {
        self.path_count
    }

    /// The event's leaves at the known paths. A non-object event has none.
    pub(crate) fn flatten<'a>(&self, event: &'a Value) -> Flat<'a> {
        let mut out = Flat { leaves: Vec::new() };
        if let Value::Object(_) = event {
            let mut path = String::with_capacity(64);
            let mut trail = Trail::new();
            let mut arrays = 0u32;
            self.walk(event, &mut path, &mut trail, &mut arrays, None, &mut out);
            out.leaves.sort_by_key(|l| l.0);
        }
        out
    }

    /// `here` is the id of `path` when a condition names it.
    fn walk<'a>(
        &self,
        v: &'a Value,
        path: &mut String,
        trail: &mut Trail,
        arrays: &mut u32,
        here: Option<u32>,
        out: &mut Flat<'a>,
    ) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let len = path.len();
                    if len > 0 {
                        path.push('.');
                    }
                    path.push_str(k);
                    if let Some(e) = self.paths.get(path.as_str()) {
                        let go = match child {
                            Value::Object(_) => e.descend,
                            Value::Array(_) => e.descend || e.id.is_some(),
                            _ => e.id.is_some(),
                        };
                        if go {
                            self.walk(child, path, trail, arrays, e.id, out);
                        }
                    }
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                let id = *arrays;
                *arrays += 1;
                for (i, item) in items.iter().enumerate() {
                    trail.push((id, i as u32));
                    self.walk(item, path, trail, arrays, here, out);
                    trail.pop();
                }
            }
            scalar => {
                if let (Some(id), Some(val)) = (here, leaf_val(scalar)) {
                    out.leaves.push((id, val, trail.clone()));
                }
            }
        }
    }
}

/// Whether one alternative holds on a flattened event.
///
/// Conditions are taken in path order. A condition holds by choosing a leaf at its path that
/// one of its matchers accepts and that is consistent with the leaves chosen before it, or,
/// when it allows `exists: false`, when no leaf at its path is consistent with those earlier
/// choices (event-ruler's rule, so `{"a": [1], "b": [{"exists": false}]}` can hold on an array
/// element that has `a = 1` and no `b` even when another element has a `b`).
pub(crate) fn conj_matches(conds: &[Cond], flat: &Flat<'_>) -> bool {
    // Fast path: a leaf outside every array is consistent with any choice, so conditions
    // that have one are settled on their own; only the rest need a joint search.
    let mut tied: SmallVec<[usize; 4]> = SmallVec::new();
    for (i, c) in conds.iter().enumerate() {
        let leaves = flat.at(c.path);
        if leaves.is_empty() {
            if c.absent_ok {
                continue;
            }
            return false;
        }
        if c.absent_ok && leaves.iter().all(|l| !l.2.is_empty()) {
            // Whether the path counts as absent depends on the earlier choices.
            return ordered_search(conds, flat, &mut SmallVec::new());
        }
        let mut any = false;
        let mut free = false;
        for (_, val, trail) in leaves {
            if c.options.iter().any(|m| m.matches(val)) {
                any = true;
                if trail.is_empty() {
                    free = true;
                    break;
                }
            }
        }
        if !any {
            return false;
        }
        if !free {
            tied.push(i);
        }
    }
    if tied.len() <= 1 {
        return true;
    }
    let tied_conds: SmallVec<[&Cond; 4]> = tied.iter().map(|&i| &conds[i]).collect();
    let mut chosen: SmallVec<[&Trail; 4]> = SmallVec::new();
    choose(&tied_conds, flat, &mut chosen)
}

/// Backtracking search for mutually consistent leaves, one per condition (no absence).
fn choose<'f>(conds: &[&Cond], flat: &'f Flat<'_>, chosen: &mut SmallVec<[&'f Trail; 4]>) -> bool {
    let Some((c, rest)) = conds.split_first() else {
        return true;
    };
    for (_, val, trail) in flat.at(c.path) {
        if c.options.iter().any(|m| m.matches(val)) && chosen.iter().all(|t| consistent(t, trail)) {
            chosen.push(trail);
            if choose(rest, flat, chosen) {
                return true;
            }
            chosen.pop();
        }
    }
    false
}

/// The full search, in path order, with absence judged against the choices made so far.
fn ordered_search<'f>(
    conds: &[Cond],
    flat: &'f Flat<'_>,
    chosen: &mut SmallVec<[&'f Trail; 4]>,
) -> bool {
    let Some((c, rest)) = conds.split_first() else {
        return true;
    };
    let leaves = flat.at(c.path);
    for (_, val, trail) in leaves {
        if c.options.iter().any(|m| m.matches(val)) && chosen.iter().all(|t| consistent(t, trail)) {
            chosen.push(trail);
            if ordered_search(rest, flat, chosen) {
                return true;
            }
            chosen.pop();
        }
    }
    c.absent_ok
        && !leaves
            .iter()
            .any(|l| chosen.iter().all(|t| consistent(t, &l.2)))
        && ordered_search(rest, flat, chosen)
}

/// The reference evaluator: flattens everything, compares path strings, tries every
/// combination. Slow and obviously right; tests hold the indexed matcher to it.
pub(crate) fn naive_matches(alts: &[Conjunct], event: &Value) -> bool {
    fn all<'a>(
        v: &'a Value,
        path: &str,
        trail: &mut Trail,
        arrays: &mut u32,
        out: &mut Vec<(String, LeafVal<'a>, Trail)>,
    ) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    all(child, &p, trail, arrays, out);
                }
            }
            Value::Array(items) => {
                let id = *arrays;
                *arrays += 1;
                for (i, item) in items.iter().enumerate() {
                    trail.push((id, i as u32));
                    all(item, path, trail, arrays, out);
                    trail.pop();
                }
            }
            scalar => {
                if let Some(val) = leaf_val(scalar) {
                    out.push((path.to_owned(), val, trail.clone()));
                }
            }
        }
    }
    fn go(
        conds: &[super::parse::Cond],
        leaves: &[(String, LeafVal<'_>, Trail)],
        chosen: &mut Vec<Trail>,
    ) -> bool {
        let Some((c, rest)) = conds.split_first() else {
            return true;
        };
        for (p, val, trail) in leaves {
            if **p == *c.path
                && c.options.iter().any(|m| m.matches(val))
                && chosen.iter().all(|t| consistent(t, trail))
            {
                chosen.push(trail.clone());
                if go(rest, leaves, chosen) {
                    return true;
                }
                chosen.pop();
            }
        }
        let visible = |l: &(String, LeafVal<'_>, Trail)| {
            *l.0 == *c.path && chosen.iter().all(|t| consistent(t, &l.2))
        };
        c.absent_ok && !leaves.iter().any(visible) && go(rest, leaves, chosen)
    }
    if !event.is_object() {
        return false;
    }
    let mut leaves = Vec::new();
    all(event, "", &mut Trail::new(), &mut 0, &mut leaves);
    alts.iter().any(|alt| go(alt, &leaves, &mut Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[(u32, u32)]) -> Trail {
        v.iter().copied().collect()
    }

    #[test]
    fn consistency_requires_same_element_of_shared_arrays() {
        assert!(consistent(&t(&[]), &t(&[(0, 1)])));
        assert!(consistent(&t(&[(0, 1)]), &t(&[(0, 1), (3, 0)])));
        assert!(!consistent(&t(&[(0, 1)]), &t(&[(0, 2)])));
        // Same element of array 0, then different arrays inside it.
        assert!(consistent(&t(&[(0, 1), (2, 0)]), &t(&[(0, 1), (5, 4)])));
        assert!(!consistent(&t(&[(0, 0), (2, 0)]), &t(&[(0, 1), (5, 0)])));
    }
}
