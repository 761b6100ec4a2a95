#!/usr/bin/env python3
"""Summaries for scripts/bench (throughput side). Standard library only.

  throughput.py verdict STEP.json
      prints "pass" or "fail: REASON" for one step record (used while stepping).
  throughput.py summarize OUT.json STEPS.jsonl META.json
      best rate per (kind, size), Gbit/s, CPU per message, ratios, targets.
  throughput.py role OUT.json STEPS.jsonl META.json ROLE
      one half of a two-host run (no verdicts: the other half is missing).
  throughput.py merge OUT.json A.json B.json
      joins a send half and a recv half by step number, then summarizes.
  throughput.py summary OUT.json THROUGHPUT.json [LATENCY.json]
      summary.json: throughput plus latency (null when absent).
  throughput.py table THROUGHPUT.json
      the Markdown tables of docs/performance.md.

A step record: kind, size, rate (offered msgs/s), count, dport, step, sender and
receiver (the JSON printed by the programs, or null), tx_cpu_s / rx_cpu_s
(user+system seconds of each process), tx_mode / rx_mode, rx_queues, tx_cpus_used /
rx_cpus_used (CPUs the program's threads were seen on, sampled every 0.2 s).
"""
import json
import sys

KINDS = {
    "raw": "a: raw AF_XDP frames (xdpblast)",
    "xdp": "b: xpgm over AF_XDP",
    "socket": "c: xpgm over kernel sockets",
    "openpgm": "d: OpenPGM 5.3 (pgmpeer)",
}
# Ethernet 14 + IPv4 20 + PGM common header 16 + ODATA header 8.
FRAME_OVERHEAD = 14 + 20 + 16 + 8
# Offered rate must be met to within this fraction by the sender.
RATE_TOLERANCE = 0.9


def verdict(s):
    snd, rcv = s.get("sender"), s.get("receiver")
    if not snd:
        return "fail: no sender result"
    if not rcv:
        return "fail: no receiver result"
    if (rcv.get("unrecoverable") or 0) > 0:
        return "fail: %d unrecoverable" % rcv["unrecoverable"]
    if (rcv.get("received") or 0) < s["count"]:
        return "fail: received %d of %d" % (rcv.get("received") or 0, s["count"])
    achieved = snd.get("msgs_per_s") or 0.0
    if achieved < RATE_TOLERANCE * s["rate"]:
        return "fail: sender reached %.0f of %d msgs/s" % (achieved, s["rate"])
    return "pass"


