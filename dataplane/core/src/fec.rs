//! Reed–Solomon erasure code over GF(2^8) for PGM forward error correction (RFC 3208
//! section 11), producing the same parity bytes as OpenPGM.
//!
//! # The code
//!
//! A transmission group is `k` consecutive data packets (`k` a power of two, 2..=128),
//! starting at a sequence number that is a multiple of `k`. Parity packet `h` (0-based;
//! sent with sequence number `group | h`) is the GF(2^8) linear combination
//! `P_h = Σ_i G[k + h][i] · D_i` of the group's packets, byte by byte, where `D_i` is
//! packet `i`'s TSDU, zero-padded to the parity length and, when the packets differ in
//! length (OPT_VAR_PKTLEN), followed by its length in two bytes.
//!
//! The generator `G` is Rizzo's systematic Vandermonde construction, as OpenPGM's
//! `reed_solomon.c` builds it: over GF(2^8) with the primitive polynomial
//! x^8 + x^4 + x^3 + x^2 + 1 (0x11D) and α = 2, the Vandermonde matrix `V` of `n = 255`
//! rows evaluates the powers x^0..x^(k-1) at the points 0, α^0, α^1, …, α^(n-2) (row 0
//! is (1, 0, …, 0), row r ≥ 1 is α^(i·(r-1))), and `G = V · V_k^-1` where `V_k` is its
//! first `k` rows. The first `k` rows of `G` are the identity (data goes out
//! unchanged); any `k` rows of `G` are independent (maximum distance separable), so any
//! `k` of a group's data and parity packets give back the whole group.
//!
//! The rows depend on `k` only, not on the block size `n`, so a receiver needs nothing
//! but `k` (OPT_PARITY_PRM's TGS) to decode.
//!
//! # Cost
//!
//! [`Code::new`] computes the `(255 - k) × k` parity rows once (at most 16 KiB). Encoding
//! a parity packet is `k` multiply-adds of the TSDU ([`addmul`], one 256-byte table row
//! per coefficient); recovering `m` packets is `m` multiply-adds per held packet plus an
//! `m × m` inversion. Nothing here allocates per packet and there is no `unsafe`.

/// Smallest transmission group size.
pub const MIN_K: usize = 2;
/// Largest transmission group size (OpenPGM and Windows PGM accept 2..=128).
pub const MAX_K: usize = 128;
/// Block size: data plus parity packets a group can have (distinct parity indices are
/// `MAX_N - k`).
pub const MAX_N: usize = 255;
/// Most packets one recovery can rebuild (parity packets held per group).
pub const MAX_RECOVER: usize = 16;
/// Bytes of the encoded OPT_FRAGMENT value (first sequence, offset, APDU length).
pub const FRAG_BYTES: usize = 12;

const POLY: u16 = 0x11d;

/// `EXP[i] = α^i` for `i` in `0..510` (doubled so a sum of two logs needs no reduction).
static EXP: [u8; 512] = build_exp();
/// `LOG[x]` for `x != 0`; `LOG[0]` is unused.
static LOG: [u8; 256] = build_log();
/// `MUL[a][b] = a · b`: one 256-byte row per coefficient for [`addmul`].
static MUL: [[u8; 256]; 256] = build_mul();

const fn build_exp() -> [u8; 512] {
    let mut t = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        t[i] = x as u8;
        t[i + 255] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    t[510] = t[0];
    t[511] = t[1];
    t
}

const fn build_log() -> [u8; 256] {
    let exp = build_exp();
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        t[exp[i] as usize] = i as u8;
        i += 1;
    }
    t
}

const fn build_mul() -> [[u8; 256]; 256] {
    let exp = build_exp();
    let log = build_log();
    let mut t = [[0u8; 256]; 256];
    let mut a = 1;
    while a < 256 {
        let mut b = 1;
        while b < 256 {
            t[a][b] = exp[log[a] as usize + log[b] as usize];
            b += 1;
        }
        a += 1;
    }
    t
}

/// `a · b` in GF(2^8).
#[inline]
pub fn mul(a: u8, b: u8) -> u8 {
    MUL[usize::from(a)][usize::from(b)]
}

