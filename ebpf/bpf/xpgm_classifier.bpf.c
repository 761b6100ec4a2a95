// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * xpgm XDP classifier.
 *
 * Parses Ethernet (with at most one 802.1Q/802.1ad tag), IPv4 and IPv6 and
 * recognises PGM as IP protocol 113 or as UDP to a port in the UDP port map
 * (xpgm_udp_ports). PGM frames are looked up in the steering map by
 * (rx queue, destination address, PGM destination port, direction) and
 * redirected to the AF_XDP socket in the matching XSKMAP slot. Everything
 * else returns XDP_PASS: non-PGM traffic as early as possible, PGM for no
 * session, truncated PGM (counted as malformed; the kernel drops it).
 *
 * Every read is preceded by a bounds check against data_end.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xpgm_abi.h"

#define IPPROTO_PGM_ 113
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define PGM_HDR_LEN 16
#define IP_MF_ 0x2000
#define IP_OFFMASK_ 0x1fff

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XPGM_MAX_STEER);
	__type(key, struct xpgm_steer_key);
	__type(value, struct xpgm_steer_value);
} xpgm_steer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XPGM_MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} xpgm_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XPGM_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} xpgm_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XPGM_MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} xpgm_slot_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XPGM_MAX_UDP_PORTS);
	__type(key, __u16);
	__type(value, struct xpgm_udp_port);
} xpgm_udp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, XPGM_MAX_FLOWS);
	__type(key, struct xpgm_flow_key);
	__type(value, struct xpgm_flow_stats);
} xpgm_flows SEC(".maps");

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&xpgm_counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline int is_upstream(__u8 type)
{
	switch (type) {
	case 0x02: /* POLR */
	case 0x08: /* NAK */
	case 0x09: /* NNAK */
	case 0x0C: /* SPMR */
	case 0x0D: /* ACK (PGMCC) */
		return 1;
	default:
		return 0;
	}
}

static __always_inline int is_downstream(__u8 type)
{
	switch (type) {
	case 0x00: /* SPM */
	case 0x01: /* POLL */
	case 0x04: /* ODATA */
	case 0x05: /* RDATA */
	case 0x0A: /* NCF */
		return 1;
	default:
		return 0;
	}
}

/* Returns non-zero if a UDP datagram to dport (host order) carries PGM:
 * dport is in the port map (xpgmd's defaults and the sessions' ports). */
static __always_inline int is_encap_port(__u16 dport)
{
	if (dport == 0)
		return 0;
	return bpf_map_lookup_elem(&xpgm_udp_ports, &dport) != 0;
}

static __always_inline struct xpgm_flow_stats *flow_stats(struct xpgm_flow_key *fk)
{
	struct xpgm_flow_stats *st = bpf_map_lookup_elem(&xpgm_flows, fk);

	if (!st) {
		struct xpgm_flow_stats zero = {};

		bpf_map_update_elem(&xpgm_flows, fk, &zero, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&xpgm_flows, fk);
	}
	return st;
}

/* Copies an NLA (AFI 1 = IPv4 -> v4-mapped, 2 = IPv6) at p into out;
 * returns its length in bytes (4 or 16), or 0 if unknown or truncated. */
static __always_inline int read_nla(__u8 *p, void *data_end, __u8 *out, __u8 family)
{
	if ((void *)(p + 4) > data_end)
		return 0;
	__u16 afi = ((__u16)p[0] << 8) | p[1];

	if (afi == 1 && family == XPGM_FAMILY_V4) {
		if ((void *)(p + 8) > data_end)
			return 0;
		out[10] = 0xff;
		out[11] = 0xff;
		__builtin_memcpy(&out[12], p + 4, 4);
		return 4;
	}
	if (afi == 2 && family == XPGM_FAMILY_V6) {
		if ((void *)(p + 20) > data_end)
			return 0;
		__builtin_memcpy(out, p + 4, 16);
		return 16;
	}
	return 0;
}

/* Accounts one PGM packet in the flow table. */
static __always_inline void account(__u8 *pgm, void *data_end, __u8 type,
				    const __u8 *src, const __u8 *dst, __u8 family,
				    __u64 len)
{
	struct xpgm_flow_key fk;
	struct xpgm_flow_stats *st;

	__builtin_memset(&fk, 0, sizeof(fk));
	fk.family = family;
	if (is_downstream(type)) {
		__builtin_memcpy(fk.source, src, 16);
		__builtin_memcpy(fk.group, dst, 16);
		fk.port = ((__u16)pgm[2] << 8) | pgm[3];
		st = flow_stats(&fk);
		if (!st)
			return;
		st->packets += 1;
		st->bytes += len;
		if (type == 0x05)
			st->repairs += 1;
		return;
	}
	if (type != 0x08 && type != 0x09)
		return;
	/* NAK body: sqn(4) src_afi(2) rsv(2) src(4|16) grp_afi(2) rsv(2) grp(4|16) */
	__u8 *nla = pgm + 16 + 4;
	int n = read_nla(nla, data_end, fk.source, family);

	if (n == 0)
		return;
	if (n == 4)
		n = read_nla(nla + 8, data_end, fk.group, family);
	else
		n = read_nla(nla + 20, data_end, fk.group, family);
	if (n == 0)
		return;
	fk.port = ((__u16)pgm[0] << 8) | pgm[1];
	st = flow_stats(&fk);
	if (st)
		st->naks += 1;
}

