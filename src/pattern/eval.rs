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
//! [`Program`] interns the pattern paths once in a trie of dotted segments, so an event is
//! flattened only along paths some pattern names (a subtree no pattern reaches into is
//! skipped without being visited, and each object key costs one hash probe of the key alone),
//! and stores each distinct condition once, so a condition that many rules share (`source`)
//! is evaluated once per event ([`Memo`]).

use std::cell::RefCell;

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
pub(crate) fn consistent(a: &[(u32, u32)], b: &[(u32, u32)]) -> bool {
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

/// One condition with its path interned. Identical conditions of different patterns (the
/// same `source`, say) are stored once and evaluated once per event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Cond {
    pub(crate) path: u32,
    pub(crate) options: Box<[Matcher]>,
    pub(crate) absent_ok: bool,
}

/// One alternative of one pattern: ids into [`Program::conds`], in path order.
#[derive(Clone, Debug)]
pub(crate) struct Conj {
    /// Index of the pattern it belongs to.
    pub(crate) owner: u32,
    pub(crate) conds: Box<[u32]>,
}

/// A node of the path trie: one per dotted segment of some condition's path.
#[derive(Clone, Debug, Default)]
struct Node {
    children: FxHashMap<Box<str>, u32>,
    /// The path id when a condition names the path ending here.
    path: Option<u32>,
}

/// Compiled alternatives of one or more patterns over one table of interned paths.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    /// Path trie; node 0 is the event root.
    nodes: Vec<Node>,
    path_count: u32,
    pub(crate) conds: Vec<Cond>,
    /// Condition → id while patterns are being added; emptied by [`Program::seal`].
    cond_ids: FxHashMap<Cond, u32>,
    pub(crate) conjs: Vec<Conj>,
}

impl Default for Program {
    fn default() -> Self {
        Program {
            nodes: vec![Node::default()],
            path_count: 0,
            conds: Vec::new(),
            cond_ids: FxHashMap::default(),
            conjs: Vec::new(),
        }
    }
}

/// An event's leaves along the paths a [`Program`] knows, grouped by path id.
pub(crate) struct Flat<'a> {
    /// (path id, value, (start, len) of its trail in `trails`).
    pub(crate) leaves: Vec<(u32, LeafVal<'a>, (u32, u32))>,
    /// Every non-empty trail, back to back (most leaves sit outside arrays and add nothing).
    trails: Vec<(u32, u32)>,
    /// `leaves[starts[p]..starts[p + 1]]` are the leaves at path `p`.
    starts: Vec<u32>,
}

impl Flat<'_> {
    /// The leaves at one path.
    pub(crate) fn at(&self, path: u32) -> &[(u32, LeafVal<'_>, (u32, u32))] {
        let p = path as usize;
        &self.leaves[self.starts[p] as usize..self.starts[p + 1] as usize]
    }

    /// A leaf's trail.
    fn trail(&self, (start, len): (u32, u32)) -> &[(u32, u32)] {
        &self.trails[start as usize..(start + len) as usize]
    }
}

impl Program {
    fn intern(&mut self, path: &str) -> u32 {
        // Dotted segments, so `{"a.b": …}` and `{"a": {"b": …}}` land on the same node.
        let mut node = 0usize;
        for seg in path.split('.') {
            node = match self.nodes[node].children.get(seg) {
                Some(&n) => n as usize,
                None => {
                    let n = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[node].children.insert(seg.into(), n as u32);
                    n
                }
            };
        }
        match self.nodes[node].path {
            Some(id) => id,
            None => {
                let id = self.path_count;
                self.nodes[node].path = Some(id);
                self.path_count += 1;
                id
            }
        }
    }

