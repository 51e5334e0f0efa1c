/*
 * libFuzzer harness for ESP input.  The SAs of fuzz_common.c and a few
 * inbound policies are installed; the first input byte picks how the
 * rest reaches esp4_input():
 *
 *	0	a whole IPv4 datagram carrying ESP
 *	1	a whole IPv4 datagram carrying UDP-encapsulated ESP
 *	2	an ESP packet (SPI onwards) behind a good IPv4 header
 *	3	a UDP 4500 payload behind good IPv4 and UDP headers
 *	4, 5	a plaintext sealed for SA data[1] with sequence data[2..5]:
 *		passes the ICV, so decryption, trailer, decapsulation and the
 *		policy check see fuzzed bytes (5: the trailer is fuzzed too)
 *
 * Every input starts with fresh SAs: replay windows empty, lifetimes
 * unused.  Only a packet that passed its ICV changes an SA, so after most
 * inputs they still are, and the SAs are added again only when one is not.
 */

#include <sys/types.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netkeyd.h"
#include "fuzz_common.h"

int	 LLVMFuzzerInitialize(int *, char ***);
int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static uint8_t	 pkt[70000];
static uint8_t	 esp[70000];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init();
	fz_install_policies();
	fz_install_sas();
	return (0);
}

/* Is every SA of fz_sas[] there, mature, its window empty, never used? */
static int
fz_sas_fresh(void)
{
	struct secasvar	*sav;
	struct keyaddr	 dst;
	size_t		 i;

	memset(&dst, 0, sizeof(dst));
	dst.ka_family = AF_INET;
	dst.ka_plen = 32;
	if (inet_pton(AF_INET, FZ_GW, dst.ka_addr) != 1)
		abort();
	for (i = 0; i < fz_nsas; i++) {
		sav = key_sa_lookup(&dst, htonl(fz_sas[i].spi), IPPROTO_ESP);
		if (sav == NULL || sav->state != SADB_SASTATE_MATURE ||
		    sav->replay_top != 0 || sav->replay_bitmap != 0 ||
		    sav->lft_c.sadb_lifetime_allocations != 0)
			return (0);
	}
	return (1);
}

/* Feed an exactly sized heap copy, so ASan sees any overread. */
static void
fz_feed(const uint8_t *p, size_t n, int natt)
{
	uint8_t	*copy;

	if ((copy = malloc(n == 0 ? 1 : n)) == NULL)
		return;
	memcpy(copy, p, n);
	(void)esp4_input(copy, n, natt);
	free(copy);
}

static void
fz_esp_sealed(const uint8_t *data, size_t size, int rawtrailer)
{
	const struct fz_sa	*s;
	size_t			 n, iplen;
	uint32_t		 seq;
	uint8_t			 nxt;

	if (size < 6)
		return;
	s = &fz_sas[data[0] % fz_nsas];
	memcpy(&seq, data + 1, 4);
	nxt = data[5];
	data += 6;
	size -= 6;
	if ((n = fz_seal(s, seq, data, size, esp, sizeof(esp) - 8,
	    rawtrailer ? -1 : nxt)) == 0)
		return;
	if (s->natt) {
		memmove(esp + 8, esp, n);
		memset(esp, 0, 8);
		esp[0] = esp[2] = 0x11;
		esp[1] = esp[3] = 0x94;		/* 4500 */
		esp[4] = (uint8_t)((n + 8) >> 8);
		esp[5] = (uint8_t)(n + 8);
		n += 8;
	}
	if ((iplen = fz_ipv4(FZ_PEER, FZ_GW, s->natt ? IPPROTO_UDP :
	    IPPROTO_ESP, esp, n, pkt, sizeof(pkt))) != 0)
		fz_feed(pkt, iplen, s->natt);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t	 n;

	if (size < 1)
		return (0);
	if (!fz_sas_fresh()) {
		fz_flush_sas();
		fz_install_sas();
	}
	switch (data[0] % 6) {
	case 0:
	case 1:
		(void)esp4_input(data + 1, size - 1, data[0] % 6);
		break;
	case 2:
		if ((n = fz_ipv4(FZ_PEER, FZ_GW, IPPROTO_ESP, data + 1,
		    size - 1, pkt, sizeof(pkt))) != 0)
			fz_feed(pkt, n, 0);
		break;
	case 3:
		if (size - 1 + 8 > sizeof(esp))
			break;
		memset(esp, 0, 8);
		esp[0] = esp[2] = 0x11;
		esp[1] = esp[3] = 0x94;
		esp[4] = (uint8_t)((size - 1 + 8) >> 8);
		esp[5] = (uint8_t)(size - 1 + 8);
		memcpy(esp + 8, data + 1, size - 1);
		if ((n = fz_ipv4(FZ_PEER, FZ_GW, IPPROTO_UDP, esp, size - 1 + 8,
		    pkt, sizeof(pkt))) != 0)
			fz_feed(pkt, n, 1);
		break;
	default:
		fz_esp_sealed(data + 1, size - 1, data[0] % 6 == 5);
		break;
	}
	(void)flow_closeall();
	return (0);
}