SEC("xdp")
int xpgm_classify(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xpgm_steer_key key;
	__u8 saddr[16];
	struct ethhdr *eth = data;
	void *cur;
	__u16 proto;
	__u8 l4;

	__builtin_memset(&key, 0, sizeof(key));
	__builtin_memset(saddr, 0, sizeof(saddr));

	if ((void *)(eth + 1) > data_end) {
		count(XPGM_CNT_NON_PGM);
		return XDP_PASS;
	}
	proto = eth->h_proto;
	cur = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_)) {
		struct vlan_hdr_ *vh = cur;

		if ((void *)(vh + 1) > data_end) {
			count(XPGM_CNT_NON_PGM);
			return XDP_PASS;
		}
		proto = vh->proto;
		cur = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		__u32 ihl;

		if ((void *)(ip + 1) > data_end) {
			count(XPGM_CNT_NON_PGM);
			return XDP_PASS;
		}
		l4 = ip->protocol;
		if (l4 != IPPROTO_PGM_ && l4 != IPPROTO_UDP) {
			count(XPGM_CNT_NON_PGM);
			return XDP_PASS;
		}
		ihl = ip->ihl * 4;
		if (ip->version != 4 || ihl < sizeof(*ip)) {
			count(XPGM_CNT_MALFORMED);
			return XDP_PASS;
		}
		if (ip->frag_off & bpf_htons(IP_OFFMASK_)) {
			/* Only the first fragment carries the PGM header. */
			count(XPGM_CNT_FRAGMENT);
			return XDP_PASS;
		}
		key.family = XPGM_FAMILY_V4;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip->daddr, 4);
		saddr[10] = 0xff;
		saddr[11] = 0xff;
		__builtin_memcpy(&saddr[12], &ip->saddr, 4);
		cur = (void *)ip + ihl;
		if (cur > data_end) {
			count(XPGM_CNT_MALFORMED);
			return XDP_PASS;
		}
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;

		if ((void *)(ip6 + 1) > data_end) {
			count(XPGM_CNT_NON_PGM);
			return XDP_PASS;
		}
		/* Extension headers are not walked: PGM senders do not use them. */
		l4 = ip6->nexthdr;
		if (l4 != IPPROTO_PGM_ && l4 != IPPROTO_UDP) {
			count(XPGM_CNT_NON_PGM);
			return XDP_PASS;
		}
		key.family = XPGM_FAMILY_V6;
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
		__builtin_memcpy(saddr, &ip6->saddr, 16);
		cur = ip6 + 1;
	} else {
		count(XPGM_CNT_NON_PGM);
		return XDP_PASS;
	}

	if (l4 == IPPROTO_UDP) {
		struct udphdr *uh = cur;

		if ((void *)(uh + 1) > data_end) {
			count(XPGM_CNT_NON_PGM);
			return XDP_PASS;
		}
		if (!is_encap_port(bpf_ntohs(uh->dest))) {
			count(XPGM_CNT_NON_PGM);
			return XDP_PASS;
		}
		count(XPGM_CNT_UDP_ENCAP);
		cur = uh + 1;
	}

	count(XPGM_CNT_PGM);

	/* PGM header: sport(2) dport(2) type(1) options(1) checksum(2) gsi(6) tsdu_len(2). */
	__u8 *pgm = cur;

	if ((void *)(pgm + PGM_HDR_LEN) > data_end) {
		count(XPGM_CNT_MALFORMED);
		return XDP_PASS;
	}
	__u8 type = pgm[4];

	account(pgm, data_end, type, saddr, key.addr, key.family,
		(__u64)((long)data_end - (long)data));

	if (is_downstream(type)) {
		key.dir = XPGM_DIR_DOWNSTREAM;
	} else if (is_upstream(type)) {
		key.dir = XPGM_DIR_UPSTREAM;
	} else {
		count(XPGM_CNT_PASSED);
		return XDP_PASS;
	}
	key.port = ((__u16)pgm[2] << 8) | pgm[3];
	key.queue = ctx->rx_queue_index;

	struct xpgm_steer_value *sv = bpf_map_lookup_elem(&xpgm_steer, &key);

	if (!sv) {
		count(XPGM_CNT_PASSED);
		return XDP_PASS;
	}

	__u32 slot = sv->slot;
	__u64 *hits = bpf_map_lookup_elem(&xpgm_slot_hits, &slot);

	if (hits)
		*hits += 1;

	/* The low bits of flags are the verdict when the slot holds no socket. */
	long verdict = bpf_redirect_map(&xpgm_xsks, slot, XDP_PASS);

	if (verdict == XDP_REDIRECT)
		count(XPGM_CNT_REDIRECTED);
	else
		count(XPGM_CNT_NO_SOCKET);
	return (int)verdict;
}

char _license[] SEC("license") = "Dual MIT/GPL";
