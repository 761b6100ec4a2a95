//! Lines: the networks a session uses at once (A/B feeds, docs/engine.md "A/B lines").
//!
//! Exchanges publish market data twice, on two independent networks, and receivers take
//! each packet from whichever line brings it first. A session here has one to
//! [`MAX_LINES`] lines, numbered from 0 in the order they were configured; every line
//! carries the same TSI and sequence space. The engines take the line a packet came on
//! (`handle_packet_on`) and say on which lines each packet must go
//! ([`crate::source::Transmit::lines`]).

/// Most lines a session may have.
pub const MAX_LINES: usize = 4;

/// A set of lines (bit `i`: line `i`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LineSet(u8);

impl LineSet {
    /// Every line (of however many the session has).
    pub const ALL: LineSet = LineSet((1 << MAX_LINES) - 1);
    /// No line.
    pub const EMPTY: LineSet = LineSet(0);

    /// Line `line` alone (empty if `line >= MAX_LINES`).
    pub const fn one(line: u8) -> LineSet {
        if (line as usize) < MAX_LINES {
            LineSet(1 << line)
        } else {
            LineSet(0)
        }
    }

    /// Whether `line` is in the set.
    pub fn contains(self, line: u8) -> bool {
        (line as usize) < MAX_LINES && self.0 & (1 << line) != 0
    }

    /// The set with `line` added.
    #[must_use]
    pub fn with(self, line: u8) -> LineSet {
        LineSet(self.0 | LineSet::one(line).0)
    }

    /// The union of two sets.
    #[must_use]
    pub fn union(self, other: LineSet) -> LineSet {
        LineSet(self.0 | other.0)
    }

    /// True if no line is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The lines in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..MAX_LINES as u8).filter(move |&l| self.contains(l))
    }

    /// The bit mask (bit `i`: line `i`).
    pub fn bits(self) -> u8 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_what_was_put_in() {
        let s = LineSet::one(1).with(3);
        assert!(s.contains(1) && s.contains(3));
        assert!(!s.contains(0) && !s.contains(2) && !s.contains(4));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(LineSet::ALL.iter().count(), MAX_LINES);
        assert!(LineSet::one(MAX_LINES as u8).is_empty());
        assert!(!LineSet::ALL.contains(200));
        assert_eq!(LineSet::one(0).union(LineSet::one(2)).bits(), 0b101);
        assert!(LineSet::EMPTY.is_empty() && LineSet::default().is_empty());
    }
}
