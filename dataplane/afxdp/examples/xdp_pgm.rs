//! Minimal AF_XDP sender/receiver (the `xpgm` CLI is the real front end):
//!
//!   xdp_pgm send IFACE GROUP COUNT SIZE [LINGER_MS]
//!   xdp_pgm recv IFACE GROUP COUNT IDLE_MS
//!
//! Messages carry their index in the first 8 bytes (big-endian); recv checks
//! order and prints one JSON line.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use xpgm_afxdp::session::{XdpOptions, XdpReceiver, XdpSender};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let usage =
        "usage: xdp_pgm send IFACE GROUP COUNT SIZE [LINGER_MS] | recv IFACE GROUP COUNT IDLE_MS";
    if a.len() < 6 {
        return Err(usage.into());
    }
    let mut o = XdpOptions::new(&a[2], a[3].parse()?);
    let count: u64 = a[4].parse()?;
    match a[1].as_str() {
        "send" => {
            let size: usize = a[5].parse()?;
            let linger = a.get(6).map_or(Ok(2000), |s| s.parse())?;
            o.max_msg = size.max(8);
            let mut s = XdpSender::open(&o)?;
            let mut msg = vec![0u8; size.max(8)];
            let t = Instant::now();
            for i in 0..count {
                msg[..8].copy_from_slice(&i.to_be_bytes());
                s.send(&msg).map_err(|e| format!("send: {e:?}"))?;
            }
            let c = s.counters();
            let (odata, rdata, ncf, naks) = (
                c.odata_sent.load(Relaxed),
                c.rdata_sent.load(Relaxed),
                c.ncf_sent.load(Relaxed),
                c.naks_received.load(Relaxed),
            );
            let secs = t.elapsed().as_secs_f64();
            let mode = s.mode().as_str();
            s.close(Duration::from_millis(linger));
            println!(
                "{{\"sent\":{count},\"secs\":{secs:.3},\"odata\":{odata},\"rdata_sent\":{rdata},\"ncf_sent\":{ncf},\"naks_received\":{naks},\"mode\":\"{mode}\"}}"
            );
        }
        "recv" => {
            let idle = Duration::from_millis(a[5].parse()?);
            let mut r = XdpReceiver::open(&o)?;
            let mut buf = vec![0u8; 65536];
            let (mut got, mut ooo, mut dup, mut gaps) = (0u64, 0u64, 0u64, 0u64);
            let mut next: Option<u64> = None;
            let mut last = Instant::now();
            let mut first: Option<Instant> = None;
            while got < count && last.elapsed() < idle {
                match r.try_recv(&mut buf)? {
                    Some(m) if m.len >= 8 => {
                        let i = u64::from_be_bytes(buf[..8].try_into()?);
                        match next {
                            Some(n) if i == n => {}
                            Some(n) if i < n => dup += 1,
                            Some(n) => {
                                gaps += i - n;
                                ooo += 1;
                            }
                            None => {}
                        }
                        next = Some(i + 1);
                        got += 1;
                        last = Instant::now();
                        first.get_or_insert(last);
                    }
                    Some(_) => {}
                    None => std::thread::yield_now(),
                }
            }
            let c = r.counters();
            let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            println!(
                "{{\"received\":{got},\"secs\":{secs:.3},\"unrecoverable\":{},\"duplicates\":{dup},\"out_of_order\":{ooo},\"index_gaps\":{gaps},\"naks_sent\":{},\"lapped\":{},\"mode\":\"{}\"}}",
                c.unrecoverable.load(Relaxed),
                c.naks_sent.load(Relaxed),
                r.lapped,
                r.mode().as_str()
            );
            r.close();
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
