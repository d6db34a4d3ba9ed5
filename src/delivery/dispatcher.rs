//! The shared tail reader of one event set.
//!
//! Without it, every binding of a set would read, decode and match the whole log on its own:
//! N bindings, N decodes and N pattern evaluations of every event. The dispatcher reads the
//! tail once, decodes each record once, matches it once against a [`PatternSet`] of all the
//! set's active rules, and hands each *caught-up* binding (a follower) the records its rule
//! matched, plus how far it has scanned.
//!
//! Followers never slow the dispatcher or each other: feeds go out with `try_send`, and a
//! follower whose channel is full (slow target, full in-flight window) is dropped. It notices
//! the closed channel after draining what it was sent, and goes on reading the log on its own
//! from exactly there; when it catches up with the end of the log it asks to follow again.
//!
//! A join is accepted when the dispatcher has not yet scanned past the joiner's position, or
//! when the records in between are still in the ring of recently matched records; otherwise
//! the joiner keeps reading alone (it is about to catch up anyway).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::bus::EventBus;
use crate::pattern::{Pattern, PatternSet};
use crate::store::LogReader;

use super::Matched;

/// Records read per step before feeds go out and messages are looked at.
const CHUNK: usize = 256;

/// What a follower receives.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Records its rule matched, in offset order (may start below the follower's position:
    /// it skips those).
    pub matched: Arc<Vec<Matched>>,
    /// Every offset below this has been scanned.
    pub scanned_to: u64,
}

/// Messages to a dispatcher.
pub enum Msg {
    /// The active rules of the set changed: recompile, drop every follower (they rejoin).
    Rules(Vec<(String, Arc<Pattern>)>),
    /// A caught-up binding of `rule` at `from` asks to follow; the answer says whether it does.
    Join {
        rule: String,
        from: u64,
        feed: mpsc::Sender<Feed>,
        accepted: oneshot::Sender<bool>,
    },
}

struct Follower {
    rule: usize,
    from: u64,
    feed: mpsc::Sender<Feed>,
}

/// A matched record and the rules (indexes) that matched it.
struct RingEntry {
    matched: Matched,
    rules: smallvec::SmallVec<[u32; 4]>,
}

struct Dispatcher {
    bus: Arc<EventBus>,
    set: String,
    rules: Vec<String>,
    patterns: PatternSet<u32>,
    followers: Vec<Follower>,
    reader: Option<LogReader>,
    /// The next offset to scan.
    position: u64,
    /// Recently matched records; every matched record at or after `ring_start` is in it.
    ring: VecDeque<RingEntry>,
    ring_start: u64,
    ring_capacity: usize,
}

/// Runs the dispatcher of `set` until its message channel closes.
pub async fn run(
    bus: Arc<EventBus>,
    set: String,
    ring_capacity: usize,
    mut rx: mpsc::Receiver<Msg>,
) {
    let mut d = Dispatcher {
        bus,
        set,
        rules: Vec::new(),
        patterns: PatternSet::default(),
        followers: Vec::new(),
        reader: None,
        position: 0,
        ring: VecDeque::new(),
        ring_start: 0,
        ring_capacity,
    };
    loop {
        let reading = !d.followers.is_empty() && d.reader.is_some();
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(m) => d.handle(m),
                None => return,
            },
            first = async { d.reader.as_mut().expect("reading").next_wait().await }, if reading => {
                match first {
                    Ok(r) => d.scan(r),
                    Err(e) => {
                        // A closed or damaged log: drop the followers; each reads on its own
                        // and reports the error in its status.
                        tracing::warn!(set = %d.set, error = %e, "shared tail reader stopped");
                        d.followers.clear();
                        d.reader = None;
                    }
                }
            }
        }
    }
}

impl Dispatcher {
    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Rules(rules) => {
                self.rules = rules.iter().map(|(n, _)| n.clone()).collect();
                self.patterns = PatternSet::new(
                    rules
                        .iter()
                        .enumerate()
                        .map(|(i, (_, p))| (i as u32, p.as_ref())),
                );
                self.followers.clear();
                self.ring.clear();
                self.ring_start = self.position;
            }
            Msg::Join {
                rule,
                from,
                feed,
                accepted,
            } => {
                let ok = self.join(&rule, from, feed);
                let _ = accepted.send(ok);
            }
        }
    }

    fn join(&mut self, rule: &str, from: u64, feed: mpsc::Sender<Feed>) -> bool {
        let Some(idx) = self.rules.iter().position(|r| r == rule) else {
            return false;
        };
        if self.followers.is_empty() || self.reader.is_none() {
            // Idle: start scanning at the joiner.
            match self.bus.read_from(&self.set, from) {
                Ok(r) => self.reader = Some(r),
                Err(_) => return false,
            }
            self.position = from;
            self.ring.clear();
            self.ring_start = from;
        } else if from < self.position {
            if from < self.ring_start {
                return false;
            }
            // Catch it up from the ring.
            let matched: Vec<Matched> = self
                .ring
                .iter()
                .filter(|e| e.matched.offset >= from && e.rules.contains(&(idx as u32)))
                .map(|e| e.matched.clone())
                .collect();
            let catch_up = Feed {
                matched: Arc::new(matched),
                scanned_to: self.position,
            };
            if feed.try_send(catch_up).is_err() {
                return false;
            }
        }
        self.followers.push(Follower {
            rule: idx,
            from,
            feed,
        });
        true
    }

    /// Scans `first` and whatever else is visible (up to a chunk), then feeds the followers.
    fn scan(&mut self, first: crate::Record) {
        let mut per_rule: Vec<Vec<Matched>> = vec![Vec::new(); self.rules.len()];
        let mut record = Some(first);
        let mut n = 0;
        while let Some(r) = record.take() {
            n += 1;
            self.position = r.offset + 1;
            let json = r.event.to_json();
            let hits: smallvec::SmallVec<[u32; 4]> =
                self.patterns.matching(&json).into_iter().copied().collect();
            if !hits.is_empty() {
                let m = Matched {
                    offset: r.offset,
                    ingest_time_ms: r.ingest_time_ms,
                    event: Arc::new(r.event),
                };
                for &h in &hits {
                    per_rule[h as usize].push(m.clone());
                }
                self.ring.push_back(RingEntry {
                    matched: m,
                    rules: hits,
                });
                while self.ring.len() > self.ring_capacity {
                    if let Some(old) = self.ring.pop_front() {
                        self.ring_start = old.matched.offset + 1;
                    }
                }
            }
            if n < CHUNK
                && let Some(reader) = self.reader.as_mut()
                && let Ok(crate::store::ReadOutcome::Record(next)) = reader.next()
            {
                record = Some(next);
            }
        }
        let per_rule: Vec<Arc<Vec<Matched>>> = per_rule.into_iter().map(Arc::new).collect();
        let position = self.position;
        // A follower whose channel is full or closed is dropped (see the module docs).
        self.followers.retain(|f| {
            let feed = Feed {
                matched: per_rule[f.rule].clone(),
                scanned_to: position.max(f.from),
            };
            f.feed.try_send(feed).is_ok()
        });
        if self.followers.is_empty() {
            self.reader = None;
        }
    }
}
