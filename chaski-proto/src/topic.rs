//! Topics and the patterns that match them, defined once for every part of the protocol that
//! asks "does this subscription want this message" (local delivery, sender-side filtering,
//! relays, pairing).
//!
//! A topic is a string of levels separated by `/` (`sensors/kitchen/temperature`). A pattern
//! is a topic whose levels may also be `*` (exactly one level) or `**` (any number of levels,
//! none included): `sensors/*/temperature`, `sensors/**`. A wildcard is always a whole level;
//! `sens*` is refused, and so is publishing to a pattern.
//!
//! ```
//! use chaski_proto::topic::matches;
//! assert!(matches("sensors/*/temperature", "sensors/kitchen/temperature"));
//! assert!(matches("sensors/**", "sensors"));
//! assert!(matches("sensors/**", "sensors/a/b/c"));
//! assert!(!matches("sensors/*", "sensors/a/b"));
//! assert!(matches("news", "news"));
//! ```

use crate::error::CommandError;

/// The wildcard for exactly one level.
pub const ONE: &str = "*";
/// The wildcard for any number of levels (none included).
pub const ANY: &str = "**";
/// The most levels a pattern may have (matching costs levels² at most).
pub const MAX_PATTERN_LEVELS: usize = 16;

/// Whether `s` has a wildcard level (is a pattern, not a topic).
pub fn is_pattern(s: &str) -> bool {
    s.split('/').any(|l| l == ONE || l == ANY)
}

/// Whether the subscription `pattern` (a pattern, or a plain topic) wants `topic`.
pub fn matches(pattern: &str, topic: &str) -> bool {
    if pattern == topic {
        return true;
    }
    if !is_pattern(pattern) {
        return false;
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    match_levels(&p, &t)
}

/// Level by level, by dynamic programming over (pattern level, topic level): O(levels²) even
/// for patterns full of `**` that a hostile peer may announce (backtracking would be
/// exponential).
fn match_levels(p: &[&str], t: &[&str]) -> bool {
    let m = t.len();
    // next[j]: whether the pattern from level i + 1 matches the topic from level j.
    let mut next = vec![false; m + 1];
    next[m] = true;
    let mut cur = vec![false; m + 1];
    for level in p.iter().rev() {
        for j in (0..=m).rev() {
            cur[j] = match *level {
                ANY => next[j] || (j < m && cur[j + 1]),
                ONE => j < m && next[j + 1],
                lit => j < m && t[j] == lit && next[j + 1],
            };
        }
        std::mem::swap(&mut next, &mut cur);
    }
    next[0]
}

/// Checks a subscription: wildcards only as whole levels, and a pattern has at most
/// [`MAX_PATTERN_LEVELS`] levels.
pub fn check_pattern(s: &str) -> Result<(), CommandError> {
    if s.split('/')
        .any(|l| l != ONE && l != ANY && l.contains('*'))
        || (is_pattern(s) && s.split('/').count() > MAX_PATTERN_LEVELS)
    {
        return Err(CommandError::BadPattern(s.to_string()));
    }
    Ok(())
}

/// Checks a topic to publish on: no wildcard, and no `*` at all.
pub fn check_topic(s: &str) -> Result<(), CommandError> {
    if s.contains('*') {
        return Err(CommandError::BadPattern(s.to_string()));
    }
    Ok(())
}

/// Whether two subscriptions can want a common topic: equal, or one a pattern that matches
/// the other (used to tell which neighbours share interest).
pub fn overlap(a: &str, b: &str) -> bool {
    matches(a, b) || matches(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_whole_levels() {
        assert!(matches("a/*/c", "a/b/c"));
        assert!(!matches("a/*/c", "a/c"));
        assert!(matches("a/**/c", "a/c"));
        assert!(matches("a/**/c", "a/b/b/c"));
        assert!(!matches("a/**/c", "a/b/d"));
        assert!(matches("**", "anything/at/all"));
        assert!(matches("*", "one"));
        assert!(!matches("*", "one/two"));
        assert!(!matches("a", "a/b"));
        assert!(!matches("a*", "ab"), "a* is not a wildcard");
        assert!(check_pattern("a*").is_err());
        assert!(check_pattern("a/*/**").is_ok());
        assert!(check_topic("a/*").is_err());
        assert!(check_topic("a/b").is_ok());
        assert!(is_pattern("a/**") && !is_pattern("a/b"));
        assert!(overlap("a/*", "a/b") && overlap("a/b", "a/*") && !overlap("a/*", "b/c"));
    }
}
