//! Receive from a multicast group until the session ends or 10 s pass without data.
//!
//! ```sh
//! sudo cargo run -p xpgm --example subscriber -- eth0 239.192.0.1 [udp-port]
//! ```

use std::time::Duration;

use xpgm::{Delivery, Error, SessionConfig, Subscriber, SubscriberConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let iface = args.next().unwrap_or_else(|| "eth0".into());
    let group = args
        .next()
        .unwrap_or_else(|| "239.192.0.1".into())
        .parse()?;
    let mut session = SessionConfig::new(iface, group);
    session.udp_encap = args.next().map(|p| p.parse()).transpose()?;

    let mut subscriber = Subscriber::new(SubscriberConfig::new(session))?;
    loop {
        match subscriber.recv(Some(Duration::from_secs(10))) {
            Ok(Delivery::Data { tsi, sqn, data }) => {
                println!("{tsi} #{}: {}", sqn.0, String::from_utf8_lossy(data));
            }
            Ok(Delivery::Unrecoverable { tsi, first, count }) => {
                println!("{tsi}: {count} message(s) lost for good from #{}", first.0);
            }
            Ok(Delivery::SessionEnd { tsi }) => {
                println!("{tsi}: session ended");
                break;
            }
            Ok(_) => {}
            Err(Error::Timeout) => break,
            Err(e) => return Err(e.into()),
        }
    }
    // Drain whatever is already queued without blocking, in batches.
    while subscriber.recv_batch(64, |d| println!("late: {d:?}"))? > 0 {}
    println!("{:?}", subscriber.close()?);
    Ok(())
}
