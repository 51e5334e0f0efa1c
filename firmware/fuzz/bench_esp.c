/*
 * ESP input benchmark, in process: one SA, P inbound tunnel policies,
 * F inner flows each matching its own policy (the last ones in the SPD),
 * and a ring of pre-sealed packets fed to esp4_input() as fast as it
 * takes them.  The replay window is off so the ring can be replayed.
 *
 *	bench_esp [-a gcm|cbc|null] [-f flows] [-p policies] [-s bytes]
 *	    [-n packets]
 *
 * It measures the work per packet after recvmmsg(): lookups, crypto,
 * the flow cache and the policy check; not the socket.  pps is per wall
 * second, cpu_pps per second of this process's CPU time.
 */

#include <sys/types.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "netkeyd.h"
#include "fuzz_common.h"

#define RING	4096

static uint8_t	 ring[RING][2048];
static size_t	 ringlen[RING];

static double
now(clockid_t clock)
{
	struct timespec	 ts;

	clock_gettime(clock, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static void
policy_src(int i, char *buf, size_t len)
{
	snprintf(buf, len, "172.16.%d.%d", i / 250, i % 250 + 1);
}

int
main(int argc, char *argv[])
{
	struct fz_sa	 sa;
	uint8_t		 inner[2048], esp[2048];
	char		 src[32];
	const char	*alg = "gcm";
	double		 t0, t1, c0, c1;
	uint64_t	 ok0, n = 5000000, i;
	size_t		 len, size = 64;
	int		 ch, flows = 1000, policies = 2000, j;

	while ((ch = getopt(argc, argv, "a:f:n:p:s:")) != -1) {
		switch (ch) {
		case 'a': alg = optarg; break;
		case 'f': flows = atoi(optarg); break;
		case 'n': n = strtoull(optarg, NULL, 10); break;
		case 'p': policies = atoi(optarg); break;
		case 's': size = (size_t)atoi(optarg); break;
		default:
			errx(1, "usage: bench_esp [-a gcm|cbc|null] [-f flows] "
			    "[-p policies] [-s bytes] [-n packets]");
		}
	}
	if (flows < 1 || flows > policies || policies > 60000 || size < 28 ||
	    size > 1800)
		errx(1, "need 1 <= flows <= policies <= 60000, 28 <= size <= 1800");

	memset(&sa, 0, sizeof(sa));
	sa.spi = 0xb001;
	sa.mode = IPSEC_MODE_TUNNEL;
	if (strcmp(alg, "gcm") == 0) {
		sa.enc = SADB_X_EALG_AESGCM16;
		sa.enc_key = fz_gcm_key;
		sa.enc_len = 20;
	} else {
		sa.enc = strcmp(alg, "cbc") == 0 ? SADB_X_EALG_AES :
		    SADB_EALG_NULL;
		sa.enc_key = sa.enc == SADB_X_EALG_AES ? fz_cbc_key : NULL;
		sa.enc_len = sa.enc == SADB_X_EALG_AES ? 16 : 0;
		sa.auth = SADB_X_AALG_SHA2_256;
		sa.auth_key = fz_hmac_key;
		sa.auth_len = 32;
	}
	fz_init();
	fz_add_sa(&sa);
	/* The flows' policies go last: a cache miss walks the whole SPD. */
	for (j = policies - 1; j >= 0; j--) {
		policy_src(j, src, sizeof(src));
		fz_spdadd_in(src, 32, "172.20.0.0", 16, IPSEC_POLICY_IPSEC,
		    IPSEC_MODE_TUNNEL, IPSEC_LEVEL_REQUIRE, 0);
	}
	for (i = 0; i < RING; i++) {
		memset(inner, 0, sizeof(inner));
		policy_src((int)(i % (uint64_t)flows), src, sizeof(src));
		/* inner: IPv4 + UDP, size bytes in all */
		fz_ipv4(src, "172.20.0.1", IPPROTO_UDP, inner, size - 20,
		    inner, sizeof(inner));
		inner[20] = 0x04;
		inner[21] = 0xd2;
		inner[23] = 80;
		len = fz_seal(&sa, (uint32_t)i + 1, inner, size, esp,
		    sizeof(esp), IPPROTO_IPIP);
		ringlen[i] = fz_ipv4(FZ_PEER, FZ_GW, IPPROTO_ESP, esp, len,
		    ring[i], sizeof(ring[i]));
	}

	/* Warm up: open every flow once. */
	for (i = 0; i < RING; i++)
		esp4_input(ring[i], ringlen[i], 0);
	ok0 = keystat.esp_ok;
	if (ok0 != RING)
		errx(1, "warm-up accepted %llu of %d packets",
		    (unsigned long long)ok0, RING);
	t0 = now(CLOCK_MONOTONIC);
	c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	for (i = 0; i < n; i++)
		esp4_input(ring[i % RING], ringlen[i % RING], 0);
	t1 = now(CLOCK_MONOTONIC);
	c1 = now(CLOCK_PROCESS_CPUTIME_ID);
	printf("alg=%s size=%zu flows=%d policies=%d packets=%llu ok=%llu "
	    "pps=%.0f cpu_pps=%.0f lookups=%llu walked=%llu\n", alg, size,
	    flows, policies, (unsigned long long)n,
	    (unsigned long long)(keystat.esp_ok - ok0), n / (t1 - t0),
	    n / (c1 - c0), (unsigned long long)keystat.lookups,
	    (unsigned long long)keystat.lookup_walked);
	return (keystat.esp_ok - ok0 == n ? 0 : 1);
}