def load_lines(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def best_of(steps, kind, size):
    mine = [s for s in steps if s["kind"] == kind and s["size"] == size]
    if not mine:
        return None
    # A rate passes when any of its trials passed (a failed trial is repeated once).
    passing = [s for s in mine if s.get("verdict") == "pass"]
    r = {
        "what": KINDS.get(kind, kind),
        "steps": len(mine),
        "rates_tried": [s["rate"] for s in mine],
        "verdicts": [s.get("verdict") for s in mine],
    }
    if not passing:
        r.update({"best_rate": 0, "note": "no step passed"})
        return r
    b = max(passing, key=lambda s: s["rate"])
    snd, rcv = b["sender"], b["receiver"]
    count = b["count"]
    rate = b["rate"]
    cpu_tx = b.get("tx_cpu_s")
    cpu_rx = b.get("rx_cpu_s")
    r.update({
        "best_rate": rate,
        "sent_msgs_per_s": snd.get("msgs_per_s"),
        "delivered_msgs_per_s": rcv.get("msgs_per_s"),
        "payload_gbit_s": rate * size * 8 / 1e9,
        "wire_gbit_s": rate * (size + FRAME_OVERHEAD) * 8 / 1e9,
        "cpu_ns_per_msg_tx": None if cpu_tx is None else cpu_tx * 1e9 / count,
        "cpu_ns_per_msg_rx": None if cpu_rx is None else cpu_rx * 1e9 / count,
        "cpu_ns_per_msg": None if cpu_tx is None or cpu_rx is None
        else (cpu_tx + cpu_rx) * 1e9 / count,
        "count": count,
        "tx_mode": b.get("tx_mode"),
        "rx_mode": b.get("rx_mode"),
        "tx_cpus_used": b.get("tx_cpus_used"),
        "rx_cpus_used": b.get("rx_cpus_used"),
        "rx_queues": b.get("rx_queues"),
        "rx_queue_rates": None if not b.get("rx_queues") or not rcv.get("secs")
        else {q: n / rcv["secs"] for q, n in b["rx_queues"].items()},
    })
    passed = {s["rate"] for s in passing}
    failing = [s for s in mine if s.get("verdict") != "pass" and s["rate"] not in passed
               and s["rate"] > rate]
    if failing:
        f = min(failing, key=lambda s: s["rate"])
        r["first_failing_rate"] = f["rate"]
        r["first_failure"] = f.get("verdict")
    return r


def ratio(x, y):
    if not x or not y:
        return None
    return x / y


def summarize(steps, meta):
    for s in steps:
        s["verdict"] = verdict(s)
    sizes = sorted({s["size"] for s in steps})
    results, ratios, targets = {}, {}, {}
    for size in sizes:
        res = {}
        for kind in KINDS:
            b = best_of(steps, kind, size)
            if b is not None:
                res[kind] = b
        results[str(size)] = res
        rate = {k: v.get("best_rate") for k, v in res.items()}
        ba = ratio(rate.get("xdp"), rate.get("raw"))
        bc = ratio(rate.get("xdp"), rate.get("socket"))
        bd = ratio(rate.get("xdp"), rate.get("openpgm"))
        ratios[str(size)] = {"b/a": ba, "b/c": bc, "b/d": bd}
        targets[str(size)] = {
            "b >= 0.8a": None if ba is None else ba >= 0.8,
            "b >= 5d": None if bd is None else bd >= 5.0,
        }
    out = dict(meta)
    out.update({
        "units": {
            "best_rate": "highest offered msgs/s with every message delivered, zero "
                         "unrecoverable loss and the sender within 10% of the offered rate",
            "payload_gbit_s": "best_rate x message size x 8",
            "wire_gbit_s": "best_rate x (message + PGM ODATA 24 + IPv4 20 + Ethernet 14 "
                           "bytes) x 8; no FCS, preamble or gap (veth has none)",
            "cpu_ns_per_msg": "user+system CPU of the sender and receiver processes over "
                              "the step, divided by the messages sent (kernel softirq "
                              "work charged to other tasks is not included)",
        },
        "results": results,
        "ratios": ratios,
        "targets": targets,
        "steps": steps,
    })
    return out


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def table(j):
    lines = []
    for size, res in j["results"].items():
        lines.append("%s-byte messages:" % size)
        lines.append("")
        lines.append("| case | best offered rate (msgs/s) | delivered (msgs/s) | payload Gbit/s "
                     "| wire Gbit/s | CPU ns/msg (tx + rx) | AF_XDP mode | first failing step |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for kind in KINDS:
            r = res.get(kind)
            if r is None:
                continue
            mode = r.get("tx_mode") if r.get("tx_mode") not in (None, "n/a") else "-"
            fail = "-"
            if r.get("first_failing_rate"):
                fail = "%d: %s" % (r["first_failing_rate"], r.get("first_failure", "")[6:])
            cpu = "n/a"
            if r.get("cpu_ns_per_msg") is not None:
                cpu = "%.0f (%.0f + %.0f)" % (r["cpu_ns_per_msg"], r["cpu_ns_per_msg_tx"],
                                              r["cpu_ns_per_msg_rx"])
            lines.append("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
                r["what"], r.get("best_rate", 0), fmt(r.get("delivered_msgs_per_s"), ".0f"),
                fmt(r.get("payload_gbit_s"), ".3f"), fmt(r.get("wire_gbit_s"), ".3f"), cpu,
                mode, fail))
        rt, tg = j["ratios"][size], j["targets"][size]
        lines.append("")
        lines.append("Ratios (best offered rates): b/a = %s, b/c = %s, b/d = %s. Targets: "
                     "b >= 0.8 x a %s; b >= 5 x d %s." % (
                         fmt(rt["b/a"], ".2f"), fmt(rt["b/c"], ".2f"), fmt(rt["b/d"], ".2f"),
                         {True: "**met**", False: "**not met**", None: "n/a"}[tg["b >= 0.8a"]],
                         {True: "**met**", False: "**not met**", None: "n/a"}[tg["b >= 5d"]]))
        lines.append("")
    return "\n".join(lines)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd = argv[1]
    if cmd == "verdict":
        with open(argv[2]) as f:
            print(verdict(json.load(f)))
    elif cmd == "summarize":
        meta = json.load(open(argv[4]))
        dump(argv[2], summarize(load_lines(argv[3]), meta))
    elif cmd == "role":
        meta = json.load(open(argv[4]))
        meta["role"] = argv[5]
        meta["steps"] = load_lines(argv[3])
        dump(argv[2], meta)
    elif cmd == "merge":
        a, b = json.load(open(argv[3])), json.load(open(argv[4]))
        halves = {a.get("role"): a, b.get("role"): b}
        if set(halves) != {"send", "recv"}:
            sys.exit("merge: need one --role send and one --role recv result")
        snd, rcv = halves["send"], halves["recv"]
        by_step = {s["step"]: s for s in rcv["steps"]}
        steps = []
        for s in snd["steps"]:
            r = by_step.get(s["step"])
            m = dict(s)
            if r is not None:
                if (r["kind"], r["size"], r["rate"]) != (s["kind"], s["size"], s["rate"]):
                    sys.exit("merge: step %d differs between the halves (different plans)"
                             % s["step"])
                for k in ("receiver", "rx_cpu_s", "rx_mode", "rx_queues", "rx_cpus_used"):
                    m[k] = r.get(k)
            steps.append(m)
        meta = {k: v for k, v in snd.items() if k not in ("steps", "role")}
        meta["machine_recv"] = rcv.get("machine")
        meta["merged_from"] = [argv[3], argv[4]]
        dump(argv[2], summarize(steps, meta))
    elif cmd == "summary":
        tp = json.load(open(argv[3]))
        lat = None
        if len(argv) > 4:
            try:
                lat = json.load(open(argv[4]))
            except (OSError, ValueError):
                lat = None
        dump(argv[2], {"throughput": tp, "latency": lat})
    elif cmd == "table":
        print(table(json.load(open(argv[2]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
