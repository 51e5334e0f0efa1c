/*
 * ESP input (RFC 4303), raw IP protocol 50 and ESP-in-UDP (RFC 3948), in
 * the order of KAME esp4_input: length, SA lookup, SA state, replay check,
 * ICV in constant time, replay window update, decrypt; then the inbound
 * policy check through the flow's policy cache.
 *
 * Transforms: rfc4106(gcm(aes)) with an 8, 12 or 16 byte ICV; AES-CBC or
 * NULL encryption with HMAC-SHA1-96 or HMAC-SHA2-256/384/512 truncated to
 * half the digest.  Per-SA OpenSSL contexts are set up once with the key
 * (xform.c); a packet only sets the IV or re-initialises the MAC.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/queue.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "netkeyd.h"

#define ESP_HDRLEN		8	/* SPI, sequence number */
#define ESP_TRAILERLEN		2	/* pad length, next header */
#define ESP_MAXICV		32
#define ESP_REPLAYWSIZE		64
#define ESP_BATCH		64	/* datagrams per recvmmsg */
#define ESP_BATCHES		16	/* recvmmsg calls per readiness */
#define ESP_BUDGET_NS		10000000	/* then PF_KEY and the clock */
#define ESP_BUFSZ		65536
#define ESP_RCVBUF		(32 * 1024 * 1024)
#define ESP_NATT_PORT		4500

#define IPV4_HDRLEN		20
#define UDP_HDRLEN		8
#define IPPROTO_NONE_		59

/* One received packet, after the outer IP (and UDP) header. */
struct esp_pkt {
	const uint8_t	*data;		/* ESP header .. ICV */
	size_t		 len;
	uint8_t		 src[4];	/* outer addresses, network order */
	uint8_t		 dst[4];
	int		 natt;
};

/* Where the plaintext ended up, after the ESP trailer is gone. */
struct esp_payload {
	const uint8_t	*data;
	size_t		 len;
	uint8_t		 nxt;
};

struct esp_rx {
	struct mmsghdr		 msgs[ESP_BATCH];
	struct iovec		 iov[ESP_BATCH];
	struct sockaddr_in	 from[ESP_BATCH];
	uint8_t			 cmsg[ESP_BATCH][64];
	uint8_t			 buf[ESP_BATCH][ESP_BUFSZ];
};

static int		 esp_rawfd = -1;
static int		 esp_udpfd = -1;
static struct in_addr	 esp_udpaddr;
static uint64_t		 esp_keepalives;
static uint64_t		 esp_nonesp;
static struct esp_rx	 esp_rx;
static uint8_t		 esp_plain[ESP_BUFSZ];
static struct flow	*esp_batchflow;	/* the last flow of this batch */
static int		 esp_inbatch;

static int	 esp_parseaddr(const char *, struct in_addr *, uint16_t *);
static int	 esp_socket(int, int, struct in_addr, uint16_t);
static void	 esp_udp_dst(const struct msghdr *, uint8_t *);
static int	 esp_recv(int, int);
static int	 esp_input(const struct esp_pkt *);
static int	 esp_input_natt(const struct esp_pkt *);
static int	 esp_replay_check(const struct secasvar *, uint32_t);
static void	 esp_replay_update(struct secasvar *, uint32_t);
static int	 esp_gcm_decrypt(struct secasvar *, const struct esp_pkt *,
		    const struct esp_xform *, struct esp_payload *);
static int	 esp_hmac_verify(struct secasvar *, const struct esp_pkt *,
		    const struct esp_xform *);
static int	 esp_cbc_decrypt(struct secasvar *, const struct esp_pkt *,
		    const struct esp_xform *, struct esp_payload *);
static int	 esp_trailer(struct esp_payload *);
static int	 esp_flowkey(const struct esp_pkt *, const struct esp_payload *,
		    int, struct flowkey *);
static struct flow *esp_flow(const struct flowkey *);
static int	 esp_policy_check(const struct secasvar *,
		    const struct flowkey *, int, int *);
