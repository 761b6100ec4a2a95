//! A deterministic network in virtual time: one PGM source, N receivers, seeded loss,
//! reordering, duplication and delay. Exposed as `xpgm sim`.
#![forbid(unsafe_code)]
