//! Key layout of the catalog's sled trees.
//!
//! Names are validated to be 2–60 characters of `[A-Za-z0-9_-]`, so they never contain the
//! separator byte `0x00`. Because `0x00` sorts before every name byte, sled's byte order of the
//! keys is the lexicographic order of the name tuples, and all children of one parent form one
//! contiguous range that a prefix scan finds (the prefix ends in the separator, so set `ab`
//! never matches set `abc`).
//!
//! | tree      | key                                  | value                         |
//! |-----------|--------------------------------------|-------------------------------|
//! | `sets`    | `set`                                | `codec(EventSetMeta)`         |
//! | `rules`   | `set 0x00 rule`                      | `codec(RuleMeta)`             |
//! | `targets` | `set 0x00 rule 0x00 target`          | `codec(TargetMeta)`           |
//! | `cursors` | `set 0x00 rule 0x00 target`          | offset as `u64` big-endian    |
//!
//! Integers in keys and cursor values are big-endian so that byte order equals numeric order.

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
    fn offsets_are_big_endian() {
        assert_eq!(encode_offset(1), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(encode_offset(255) < encode_offset(256));
        assert_eq!(decode_offset(&encode_offset(u64::MAX)), Some(u64::MAX));
        assert_eq!(decode_offset(&[1, 2, 3]), None);
    }
}
