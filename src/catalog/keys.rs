//! Key layout of the catalog's sled trees.
//!
//! Names are validated to be 2–60 characters of `[A-Za-z0-9_-]`, so they never contain the
//! separator byte `0x00`. Because `0x00` sorts before every name byte, sled's byte order of the
//! keys is the lexicographic order of the name tuples, and all children of one parent form one
//! contiguous range that a prefix scan finds (the prefix ends in the separator, so set `ab`
//! never matches set `abc`).
//!
//! | tree           | key                                     | value                      |
//! |----------------|-----------------------------------------|----------------------------|
//! | `sets`         | `set`                                   | `codec(EventSetMeta)`      |
//! | `rules`        | `set 0x00 rule`                         | `codec(RuleMeta)`          |
//! | `targets`      | `set 0x00 rule 0x00 target`             | `codec(TargetMeta)`        |
//! | `cursors`      | `set 0x00 rule 0x00 target`             | offset as `u64` big-endian |
//! | `retries`      | `set 0x00 rule 0x00 target 0x00 offset` | `codec(RetryEntry)`        |
//! | `dead_letters` | `set 0x00 rule 0x00 target 0x00 offset` | `codec(DeadLetter)`        |
//! | `counters`     | binding key                             | `codec(BindingCounters)`   |
//! | `replays`      | `set 0x00 replay`                       | `codec(ReplayMeta)`        |
//!
//! A replay's bindings have their own state in `cursors`, `retries`, `dead_letters` and
//! `counters`, under `0x01 set 0x00 replay 0x00 rule 0x00 target` instead of the target key:
//! the leading `0x01` is never a name byte, so these keys never collide with a live binding's,
//! and all the state of one replay is the one range under `0x01 set 0x00 replay 0x00`.
//!
//! Integers in keys and cursor values are big-endian so that byte order equals numeric order.
//! The delivery-state trees (`retries`, `dead_letters`) key one entry per event offset under the
//! binding's key plus a separator, so one binding's entries are one contiguous range in offset
//! order, and the trailing separator keeps target `ab` from matching target `abc`.

/// Separates the name components of a key.
pub const SEP: u8 = 0;

/// Key of an event set in the `sets` tree.
pub fn set_key(set: &str) -> Vec<u8> {
    set.as_bytes().to_vec()
}

/// Key of a rule in the `rules` tree.
pub fn rule_key(set: &str, rule: &str) -> Vec<u8> {
    join(&[set, rule])
}

/// Prefix of every rule key of `set` (ends with the separator).
pub fn rules_prefix(set: &str) -> Vec<u8> {
    let mut k = set_key(set);
    k.push(SEP);
    k
}

/// Key of a target in the `targets` tree, and of its cursor in the `cursors` tree.
pub fn target_key(set: &str, rule: &str, target: &str) -> Vec<u8> {
    join(&[set, rule, target])
}

/// Prefix of every target key of `set`/`rule` (ends with the separator).
pub fn targets_prefix(set: &str, rule: &str) -> Vec<u8> {
    let mut k = rule_key(set, rule);
    k.push(SEP);
    k
}

/// Marks the state keys of a replay's bindings (never a name byte).
pub const REPLAY_MARK: u8 = 1;

/// Key of a replay in the `replays` tree.
pub fn replay_key(set: &str, replay: &str) -> Vec<u8> {
    join(&[set, replay])
}

/// Prefix of every replay key of `set` in `replays` (ends with the separator).
pub fn replays_prefix(set: &str) -> Vec<u8> {
    rules_prefix(set)
}

/// Prefix of the state keys of every binding of replay `replay` of `set` (ends with the
/// separator).
pub fn replay_state_prefix(set: &str, replay: &str) -> Vec<u8> {
    let mut k = vec![REPLAY_MARK];
    k.extend_from_slice(&join(&[set, replay]));
    k.push(SEP);
    k
}

/// Prefix of the state keys of every replay of `set` (ends with the separator).
pub fn replay_set_state_prefix(set: &str) -> Vec<u8> {
    let mut k = vec![REPLAY_MARK];
    k.extend_from_slice(set.as_bytes());
    k.push(SEP);
    k
}

/// Key of the state (cursor, counters; with a separator, the prefix of retries and dead
/// letters) of `target` on `rule` in replay `replay` of `set`.
pub fn replay_binding_key(set: &str, replay: &str, rule: &str, target: &str) -> Vec<u8> {
    let mut k = replay_state_prefix(set, replay);
    k.extend_from_slice(&join(&[rule, target]));
    k
}

/// Prefix of every `retries`/`dead_letters` key of one binding: its target key and the
/// separator.
pub fn binding_entries_prefix(set: &str, rule: &str, target: &str) -> Vec<u8> {
    let mut k = target_key(set, rule, target);
    k.push(SEP);
    k
}

/// Key of the entry for event `offset` of a binding in `retries` or `dead_letters`.
pub fn binding_entry_key(set: &str, rule: &str, target: &str, offset: u64) -> Vec<u8> {
    entry_key_under(&binding_entries_prefix(set, rule, target), offset)
}

