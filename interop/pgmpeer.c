/*
 * pgmpeer: the OpenPGM 5.3 peer used by xpgm's interop tests (scripts/test-interop).
 *
 *   pgmpeer send --addr IFADDR --group G [--dport P] [--udp-encap PORT]
 *                [--count N] [--size BYTES] [--rate MSGS_PER_S] [--linger-ms MS] [--json]
 *   pgmpeer recv --addr IFADDR --group G [--dport P] [--udp-encap PORT]
 *                [--count N] [--idle-ms MS] [--json] [--stamp [--samples FILE]]
 *                [--nak-bo-us US] [--nak-rpt-us US] [--nak-rdata-us US]
 *
 * send --stamp / recv --stamp (scripts/bench-latency --loss): bytes 8..16 carry the
 * send time as xpgm send --stamp writes it (CLOCK_MONOTONIC ns, big-endian); the
 * receiver skips them in its content check and writes one one-way sample (ns) per
 * message to --samples. --nak-*-us set the receiver's NAK timers (default 50 ms back-off,
 * 200 ms repeat and repair waits).
 *
 *   pgmpeer ping --addr IFADDR --send-group G1 --recv-group G2 [--rate R] [--size BYTES]
 *                [--secs S] [--warmup-ms MS] --samples FILE
 *   pgmpeer echo --addr IFADDR --send-group G2 --recv-group G1 [--rate R] [--secs S]
 *                [--idle-ms MS] [--samples FILE]
 *   (ping and echo also take --sleep: wait in ppoll when idle instead of spinning)
 *
 * ping/echo (scripts/bench-latency): round-trip latency, same message layout as
 * `xpgm-rtt` (bench/src/latency.rs): bytes 0..8 the index, bytes 8..16 the send time
 * (CLOCK_MONOTONIC ns), both big-endian. ping publishes on G1 at --rate and writes one
 * RTT sample (ns) per line to --samples for every message echoed back after the
 * warm-up; echo republishes every message from G1 on G2 and optionally writes one-way
 * samples. Both busy-poll unless --sleep (as xpgm-rtt --idle busy|sleep); `xpgm-hist`
 * turns samples into the same HdrHistogram percentiles as the xpgm paths.
 *
 * Same message format and JSON keys as `xpgm send/recv`: message i is --size bytes,
 * its first 8 bytes are i (big-endian), the rest are the byte (i & 0xff). Counters the
 * OpenPGM API does not expose (NAKs, NCFs, RDATA) are printed as null.
 *
 * OpenPGM resolves "ADDR;GROUP" by interface address, so --addr is the address of the
 * interface to use (a network namespace's eth0 has no unique name to resolve).
 *
 * Written for xpgm against the public libpgm API (<pgm/pgm.h>); see docs/interop.md
 * for the settings and why each is needed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pgm/pgm.h>

#define MAX_MESSAGE 65536
#define MAX_TRACKED (1u << 24) /* indexes tracked for duplicate detection */
#define POLL_FDS 8

struct opts {
	bool send;
	int mode; /* 0 send/recv, 1 ping, 2 echo */
	const char *send_group;
	const char *recv_group;
	const char *samples;
	double secs;
	unsigned warmup_ms;
	bool sleep; /* ping/echo: sleep in ppoll when idle instead of spinning */
	const char *addr;
	const char *group;
	unsigned dport;
	unsigned udp_encap;
	uint64_t count;
	bool count_set;
	unsigned size;
	uint64_t rate;
	unsigned linger_ms;
	unsigned idle_ms;
	bool json;
	/* send: explicit TXW_SQNS, TXW_MAX_RTE (bytes/s) and ambient SPM interval (0 = derived) */
	uint64_t txw_sqns;
	uint64_t max_rte;
	unsigned ambient_spm_ms;
	/* send: bytes 8..16 carry the send time (CLOCK_MONOTONIC ns, big-endian);
	 * recv: expect that, skip it in the content check, write one-way samples */
	bool stamp;
	/* recv: NAK_BO_IVL, NAK_RPT_IVL, NAK_RDATA_IVL in µs (0: 50 ms, 200 ms, 200 ms) */
	unsigned nak_bo_us, nak_rpt_us, nak_rdata_us;
};

static uint64_t mono_ns(void);
static void put_be64(uint8_t *p, uint64_t v);