/// `α^e` (`e` taken mod 255).
#[inline]
pub fn exp(e: usize) -> u8 {
    EXP[e % 255]
}

/// `1 / a` in GF(2^8); `inv(0)` is 0 (callers never divide by 0).
#[inline]
pub fn inv(a: u8) -> u8 {
    if a == 0 {
        0
    } else {
        EXP[255 - usize::from(LOG[usize::from(a)])]
    }
}

/// `dst[i] ^= c · src[i]` over the shorter of the two.
#[inline]
pub fn addmul(dst: &mut [u8], c: u8, src: &[u8]) {
    match c {
        0 => {}
        1 => {
            let n = dst.len().min(src.len());
            // 8 bytes at a time: the compiler keeps this in vector registers.
            let (d, s) = (&mut dst[..n], &src[..n]);
            let mut dc = d.chunks_exact_mut(8);
            let mut sc = s.chunks_exact(8);
            for (d8, s8) in (&mut dc).zip(&mut sc) {
                for (x, y) in d8.iter_mut().zip(s8) {
                    *x ^= *y;
                }
            }
            for (x, y) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
                *x ^= *y;
            }
        }
        _ => {
            let row = &MUL[usize::from(c)];
            let n = dst.len().min(src.len());
            let (d, s) = (&mut dst[..n], &src[..n]);
            let mut dc = d.chunks_exact_mut(8);
            let mut sc = s.chunks_exact(8);
            for (d8, s8) in (&mut dc).zip(&mut sc) {
                for (x, y) in d8.iter_mut().zip(s8) {
                    *x ^= row[usize::from(*y)];
                }
            }
            for (x, y) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
                *x ^= row[usize::from(*y)];
            }
        }
    }
}

/// Why a group size is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadGroupSize(pub usize);

impl core::fmt::Display for BadGroupSize {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "transmission group size {} is not a power of two in {MIN_K}..={MAX_K}",
            self.0
        )
    }
}

impl core::error::Error for BadGroupSize {}

/// The parity rows of the code for one group size `k`.
#[derive(Clone, Debug)]
pub struct Code {
    k: usize,
    /// Row `h` (parity index `h`, generator row `k + h`) at `[h * k, (h + 1) * k)`.
    rows: Vec<u8>,
}

/// Inverts the `n × n` matrix in `m` (row-major, `n <= MAX_K`) in place by Gauss–Jordan
/// elimination; false if it is singular.
fn invert(m: &mut [u8], n: usize, scratch: &mut [u8]) -> bool {
    // scratch: the identity, turned into the inverse.
    scratch.fill(0);
    for i in 0..n {
        scratch[i * n + i] = 1;
    }
    for col in 0..n {
        let Some(piv) = (col..n).find(|&r| m[r * n + col] != 0) else {
            return false;
        };
        if piv != col {
            for j in 0..n {
                m.swap(piv * n + j, col * n + j);
                scratch.swap(piv * n + j, col * n + j);
            }
        }
        let f = inv(m[col * n + col]);
        for j in 0..n {
            m[col * n + j] = mul(m[col * n + j], f);
            scratch[col * n + j] = mul(scratch[col * n + j], f);
        }
        for r in 0..n {
            let c = m[r * n + col];
            if r == col || c == 0 {
                continue;
            }
            for j in 0..n {
                let (a, b) = (m[col * n + j], scratch[col * n + j]);
                m[r * n + j] ^= mul(c, a);
                scratch[r * n + j] ^= mul(c, b);
            }
        }
    }
    m[..n * n].copy_from_slice(&scratch[..n * n]);
    true
}

impl Code {
    /// The code for groups of `k` packets (a power of two in `MIN_K..=MAX_K`).
    pub fn new(k: usize) -> Result<Code, BadGroupSize> {
        if !(MIN_K..=MAX_K).contains(&k) || !k.is_power_of_two() {
            return Err(BadGroupSize(k));
        }
        // V_k: rows 0..k of the Vandermonde matrix; row 0 evaluates at 0.
        let mut vk = vec![0u8; k * k];
        let mut scratch = vec![0u8; k * k];
        vk[0] = 1;
        for r in 1..k {
            for i in 0..k {
                vk[r * k + i] = exp(i * (r - 1));
            }
        }
        // A Vandermonde matrix on distinct points is invertible.
        let ok = invert(&mut vk, k, &mut scratch);
        debug_assert!(ok);
        let h = MAX_N - k;
        let mut rows = vec![0u8; h * k];
        let mut v = vec![0u8; k];
        for p in 0..h {
            let r = k + p;
            for (i, x) in v.iter_mut().enumerate() {
                *x = exp(i * (r - 1));
            }
            for j in 0..k {
                let mut s = 0u8;
                for (i, &x) in v.iter().enumerate() {
                    s ^= mul(x, vk[i * k + j]);
                }
                rows[p * k + j] = s;
            }
        }
        Ok(Code { k, rows })
    }

