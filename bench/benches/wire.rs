//! Wire codec micro-benchmarks: encode and decode ns/packet for ODATA (64 and 1400 byte
//! payloads), a NAK with a full 62-entry NAK list, and an SPM.

use core::net::Ipv4Addr;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xpgm_core::Sqn;
use xpgm_core::wire::{Body, Data, Gsi, Nak, NakList, Nla, Options, PacketRepr, Spm, checksum};

const GSI: Gsi = Gsi([1, 2, 3, 4, 5, 6]);

fn repr(body: Body<'_>, options: Options) -> PacketRepr<'_> {
    PacketRepr {
        sport: 41000,
        dport: 7500,
        gsi: GSI,
        body,
        options,
    }
}

fn bench_packet(c: &mut Criterion, name: &str, r: &PacketRepr<'_>) {
    let mut buf = vec![0u8; r.buffer_len()];
    let n = r.emit(&mut buf).expect("encodable");
    let mut g = c.benchmark_group(format!("wire/{name}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(r).emit(black_box(&mut buf)).unwrap())
    });
    let bytes = buf[..n].to_vec();
    g.bench_function("decode", |b| {
        b.iter(|| PacketRepr::parse(black_box(&bytes)).unwrap())
    });
    g.finish();
}

fn wire(c: &mut Criterion) {
    let p64 = vec![0xa5u8; 64];
    let p1400 = vec![0x5au8; 1400];
    let data = |payload| {
        Body::Odata(Data {
            sqn: Sqn(1000),
            trail: Sqn(10),
            payload,
        })
    };
    bench_packet(c, "odata_64", &repr(data(&p64), Options::default()));
    bench_packet(c, "odata_1400", &repr(data(&p1400), Options::default()));

    let mut list = NakList::default();
    for i in 1..=62 {
        list.push(Sqn(1000 + i));
    }
    let nak = Body::Nak(Nak {
        sqn: Sqn(1000),
        source: Nla::V4(Ipv4Addr::new(10, 0, 0, 1)),
        group: Nla::V4(Ipv4Addr::new(239, 192, 0, 1)),
    });
    let opts = Options {
        nak_list: list,
        ..Options::default()
    };
    bench_packet(c, "nak_list_62", &repr(nak, opts));

    let spm = Body::Spm(Spm {
        sqn: Sqn(5),
        trail: Sqn(10),
        lead: Sqn(1000),
        path: Nla::V4(Ipv4Addr::new(10, 0, 0, 1)),
    });
    bench_packet(c, "spm", &repr(spm, Options::default()));

    let mut g = c.benchmark_group("wire/checksum");
    g.throughput(Throughput::Bytes(1500));
    let buf = vec![0x3cu8; 1500];
    g.bench_function("1500B", |b| b.iter(|| checksum::checksum(black_box(&buf))));
    g.finish();
}

criterion_group!(benches, wire);
criterion_main!(benches);
