//! The topic matcher agrees with a plain reference matcher (backtracking, fine for the small
//! cases generated here) on random patterns and topics.

use chaski_proto::topic::{is_pattern, matches};
use proptest::prelude::*;

/// The reference: `*` one level, `**` any number, anything else itself.
fn reference(p: &[&str], t: &[&str]) -> bool {
    match (p.first(), t.first()) {
        (None, _) => t.is_empty(),
        (Some(&"**"), _) => (0..=t.len()).any(|k| reference(&p[1..], &t[k..])),
        (Some(_), None) => false,
        (Some(&"*"), Some(_)) => reference(&p[1..], &t[1..]),
        (Some(l), Some(x)) => l == x && reference(&p[1..], &t[1..]),
    }
}

fn level() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("c")]
}

fn pattern_level() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("*"), Just("**")]
}

/// A backtracking matcher takes exponential time on `**/**/…/x` against a long topic that does
/// not end in `x`; the one in the core is polynomial.
#[test]
fn a_pattern_full_of_double_wildcards_matches_in_polynomial_time() {
    let pattern = vec!["**"; 120].join("/") + "/x";
    let topic = vec!["a"; 120].join("/");
    let start = std::time::Instant::now();
    assert!(!matches(&pattern, &topic));
    assert!(matches(&pattern, &(topic + "/x")));
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matching_agrees_with_the_reference(
        p in proptest::collection::vec(pattern_level(), 1..7),
        t in proptest::collection::vec(level(), 1..8),
    ) {
        let (ps, ts) = (p.join("/"), t.join("/"));
        prop_assert_eq!(matches(&ps, &ts), reference(&p, &t), "{} vs {}", ps, ts);
        // A plain topic matches only itself.
        if !is_pattern(&ps) {
            prop_assert_eq!(matches(&ps, &ts), ps == ts);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A set of patterns matched together says what matching each one alone says.
    #[test]
    fn a_pattern_set_agrees_with_its_patterns_one_by_one(
        patterns in prop::collection::vec(prop::collection::vec(pattern_level(), 1..5), 0..6),
        topic in prop::collection::vec(level(), 1..6),
    ) {
        let patterns: Vec<String> = patterns.iter().map(|p| p.join("/")).collect();
        let topic = topic.join("/");
        let set = chaski_proto::patterns::PatternSet::new(&patterns);
        let alone = patterns.iter().any(|p| matches(p, &topic));
        prop_assert_eq!(set.matches(&topic), alone, "{:?} on {}", patterns, topic);
        // Asked again, the same answer (its scratch is reused).
        prop_assert_eq!(set.matches(&topic), alone);
    }
}

/// A set full of `**` patterns stays polynomial on a long topic.
#[test]
fn a_pattern_set_full_of_double_wildcards_is_polynomial() {
    let patterns: Vec<String> = (1..=16).map(|k| vec!["**"; k].join("/") + "/x").collect();
    let set = chaski_proto::patterns::PatternSet::new(&patterns);
    let topic = vec!["a"; 120].join("/");
    let start = std::time::Instant::now();
    assert!(!set.matches(&topic));
    assert!(set.matches(&(topic + "/x")));
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
}
