//! The XDP classifier and the map ABI shared with `xpgmd`.
//!
//! The classifier itself is C (`bpf/xpgm_classifier.bpf.c`), compiled by
//! `build.rs` with clang and embedded as [`OBJECT`]; [`abi`] mirrors the map
//! keys and values of `include/xpgm_abi.h`, and [`Classifier`] loads one
//! instance, attaches it and manages its maps through aya. See
//! `docs/classifier.md`.

#![deny(unsafe_code)]

pub mod abi;
mod loader;

pub use loader::{AttachMode, AttachedMode, Classifier, Counters, Error, OBJECT, verdict};
