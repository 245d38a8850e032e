//! Pure rules for splitting work: which machine owns a repository (`--shard K/N`), where a key range of
//! a listing can be cut in two, and the smallest start-after key that skips a whole rolled-up group.
//!
//! Object stores list in byte order. Keys under `repositories/` are made of the name alphabet
//! (`-./0-9_a-z`), so cut points are chosen in that alphabet: a cut between two keys is a string between
//! them in byte order, found by treating both as base-41 fractions and taking the middle.

/// One machine's share of the work: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error(
        "--shard {0:?}: expected K/N (0 <= K < N), or N with K from JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX"
    )]
    Malformed(String),
    #[error("--shard {0:?} gives no index and neither JOB_COMPLETION_INDEX nor AWS_BATCH_JOB_ARRAY_INDEX is set")]
    NoIndex(String),
}

impl Shard {
    /// The whole job, on one machine.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `K/N`, or `N` with K taken from `index_from_env` (Kubernetes Indexed Jobs set
    /// JOB_COMPLETION_INDEX, AWS Batch array jobs AWS_BATCH_JOB_ARRAY_INDEX).
    pub fn parse(text: &str, index_from_env: Option<&str>) -> Result<Shard, ShardError> {
        let malformed = || ShardError::Malformed(text.to_string());
        let (index, count) = match text.split_once('/') {
            Some((k, n)) => {
                (k.trim().parse::<u32>().map_err(|_| malformed())?, n.trim().parse::<u32>().map_err(|_| malformed())?)
            }
            None => {
                let count = text.trim().parse::<u32>().map_err(|_| malformed())?;
                let index = index_from_env.ok_or_else(|| ShardError::NoIndex(text.to_string()))?;
                (index.trim().parse::<u32>().map_err(|_| malformed())?, count)
            }
        };
        if count == 0 || index >= count {
            return Err(malformed());
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard handles `repository`: by a stable hash of its name (FNV-1a), so every
    /// repository belongs to exactly one shard, whatever machine or order finds it, run after run.
    pub fn owns(&self, repository: &str) -> bool {
        if self.count == 1 {
            return true;
        }
        let hash = repository
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
        (hash % self.count as u64) as u32 == self.index
    }
}

/// The characters of repository keys in byte order, then one past the last (`{`) as the open end.
const ALPHABET: &[u8] = b"-./0123456789_abcdefghijklmnopqrstuvwxyz{";

/// The largest character: `group + MAX_CHAR` sorts after every key that starts with `group`.
pub const MAX_CHAR: char = char::MAX;

/// The smallest start-after key that skips every key starting with `group`.
pub fn after_group(group: &str) -> String {
    let mut key = String::with_capacity(group.len() + 4);
    key.push_str(group);
    key.push(MAX_CHAR);
    key
}

/// Digit value of a byte in the alphabet; bytes between alphabet characters round down (for the low
/// end) or up (for the high end), so that the cut stays strictly between the two keys or is refused.
fn digit(byte: u8, round_up: bool) -> u32 {
    match ALPHABET.binary_search(&byte) {
        Ok(i) => i as u32,
        Err(i) if round_up => i.min(ALPHABET.len() - 1) as u32,
        Err(i) => i.saturating_sub(1) as u32,
    }
}

/// A key strictly between `low` and `high` (byte order) sharing their common prefix, roughly in the
/// middle of the keys that can lie between them; `None` when they are too close to cut (or out of order).
/// `high = None` means the open end of `prefix`'s key space. The cut ends with `-`, a character no
/// repository key ends with, so no real key equals a cut.
pub fn midpoint(prefix: &str, low: &str, high: Option<&str>) -> Option<String> {
    let open_end = format!("{prefix}{{");
    let high = high.unwrap_or(&open_end);
    if low >= high {
        return None;
    }
    let common = low.bytes().zip(high.bytes()).take_while(|(a, b)| a == b).count();
    let (low_tail, high_tail) = (&low.as_bytes()[common..], &high.as_bytes()[common..]);
    const DIGITS: usize = 8;
    let base = ALPHABET.len() as u128;
    let value = |tail: &[u8], round_up: bool| -> u128 {
        (0..DIGITS).fold(0u128, |acc, i| acc * base + tail.get(i).map_or(0, |&b| digit(b, round_up)) as u128)
    };
    let middle = (value(low_tail, false) + value(high_tail, true)) / 2;
    let mut digits = vec![0u8; DIGITS];
    let mut rest = middle;
    for slot in digits.iter_mut().rev() {
        *slot = ALPHABET[(rest % base) as usize];
        rest /= base;
    }
    while digits.last() == Some(&ALPHABET[0]) {
        digits.pop();
    }
    let mut cut = low.as_bytes()[..common].to_vec();
    cut.extend_from_slice(&digits);
    cut.push(b'-');
    let cut = String::from_utf8(cut).ok()?;
    (low < cut.as_str() && cut.as_str() < high && cut.starts_with(prefix)).then_some(cut)
}

/// Where `key` lies in `prefix`'s key space, from 0 to 1, judged by its first characters in the name
/// alphabet (keys sort the same way their positions do, up to ties).
pub fn position(prefix: &str, key: &str) -> f64 {
    let tail = key.strip_prefix(prefix).unwrap_or(key).as_bytes();
    let base = ALPHABET.len() as f64;
    let mut position = 0.0;
    let mut scale = 1.0;
    for &byte in tail.iter().take(10) {
        scale /= base;
        position += digit(byte, false) as f64 * scale;
    }
    position
}

/// Whether the rest of a range is worth cutting in two: the keys of the page just listed (from
/// `page_start` to `page_end`, `entries` of them) give a density, and the part of the range still ahead
/// (to `range_end`) must hold, at that density, at least two more pages. Cutting sparser ranges costs a
/// listing per cut for little parallelism.
pub fn worth_cutting(
    prefix: &str,
    page_start: Option<&str>,
    page_end: &str,
    range_end: Option<&str>,
    entries: usize,
    page_size: usize,
) -> bool {
    let start = page_start.map_or(0.0, |key| position(prefix, key));
    let end = position(prefix, page_end);
    let limit = range_end.map_or(1.0, |key| position(prefix, key));
    let listed_width = end - start;
    if entries == 0 {
        return false;
    }
    if listed_width <= 0.0 {
        // The whole page lies within one tiny stretch of key space: dense; worth cutting.
        return true;
    }
    let ahead = entries as f64 * (limit - end).max(0.0) / listed_width;
    ahead >= 2.0 * page_size as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "docker/registry/v2/repositories/";

    #[test]
    fn cuts_lie_strictly_between() {
        let cases = [
            (format!("{P}a"), None),
            (format!("{P}bigns/svc-1000/_"), Some(format!("{P}c"))),
            (format!("{P}a/b/_"), Some(format!("{P}a/c/_"))),
            (format!("{P}x"), Some(format!("{P}y"))),
            (format!("{P}ns1/repo1"), Some(format!("{P}ns1/repo2"))),
        ];
        for (low, high) in cases {
            let cut = midpoint(P, &low, high.as_deref()).unwrap_or_else(|| panic!("no cut between {low} and {high:?}"));
            assert!(low < cut, "{low} < {cut}");
            if let Some(high) = &high {
                assert!(&cut < high, "{cut} < {high}");
            }
            assert!(cut.starts_with(P));
            assert!(cut.ends_with('-'));
        }
    }

    #[test]
    fn refuses_to_cut_adjacent_or_reversed_keys() {
        assert_eq!(midpoint(P, &format!("{P}b"), Some(&format!("{P}a"))), None);
        assert_eq!(midpoint(P, &format!("{P}a"), Some(&format!("{P}a"))), None);
        assert_eq!(midpoint(P, &format!("{P}a"), Some(&format!("{P}a-"))), None);
    }

    #[test]
    fn repeated_cuts_converge_without_looping() {
        // Halving the same range again and again must keep producing distinct, ordered cuts, until it
        // refuses: never an endless split.
        let low = format!("{P}m");
        let mut high = format!("{P}n");
        let mut cuts = 0;
        while let Some(cut) = midpoint(P, &low, Some(&high)) {
            assert!(low < cut && cut < high);
            high = cut;
            cuts += 1;
            assert!(cuts < 200);
        }
        assert!(cuts > 5);
    }

    #[test]
    fn shards_parse_from_flags_and_job_indexes() {
        assert_eq!(Shard::parse("2/7", None), Ok(Shard { index: 2, count: 7 }));
        assert_eq!(Shard::parse("7", Some("3")), Ok(Shard { index: 3, count: 7 }));
        assert!(matches!(Shard::parse("7", None), Err(ShardError::NoIndex(_))));
        for bad in ["7/7", "1/0", "a/3", "-1/3", ""] {
            assert!(Shard::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_repository_has_exactly_one_shard() {
        let names: Vec<String> = (0..2000).map(crate::synth::repository_name).collect();
        for count in [1u32, 3, 7] {
            let mut seen = std::collections::HashMap::new();
            for index in 0..count {
                let shard = Shard { index, count };
                for name in names.iter().filter(|n| shard.owns(n)) {
                    assert!(seen.insert(name.clone(), index).is_none(), "{name} in two shards");
                }
            }
            assert_eq!(seen.len(), names.len(), "{count} shards cover everything");
            let smallest = (0..count).map(|i| seen.values().filter(|&&v| v == i).count()).min().unwrap();
            assert!(smallest as f64 > names.len() as f64 / count as f64 * 0.8, "shards are balanced");
        }
    }

    #[test]
    fn positions_follow_key_order() {
        let keys = ["", "-", "0", "a", "a/b", "a0", "b", "bigns/svc-1", "bigns/svc-2", "z", "zzzz"];
        let positions: Vec<f64> = keys.iter().map(|k| position(P, &format!("{P}{k}"))).collect();
        assert!(positions.windows(2).all(|w| w[0] <= w[1]), "{positions:?}");
        assert!(positions.iter().all(|p| (0.0..1.0).contains(p)));
    }

    #[test]
    fn cuts_only_ranges_dense_enough() {
        let key = |k: &str| format!("{P}{k}");
        // 1,000 keys from the start to "0": the rest of the alphabet holds many more pages at that rate.
        assert!(worth_cutting(P, None, &key("0"), None, 1000, 1000));
        assert!(!worth_cutting(P, None, &key("0"), Some(&key("00")), 1000, 1000));
        // 1,000 keys between "a" and "y": "y" to the end holds less than two pages at that rate.
        assert!(!worth_cutting(P, Some(&key("a")), &key("y"), None, 1000, 1000));
        // 3 keys spread over half the key space: not worth a cut.
        assert!(!worth_cutting(P, None, &key("m"), None, 3, 3));
        assert!(!worth_cutting(P, None, &key("m"), None, 0, 3));
    }

    #[test]
    fn after_group_skips_the_group_only() {
        let group = format!("{P}a/b/_");
        let after = after_group(&group);
        assert!(format!("{group}manifests/tags/x/current/link") < after);
        assert!(format!("{group}\u{ffff}") < after);
        assert!(after < format!("{P}a/b/c/_"));
        assert!(after < format!("{P}a/c"));
    }
}