static int	 esp_policy_match(const struct secpolicy *,
		    const struct secasvar *, int);

/* "ADDR", "ADDR:PORT", "any" or "any:PORT"; IPv4 only. */
static int
esp_parseaddr(const char *s, struct in_addr *addr, uint16_t *port)
{
	char		 buf[64];
	char		*colon, *ep;
	unsigned long	 p;

	if (strlen(s) >= sizeof(buf))
		return (-1);
	memcpy(buf, s, strlen(s) + 1);
	if ((colon = strrchr(buf, ':')) != NULL) {
		*colon++ = '\0';
		errno = 0;
		p = strtoul(colon, &ep, 10);
		if (*colon == '\0' || *ep != '\0' || errno != 0 ||
		    p == 0 || p > 65535)
			return (-1);
		*port = (uint16_t)p;
	}
	if (strcmp(buf, "any") == 0 || buf[0] == '\0') {
		addr->s_addr = htonl(INADDR_ANY);
		return (0);
	}
	return (inet_pton(AF_INET, buf, addr) == 1 ? 0 : -1);
}

static int
esp_socket(int type, int proto, struct in_addr addr, uint16_t port)
{
	struct sockaddr_in	 sin;
	int			 fd, on = 1, rcvbuf = ESP_RCVBUF;

	if ((fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    proto)) == -1) {
		log_warnx("%s: socket: %s", __func__, strerror(errno));
		return (-1);
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf,
	    sizeof(rcvbuf)) == -1)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf));
	if (type == SOCK_DGRAM && (setsockopt(fd, IPPROTO_IP, IP_PKTINFO,
	    &on, sizeof(on)) == -1 || setsockopt(fd, SOL_SOCKET,
	    SO_REUSEADDR, &on, sizeof(on)) == -1)) {
		log_warnx("%s: setsockopt: %s", __func__, strerror(errno));
		close(fd);
		return (-1);
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr = addr;
	sin.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		log_warnx("%s: bind %s:%u: %s", __func__, inet_ntoa(addr),
		    port, strerror(errno));
		close(fd);
		return (-1);
	}
	return (fd);
}

/*
 * Open the raw protocol 50 socket on espaddr and the ESP-in-UDP socket on
 * nattaddr; either may be NULL.
 */
int
esp_init(const char *espaddr, const char *nattaddr)
{
	struct in_addr	 addr;
	uint16_t	 port;
	int		 i;

	for (i = 0; i < ESP_BATCH; i++) {
		esp_rx.iov[i].iov_base = esp_rx.buf[i];
		esp_rx.iov[i].iov_len = sizeof(esp_rx.buf[i]);
	}
	if (espaddr != NULL) {
		port = 0;
		if (esp_parseaddr(espaddr, &addr, &port) == -1 || port != 0) {
			log_warnx("%s: bad ESP address %s", __func__, espaddr);
			errno = EINVAL;
			return (-1);
		}
		if ((esp_rawfd = esp_socket(SOCK_RAW, IPPROTO_ESP, addr,
		    0)) == -1)
			return (-1);
	}
	if (nattaddr != NULL) {
		port = ESP_NATT_PORT;
		if (esp_parseaddr(nattaddr, &addr, &port) == -1) {
			log_warnx("%s: bad NAT-T address %s", __func__,
			    nattaddr);
			errno = EINVAL;
			return (-1);
		}
		if ((esp_udpfd = esp_socket(SOCK_DGRAM, IPPROTO_UDP, addr,
		    port)) == -1)
			return (-1);
		esp_udpaddr = addr;
	}
	return (0);
}

int
esp_raw_fd(void)
{
	return (esp_rawfd);
}

int
esp_udp_fd(void)
{
	return (esp_udpfd);
}

uint64_t
esp_natt_keepalives(void)
{
	return (esp_keepalives);
}

uint64_t
esp_natt_nonesp(void)
{
	return (esp_nonesp);
}

