#![recursion_limit = "256"]
//! A deterministic network in virtual time: one PGM source, N receivers, seeded loss,
//! reordering, duplication and delay. Exposed as `xpgm sim`.
//!
//! * [`config`]: every knob ([`SimConfig`]) with defaults.
//! * [`link`]: one link direction (Bernoulli or Gilbert–Elliott loss, delay, jitter,
//!   duplication).
//! * [`node`]: the sans-IO surface driven ([`node::SimSource`], [`node::SimReceiver`]),
//!   implemented by the real engines.
//! * [`check`]: the application's checks on every delivered message.
//! * [`sim`]: the event loop; [`report`]: the outcome.
//!
//! Same configuration and seed, same [`Report`]: nothing reads a clock or the OS's
//! randomness, and events at equal times run in insertion order.
#![forbid(unsafe_code)]

pub mod check;
pub mod config;
pub mod link;
pub mod node;
pub mod report;
pub mod sim;

pub use config::{ConfigError, LinkConfig, SimConfig, TypeLoss};
pub use report::{EndReason, Report};
pub use sim::Simulation;

use xpgm_core::receiver::Receiver;
use xpgm_core::source::Source;
use xpgm_core::wire::{Gsi, Tsi};

/// The session identifier of the simulated source.
pub const TSI: Tsi = Tsi {
    gsi: Gsi([0x78, 0x70, 0x67, 0x6d, 0x00, 0x01]),
    sport: 7501,
};

/// The smallest `max_tpdu` that carries a `size`-byte message in one TPDU (with room
/// for a fragment option, so the engine never needs to fragment it).
pub fn fitted_tpdu(size: usize) -> usize {
    use xpgm_core::config::{DATA_OVERHEAD, FRAGMENT_OPTIONS_LEN, MIN_TPDU};
    (DATA_OVERHEAD + FRAGMENT_OPTIONS_LEN)
        .saturating_add(size)
        .max(MIN_TPDU)
}

/// Runs `cfg` with the real protocol engines.
pub fn run(cfg: &SimConfig) -> Result<Report, ConfigError> {
    cfg.validate()?;
    let mut scfg = cfg.source.clone();
    scfg.group = sim::GROUP;
    scfg.path_nla = sim::SOURCE_NLA;
    let mut rcfg = cfg.receiver.clone();
    rcfg.group = sim::GROUP;
    rcfg.dport = scfg.dport;
    rcfg.lines = cfg.lines;
    if cfg.fit_tpdu {
        let fit = fitted_tpdu(cfg.size);
        if fit < scfg.max_tpdu {
            // The engines bound `max_apdu` by what the window can hold; every message
            // here is exactly `size` bytes.
            scfg.max_tpdu = fit;
            rcfg.max_tpdu = rcfg.max_tpdu.min(fit);
            scfg.max_apdu = scfg.max_apdu.min(cfg.size);
            rcfg.max_apdu = rcfg.max_apdu.min(cfg.size);
        }
    }
    let source = Source::new(scfg, TSI, xpgm_core::Instant::ZERO).map_err(ConfigError::Engine)?;
    let mut seeds = xpgm_core::rng::Rng::new(cfg.seed ^ 0x5245_4345_4956_4552);
    let receivers = (0..cfg.receivers)
        .map(|i| Receiver::new(rcfg.clone(), sim::receiver_nla(i), seeds.next_u64()))
        .collect::<Result<Vec<Receiver>, _>>()
        .map_err(ConfigError::Engine)?;
    Ok(Simulation::new(cfg.clone(), source, receivers)?.run())
}
