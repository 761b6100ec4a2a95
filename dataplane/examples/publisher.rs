//! Publish a few messages to a multicast group.
//!
//! ```sh
//! sudo cargo run -p xpgm --example publisher -- eth0 239.192.0.1 [udp-port]
//! ```
//! Without a UDP port it uses raw IP protocol 113 (needs root or CAP_NET_RAW).

use std::time::Duration;

use xpgm::{Publisher, PublisherConfig, SessionConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let iface = args.next().unwrap_or_else(|| "eth0".into());
    let group = args
        .next()
        .unwrap_or_else(|| "239.192.0.1".into())
        .parse()?;
    let mut session = SessionConfig::new(iface, group);
    session.udp_encap = args.next().map(|p| p.parse()).transpose()?;

    let mut config = PublisherConfig::new(session);
    config.source.txw_max_rte = 1_000_000; // bytes per second on the wire
    let mut publisher = Publisher::new(config)?;
    println!(
        "publishing as {} from {:?}",
        publisher.tsi(),
        publisher.local_nla()
    );
    for i in 0..100u64 {
        let text = format!("message {i}");
        // Blocks while the window is full (back-pressure), never drops.
        publisher.send(text.as_bytes())?;
    }
    // Send everything, then FIN, then keep answering NAKs for a second.
    let stats = publisher.finish(Duration::from_secs(1))?;
    println!("{stats:?}");
    Ok(())
}