/* The outer destination of a UDP datagram: IP_PKTINFO, else the bind. */
static void
esp_udp_dst(const struct msghdr *msg, uint8_t *dst)
{
	struct cmsghdr	*cm;
	struct in_pktinfo pi;

	memcpy(dst, &esp_udpaddr, 4);
	for (cm = CMSG_FIRSTHDR(msg); cm != NULL;
	    cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
		if (cm->cmsg_level == IPPROTO_IP &&
		    cm->cmsg_type == IP_PKTINFO &&
		    cm->cmsg_len >= CMSG_LEN(sizeof(pi))) {
			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			memcpy(dst, &pi.ipi_addr, 4);
		}
	}
}

static uint64_t
esp_clock(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

/*
 * Drain up to ESP_BATCHES batches from one socket, or fewer once
 * ESP_BUDGET_NS have gone (packets whose flows walk a long table are
 * slow), so that PF_KEY requests and the clock are not kept waiting;
 * poll(2) is level triggered, so whatever is left comes back on the next
 * round.
 */
static int
esp_recv(int fd, int natt)
{
	struct esp_pkt	 pkt;
	struct msghdr	*msg;
	uint64_t	 start = esp_clock();
	int		 b, i, n;

	for (b = 0; b < ESP_BATCHES; b++) {
		for (i = 0; i < ESP_BATCH; i++) {
			msg = &esp_rx.msgs[i].msg_hdr;
			memset(msg, 0, sizeof(*msg));
			msg->msg_iov = &esp_rx.iov[i];
			msg->msg_iovlen = 1;
			if (natt) {
				msg->msg_name = &esp_rx.from[i];
				msg->msg_namelen = sizeof(esp_rx.from[i]);
				msg->msg_control = esp_rx.cmsg[i];
				msg->msg_controllen = sizeof(esp_rx.cmsg[i]);
			}
		}
		if ((n = recvmmsg(fd, esp_rx.msgs, ESP_BATCH, MSG_DONTWAIT,
		    NULL)) == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				log_warnx("%s: recvmmsg: %s", __func__,
				    strerror(errno));
			return (-1);
		}
		esp_inbatch = 1;
		for (i = 0; i < n; i++) {
			msg = &esp_rx.msgs[i].msg_hdr;
			if (msg->msg_flags & MSG_TRUNC) {
				keystat.esp_drop[ESP_DROP_MALFORMED]++;
				continue;
			}
			if (!natt) {
				esp4_input(esp_rx.buf[i], esp_rx.msgs[i].msg_len,
				    0);
				continue;
			}
			pkt.data = esp_rx.buf[i];
			pkt.len = esp_rx.msgs[i].msg_len;
			memcpy(pkt.src, &esp_rx.from[i].sin_addr, 4);
			esp_udp_dst(msg, pkt.dst);
			pkt.natt = 1;
			esp_input_natt(&pkt);
		}
		esp_inbatch = 0;
		esp_batchflow = NULL;
		if (n < ESP_BATCH || esp_clock() - start > ESP_BUDGET_NS)
			break;
	}
	return (0);
}

void
esp_input_raw(void)
{
	if (esp_rawfd != -1)
		esp_recv(esp_rawfd, 0);
}

void
esp_input_udp(void)
{
	if (esp_udpfd != -1)
		esp_recv(esp_udpfd, 1);
}

/*
 * One IPv4 datagram as it came off the wire: ESP right after the IP
 * header, or with natt, a UDP header and then ESP (RFC 3948).  Returns 0
 * if the packet was accepted, -1 if it was dropped or was not ESP.
 */
int
esp4_input(const uint8_t *ip, size_t len, int natt)
{
	struct esp_pkt	 pkt;
	size_t		 hlen, iplen, ulen;
	uint16_t	 v16;

	if (len < IPV4_HDRLEN || (ip[0] >> 4) != 4)
		goto malformed;
	hlen = (size_t)(ip[0] & 0x0f) * 4;
	memcpy(&v16, ip + 2, sizeof(v16));
	iplen = ntohs(v16);
	if (hlen < IPV4_HDRLEN || iplen < hlen || iplen > len)
		goto malformed;
	/* The stack hands us reassembled datagrams only. */
	memcpy(&v16, ip + 6, sizeof(v16));
	if ((ntohs(v16) & 0x3fff) != 0)
		goto malformed;
	memcpy(pkt.src, ip + 12, 4);
	memcpy(pkt.dst, ip + 16, 4);
	pkt.natt = natt;
	if (!natt) {
		if (ip[9] != IPPROTO_ESP)
			goto malformed;
		pkt.data = ip + hlen;
		pkt.len = iplen - hlen;
		return (esp_input(&pkt));
	}
	if (ip[9] != IPPROTO_UDP || iplen - hlen < UDP_HDRLEN)
		goto malformed;
	memcpy(&v16, ip + hlen + 4, sizeof(v16));
	ulen = ntohs(v16);
	if (ulen < UDP_HDRLEN || ulen > iplen - hlen)
		goto malformed;
	pkt.data = ip + hlen + UDP_HDRLEN;
	pkt.len = ulen - UDP_HDRLEN;
	return (esp_input_natt(&pkt));

 malformed:
	keystat.esp_drop[ESP_DROP_MALFORMED]++;
	return (-1);
}

/*
 * A UDP 4500 payload: a NAT keepalive (RFC 3948 2.3), IKE behind the
 * non-ESP marker (RFC 3948 2.2), or ESP.
 */
static int
esp_input_natt(const struct esp_pkt *pkt)
{
	static const uint8_t	 marker[4];

	if (pkt->len == 1 && pkt->data[0] == 0xff) {
		esp_keepalives++;
		return (-1);
	}
	if (pkt->len >= sizeof(marker) &&
	    memcmp(pkt->data, marker, sizeof(marker)) == 0) {
		esp_nonesp++;
		return (-1);
	}
	return (esp_input(pkt));
}

/* RFC 4303 3.4.3: may this sequence number be accepted? */
static int
esp_replay_check(const struct secasvar *sav, uint32_t seq)
{
	uint64_t	 diff;

	if (seq == 0)
		return (-1);
	if (seq > sav->replay_top)
		return (0);
	diff = sav->replay_top - seq;
	if (diff >= ESP_REPLAYWSIZE)
		return (-1);
	if (sav->replay_bitmap & ((uint64_t)1 << diff))
		return (-1);
	return (0);
}

/* Slide the window after the ICV has been verified. */
static void
esp_replay_update(struct secasvar *sav, uint32_t seq)
{
	uint64_t	 diff;

	if (seq > sav->replay_top) {
		diff = seq - sav->replay_top;
		if (diff >= ESP_REPLAYWSIZE)
			sav->replay_bitmap = 1;
		else
			sav->replay_bitmap = (sav->replay_bitmap << diff) | 1;
		sav->replay_top = seq;
	} else
		sav->replay_bitmap |= (uint64_t)1 << (sav->replay_top - seq);
}

/*
 * RFC 4106: nonce = salt || explicit IV, AAD = SPI || sequence number.
 * The tag is checked in EVP_DecryptFinal_ex; a failure there is a bad ICV.
 */
static int
esp_gcm_decrypt(struct secasvar *sav, const struct esp_pkt *pkt,
    const struct esp_xform *x, struct esp_payload *pl)
{
	uint8_t		 nonce[12], tag[16];
	EVP_CIPHER_CTX	*ctx = sav->ctx_enc;
	const uint8_t	*ct;
	size_t		 ctlen;
	int		 outl, finl;

	ct = pkt->data + ESP_HDRLEN + x->ivlen;
	ctlen = pkt->len - ESP_HDRLEN - x->ivlen - x->icvlen;
	memcpy(nonce, sav->key_enc + sav->key_enc_bits / 8 - 4, 4);
	memcpy(nonce + 4, pkt->data + ESP_HDRLEN, 8);
	memcpy(tag, ct + ctlen, x->icvlen);
	if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &outl, pkt->data, ESP_HDRLEN) != 1 ||
	    EVP_DecryptUpdate(ctx, esp_plain, &outl, ct, (int)ctlen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, (int)x->icvlen,
	    tag) != 1 ||
	    EVP_DecryptFinal_ex(ctx, esp_plain + outl, &finl) != 1)
		return (-1);
	pl->data = esp_plain;
	pl->len = ctlen;
	return (0);
}