static void usage(void)
{
	fprintf(stderr,
		"usage: pgmpeer send|recv --addr IFADDR --group GROUP [--dport P] [--udp-encap PORT]\n"
		"       send: [--count N] [--size BYTES] [--rate MSGS_PER_S] [--linger-ms MS] [--json]\n"
		"             [--txw-sqns N] [--max-rte BYTES_PER_S] [--ambient-spm-ms MS] [--stamp]\n"
		"       recv: [--count N] [--idle-ms MS] [--json] [--stamp [--samples FILE]]\n"
		"             [--nak-bo-us US] [--nak-rpt-us US] [--nak-rdata-us US]\n"
		"usage: pgmpeer ping|echo --addr IFADDR --send-group G --recv-group G [--rate R]\n"
		"       [--size BYTES] [--secs S] [--warmup-ms MS] [--idle-ms MS] [--samples FILE]\n"
		"       [--sleep]\n");
	exit(2);
}

static uint64_t parse_u64(const char *s, const char *what, uint64_t min, uint64_t max)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || !end || *end || end == s || v < min || v > max) {
		fprintf(stderr, "pgmpeer: bad %s '%s' (%" PRIu64 "..%" PRIu64 ")\n", what, s, min, max);
		exit(2);
	}
	return (uint64_t)v;
}

static double now_secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die_pgm(const char *what, pgm_error_t *err)
{
	fprintf(stderr, "pgmpeer: %s: %s\n", what, err && err->message ? err->message : "failed");
	if (err)
		pgm_error_free(err);
	exit(1);
}