    /// Packets per transmission group.
    pub fn k(&self) -> usize {
        self.k
    }

    /// log2(k): a sequence number's group is `sqn >> shift << shift`.
    pub fn shift(&self) -> u32 {
        self.k.trailing_zeros()
    }

    /// Distinct parity indices a packet can carry: `255 - k` in the block, and at most
    /// `k` because the index travels in the low bits of the sequence number
    /// (`group | index`).
    pub fn parity_indices(&self) -> usize {
        (MAX_N - self.k).min(self.k)
    }

    /// Coefficient of data packet `i` in parity packet `h` (`h` taken mod the parity
    /// indices, `i < k`).
    #[inline]
    pub fn coef(&self, h: usize, i: usize) -> u8 {
        let h = h % (MAX_N - self.k);
        self.rows.get(h * self.k + i).copied().unwrap_or(0)
    }

    /// Adds data packet `i`'s contribution to parity `h` into `out` (whose length is the
    /// parity length): its TSDU, and with `var` its length in the last two bytes.
    pub fn add_packet(&self, out: &mut [u8], h: usize, i: usize, tsdu: &[u8], var: bool) {
        let c = self.coef(h, i);
        if var {
            let l = out.len().saturating_sub(2);
            let (body, tail) = out.split_at_mut(l);
            addmul(body, c, tsdu);
            addmul(tail, c, &(tsdu.len() as u16).to_le_bytes());
        } else {
            addmul(out, c, tsdu);
        }
    }
}

/// Parity length of a group whose longest TSDU is `max` bytes: `max`, or `max + 2` when
/// the TSDUs differ in length (`var`).
pub fn parity_len(max: usize, var: bool) -> usize {
    max + if var { 2 } else { 0 }
}

/// Why a group could not be rebuilt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoverError {
    /// Fewer parity packets than missing data packets.
    NotEnough,
    /// More missing packets than one recovery rebuilds ([`MAX_RECOVER`]).
    TooMany,
    /// A held packet is longer than the parity (or, without OPT_VAR_PKTLEN, of another
    /// length), or a rebuilt length trailer is out of range: the group's packets do not
    /// belong together.
    Inconsistent,
}

/// One transmission group being collected by a receiver: data slots, parity slots, and
/// recovery of the missing data from them. Allocated once (per source with FEC) and
/// reused for group after group.
#[derive(Clone, Debug)]
pub struct GroupBuf {
    k: usize,
    /// Bytes per slot (largest TSDU).
    slot: usize,
    /// `k` data slots then `MAX_RECOVER` parity slots.
    buf: Vec<u8>,
    /// TSDU length per data slot.
    len: Vec<u16>,
    /// Data slots present (bit `i`).
    have: u128,
    /// Encoded OPT_FRAGMENT value per data slot (zeros: none).
    frag: Vec<[u8; FRAG_BYTES]>,
    /// Parity held: its index and encoded fragment value.
    parity: [(u8, [u8; FRAG_BYTES]); MAX_RECOVER],
    nparity: usize,
    /// Parity length and flags of the parity held (all must agree).
    plen: usize,
    var: bool,
    op_encoded: bool,
}

impl GroupBuf {
    /// Storage for groups of `k` packets of at most `slot` bytes each.
    pub fn new(k: usize, slot: usize) -> GroupBuf {
        GroupBuf {
            k,
            slot,
            buf: vec![0; (k + MAX_RECOVER) * slot],
            len: vec![0; k],
            have: 0,
            frag: vec![[0; FRAG_BYTES]; k],
            parity: [(0, [0; FRAG_BYTES]); MAX_RECOVER],
            nparity: 0,
            plen: 0,
            var: false,
            op_encoded: false,
        }
    }