/* The truncated HMAC over ESP header .. ciphertext, in constant time. */
static int
esp_hmac_verify(struct secasvar *sav, const struct esp_pkt *pkt,
    const struct esp_xform *x)
{
	uint8_t		 md[EVP_MAX_MD_SIZE];
	EVP_MAC_CTX	*ctx = sav->ctx_auth;
	size_t		 authlen = pkt->len - x->icvlen, mdlen;

	if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1 ||
	    EVP_MAC_update(ctx, pkt->data, authlen) != 1 ||
	    EVP_MAC_final(ctx, md, &mdlen, sizeof(md)) != 1 ||
	    mdlen < x->icvlen)
		return (-1);
	return (CRYPTO_memcmp(md, pkt->data + authlen, x->icvlen) == 0 ?
	    0 : -1);
}

static int
esp_cbc_decrypt(struct secasvar *sav, const struct esp_pkt *pkt,
    const struct esp_xform *x, struct esp_payload *pl)
{
	EVP_CIPHER_CTX	*ctx = sav->ctx_enc;
	const uint8_t	*ct;
	size_t		 ctlen;
	int		 outl;

	ct = pkt->data + ESP_HDRLEN + x->ivlen;
	ctlen = pkt->len - ESP_HDRLEN - x->ivlen - x->icvlen;
	if (ctx == NULL) {
		/* NULL encryption: the payload is the plaintext. */
		pl->data = ct;
		pl->len = ctlen;
		return (0);
	}
	if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL,
	    pkt->data + ESP_HDRLEN) != 1 ||
	    EVP_DecryptUpdate(ctx, esp_plain, &outl, ct, (int)ctlen) != 1 ||
	    (size_t)outl != ctlen)
		return (-1);
	pl->data = esp_plain;
	pl->len = ctlen;
	return (0);
}