/// Key of the entry for event `offset` under a prefix from [`binding_entries_prefix`]; lets a
/// caller that writes many entries of one binding build the prefix once.
pub fn entry_key_under(prefix: &[u8], offset: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// The event offset at the end of a `retries`/`dead_letters` key; `None` unless the key ends in
/// a separator and 8 offset bytes after a non-empty binding key.
pub fn decode_entry_offset(key: &[u8]) -> Option<u64> {
    let split = key.len().checked_sub(9)?;
    if split == 0 || key[split] != SEP {
        return None;
    }
    decode_offset(&key[split + 1..])
}

/// A cursor value: the offset, big-endian.
pub fn encode_offset(offset: u64) -> [u8; 8] {
    offset.to_be_bytes()
}

/// Reads a cursor value; `None` unless it is exactly 8 bytes.
pub fn decode_offset(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

fn join(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_names_with_nul() {
        assert_eq!(set_key("orders"), b"orders".to_vec());
        assert_eq!(rule_key("orders", "r1"), b"orders\0r1".to_vec());
        assert_eq!(target_key("orders", "r1", "t1"), b"orders\0r1\0t1".to_vec());
        assert_eq!(rules_prefix("orders"), b"orders\0".to_vec());
        assert_eq!(targets_prefix("orders", "r1"), b"orders\0r1\0".to_vec());
    }

    #[test]
    fn keys_prefix_does_not_match_longer_parent_names() {
        let k = rule_key("abc", "r");
        assert!(!k.starts_with(&rules_prefix("ab")));
        assert!(k.starts_with(&rules_prefix("abc")));
        let t = target_key("s", "rule2", "t");
        assert!(!t.starts_with(&targets_prefix("s", "rule")));
    }

    #[test]
    fn keys_sort_by_name_tuple() {
        // "a" < "a-b" as names, and the child range of "a" sorts before set "a-b".
        let mut keys = [
            rule_key("a-b", "x"),
            rule_key("a", "zz"),
            rule_key("a", "z"),
            set_key("a"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                set_key("a"),
                rule_key("a", "z"),
                rule_key("a", "zz"),
                rule_key("a-b", "x"),
            ]
        );
    }

    #[test]
    fn binding_entry_keys_append_separator_and_big_endian_offset() {
        assert_eq!(binding_entries_prefix("s", "r", "t"), b"s\0r\0t\0".to_vec());
        assert_eq!(
            binding_entry_key("s", "r", "t", 258),
            b"s\0r\0t\0\0\0\0\0\0\0\x01\x02".to_vec()
        );
        let prefix = binding_entries_prefix("s", "r", "t");
        assert_eq!(
            entry_key_under(&prefix, 7),
            binding_entry_key("s", "r", "t", 7)
        );
        // Offset order is byte order, within one binding.
        assert!(binding_entry_key("s", "r", "t", 255) < binding_entry_key("s", "r", "t", 256));
        assert!(binding_entry_key("s", "r", "t", u64::MAX) < binding_entry_key("s", "r", "u", 0));
    }

    #[test]
    fn replay_state_keys_stay_apart_from_live_keys_and_other_replays() {
        let k = replay_binding_key("s", "r1", "rule", "t");
        assert_eq!(k, b"\x01s\0r1\0rule\0t".to_vec());
        assert!(k.starts_with(&replay_state_prefix("s", "r1")));
        assert!(!k.starts_with(&replay_state_prefix("s", "r")));
        assert!(k.starts_with(&replay_set_state_prefix("s")));
        assert!(
            !replay_binding_key("sa", "r1", "rule", "t").starts_with(&replay_set_state_prefix("s"))
        );
        // No live key (names never start with 0x01) falls under a replay prefix.
        assert!(!target_key("s", "r1", "t").starts_with(&[REPLAY_MARK]));
        assert_eq!(replay_key("s", "r1"), b"s\0r1".to_vec());
    }

    #[test]
    fn binding_entries_prefix_does_not_match_longer_target_names() {
        let abc = binding_entry_key("s", "r", "abc", 0);
        assert!(!abc.starts_with(&binding_entries_prefix("s", "r", "ab")));
        assert!(abc.starts_with(&binding_entries_prefix("s", "r", "abc")));
        // Nor does the cursor/target key of the binding fall inside its entry range.
        assert!(!target_key("s", "r", "ab").starts_with(&binding_entries_prefix("s", "r", "ab")));
    }

    #[test]
    fn entry_offset_is_decoded_from_the_key_tail() {
        for offset in [0, 1, 255, 1 << 40, u64::MAX] {
            assert_eq!(
                decode_entry_offset(&binding_entry_key("set", "rule", "t", offset)),
                Some(offset)
            );
        }
        assert_eq!(decode_entry_offset(b""), None);
        assert_eq!(
            decode_entry_offset(&target_key("set", "rule", "target")),
            None
        );
        // Nine bytes is a separator and an offset without any binding key.
        assert_eq!(decode_entry_offset(&[0; 9]), None);
        let mut no_sep = binding_entry_key("s", "r", "t", 5);
        let at = no_sep.len() - 9;
        no_sep[at] = b'x';
        assert_eq!(decode_entry_offset(&no_sep), None);
    }

    #[test]
    fn offsets_are_big_endian() {
        assert_eq!(encode_offset(1), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(encode_offset(255) < encode_offset(256));
        assert_eq!(decode_offset(&encode_offset(u64::MAX)), Some(u64::MAX));
        assert_eq!(decode_offset(&[1, 2, 3]), None);
    }
}