    /// Forgets what it holds (for the next group).
    pub fn clear(&mut self) {
        self.have = 0;
        self.nparity = 0;
    }

    /// Drops the parity held (it did not fit the group's data).
    pub fn drop_parity(&mut self) {
        self.nparity = 0;
    }

    /// Data packets held.
    pub fn data_count(&self) -> usize {
        self.have.count_ones() as usize
    }

    /// Parity packets held.
    pub fn parity_count(&self) -> usize {
        self.nparity
    }

    /// Whether data packet `i` is held.
    pub fn has(&self, i: usize) -> bool {
        i < self.k && self.have & (1u128 << i) != 0
    }

    /// Data packets missing (of `size`, the group's actual size).
    pub fn missing(&self, size: usize) -> usize {
        size.min(self.k) - (self.have & mask(size.min(self.k))).count_ones() as usize
    }

    /// Stores data packet `i`; false if it does not fit a slot.
    pub fn put_data(&mut self, i: usize, tsdu: &[u8], frag: Option<[u8; FRAG_BYTES]>) -> bool {
        if i >= self.k || tsdu.len() > self.slot || self.has(i) {
            return false;
        }
        let at = i * self.slot;
        self.buf[at..at + tsdu.len()].copy_from_slice(tsdu);
        self.len[i] = tsdu.len() as u16;
        self.frag[i] = frag.unwrap_or([0; FRAG_BYTES]);
        self.have |= 1u128 << i;
        true
    }

    /// Stores parity packet `index` (its TSDU, flags and encoded fragment value); false
    /// when it is already held, does not match the parity held, or there is no room.
    pub fn put_parity(
        &mut self,
        index: u8,
        tsdu: &[u8],
        var: bool,
        frag: Option<[u8; FRAG_BYTES]>,
    ) -> bool {
        if tsdu.len() > self.slot
            || tsdu.is_empty()
            || (var && tsdu.len() < 2)
            || self.nparity >= MAX_RECOVER
            || self.parity[..self.nparity].iter().any(|p| p.0 == index)
        {
            return false;
        }
        if self.nparity > 0
            && (self.plen != tsdu.len() || self.var != var || self.op_encoded != frag.is_some())
        {
            return false;
        }
        self.plen = tsdu.len();
        self.var = var;
        self.op_encoded = frag.is_some();
        let at = (self.k + self.nparity) * self.slot;
        self.buf[at..at + tsdu.len()].copy_from_slice(tsdu);
        self.parity[self.nparity] = (index, frag.unwrap_or([0; FRAG_BYTES]));
        self.nparity += 1;
        true
    }

    /// Data packet `i` as held: TSDU and encoded fragment value.
    pub fn data(&self, i: usize) -> (&[u8], [u8; FRAG_BYTES]) {
        let at = i * self.slot;
        let len = self.len.get(i).copied().unwrap_or(0) as usize;
        (
            self.buf.get(at..at + len).unwrap_or(&[]),
            self.frag.get(i).copied().unwrap_or([0; FRAG_BYTES]),
        )
    }