    /// Adds a pattern's alternatives under `owner`.
    pub(crate) fn add(&mut self, owner: u32, alts: &[Conjunct]) {
        for alt in alts {
            let conds = alt
                .iter()
                .map(|c| {
                    let cond = Cond {
                        path: self.intern(&c.path),
                        options: c.options.clone(),
                        absent_ok: c.absent_ok,
                    };
                    match self.cond_ids.get(&cond) {
                        Some(&id) => id,
                        None => {
                            let id = self.conds.len() as u32;
                            self.conds.push(cond.clone());
                            self.cond_ids.insert(cond, id);
                            id
                        }
                    }
                })
                .collect();
            self.conjs.push(Conj { owner, conds });
        }
    }

    /// Ends building: the de-duplication table is not needed for matching.
    pub(crate) fn seal(&mut self) {
        self.cond_ids = FxHashMap::default();
    }

    /// Number of distinct condition paths.
    pub(crate) fn path_count(&self) -> u32 {
        self.path_count
    }

    /// The trie node for key `k` below `node` (a key with dots walks several segments).
    fn child(&self, node: u32, k: &str) -> Option<u32> {
        let children = &self.nodes[node as usize].children;
        if let Some(&n) = children.get(k) {
            return Some(n);
        }
        if !k.contains('.') {
            return None;
        }
        k.split('.').try_fold(node, |n, seg| {
            self.nodes[n as usize].children.get(seg).copied()
        })
    }

    /// The event's leaves at the known paths. A non-object event has none.
    pub(crate) fn flatten<'a>(&self, event: &'a Value) -> Flat<'a> {
        let mut flat = Flat {
            leaves: Vec::new(),
            trails: Vec::new(),
            starts: Vec::new(),
        };
        if let Value::Object(_) = event {
            let mut trail = Trail::new();
            let mut arrays = 0u32;
            self.walk(event, 0, &mut trail, &mut arrays, &mut flat);
        }
        let leaves = &mut flat.leaves;
        // Group by path id: counts give each path's start, so `at` is two loads. The leaves
        // themselves are few; a (stable) sort orders them when the event's key order differs.
        let paths = self.path_count as usize;
        let mut starts = vec![0u32; paths + 1];
        for l in leaves.iter() {
            starts[l.0 as usize + 1] += 1;
        }
        for p in 0..paths {
            starts[p + 1] += starts[p];
        }
        if leaves.windows(2).any(|w| w[0].0 > w[1].0) {
            leaves.sort_by_key(|l| l.0);
        }
        flat.starts = starts;
        flat
    }

    /// Visits the value found at trie node `node`.
    fn walk<'a>(
        &self,
        v: &'a Value,
        node: u32,
        trail: &mut Trail,
        arrays: &mut u32,
        out: &mut Flat<'a>,
    ) {
        let n = &self.nodes[node as usize];
        match v {
            Value::Object(map) => {
                if n.children.is_empty() {
                    return;
                }
                for (k, child) in map {
                    if let Some(next) = self.child(node, k) {
                        self.walk(child, next, trail, arrays, out);
                    }
                }
            }
            Value::Array(items) => {
                if n.children.is_empty() && n.path.is_none() {
                    return;
                }
                let id = *arrays;
                *arrays += 1;
                for (i, item) in items.iter().enumerate() {
                    trail.push((id, i as u32));
                    self.walk(item, node, trail, arrays, out);
                    trail.pop();
                }
            }
            scalar => {
                if let (Some(path), Some(val)) = (n.path, leaf_val(scalar)) {
                    let start = out.trails.len() as u32;
                    out.trails.extend_from_slice(trail);
                    out.leaves.push((path, val, (start, trail.len() as u32)));
                }
            }
        }
    }
}

/// How one condition stands on an event, before array consistency is considered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// No acceptable leaf (and not allowed to be absent).
    Fails,
    /// Holds whatever the other conditions choose (absent, or a leaf outside every array).
    Holds,
    /// Holds only through leaves inside arrays: needs a joint choice.
    Tied,
    /// May count as absent depending on earlier choices: needs the ordered search.
    Ordered,
}

