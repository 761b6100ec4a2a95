//! PGM sequence numbers: 32-bit, compared with serial-number arithmetic (RFC 1982),
//! as RFC 3208 section 3 requires for every sequence-number comparison.

use core::cmp::Ordering;
use core::fmt;

/// A 32-bit PGM sequence number that wraps.
///
/// `Ord` is deliberately not implemented: serial-number order is not transitive across
/// the whole space. Use [`Sqn::lt`], [`Sqn::le`] and [`Sqn::distance`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sqn(pub u32);

impl Sqn {
    /// The next sequence number (wrapping).
    #[must_use]
    pub const fn next(self) -> Sqn {
        Sqn(self.0.wrapping_add(1))
    }

    /// The previous sequence number (wrapping).
    #[must_use]
    pub const fn prev(self) -> Sqn {
        Sqn(self.0.wrapping_sub(1))
    }

    /// `self + n`, wrapping.
    #[must_use]
    pub const fn add(self, n: u32) -> Sqn {
        Sqn(self.0.wrapping_add(n))
    }

    /// `self - n`, wrapping.
    #[must_use]
    pub const fn sub(self, n: u32) -> Sqn {
        Sqn(self.0.wrapping_sub(n))
    }

    /// Signed distance from `other` to `self` (`self - other`), in `i32` range.
    pub const fn distance(self, other: Sqn) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// Serial-number comparison.
    pub fn cmp_serial(self, other: Sqn) -> Ordering {
        self.distance(other).cmp(&0)
    }

    /// `self` precedes `other`.
    pub fn lt(self, other: Sqn) -> bool {
        self.distance(other) < 0
    }

    /// `self` precedes or equals `other`.
    pub fn le(self, other: Sqn) -> bool {
        self.distance(other) <= 0
    }

    /// `self` follows `other`.
    pub fn gt(self, other: Sqn) -> bool {
        self.distance(other) > 0
    }

    /// `self` follows or equals `other`.
    pub fn ge(self, other: Sqn) -> bool {
        self.distance(other) >= 0
    }
}

impl fmt::Debug for Sqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for Sqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u32> for Sqn {
    fn from(v: u32) -> Self {
        Sqn(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_compares_serially() {
        let max = Sqn(u32::MAX);
        assert_eq!(max.next(), Sqn(0));
        assert!(max.lt(Sqn(0)));
        assert!(Sqn(0).gt(max));
        assert_eq!(Sqn(2).distance(max), 3);
        assert!(Sqn(5).le(Sqn(5)) && Sqn(5).ge(Sqn(5)));
        assert_eq!(Sqn(1).cmp_serial(Sqn(2)), Ordering::Less);
    }
}