static void set_opt(pgm_sock_t *sock, int opt, const void *val, socklen_t len, const char *name)
{
	if (!pgm_setsockopt(sock, IPPROTO_PGM, opt, val, len)) {
		fprintf(stderr, "pgmpeer: setsockopt %s failed\n", name);
		exit(1);
	}
}
#define SET_INT(sock, opt, v)                                                                      \
	do {                                                                                       \
		const int v_ = (int)(v);                                                           \
		set_opt((sock), (opt), &v_, sizeof(v_), #opt);                                     \
	} while (0)

/*
 * Work-around for a crash in Debian's libpgm 5.3.128 (x86-64): its checksum-and-copy
 * routine stores with aligned SSE moves (movaps) to the unaligned payload of a
 * fragment (ODATA with OPT_FRAGMENT, 44 bytes into the packet), so every pgm_send of
 * a message larger than one TPDU dies with SIGSEGV. libpgm calls the routine through
 * its PLT, so this definition (exported from the executable, see the -Wl flag in
 * scripts/test-interop) replaces it: the documented semantics are "copy, then return
 * the partial checksum of the copy", computed by libpgm's own pgm_compat_csum_partial
 * so that the sum has exactly the representation libpgm folds later.
 */
uint32_t pgm_compat_csum_partial(const void *addr, uint16_t len, uint32_t csum);
uint32_t pgm_compat_csum_partial_copy(const void *restrict src, void *restrict dst, uint16_t len,
				      uint32_t csum);
uint32_t pgm_compat_csum_partial_copy(const void *restrict src, void *restrict dst, uint16_t len,
				      uint32_t csum)
{
	memcpy(dst, src, len);
	return pgm_compat_csum_partial(dst, len, csum);
}

/* Creates, configures, binds and connects the socket for either role. */
static pgm_sock_t *open_socket(const struct opts *o, uint64_t tpdus)
{
	pgm_error_t *err = NULL;
	struct pgm_addrinfo_t *res = NULL;
	char network[256];
	pgm_sock_t *sock = NULL;

	if (!pgm_init(&err))
		die_pgm("pgm_init", err);
	snprintf(network, sizeof(network), "%s;%s", o->addr, o->group);
	if (!pgm_getaddrinfo(network, NULL, &res, &err))
		die_pgm("resolving the network", err);
	const sa_family_t family = res->ai_send_addrs[0].gsr_group.ss_family;

	if (o->udp_encap) {
		if (!pgm_socket(&sock, family, SOCK_SEQPACKET, IPPROTO_UDP, &err))
			die_pgm("creating the PGM/UDP socket", err);
		SET_INT(sock, PGM_UDP_ENCAP_UCAST_PORT, o->udp_encap);
		SET_INT(sock, PGM_UDP_ENCAP_MCAST_PORT, o->udp_encap);
	} else {
		if (!pgm_socket(&sock, family, SOCK_SEQPACKET, IPPROTO_PGM, &err))
			die_pgm("creating the PGM/IP socket", err);
	}

	SET_INT(sock, PGM_MTU, 1500);
	if (o->send) {
		/* The transmit window holds the whole run, so any NAK can be repaired. */
		uint64_t sqns = tpdus + 1024;
		if (sqns > (1u << 20))
			sqns = 1u << 20;
		if (o->txw_sqns)
			sqns = o->txw_sqns;
		const int heartbeat[] = {pgm_msecs(100), pgm_msecs(100), pgm_msecs(100),
					 pgm_msecs(100), pgm_msecs(1300), pgm_secs(7),
					 pgm_secs(16), pgm_secs(25), pgm_secs(30)};
		SET_INT(sock, PGM_SEND_ONLY, 1);
		SET_INT(sock, PGM_TXW_SQNS, sqns);
		/* Bytes per second on the wire; repairs share this budget. */
		uint64_t wire = (uint64_t)o->size + 64 * (1 + o->size / 1400);
		/* Below 1000 x MTU bytes/s OpenPGM's bucket refills per second and lets a
		 * whole second's budget out as one burst: keep it at millisecond resolution
		 * and pace messages in run_send. */
		uint64_t rte = o->rate ? o->rate * wire * 2 : 50u * 1000 * 1000;
		if (rte < 1500u * 1000 * 2)
			rte = 1500u * 1000 * 2;
		if (o->max_rte)
			rte = o->max_rte;
		if (rte > INT32_MAX)
			rte = INT32_MAX;
		SET_INT(sock, PGM_TXW_MAX_RTE, rte);
		SET_INT(sock, PGM_AMBIENT_SPM,
			o->ambient_spm_ms ? pgm_msecs(o->ambient_spm_ms) : pgm_secs(1));
		set_opt(sock, PGM_HEARTBEAT_SPM, heartbeat, sizeof(heartbeat), "PGM_HEARTBEAT_SPM");
	} else {
		SET_INT(sock, PGM_RECV_ONLY, 1);
		SET_INT(sock, PGM_PASSIVE, 0);
		SET_INT(sock, PGM_RXW_SQNS, 65536);
		SET_INT(sock, PGM_PEER_EXPIRY, pgm_secs(300));
		SET_INT(sock, PGM_SPMR_EXPIRY, pgm_msecs(250));
		SET_INT(sock, PGM_NAK_BO_IVL, o->nak_bo_us ? (int)o->nak_bo_us : (int)pgm_msecs(50));
		SET_INT(sock, PGM_NAK_RPT_IVL, o->nak_rpt_us ? (int)o->nak_rpt_us : (int)pgm_msecs(200));
		SET_INT(sock, PGM_NAK_RDATA_IVL,
			o->nak_rdata_us ? (int)o->nak_rdata_us : (int)pgm_msecs(200));
		SET_INT(sock, PGM_NAK_DATA_RETRIES, 50);
		SET_INT(sock, PGM_NAK_NCF_RETRIES, 50);
	}

	/* A GSI unique per process: every namespace shares the host name. */
	struct pgm_sockaddr_t addr;
	memset(&addr, 0, sizeof(addr));
	addr.sa_port = (uint16_t)o->dport;
	addr.sa_addr.sport = 0;
	uint8_t seed[16];
	const pid_t pid = getpid();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	memcpy(seed, &pid, sizeof(pid));
	memcpy(seed + 4, &ts.tv_nsec, 4);
	memcpy(seed + 8, &ts.tv_sec, 8);
	if (!pgm_gsi_create_from_data(&addr.sa_addr.gsi, seed, sizeof(seed))) {
		fprintf(stderr, "pgmpeer: cannot create a GSI\n");
		exit(1);
	}

	struct pgm_interface_req_t if_req;
	memset(&if_req, 0, sizeof(if_req));
	if_req.ir_interface = res->ai_recv_addrs[0].gsr_interface;
	memcpy(&if_req.ir_address, &res->ai_send_addrs[0].gsr_addr, sizeof(struct sockaddr_storage));
	if (!pgm_bind3(sock, &addr, sizeof(addr), &if_req, sizeof(if_req), &if_req, sizeof(if_req),
		       &err))
		die_pgm("binding", err);

	for (unsigned i = 0; i < res->ai_recv_addrs_len; i++)
		set_opt(sock, PGM_JOIN_GROUP, &res->ai_recv_addrs[i], sizeof(struct group_req),
			"PGM_JOIN_GROUP");
	set_opt(sock, PGM_SEND_GROUP, &res->ai_send_addrs[0], sizeof(struct group_req),
		"PGM_SEND_GROUP");
	pgm_freeaddrinfo(res);

	SET_INT(sock, PGM_MULTICAST_LOOP, 0);
	SET_INT(sock, PGM_MULTICAST_HOPS, 16);
	SET_INT(sock, PGM_NOBLOCK, 1);

	if (!pgm_connect(sock, &err))
		die_pgm("connecting", err);
	return sock;
}

/* Waits until the socket is readable (or writable), a timer is due, or `max_ms` passes. */
static void wait_socket(pgm_sock_t *sock, short events, int timeout_ms)
{
	struct pollfd fds[POLL_FDS];
	int n = POLL_FDS;
	memset(fds, 0, sizeof(fds));
	if (pgm_poll_info(sock, fds, &n, events) < 0)
		n = 0;
	if (poll(fds, (nfds_t)n, timeout_ms) < 0 && errno != EINTR)
		perror("pgmpeer: poll");
}

/* Milliseconds until OpenPGM's next event, from PGM_TIME_REMAIN or PGM_RATE_REMAIN. */
static int remain_ms(pgm_sock_t *sock, int opt)
{
	struct timeval tv;
	socklen_t len = sizeof(tv);
	if (!pgm_getsockopt(sock, IPPROTO_PGM, opt, &tv, &len))
		return 1;
	long ms = tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
	return ms < 0 ? 0 : (ms > 1000 ? 1000 : (int)ms);
}

/* ---- sender ------------------------------------------------------------- */

static atomic_bool stop_nak_thread;

/* OpenPGM handles NAKs (NCF + RDATA) and SPM timers only inside pgm_recv: a source must
 * keep calling it. */
static void *nak_loop(void *arg)
{
	pgm_sock_t *sock = arg;
	char buf[4096];
	while (!atomic_load(&stop_nak_thread)) {
		pgm_error_t *err = NULL;
		size_t len = 0;
		const int status = pgm_recv(sock, buf, sizeof(buf), 0, &len, &err);
		if (err)
			pgm_error_free(err);
		switch (status) {
		case PGM_IO_STATUS_TIMER_PENDING:
			wait_socket(sock, POLLIN, remain_ms(sock, PGM_TIME_REMAIN));
			break;
		case PGM_IO_STATUS_RATE_LIMITED:
			wait_socket(sock, POLLIN, remain_ms(sock, PGM_RATE_REMAIN));
			break;
		case PGM_IO_STATUS_WOULD_BLOCK:
			wait_socket(sock, POLLIN, 50);
			break;
		default:
			break;
		}
	}
	return NULL;
}

static int run_send(const struct opts *o)
{
	const uint64_t frags = 1 + o->size / 1400;
	pgm_sock_t *sock = open_socket(o, o->count * frags);
	pthread_t nak_thread;
	if (pthread_create(&nak_thread, NULL, nak_loop, sock) != 0) {
		fprintf(stderr, "pgmpeer: cannot start the NAK thread\n");
		return 1;
	}
	uint8_t *msg = malloc(o->size);
	if (!msg)
		return 1;
	const double start = now_secs();
	int rc = 0;
	for (uint64_t i = 0; i < o->count && rc == 0; i++) {
		for (int b = 0; b < 8; b++)
			msg[b] = (uint8_t)(i >> (56 - 8 * b));
		memset(msg + 8, (int)(i & 0xff), o->size - 8);
		if (o->rate) {
			/* Message i leaves no earlier than i / rate seconds after the start. */
			const double due = start + (double)i / (double)o->rate;
			const double wait = due - now_secs();
			if (wait > 0)
				usleep((useconds_t)(wait * 1e6));
		}
		if (o->stamp && o->size >= 16)
			put_be64(msg + 8, mono_ns());
		for (;;) {
			size_t written = 0;
			const int status = pgm_send(sock, msg, o->size, &written);
			if (status == PGM_IO_STATUS_NORMAL)
				break;
			if (status == PGM_IO_STATUS_RATE_LIMITED) {
				const int ms = remain_ms(sock, PGM_RATE_REMAIN);
				if (ms > 0)
					usleep((useconds_t)ms * 1000);
				continue;
			}
			if (status == PGM_IO_STATUS_WOULD_BLOCK) {
				wait_socket(sock, POLLOUT, 10);
				continue;
			}
			fprintf(stderr, "pgmpeer: pgm_send of message %" PRIu64 " failed (%d)\n", i,
				status);
			rc = 1;
			break;
		}
	}
	const double secs = now_secs() - start;
	/* Keep answering NAKs, then close (flush: OpenPGM ends the session with a FIN SPM). */
	usleep((useconds_t)o->linger_ms * 1000);
	atomic_store(&stop_nak_thread, true);
	pthread_join(nak_thread, NULL);
	pgm_close(sock, true);
	pgm_shutdown();
	free(msg);
	const double rate = secs > 0 ? (double)o->count / secs : 0.0;
	if (o->json)
		printf("{\"sent\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"secs\":%.6f,\"msgs_per_s\":%.1f,"
		       "\"naks_received\":null,\"ncf_sent\":null,\"rdata_sent\":null,"
		       "\"transport\":\"openpgm\"}\n",
		       o->count, o->count * o->size, secs, rate);
	else
		printf("sent %" PRIu64 " messages in %.3f s (%.0f msg/s) over openpgm\n", o->count,
		       secs, rate);
	return rc;
}

/* ---- receiver ----------------------------------------------------------- */

struct check {
	bool started;
	uint64_t expected, first;
	uint64_t duplicates, out_of_order, index_gaps, skipped, corrupt, short_msgs;
	uint8_t *seen; /* bitmap of indexes below MAX_TRACKED */
};

static bool seen_test_and_set(struct check *c, uint64_t idx)
{
	if (idx >= MAX_TRACKED || !c->seen)
		return false;
	const bool was = c->seen[idx / 8] & (1u << (idx % 8));
	c->seen[idx / 8] |= (uint8_t)(1u << (idx % 8));
	return was;
}

static bool check_stamped; /* recv --stamp: bytes 8..16 are the send time */

static void check_message(struct check *c, const uint8_t *data, size_t len)
{
	if (len < 8) {
		c->short_msgs++;
		return;
	}
	uint64_t idx = 0;
	for (int b = 0; b < 8; b++)
		idx = (idx << 8) | data[b];
	for (size_t k = check_stamped ? 16 : 8; k < len; k++)
		if (data[k] != (uint8_t)(idx & 0xff)) {
			c->corrupt++;
			break;
		}
	const bool dup = seen_test_and_set(c, idx);
	if (!c->started) {
		c->started = true;
		c->first = idx;
		c->expected = idx + 1;
		return;
	}
	if (idx == c->expected) {
		c->expected++;
	} else if (idx > c->expected) {
		c->index_gaps++;
		c->skipped += idx - c->expected;
		c->expected = idx + 1;
	} else if (dup) {
		c->duplicates++;
	} else {
		c->out_of_order++;
	}
}

static int run_recv(const struct opts *o)
{
	pgm_sock_t *sock = open_socket(o, 0);
	static uint8_t buf[MAX_MESSAGE + 64];
	struct check c;
	memset(&c, 0, sizeof(c));
	c.seen = calloc(MAX_TRACKED / 8, 1);
	uint64_t received = 0, bytes = 0, resets = 0;
	bool ended = false;
	check_stamped = o->stamp;
	FILE *samples = NULL;
	if (o->samples) {
		samples = fopen(o->samples, "w");
		if (!samples) {
			fprintf(stderr, "pgmpeer: cannot write %s\n", o->samples);
			return 1;
		}
	}
	double first_at = 0, last_at = 0, last_activity = now_secs();
	for (;;) {
		if (o->count_set && received >= o->count)
			break;
		const double idle_left = (double)o->idle_ms / 1000.0 - (now_secs() - last_activity);
		if (idle_left <= 0)
			break;
		const int idle_ms = (int)(idle_left * 1000.0) + 1;
		pgm_error_t *err = NULL;
		size_t len = 0;
		struct pgm_sockaddr_t from;
		socklen_t fromlen = sizeof(from);
		const int status = pgm_recvfrom(sock, buf, sizeof(buf), 0, &len, &from, &fromlen, &err);
		switch (status) {
		case PGM_IO_STATUS_NORMAL: {
			const double t = now_secs();
			if (received == 0)
				first_at = t;
			last_at = last_activity = t;
			received++;
			bytes += len;
			check_message(&c, buf, len);
			if (samples && o->stamp && len >= 16) {
				uint64_t sent = 0;
				for (int b = 0; b < 8; b++)
					sent = (sent << 8) | buf[8 + b];
				const uint64_t at = mono_ns();
				if (at >= sent)
					fprintf(samples, "%" PRIu64 "\n", at - sent);
			}
			break;
		}
		case PGM_IO_STATUS_TIMER_PENDING: {
			const int ms = remain_ms(sock, PGM_TIME_REMAIN);
			wait_socket(sock, POLLIN, ms < idle_ms ? ms : idle_ms);
			break;
		}
		case PGM_IO_STATUS_RATE_LIMITED: {
			const int ms = remain_ms(sock, PGM_RATE_REMAIN);
			wait_socket(sock, POLLIN, ms < idle_ms ? ms : idle_ms);
			break;
		}
		case PGM_IO_STATUS_WOULD_BLOCK:
			wait_socket(sock, POLLIN, idle_ms);
			break;
		case PGM_IO_STATUS_RESET:
			/* Unrecoverable loss: OpenPGM reports it as a session reset and goes on
			 * (PGM_ABORT_ON_RESET is off). */
			resets++;
			last_activity = now_secs();
			fprintf(stderr, "pgmpeer: unrecoverable loss: %s\n",
				err && err->message ? err->message : "(no detail)");
			break;
		case PGM_IO_STATUS_FIN:
		case PGM_IO_STATUS_EOF:
			ended = true;
			break;
		default:
			fprintf(stderr, "pgmpeer: pgm_recvfrom failed (%d): %s\n", status,
				err && err->message ? err->message : "?");
			ended = true;
			break;
		}
		if (err)
			pgm_error_free(err);
		if (ended)
			break;
	}
	pgm_close(sock, true);
	pgm_shutdown();
	free(c.seen);
	if (samples)
		fclose(samples);
	const double secs = received > 1 ? last_at - first_at : 0.0;
	const double rate = secs > 0 ? (double)received / secs : 0.0;
	if (o->json) {
		printf("{\"received\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"secs\":%.6f,"
		       "\"msgs_per_s\":%.1f,\"unrecoverable\":%" PRIu64 ",\"duplicates\":%" PRIu64
		       ",\"out_of_order\":%" PRIu64 ",\"index_gaps\":%" PRIu64
		       ",\"naks_sent\":null,\"transport\":\"openpgm\"",
		       received, bytes, secs, rate, resets, c.duplicates, c.out_of_order,
		       c.index_gaps);
		if (c.started)
			printf(",\"first_index\":%" PRIu64, c.first);
		else
			printf(",\"first_index\":null");
		printf(",\"skipped\":%" PRIu64 ",\"short\":%" PRIu64 ",\"corrupt\":%" PRIu64
		       ",\"session_end\":%s}\n",
		       c.skipped, c.short_msgs, c.corrupt, ended ? "true" : "false");
	} else {
		printf("received %" PRIu64 " messages (%" PRIu64 " bytes) in %.3f s over openpgm; "
		       "resets %" PRIu64 ", duplicates %" PRIu64 ", out of order %" PRIu64
		       ", index gaps %" PRIu64 ", corrupt %" PRIu64 "\n",
		       received, bytes, secs, resets, c.duplicates, c.out_of_order, c.index_gaps,
		       c.corrupt);
	}
	if (o->count_set && received < o->count) {
		fprintf(stderr, "pgmpeer recv: received %" PRIu64 " of %" PRIu64 " messages\n",
			received, o->count);
		return 1;
	}
	return 0;
}

/* ---- ping / echo (scripts/bench-latency) -------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int b = 0; b < 8; b++)
		p[b] = (uint8_t)(v >> (56 - 8 * b));
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int b = 0; b < 8; b++)
		v = (v << 8) | p[b];
	return v;
}

/* The two sockets of a ping or echo peer: a source on --send-group, a receiver on
 * --recv-group, and the source's NAK thread. */
struct duplex {
	pgm_sock_t *tx, *rx;
	pthread_t nak_thread;
};

static void duplex_open(struct duplex *d, const struct opts *o, uint64_t tpdus)
{
	struct opts ro = *o, so = *o;
	ro.send = false;
	ro.group = o->recv_group;
	so.send = true;
	so.group = o->send_group;
	d->rx = open_socket(&ro, 0);
	d->tx = open_socket(&so, tpdus);
	if (pthread_create(&d->nak_thread, NULL, nak_loop, d->tx) != 0) {
		fprintf(stderr, "pgmpeer: cannot start the NAK thread\n");
		exit(1);
	}
}

/* Sleeps until the receive socket may be readable or `ns` passed (at most 1 ms, so that
 * OpenPGM's own timers are served on time). */
static void duplex_wait(struct duplex *d, uint64_t ns)
{
	struct pollfd fds[POLL_FDS];
	int n = POLL_FDS;
	memset(fds, 0, sizeof(fds));
	if (pgm_poll_info(d->rx, fds, &n, POLLIN) < 0)
		return;
	if (ns > 1000000u)
		ns = 1000000u;
	const struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ns};
	if (ppoll(fds, (nfds_t)n, &ts, NULL) < 0 && errno != EINTR)
		perror("pgmpeer: ppoll");
}