    /// Rebuilds every missing data packet among the first `size` from the parity held;
    /// returns the rebuilt ones (bit `i`). The parity held is used up (the group then
    /// holds all of its data, or the error leaves it unchanged but for the parity).
    pub fn recover(&mut self, code: &Code, size: usize) -> Result<u128, RecoverError> {
        let size = size.min(self.k);
        let missing_mask = mask(size) & !self.have;
        let m = missing_mask.count_ones() as usize;
        if m == 0 {
            return Ok(0);
        }
        if m > MAX_RECOVER {
            return Err(RecoverError::TooMany);
        }
        if m > self.nparity {
            return Err(RecoverError::NotEnough);
        }
        let plen = self.plen;
        if plen > self.slot {
            return Err(RecoverError::Inconsistent);
        }
        let body = if self.var { plen - 2 } else { plen };
        for i in 0..size {
            if self.has(i) {
                let l = self.len[i] as usize;
                if l > body || (!self.var && l != plen) {
                    return Err(RecoverError::Inconsistent);
                }
            }
        }
        let mut miss = [0usize; MAX_RECOVER];
        let mut j = 0;
        for (i, slot) in (0..size)
            .filter(|&i| missing_mask & (1u128 << i) != 0)
            .zip(0..)
        {
            miss[slot] = i;
            j += 1;
        }
        debug_assert_eq!(j, m);
        // A[a][b] = coefficient of missing packet b in parity a.
        let mut a = [0u8; MAX_RECOVER * MAX_RECOVER];
        let mut scratch = [0u8; MAX_RECOVER * MAX_RECOVER];
        for r in 0..m {
            let h = usize::from(self.parity[r].0);
            for (c, &i) in miss[..m].iter().enumerate() {
                a[r * m + c] = code.coef(h, i);
            }
        }
        if !invert(&mut a, m, &mut scratch) {
            return Err(RecoverError::Inconsistent);
        }
        // Syndromes, in the parity slots: parity minus the held packets' share.
        let slot = self.slot;
        let k = self.k;
        let (data, par) = self.buf.split_at_mut(k * slot);
        for r in 0..m {
            let h = usize::from(self.parity[r].0);
            let p = &mut par[r * slot..r * slot + plen];
            let mut pf = self.parity[r].1;
            for i in (0..size).filter(|&i| self.have & (1u128 << i) != 0) {
                let l = self.len[i] as usize;
                code.add_packet(p, h, i, &data[i * slot..i * slot + l], self.var);
                addmul(&mut pf, code.coef(h, i), &self.frag[i]);
            }
            self.parity[r].1 = pf;
        }
        // Missing packet b = Σ_a A^-1[b][a] · syndrome a.
        for (b, &i) in miss[..m].iter().enumerate() {
            let d = &mut data[i * slot..i * slot + plen];
            d.fill(0);
            let mut f = [0u8; FRAG_BYTES];
            for r in 0..m {
                let c = a[b * m + r];
                addmul(d, c, &par[r * slot..r * slot + plen]);
                addmul(&mut f, c, &self.parity[r].1);
            }
            let len = if self.var {
                let t = u16::from_le_bytes([d[plen - 2], d[plen - 1]]) as usize;
                if t > body {
                    self.nparity = 0;
                    return Err(RecoverError::Inconsistent);
                }
                t
            } else {
                plen
            };
            self.len[i] = len as u16;
            self.frag[i] = if self.op_encoded { f } else { [0; FRAG_BYTES] };
        }
        self.nparity = 0;
        self.have |= missing_mask;
        Ok(missing_mask)
    }
}

fn mask(n: usize) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

/// Encodes parity packet `h` of a group into `out` (its length must be the parity
/// length: see [`parity_len`]). `tsdus` yields each data packet's TSDU, in order.
pub fn encode<'a>(
    code: &Code,
    h: usize,
    tsdus: impl IntoIterator<Item = &'a [u8]>,
    var: bool,
    out: &mut [u8],
) {
    out.fill(0);
    for (i, t) in tsdus.into_iter().enumerate().take(code.k()) {
        code.add_packet(out, h, i, t, var);
    }
}

/// The encoded form of an OPT_FRAGMENT value (three 32-bit fields, network order).
pub fn frag_bytes(first_sqn: u32, offset: u32, apdu_len: u32) -> [u8; FRAG_BYTES] {
    let mut b = [0u8; FRAG_BYTES];
    b[..4].copy_from_slice(&first_sqn.to_be_bytes());
    b[4..8].copy_from_slice(&offset.to_be_bytes());
    b[8..].copy_from_slice(&apdu_len.to_be_bytes());
    b
}

