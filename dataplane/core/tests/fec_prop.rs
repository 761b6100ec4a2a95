//! Property: any k of a group's k + h packets give back the group exactly, whatever the
//! packets' lengths and which ones are lost.
#![allow(clippy::needless_range_loop)] // indices are packet positions in the group

use proptest::prelude::*;
use xpgm_core::fec::{Code, GroupBuf, encode, parity_len};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn any_k_of_k_plus_h_packets_rebuild_the_group(
        log_k in 1u32..=5,
        h in 1usize..=6,
        lens in proptest::collection::vec(1usize..300, 32),
        seed in any::<u64>(),
        lost_bits in any::<u64>(),
    ) {
        let k = 1usize << log_k;
        let h = h.min(k);
        let code = Code::new(k).unwrap();
        let pkts: Vec<Vec<u8>> = (0..k)
            .map(|i| (0..lens[i]).map(|j| (seed.wrapping_mul(i as u64 + 1) >> (j % 56)) as u8 ^ j as u8).collect())
            .collect();
        let max = pkts.iter().map(Vec::len).max().unwrap();
        let var = pkts.iter().any(|p| p.len() != max);
        let plen = parity_len(max, var);
        let parity: Vec<Vec<u8>> = (0..h)
            .map(|p| {
                let mut out = vec![0; plen];
                encode(&code, p, pkts.iter().map(Vec::as_slice), var, &mut out);
                out
            })
            .collect();
        // Lose up to h of the k + h packets, chosen by lost_bits.
        let mut lost = vec![false; k + h];
        let mut n = 0;
        for i in 0..k + h {
            if n < h && lost_bits >> (i % 64) & 1 == 1 {
                lost[i] = true;
                n += 1;
            }
        }
        let mut g = GroupBuf::new(k, 400);
        for i in 0..k {
            if !lost[i] {
                prop_assert!(g.put_data(i, &pkts[i], None));
            }
        }
        for p in 0..h {
            if !lost[k + p] {
                prop_assert!(g.put_parity(p as u8, &parity[p], var, None));
            }
        }
        prop_assert!(g.recover(&code, k).is_ok());
        for i in 0..k {
            prop_assert_eq!(g.data(i).0, &pkts[i][..]);
        }
    }
}