static void duplex_close(struct duplex *d)
{
	atomic_store(&stop_nak_thread, true);
	pthread_join(d->nak_thread, NULL);
	pgm_close(d->tx, true);
	pgm_close(d->rx, true);
	pgm_shutdown();
	pgm_shutdown();
}

/* Non-blocking receive of one message; returns its length, 0 if none, -1 on a reset
 * (unrecoverable loss). */
static long duplex_recv(struct duplex *d, uint8_t *buf, size_t cap)
{
	pgm_error_t *err = NULL;
	size_t len = 0;
	const int status = pgm_recv(d->rx, buf, cap, 0, &len, &err);
	if (err)
		pgm_error_free(err);
	if (status == PGM_IO_STATUS_NORMAL)
		return (long)len;
	if (status == PGM_IO_STATUS_RESET)
		return -1;
	return 0;
}

/* Sends one message, spinning while OpenPGM is rate limited or would block, for at most
 * `max_ns`. Returns true if sent. */
static bool duplex_send(struct duplex *d, const uint8_t *msg, size_t len, uint64_t max_ns)
{
	const uint64_t until = mono_ns() + max_ns;
	do {
		size_t written = 0;
		const int status = pgm_send(d->tx, msg, len, &written);
		if (status == PGM_IO_STATUS_NORMAL)
			return true;
		if (status != PGM_IO_STATUS_RATE_LIMITED && status != PGM_IO_STATUS_WOULD_BLOCK)
			return false;
	} while (mono_ns() < until);
	return false;
}