/* Strip padding and trailer; -1 on a pad length or next header gone bad. */
static int
esp_trailer(struct esp_payload *pl)
{
	size_t	 padlen;

	if (pl->len < ESP_TRAILERLEN)
		return (-1);
	padlen = pl->data[pl->len - 2];
	pl->nxt = pl->data[pl->len - 1];
	if (padlen + ESP_TRAILERLEN > pl->len || pl->nxt == IPPROTO_NONE_)
		return (-1);
	pl->len -= padlen + ESP_TRAILERLEN;
	return (0);
}

/*
 * The selector of the packet the policy check sees: the inner header in
 * tunnel mode, the outer addresses and next header in transport mode.
 */
static int
esp_flowkey(const struct esp_pkt *pkt, const struct esp_payload *pl,
    int tunnel, struct flowkey *key)
{
	const uint8_t	*ul;
	size_t		 hlen, iplen, ullen;
	uint16_t	 v16;

	memset(key, 0, sizeof(*key));
	key->family = AF_INET;
	if (tunnel) {
		if (pl->len < IPV4_HDRLEN || (pl->data[0] >> 4) != 4)
			return (-1);
		hlen = (size_t)(pl->data[0] & 0x0f) * 4;
		memcpy(&v16, pl->data + 2, sizeof(v16));
		iplen = ntohs(v16);
		if (hlen < IPV4_HDRLEN || iplen < hlen || iplen > pl->len)
			return (-1);
		key->proto = pl->data[9];
		memcpy(key->src, pl->data + 12, 4);
		memcpy(key->dst, pl->data + 16, 4);
		memcpy(&v16, pl->data + 6, sizeof(v16));
		if ((ntohs(v16) & 0x1fff) != 0)
			return (0);	/* a later fragment: no ports */
		ul = pl->data + hlen;
		ullen = iplen - hlen;
	} else {
		key->proto = pl->nxt;
		memcpy(key->src, pkt->src, 4);
		memcpy(key->dst, pkt->dst, 4);
		ul = pl->data;
		ullen = pl->len;
	}
	if (key->proto == IPPROTO_TCP || key->proto == IPPROTO_UDP) {
		if (ullen < 4)
			return (-1);
		memcpy(&key->sport, ul, 2);
		memcpy(&key->dport, ul + 2, 2);
	}
	return (0);
}