/// The fields of an encoded OPT_FRAGMENT value, or `None` for all zeros (no fragment).
pub fn frag_fields(b: &[u8; FRAG_BYTES]) -> Option<(u32, u32, u32)> {
    if b.iter().all(|&x| x == 0) {
        return None;
    }
    let f = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Some((f(0), f(4), f(8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_tables_match_the_polynomial() {
        // α^8 = x^4 + x^3 + x^2 + 1 under 0x11D (OpenPGM's antilog table: 1, 2, 4, …,
        // 128, 29, 58, …).
        assert_eq!(exp(8), 0x1d);
        assert_eq!(exp(9), 0x3a);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "{a}");
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
        }
        // Multiplication by repeated doubling agrees with the table.
        for a in 0..=255u8 {
            for b in [0u8, 1, 2, 3, 0x53, 0xca, 0xff] {
                let mut x = a as u16;
                let mut y = b;
                let mut p = 0u16;
                while y != 0 {
                    if y & 1 != 0 {
                        p ^= x;
                    }
                    x <<= 1;
                    if x & 0x100 != 0 {
                        x ^= POLY;
                    }
                    y >>= 1;
                }
                assert_eq!(mul(a, b) as u16, p, "{a} * {b}");
            }
        }
    }

    #[test]
    fn group_sizes_outside_the_protocol_are_refused() {
        for k in [0, 1, 3, 6, 100, 256] {
            assert_eq!(Code::new(k).unwrap_err(), BadGroupSize(k));
        }
        for k in [2, 4, 8, 16, 32, 64, 128] {
            assert_eq!(Code::new(k).unwrap().k(), k);
        }
    }

    #[test]
    fn the_code_is_systematic_vandermonde() {
        // G = V · V_k^-1: multiplying a parity row back by V_k gives that row of V.
        let k = 8;
        let code = Code::new(k).unwrap();
        for h in [0usize, 1, 5, 100, 246] {
            let r = k + h;
            for col in 0..k {
                let mut s = 0;
                for i in 0..k {
                    let v_ic = if i == 0 {
                        u8::from(col == 0)
                    } else {
                        exp(col * (i - 1))
                    };
                    s ^= mul(code.coef(h, i), v_ic);
                }
                assert_eq!(s, exp(col * (r - 1)), "row {r} col {col}");
            }
        }
    }

    #[test]
    fn addmul_matches_scalar_multiplication() {
        let src: Vec<u8> = (0..37u32).map(|i| (i * 29 + 7) as u8).collect();
        for c in [0u8, 1, 2, 0x8e, 0xff] {
            let mut d: Vec<u8> = (0..37u32).map(|i| (i * 3) as u8).collect();
            let before = d.clone();
            addmul(&mut d, c, &src);
            for i in 0..37 {
                assert_eq!(d[i], before[i] ^ mul(c, src[i]));
            }
        }
    }

    #[test]
    fn a_group_losing_as_many_packets_as_it_has_parity_is_rebuilt() {
        let k = 4;
        let code = Code::new(k).unwrap();
        let pkts: Vec<Vec<u8>> = (0..k).map(|i| vec![i as u8 + 1; 10 + i]).collect();
        let plen = parity_len(13, true);
        let mut g = GroupBuf::new(k, 64);
        for h in [3usize, 0] {
            let mut p = vec![0; plen];
            encode(&code, h, pkts.iter().map(Vec::as_slice), true, &mut p);
            assert!(g.put_parity(h as u8, &p, true, None));
        }
        assert!(g.put_data(1, &pkts[1], None));
        assert!(g.put_data(3, &pkts[3], None));
        assert_eq!(g.missing(k), 2);
        assert_eq!(g.recover(&code, k), Ok(0b0101));
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!(g.data(i).0, &p[..], "{i}");
        }
    }

    #[test]
    fn too_little_parity_is_reported() {
        let code = Code::new(4).unwrap();
        let mut g = GroupBuf::new(4, 16);
        assert!(g.put_parity(0, &[1; 8], false, None));
        assert!(g.put_data(0, &[2; 8], None));
        assert_eq!(g.recover(&code, 4), Err(RecoverError::NotEnough));
        // Mismatched parity is refused, a held index too.
        assert!(!g.put_parity(1, &[1; 9], false, None));
        assert!(!g.put_parity(0, &[1; 8], false, None));
        // A held packet of another length than the parity (without var): inconsistent.
        let mut g = GroupBuf::new(2, 16);
        assert!(g.put_parity(0, &[1; 8], false, None));
        assert!(g.put_data(0, &[2; 7], None));
        assert_eq!(g.recover(&code_2(), 2), Err(RecoverError::Inconsistent));
    }

    fn code_2() -> Code {
        Code::new(2).unwrap()
    }
}
