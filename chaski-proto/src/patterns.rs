//! A set of topic patterns matched together: a trie of their levels, run over a topic's levels
//! as an automaton (as NATS' sublist matches subjects). The cost of matching a topic grows with
//! its levels and the trie nodes it actually reaches, not with how many patterns the set holds:
//! a root with a thousand subscriber patterns tries the few whose levels fit.
//!
//! `*` is one level, `**` any number (zero included); a `**` node stays live while levels pass.
//! Live nodes are kept without duplicates (a stamp per node), so patterns full of `**` stay
//! polynomial: at most (trie nodes × topic levels) steps.
//!
//! ```
//! use chaski_proto::patterns::PatternSet;
//! let set = PatternSet::new(["sensors/*/temp", "logs/**"]);
//! assert!(set.matches("sensors/kitchen/temp"));
//! assert!(set.matches("logs/a/b/c"));
//! assert!(!set.matches("sensors/kitchen/humidity"));
//! ```

use std::cell::RefCell;
use std::collections::HashMap;

use crate::topic::{ANY, ONE};

#[derive(Clone, Debug, Default)]
struct TrieNode {
    /// Children by a literal level.
    lits: HashMap<Box<str>, u32>,
    /// The child for `*`.
    one: Option<u32>,
    /// The child for `**`.
    any: Option<u32>,
    /// This node is a `**` level: it takes any level and stays.
    absorbs: bool,
    /// A pattern ends here.
    end: bool,
}

/// Scratch for one match: the live nodes, the next ones, and a stamp per node.
#[derive(Clone, Debug, Default)]
struct Scratch {
    live: Vec<u32>,
    next: Vec<u32>,
    stamp: Vec<u32>,
    round: u32,
}

/// Patterns matched together (see the [module docs](self)).
#[derive(Clone, Debug, Default)]
pub struct PatternSet {
    nodes: Vec<TrieNode>,
    patterns: usize,
    scratch: RefCell<Scratch>,
}

impl PatternSet {
    /// The set of `patterns` (any topic-like strings; plain levels match themselves).
    pub fn new<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Self {
        let mut set = PatternSet {
            nodes: vec![TrieNode::default()],
            ..Default::default()
        };
        for p in patterns {
            set.insert(p.as_ref());
        }
        set
    }

    /// How many patterns were put in.
    pub fn len(&self) -> usize {
        self.patterns
    }

    /// Whether it holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.patterns == 0
    }

    fn child(&mut self, at: u32, level: &str) -> u32 {
        let fresh = self.nodes.len() as u32;
        let node = &mut self.nodes[at as usize];
        let (slot, absorbs) = match level {
            ANY => (&mut node.any, true),
            ONE => (&mut node.one, false),
            lit => {
                let id = *node.lits.entry(lit.into()).or_insert(fresh);
                if id == fresh {
                    self.nodes.push(TrieNode::default());
                }
                return id;
            }
        };
        let id = *slot.get_or_insert(fresh);
        if id == fresh {
            self.nodes.push(TrieNode {
                absorbs,
                ..Default::default()
            });
        }
        id
    }

    fn insert(&mut self, pattern: &str) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut at = 0;
        for level in pattern.split('/') {
            at = self.child(at, level);
        }
        self.nodes[at as usize].end = true;
        self.patterns += 1;
    }

    /// Whether any pattern of the set matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        if self.patterns == 0 {
            return false;
        }
        let mut s = self.scratch.borrow_mut();
        let s = &mut *s;
        if s.stamp.len() < self.nodes.len() {
            s.stamp.resize(self.nodes.len(), 0);
        }
        s.live.clear();
        self.enter(0, s, true);
        for level in topic.split('/') {
            s.next.clear();
            s.round = s.round.wrapping_add(1);
            if s.round == 0 {
                // The stamps wrapped: start them again.
                s.stamp.iter_mut().for_each(|x| *x = 0);
                s.round = 1;
            }
            for i in 0..s.live.len() {
                let node = &self.nodes[s.live[i] as usize];
                if node.absorbs {
                    self.add(s.live[i], s);
                }
                if let Some(&c) = node.lits.get(level) {
                    self.add(c, s);
                }
                if let Some(c) = node.one {
                    self.add(c, s);
                }
            }
            std::mem::swap(&mut s.live, &mut s.next);
            if s.live.is_empty() {
                return false;
            }
        }
        s.live.iter().any(|n| self.nodes[*n as usize].end)
    }

    /// Makes `node` live for the next level (with the `**` after it, which may take none).
    fn add(&self, node: u32, s: &mut Scratch) {
        self.enter(node, s, false);
    }

    fn enter(&self, mut node: u32, s: &mut Scratch, first: bool) {
        loop {
            let list = if first { &mut s.live } else { &mut s.next };
            if !first {
                if s.stamp[node as usize] == s.round {
                    return;
                }
                s.stamp[node as usize] = s.round;
            } else if list.contains(&node) {
                return;
            }
            list.push(node);
            match self.nodes[node as usize].any {
                Some(a) => node = a,
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    #[test]
    fn agrees_with_the_single_matcher_on_the_documented_cases() {
        let cases = [
            ("a/*/c", "a/b/c"),
            ("a/*/c", "a/c"),
            ("a/**/c", "a/c"),
            ("a/**/c", "a/b/b/c"),
            ("a/**/c", "a/b/d"),
            ("**", "anything/at/all"),
            ("**", ""),
            ("*", "one"),
            ("*", ""),
            ("*", "one/two"),
            ("a", "a/b"),
            ("a/**", "a"),
            ("**/**/x", "x"),
            ("a/**/**/b", "a/q/b"),
        ];
        for (p, t) in cases {
            assert_eq!(PatternSet::new([p]).matches(t), matches(p, t), "{p} on {t}");
        }
        let none = PatternSet::new::<&str>([]);
        assert!(!none.matches("a") && none.is_empty());
        assert_eq!(none.len(), 0);
        let one = PatternSet::new(["a/*"]);
        assert!(!one.is_empty() && one.len() == 1);
    }

    #[test]
    fn many_patterns_one_walk() {
        let set = PatternSet::new((0..1000).map(|i| format!("s{i}/*/temp")));
        assert_eq!(set.len(), 1000);
        assert!(set.matches("s999/k/temp"));
        assert!(!set.matches("s1000/k/temp"));
        // The same set again and again: the stamps carry over correctly.
        for _ in 0..3 {
            assert!(set.matches("s7/x/temp") && !set.matches("s7/x/hum"));
        }
    }

    #[test]
    fn stamps_that_wrap_start_again() {
        let set = PatternSet::new(["a/**/b"]);
        set.scratch.borrow_mut().round = u32::MAX - 2;
        for _ in 0..6 {
            assert!(set.matches("a/x/y/b"));
            assert!(!set.matches("a/x/y/c"));
        }
    }
}