static int write_samples(const char *path, const uint64_t *v, uint64_t n)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		return 1;
	}
	for (uint64_t i = 0; i < n; i++)
		fprintf(f, "%" PRIu64 "\n", v[i]);
	return fclose(f) == 0 ? 0 : 1;
}

static int run_ping(const struct opts *o)
{
	if (o->size < 16 || !o->samples || !o->rate) {
		fprintf(stderr, "pgmpeer ping: needs --size >= 16, --rate and --samples\n");
		return 2;
	}
	const uint64_t warm = (uint64_t)o->warmup_ms * 1000000u;
	const uint64_t meas = (uint64_t)(o->secs * 1e9);
	const uint64_t total = o->rate * (warm + meas) / 1000000000u + 16;
	struct duplex d;
	duplex_open(&d, o, total);
	uint64_t *rtt = malloc(total * sizeof(uint64_t));
	uint8_t *msg = malloc(o->size);
	static uint8_t buf[MAX_MESSAGE + 64];
	if (!rtt || !msg)
		return 1;
	const uint64_t t0 = mono_ns(), warm_end = t0 + warm, send_end = warm_end + meas,
		       drain_end = send_end + 500000000u;
	const double period = 1e9 / (double)o->rate;
	uint64_t i = 0, n = 0, received = 0, resets = 0, failed = 0;
	for (;;) {
		const uint64_t now = mono_ns();
		if (now >= drain_end)
			break;
		if (now < send_end && now >= t0 + (uint64_t)((double)i * period)) {
			put_be64(msg, i);
			put_be64(msg + 8, now);
			memset(msg + 16, (int)(i & 0xff), o->size - 16);
			size_t written = 0;
			const int status = pgm_send(d.tx, msg, o->size, &written);
			if (status == PGM_IO_STATUS_NORMAL)
				i++;
			else if (status != PGM_IO_STATUS_RATE_LIMITED &&
				 status != PGM_IO_STATUS_WOULD_BLOCK)
				failed++;
		}
		const long len = duplex_recv(&d, buf, sizeof(buf));
		if (len >= 16) {
			const uint64_t at = mono_ns(), stamp = get_be64(buf + 8);
			received++;
			if (stamp >= warm_end && n < total)
				rtt[n++] = at > stamp ? at - stamp : 0;
		} else if (len < 0) {
			resets++;
		} else if (o->sleep) {
			const uint64_t due = t0 + (uint64_t)((double)i * period), t = mono_ns();
			uint64_t ns = 1000000u;
			if (t < send_end)
				ns = due > t ? due - t : 0;
			if (ns > 0)
				duplex_wait(&d, ns);
		}
	}
	duplex_close(&d);
	const int rc = write_samples(o->samples, rtt, n);
	printf("{\"mode\":\"ping\",\"transport\":\"openpgm\",\"sent\":%" PRIu64
	       ",\"received\":%" PRIu64 ",\"samples\":%" PRIu64 ",\"unrecoverable\":%" PRIu64
	       ",\"send_failures\":%" PRIu64 "}\n",
	       i, received, n, resets, failed);
	free(rtt);
	free(msg);
	return rc;
}