/*
 * An IPSEC policy accepts the packet if its ESP requests match the SA it
 * came through: mode, tunnel endpoints, and for level unique the reqid.
 * A required AH or IPComp request cannot be met by an ESP-only packet.
 */
static int
esp_policy_match(const struct secpolicy *sp, const struct secasvar *sav,
    int tunnel)
{
	const struct ipsecrequest	*isr;
	int				 i, mode, nesp = 0;

	mode = sav->mode != IPSEC_MODE_ANY ? sav->mode :
	    tunnel ? IPSEC_MODE_TUNNEL : IPSEC_MODE_TRANSPORT;
	for (i = 0; i < sp->nreq && i < KEY_MAXREQ; i++) {
		isr = &sp->req[i];
		if (isr->proto != IPPROTO_ESP) {
			if (isr->level == IPSEC_LEVEL_REQUIRE ||
			    isr->level == IPSEC_LEVEL_UNIQUE)
				return (-1);
			continue;
		}
		nesp++;
		if (isr->mode != IPSEC_MODE_ANY && isr->mode != mode)
			return (-1);
		if (isr->mode == IPSEC_MODE_TUNNEL &&
		    ((isr->tsrc.ka_family != 0 &&
		    (isr->tsrc.ka_family != AF_INET ||
		    memcmp(isr->tsrc.ka_addr, sav->src.ka_addr, 4) != 0)) ||
		    (isr->tdst.ka_family != 0 &&
		    (isr->tdst.ka_family != AF_INET ||
		    memcmp(isr->tdst.ka_addr, sav->dst.ka_addr, 4) != 0))))
			return (-1);
		if (isr->level == IPSEC_LEVEL_UNIQUE && isr->reqid != sav->reqid)
			return (-1);
	}
	return (nesp > 0 ? 0 : -1);
}

/*
 * The flow of a decapsulated packet, opened on its first packet.  Packets
 * of one flow come in runs, so a batch remembers the last flow it found
 * and a run searches the flow hash once.  Flows are freed by the timer and
 * admin commands only, never inside a batch, so the pointer holds until
 * the batch ends; outside a batch (esp4_input called directly) every
 * packet searches.
 */
static struct flow *
esp_flow(const struct flowkey *key)
{
	struct flow	*f;

	if (esp_batchflow != NULL &&
	    memcmp(&esp_batchflow->key, key, sizeof(*key)) == 0)
		return (esp_batchflow);
	if ((f = flow_lookup(key)) == NULL &&
	    (f = flow_open(key, FLOW_FORWARD_IN)) == NULL)
		return (NULL);
	if (esp_inbatch)
		esp_batchflow = f;
	return (f);
}

/*
 * KAME ipsec4_in_reject through the flow's policy cache, the same path
 * the admin-opened flows take.  The flow holds the policy reference.
 */
static int
esp_policy_check(const struct secasvar *sav, const struct flowkey *key,
    int tunnel, int *reason)
{
	struct secpolicy	*sp;
	struct flow		*f;

	*reason = ESP_DROP_NO_POLICY;
	if ((f = esp_flow(key)) == NULL)
		return (-1);
	if ((sp = flow_checkpolicy(f, IPSEC_DIR_INBOUND)) == NULL)
		return (-1);
	*reason = ESP_DROP_POLICY_MISMATCH;
	switch (sp->policy) {
	case IPSEC_POLICY_NONE:
	case IPSEC_POLICY_BYPASS:
		return (0);
	case IPSEC_POLICY_IPSEC:
		return (esp_policy_match(sp, sav, tunnel));
	default:
		return (-1);
	}
}

