#!/usr/bin/python3
"""ZeroMQ peer for xpgm's interop tests (scripts/test-interop), over pgm:// or epgm://.

    zmq_peer.py pub --endpoint 'epgm://ADDR;GROUP:PORT' [--count N] [--size B] [--rate R]
                    [--linger-ms MS]
    zmq_peer.py sub --endpoint 'epgm://ADDR;GROUP:PORT' [--count N] [--idle-ms MS]

Messages and JSON output follow `xpgm send/recv`: message i is SIZE bytes, its first 8
bytes are i (big-endian) and the rest the byte i & 0xff. Run with Debian's
/usr/bin/python3 (python3-zmq, built with OpenPGM).
"""

import argparse
import json
import struct
import sys
import time

import zmq


def message(i, size):
    return struct.pack(">Q", i) + bytes([i & 0xFF]) * (size - 8)


def pub(args, ctx):
    s = ctx.socket(zmq.PUB)
    # Rate in kbit/s (libzmq's default is 100 kbit/s): the offered rate, with margin
    # for headers and repairs.
    s.setsockopt(zmq.RATE, max(1000, args.rate * (args.size + 64) * 8 * 2 // 1000))
    s.setsockopt(zmq.RECOVERY_IVL, 30000)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.LINGER, args.linger_ms)
    s.connect(args.endpoint)
    time.sleep(0.5)
    start = time.monotonic()
    for i in range(args.count):
        due = start + i / args.rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        s.send(message(i, args.size))
    secs = time.monotonic() - start
    time.sleep(args.linger_ms / 1000)
    s.close()
    print(json.dumps({"sent": args.count, "bytes": args.count * args.size, "secs": secs,
                      "msgs_per_s": args.count / secs if secs > 0 else 0.0,
                      "naks_received": None, "ncf_sent": None, "rdata_sent": None,
                      "transport": "zeromq"}))
    return 0


def sub(args, ctx):
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    # libzmq sizes the PGM receive window from RATE x RECOVERY_IVL: the defaults
    # (100 kbit/s) give a window of a few dozen packets, too small to repair 1% loss.
    s.setsockopt(zmq.RATE, 10000)
    s.setsockopt(zmq.RECOVERY_IVL, 30000)
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.RCVTIMEO, args.idle_ms)
    s.connect(args.endpoint)
    print("ready", file=sys.stderr, flush=True)
    received = nbytes = dups = ooo = gaps = corrupt = short = 0
    expected = first = None
    seen = set()
    t0 = t1 = None
    while args.count is None or received < args.count:
        try:
            m = s.recv()
        except zmq.Again:
            break
        t1 = time.monotonic()
        t0 = t0 or t1
        received += 1
        nbytes += len(m)
        if len(m) < 8:
            short += 1
            continue
        i = struct.unpack(">Q", m[:8])[0]
        if any(b != (i & 0xFF) for b in m[8:]):
            corrupt += 1
        if expected is None:
            first, expected = i, i + 1
        elif i == expected:
            expected += 1
        elif i > expected:
            gaps += 1
            expected = i + 1
        elif i in seen:
            dups += 1
        else:
            ooo += 1
        seen.add(i)
    s.close(linger=0)
    secs = (t1 - t0) if t0 is not None else 0.0
    print(json.dumps({"received": received, "bytes": nbytes, "secs": secs,
                      "msgs_per_s": received / secs if secs > 0 else 0.0,
                      "unrecoverable": None, "duplicates": dups, "out_of_order": ooo,
                      "index_gaps": gaps, "naks_sent": None, "transport": "zeromq",
                      "first_index": first, "short": short, "corrupt": corrupt}))
    if args.count is not None and received < args.count:
        print(f"zmq_peer sub: received {received} of {args.count}", file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["pub", "sub"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--count", type=int)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--linger-ms", type=int, default=2000)
    p.add_argument("--idle-ms", type=int, default=5000)
    args = p.parse_args()
    if args.size < 8:
        p.error("--size must be at least 8")
    ctx = zmq.Context()
    if args.mode == "pub":
        if args.count is None:
            args.count = 1000
        return pub(args, ctx)
    return sub(args, ctx)


if __name__ == "__main__":
    sys.exit(main())
