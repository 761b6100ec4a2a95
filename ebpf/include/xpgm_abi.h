/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * xpgm classifier map ABI: the one definition of every map key and value
 * shared between the XDP program (bpf/xpgm_classifier.bpf.c) and xpgmd.
 * The Rust mirror lives in ebpf/src/abi.rs; a unit test there checks sizes
 * and offsets. Every struct is padding-free so it can be an aya::Pod.
 */
#ifndef XPGM_ABI_H
#define XPGM_ABI_H

#include <linux/types.h>

/* Map names (as in the ELF object). */
#define XPGM_MAP_STEER "xpgm_steer"
#define XPGM_MAP_XSKS "xpgm_xsks"
#define XPGM_MAP_COUNTERS "xpgm_counters"
#define XPGM_MAP_SLOT_HITS "xpgm_slot_hits"
#define XPGM_MAP_UDP_PORTS "xpgm_udp_ports"
#define XPGM_MAP_FLOWS "xpgm_flows"

#define XPGM_MAX_STEER 16384
#define XPGM_MAX_SLOTS 256
#define XPGM_MAX_FLOWS 4096
#define XPGM_MAX_UDP_PORTS 256

/* Key family: the address is always 16 bytes; IPv4 is stored v4-mapped
 * (::ffff:a.b.c.d) so one key type serves both families. */
#define XPGM_FAMILY_V4 4
#define XPGM_FAMILY_V6 6

/* Direction of the PGM packet type that selected the key. */
#define XPGM_DIR_DOWNSTREAM 0 /* SPM, POLL, ODATA, RDATA, NCF: to the group */
#define XPGM_DIR_UPSTREAM 1   /* NAK, NNAK, SPMR, POLR, ACK: to a local source */

/*
 * Steering key: (receive queue, destination address, PGM destination port,
 * direction). For downstream packets the address is the group and the port
 * the data-destination port; for upstream packets the address is the local
 * unicast address of the source and the port its TSI source port (upstream
 * packets carry the ports swapped, so their PGM dport is the source's port).
 */
struct xpgm_steer_key {
	__u32 queue;    /* rx queue index the frame arrived on */
	__u8 addr[16];  /* destination address (v4-mapped for IPv4) */
	__u16 port;     /* PGM destination port, host byte order */
	__u8 family;    /* XPGM_FAMILY_V4 / XPGM_FAMILY_V6 */
	__u8 dir;       /* XPGM_DIR_* */
};                      /* 24 bytes */

struct xpgm_steer_value {
	__u32 slot;     /* index into xpgm_xsks (and xpgm_slot_hits) */
	__u32 session;  /* xpgmd's session id, for diagnostics */
};                      /* 8 bytes */

/* Per-CPU counters (indices into xpgm_counters). */
#define XPGM_CNT_NON_PGM 0    /* not PGM: passed early */
#define XPGM_CNT_PGM 1        /* recognised as PGM (raw or UDP-encapsulated) */
#define XPGM_CNT_REDIRECTED 2 /* handed to an AF_XDP socket */
#define XPGM_CNT_PASSED 3     /* PGM for no session: passed to the kernel */
#define XPGM_CNT_MALFORMED 4  /* PGM too short / bad IP header: passed */
#define XPGM_CNT_NO_SOCKET 5  /* session found but its slot has no socket: passed */
#define XPGM_CNT_UDP_ENCAP 6  /* of XPGM_CNT_PGM: UDP-encapsulated */
#define XPGM_CNT_FRAGMENT 7   /* IPv4 non-first fragments: passed */
#define XPGM_CNT_MAX 8

/*
 * UDP encapsulation ports (hash map xpgm_udp_ports, key: __u16 UDP
 * destination port in host byte order). A UDP datagram to a port in the map
 * is parsed as PGM; any other UDP datagram is not PGM. xpgmd keeps the
 * defaults (`--udp-ports`, flag XPGM_UDP_PORT_DEFAULT) in the map of every
 * classifier it attaches and adds the port of each session using the
 * interface (`register` with "udp_port"), counting the sessions in `sessions`.
 * The program only tests presence; the value is for xpgmd and bpftool.
 */
#define XPGM_UDP_PORT_DEFAULT 1 /* flags: one of xpgmd's default ports */

struct xpgm_udp_port {
	__u32 sessions; /* sessions using the port on this interface */
	__u32 flags;    /* XPGM_UDP_PORT_* */
};                      /* 8 bytes */

/*
 * Flow table (per-CPU LRU hash): one entry per (source, group, data port).
 * Downstream packets are keyed by their IP source, IP destination and PGM
 * dport; NAKs/NNAKs by the source and group NLAs they carry and their PGM
 * sport (the data port, swapped upstream).
 */
struct xpgm_flow_key {
	__u8 source[16]; /* v4-mapped for IPv4 */
	__u8 group[16];
	__u16 port;      /* data-destination port, host order */
	__u8 family;
	__u8 pad;
	__u32 pad2;
};                       /* 40 bytes */

struct xpgm_flow_stats {
	__u64 packets;   /* downstream packets (SPM, POLL, ODATA, RDATA, NCF) */
	__u64 bytes;     /* their frame lengths */
	__u64 naks;      /* NAKs and NNAKs */
	__u64 repairs;   /* RDATA */
};

#endif /* XPGM_ABI_H */
