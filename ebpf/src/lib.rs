//! The XDP classifier and the map ABI shared with `xpgmd`.