/* KAME esp4_input, from the ESP header on. */
static int
esp_input(const struct esp_pkt *pkt)
{
	struct esp_payload	 pl = { NULL, 0, 0 };
	struct esp_xform	 x;
	struct flowkey		 key;
	struct keyaddr		 dst;
	struct secasvar		*sav;
	uint32_t		 spi, seq;
	int			 reason = ESP_DROP_MALFORMED, tunnel;

	/* 1. length */
	if (pkt->len < ESP_HDRLEN)
		goto drop;
	memcpy(&spi, pkt->data, 4);
	memcpy(&seq, pkt->data + 4, 4);
	seq = ntohl(seq);

	/* 2. SA lookup; ESP-in-UDP must come on a NAT-T SA */
	memset(&dst, 0, sizeof(dst));
	dst.ka_family = AF_INET;
	dst.ka_plen = 32;
	memcpy(dst.ka_addr, pkt->dst, 4);
	sav = key_sa_lookup(&dst, spi, IPPROTO_ESP);
	if (sav == NULL ||
	    (pkt->natt && sav->natt_type != UDP_ENCAP_ESPINUDP)) {
		reason = ESP_DROP_NO_SA;
		goto drop;
	}

	/* 3. SA state */
	if ((sav->state != SADB_SASTATE_MATURE &&
	    sav->state != SADB_SASTATE_DYING) ||
	    esp_sa_xform(sav, &x) == -1) {
		reason = ESP_DROP_SA_STATE;
		goto drop;
	}
	if (pkt->len < ESP_HDRLEN + x.ivlen + x.icvlen + ESP_TRAILERLEN ||
	    (pkt->len - ESP_HDRLEN - x.ivlen - x.icvlen) % x.blksz != 0)
		goto drop;

	/* 4. replay check */
	if (sav->replay != 0 && esp_replay_check(sav, seq) == -1) {
		reason = ESP_DROP_REPLAY;
		goto drop;
	}

	/* 5. ICV; for GCM, tag and decryption are one step */
	if (x.aead) {
		if (esp_gcm_decrypt(sav, pkt, &x, &pl) == -1) {
			reason = ESP_DROP_BAD_ICV;
			goto drop;
		}
	} else if (sav->ctx_auth != NULL && esp_hmac_verify(sav, pkt,
	    &x) == -1) {
		reason = ESP_DROP_BAD_ICV;
		goto drop;
	}

	/* 6. only now does the window move */
	if (sav->replay != 0)
		esp_replay_update(sav, seq);

	/* 7. decrypt */
	if (!x.aead && esp_cbc_decrypt(sav, pkt, &x, &pl) == -1) {
		reason = ESP_DROP_DECRYPT;
		goto drop;
	}
	if (esp_trailer(&pl) == -1) {
		reason = ESP_DROP_DECRYPT;
		goto drop;
	}
	tunnel = pl.nxt == IPPROTO_IPIP && sav->mode != IPSEC_MODE_TRANSPORT;
	if (!tunnel && sav->mode == IPSEC_MODE_TUNNEL) {
		reason = ESP_DROP_DECRYPT;
		goto drop;
	}
	if (esp_flowkey(pkt, &pl, tunnel, &key) == -1)
		goto drop;
	if (esp_policy_check(sav, &key, tunnel, &reason) == -1)
		goto drop;

	keystat.esp_ok++;
	keystat.esp_bytes += pl.len;
	key_sa_touch(sav, pl.len);	/* last use: sav may be gone */
	return (0);

 drop:
	keystat.esp_drop[reason]++;
	return (-1);
}