static int run_echo(const struct opts *o)
{
	const uint64_t total = (o->rate ? o->rate : 10000) * (uint64_t)(o->secs + 1) + 16;
	struct duplex d;
	duplex_open(&d, o, total);
	uint64_t *oneway = o->samples ? malloc(total * sizeof(uint64_t)) : NULL;
	static uint8_t buf[MAX_MESSAGE + 64];
	const uint64_t t0 = mono_ns(), idle = (uint64_t)o->idle_ms * 1000000u,
		       limit = (uint64_t)(o->secs * 1e9);
	uint64_t n = 0, received = 0, sent = 0, resets = 0, last = 0;
	for (;;) {
		const uint64_t now = mono_ns();
		if (now - t0 > limit || (received && now - last > idle))
			break;
		const long len = duplex_recv(&d, buf, sizeof(buf));
		if (len < 0) {
			resets++;
			continue;
		}
		if (len == 0) {
			if (o->sleep)
				duplex_wait(&d, 1000000u);
			continue;
		}
		last = mono_ns();
		received++;
		if (len >= 16 && oneway && n < total) {
			const uint64_t stamp = get_be64(buf + 8);
			oneway[n++] = last > stamp ? last - stamp : 0;
		}
		if (duplex_send(&d, buf, (size_t)len, 10000000u))
			sent++;
	}
	duplex_close(&d);
	int rc = 0;
	if (oneway) {
		rc = write_samples(o->samples, oneway, n);
		free(oneway);
	}
	printf("{\"mode\":\"echo\",\"transport\":\"openpgm\",\"received\":%" PRIu64
	       ",\"sent\":%" PRIu64 ",\"unrecoverable\":%" PRIu64 "}\n",
	       received, sent, resets);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o = {.dport = DEFAULT_DATA_DESTINATION_PORT,
			 .count = 1000,
			 .size = 64,
			 .linger_ms = 2000,
			 .idle_ms = 5000,
			 .secs = 5.0,
			 .warmup_ms = 1000};
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "send") == 0)
		o.send = true;
	else if (strcmp(argv[1], "ping") == 0)
		o.mode = 1;
	else if (strcmp(argv[1], "echo") == 0)
		o.mode = 2;
	else if (strcmp(argv[1], "recv") != 0)
		usage();
	static const struct option longopts[] = {
		{"addr", required_argument, NULL, 'a'},
		{"group", required_argument, NULL, 'g'},
		{"dport", required_argument, NULL, 'p'},
		{"udp-encap", required_argument, NULL, 'u'},
		{"count", required_argument, NULL, 'n'},
		{"size", required_argument, NULL, 's'},
		{"rate", required_argument, NULL, 'r'},
		{"linger-ms", required_argument, NULL, 'l'},
		{"idle-ms", required_argument, NULL, 'i'},
		{"json", no_argument, NULL, 'j'},
		{"send-group", required_argument, NULL, 'S'},
		{"recv-group", required_argument, NULL, 'R'},
		{"secs", required_argument, NULL, 't'},
		{"warmup-ms", required_argument, NULL, 'w'},
		{"samples", required_argument, NULL, 'o'},
		{"sleep", no_argument, NULL, 'z'},
		{"txw-sqns", required_argument, NULL, 'W'},
		{"max-rte", required_argument, NULL, 'M'},
		{"ambient-spm-ms", required_argument, NULL, 'A'},
		{"stamp", no_argument, NULL, 'T'},
		{"nak-bo-us", required_argument, NULL, 'B'},
		{"nak-rpt-us", required_argument, NULL, 'P'},
		{"nak-rdata-us", required_argument, NULL, 'D'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a': o.addr = optarg; break;
		case 'g': o.group = optarg; break;
		case 'p': o.dport = (unsigned)parse_u64(optarg, "--dport", 1, 65535); break;
		case 'u': o.udp_encap = (unsigned)parse_u64(optarg, "--udp-encap", 1, 65535); break;
		case 'n':
			o.count = parse_u64(optarg, "--count", 1, MAX_TRACKED);
			o.count_set = true;
			break;
		case 's': o.size = (unsigned)parse_u64(optarg, "--size", 8, MAX_MESSAGE); break;
		case 'r': o.rate = parse_u64(optarg, "--rate", 1, 10000000); break;
		case 'l': o.linger_ms = (unsigned)parse_u64(optarg, "--linger-ms", 0, 3600000); break;
		case 'i': o.idle_ms = (unsigned)parse_u64(optarg, "--idle-ms", 1, 3600000); break;
		case 'j': o.json = true; break;
		case 'S': o.send_group = optarg; break;
		case 'R': o.recv_group = optarg; break;
		case 't': o.secs = (double)parse_u64(optarg, "--secs", 1, 3600); break;
		case 'w': o.warmup_ms = (unsigned)parse_u64(optarg, "--warmup-ms", 0, 3600000); break;
		case 'o': o.samples = optarg; break;
		case 'z': o.sleep = true; break;
		case 'W': o.txw_sqns = parse_u64(optarg, "--txw-sqns", 16, 1u << 20); break;
		case 'M': o.max_rte = parse_u64(optarg, "--max-rte", 1000, INT32_MAX); break;
		case 'A':
			o.ambient_spm_ms = (unsigned)parse_u64(optarg, "--ambient-spm-ms", 1, 3600000);
			break;
		case 'T': o.stamp = true; break;
		case 'B': o.nak_bo_us = (unsigned)parse_u64(optarg, "--nak-bo-us", 1, 60000000); break;
		case 'P': o.nak_rpt_us = (unsigned)parse_u64(optarg, "--nak-rpt-us", 1, 60000000); break;
		case 'D':
			o.nak_rdata_us = (unsigned)parse_u64(optarg, "--nak-rdata-us", 1, 60000000);
			break;
		default: usage();
		}
	}
	if (o.mode != 0) {
		if (optind != argc || !o.addr || !o.send_group || !o.recv_group)
			usage();
		o.group = o.send_group;
		return o.mode == 1 ? run_ping(&o) : run_echo(&o);
	}
	if (optind != argc || !o.addr || !o.group)
		usage();
	return o.send ? run_send(&o) : run_recv(&o);
}