/// The standing of one condition.
pub(crate) fn standing(c: &Cond, flat: &Flat<'_>) -> Standing {
    let leaves = flat.at(c.path);
    if leaves.is_empty() {
        return if c.absent_ok {
            Standing::Holds
        } else {
            Standing::Fails
        };
    }
    if c.absent_ok && leaves.iter().all(|l| l.2.1 > 0) {
        return Standing::Ordered;
    }
    let mut any = false;
    for (_, val, trail) in leaves {
        if c.options.iter().any(|m| m.matches(val)) {
            if trail.1 == 0 {
                return Standing::Holds;
            }
            any = true;
        }
    }
    if any { Standing::Tied } else { Standing::Fails }
}

/// Per-event cache of condition standings, shared by every alternative that uses a condition.
/// Entries are valid only for the current generation, so nothing is cleared between events.
#[derive(Default)]
pub(crate) struct Memo {
    generation: u32,
    stamps: Vec<u32>,
    standings: Vec<Standing>,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

impl Memo {
    /// Runs `f` with this thread's memo, reset for a new event of `program`.
    pub(crate) fn with<R>(program: &Program, f: impl FnOnce(&mut Memo) -> R) -> R {
        MEMO.with_borrow_mut(|memo| {
            memo.reset(program.conds.len());
            f(memo)
        })
    }

    fn reset(&mut self, conds: usize) {
        if self.stamps.len() < conds {
            self.stamps.resize(conds, 0);
            self.standings.resize(conds, Standing::Fails);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamps.fill(0);
            self.generation = 1;
        }
    }

    fn get(&mut self, id: u32, compute: impl FnOnce() -> Standing) -> Standing {
        let i = id as usize;
        if self.stamps[i] != self.generation {
            self.standings[i] = compute();
            self.stamps[i] = self.generation;
        }
        self.standings[i]
    }
}

/// Whether one alternative holds on a flattened event.
///
/// Conditions are taken in path order. A condition holds by choosing a leaf at its path that
/// one of its matchers accepts and that is consistent with the leaves chosen before it, or,
/// when it allows `exists: false`, when no leaf at its path is consistent with those earlier
/// choices (event-ruler's rule, so `{"a": [1], "b": [{"exists": false}]}` can hold on an array
/// element that has `a = 1` and no `b` even when another element has a `b`).
pub(crate) fn conj_matches(
    conj: &Conj,
    program: &Program,
    flat: &Flat<'_>,
    memo: &mut Memo,
) -> bool {
    // Fast path: conditions that hold on their own need no joint search.
    let mut tied: SmallVec<[&Cond; 4]> = SmallVec::new();
    for &id in conj.conds.iter() {
        let c = &program.conds[id as usize];
        match memo.get(id, || standing(c, flat)) {
            Standing::Fails => return false,
            Standing::Holds => {}
            Standing::Tied => tied.push(c),
            Standing::Ordered => {
                let all: SmallVec<[&Cond; 4]> = conj
                    .conds
                    .iter()
                    .map(|&i| &program.conds[i as usize])
                    .collect();
                return ordered_search(&all, flat, &mut SmallVec::new());
            }
        }
    }
    if tied.len() <= 1 {
        return true;
    }
    // Tied conditions have a leaf to choose and none of them can count as absent (that is
    // `Ordered`), so the ordered search reduces to finding mutually consistent leaves.
    ordered_search(&tied, flat, &mut SmallVec::new())
}

/// The full search, in path order, with absence judged against the choices made so far.
fn ordered_search<'f>(
    conds: &[&Cond],
    flat: &'f Flat<'_>,
    chosen: &mut SmallVec<[&'f [(u32, u32)]; 4]>,
) -> bool {
    let Some((c, rest)) = conds.split_first() else {
        return true;
    };
    let leaves = flat.at(c.path);
    for (_, val, t) in leaves {
        let trail = flat.trail(*t);
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
            .any(|l| chosen.iter().all(|t| consistent(t, flat.trail(l.2))))
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
