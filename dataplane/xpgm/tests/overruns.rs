//! A subscriber surfaces its transport's overrun counters ([`Datapath::overruns`]):
//! read while the session runs (every `worker::OVERRUN_CHECK`), with the total and
//! each cause in `SubscriberStats`, and read once more, exactly
//! ([`Datapath::overruns_now`]), when the session closes. The transports' own
//! readings are tested in `transport::{socket,xdp}` and end to end in e2e_socket.rs
//! and e2e_xdp.rs.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xpgm::core::source::Destination;
use xpgm::core::wire::Nla;
use xpgm::transport::{Datapath, Overruns};
use xpgm::{Error, SessionConfig, Subscriber, SubscriberConfig};

/// Receives nothing; reports `live` from `overruns` and `exact` from `overruns_now`.
#[derive(Debug)]
struct Overrun {
    live: Arc<Mutex<Overruns>>,
    exact: Arc<Mutex<Overruns>>,
}

impl Datapath for Overrun {
    fn recv_batch(&mut self, _: usize, _: &mut dyn FnMut(Nla, &[u8])) -> Result<usize, Error> {
        Ok(0)
    }
    fn send(&mut self, _: Destination, _: &[u8]) -> Result<(), Error> {
        Ok(())
    }
    fn wait(&mut self, _: Option<BorrowedFd<'_>>, t: Option<Duration>) -> Result<(), Error> {
        std::thread::sleep(
            t.unwrap_or(Duration::from_millis(5))
                .min(Duration::from_millis(5)),
        );
        Ok(())
    }
    fn local_nla(&self) -> Nla {
        Nla::V4(Ipv4Addr::new(10, 0, 0, 2))
    }
    fn send_errors(&self) -> u64 {
        0
    }
    fn overruns(&mut self) -> Overruns {
        *self.live.lock().unwrap()
    }
    fn overruns_now(&mut self) -> Overruns {
        *self.exact.lock().unwrap()
    }
}

#[test]
fn overruns_are_published_while_running_and_read_exactly_at_close() {
    let live = Arc::new(Mutex::new(Overruns::default()));
    let exact = Arc::new(Mutex::new(Overruns::default()));
    let dp = Overrun {
        live: live.clone(),
        exact: exact.clone(),
    };
    let cfg = SubscriberConfig::new(SessionConfig::new(
        "fake0",
        IpAddr::V4(Ipv4Addr::new(239, 192, 9, 11)),
    ));
    let sub = Subscriber::with_datapath(cfg, Box::new(dp)).expect("subscriber");
    assert_eq!(sub.stats().overruns, 0);
    *live.lock().unwrap() = Overruns {
        xdp_rx_dropped: 5,
        xdp_rx_ring_full: 2,
        xdp_fill_ring_empty: 5,
        socket_drops: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while sub.stats().overruns == 0 {
        assert!(Instant::now() < deadline, "overruns never published");
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = sub.stats();
    // Fill-ring-empty drops are already in rx_dropped: not added to the total.
    assert_eq!(
        (
            st.overruns,
            st.xdp_rx_dropped,
            st.xdp_rx_ring_full,
            st.xdp_fill_ring_empty,
            st.socket_drops
        ),
        (7, 5, 2, 5, 0),
        "{st:?}"
    );
    // More drops counted by the kernel just before the end: the close reads them.
    *exact.lock().unwrap() = Overruns {
        xdp_rx_dropped: 9,
        xdp_rx_ring_full: 2,
        xdp_fill_ring_empty: 9,
        socket_drops: 4,
    };
    let st = sub.close().expect("close");
    assert_eq!(
        (st.overruns, st.xdp_rx_dropped, st.socket_drops),
        (15, 9, 4),
        "{st:?}"
    );
}
