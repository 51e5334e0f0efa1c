/*
 * Helpers for the harnesses: netkeyd's subsystems brought up without
 * main.c, a fake PF_KEY client whose replies land in a socketpair and are
 * thrown away, and RFC 4303 sealing for the SAs we install.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "netkeyd.h"
#include "fuzz_common.h"

const uint8_t		 fz_gcm_key[20] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	's', 'a', 'l', 't'
};
const uint8_t		 fz_cbc_key[16] = {
	32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47
};
const uint8_t		 fz_hmac_key[32] = {
	64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
	80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95
};

const struct fz_sa	 fz_sas[] = {
	{ 0x1001, SADB_X_EALG_AESGCM16, SADB_AALG_NONE, IPSEC_MODE_TRANSPORT,
	    4, 0, 0, fz_gcm_key, 20, NULL, 0 },
	{ 0x2002, SADB_X_EALG_AESGCM16, SADB_AALG_NONE, IPSEC_MODE_TUNNEL,
	    4, 0, 5, fz_gcm_key, 20, NULL, 0 },
	{ 0x3003, SADB_X_EALG_AES, SADB_X_AALG_SHA2_256, IPSEC_MODE_TRANSPORT,
	    4, 0, 0, fz_cbc_key, 16, fz_hmac_key, 32 },
	{ 0x4004, SADB_EALG_NULL, SADB_X_AALG_SHA2_256, IPSEC_MODE_ANY,
	    0, 0, 0, NULL, 0, fz_hmac_key, 32 },
	{ 0x5005, SADB_X_EALG_AESGCM16, SADB_AALG_NONE, IPSEC_MODE_TRANSPORT,
	    0, 1, 0, fz_gcm_key, 20, NULL, 0 },
	{ 0x6006, SADB_X_EALG_AESGCM8, SADB_AALG_NONE, IPSEC_MODE_TUNNEL,
	    0, 0, 9, fz_gcm_key, 20, NULL, 0 },
	{ 0x7007, SADB_X_EALG_AES, SADB_AALG_SHA1HMAC, IPSEC_MODE_ANY,
	    4, 0, 0, fz_cbc_key, 16, fz_hmac_key, 20 },
};
const size_t		 fz_nsas = sizeof(fz_sas) / sizeof(fz_sas[0]);

static struct keycb	*fz_kp;
static int		 fz_peerfd = -1;
static uint32_t		 fz_seq;

void
fz_init(void)
{
	int	 sv[2], sz = 4 * 1024 * 1024;

	log_init("/dev/null", 0);
	key_spd_init();
	key_sad_init();
	flow_init(30);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv) == -1)
		abort();
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	(void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if ((fz_kp = key_attach(sv[0])) == NULL)
		abort();
	fz_peerfd = sv[1];
}

/* Throw away whatever netkeyd sent the fake client. */
void
fz_drain(void)
{
	static uint8_t	 buf[65536 * 8];

	while (recv(fz_peerfd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

void
fz_send(const uint8_t *buf, size_t len)
{
	key_parse(fz_kp, buf, len);
	fz_drain();
}

void
fz_begin(struct fz_msg *m, uint8_t type, uint8_t satype)
{
	struct sadb_msg	 h;

	memset(m, 0, sizeof(*m));
	memset(&h, 0, sizeof(h));
	h.sadb_msg_version = PF_KEY_V2;
	h.sadb_msg_type = type;
	h.sadb_msg_satype = satype;
	h.sadb_msg_seq = ++fz_seq;
	h.sadb_msg_pid = (uint32_t)getpid();
	memcpy(m->buf, &h, sizeof(h));
	m->len = sizeof(h);
}

/* Append an extension whose sadb_ext_len the caller has set. */
void
fz_ext(struct fz_msg *m, const void *p, size_t len)
{
	size_t	 plen = PFKEY_ALIGN8(len);

	if (m->len + plen > sizeof(m->buf))
		abort();
	memcpy(m->buf + m->len, p, len);
	memset(m->buf + m->len + len, 0, plen - len);
	m->len += plen;
}

void
fz_addr(struct fz_msg *m, int type, const char *ip, uint8_t plen,
    uint8_t proto, uint16_t port)
{
	struct sadb_address	 a;
	uint8_t			 buf[sizeof(a) + BSD_SIN_LEN];

	memset(buf, 0, sizeof(buf));
	memset(&a, 0, sizeof(a));
	a.sadb_address_len = PFKEY_UNIT64(sizeof(buf));
	a.sadb_address_exttype = type;
	a.sadb_address_proto = proto;
	a.sadb_address_prefixlen = plen;
	memcpy(buf, &a, sizeof(a));
	buf[sizeof(a)] = BSD_SIN_LEN;
	buf[sizeof(a) + 1] = BSD_AF_INET;
	port = htons(port);
	memcpy(buf + sizeof(a) + 2, &port, 2);
	if (inet_pton(AF_INET, ip, buf + sizeof(a) + 4) != 1)
		abort();
	fz_ext(m, buf, sizeof(buf));
}

void
fz_key(struct fz_msg *m, int type, const uint8_t *key, size_t len)
{
	struct sadb_key	 k;
	uint8_t		 buf[sizeof(k) + 64];

	memset(&k, 0, sizeof(k));
	k.sadb_key_len = PFKEY_UNIT64(PFKEY_ALIGN8(sizeof(k) + len));
	k.sadb_key_exttype = type;
	k.sadb_key_bits = (uint16_t)(len * 8);
	memcpy(buf, &k, sizeof(k));
	memcpy(buf + sizeof(k), key, len);
	fz_ext(m, buf, sizeof(k) + len);
}

void
fz_done(struct fz_msg *m)
{
	uint16_t	 len = (uint16_t)PFKEY_UNIT64(m->len);

	memcpy(m->buf + offsetof(struct sadb_msg, sadb_msg_len), &len,
	    sizeof(len));
	fz_send(m->buf, m->len);
}

void
fz_add_sa(const struct fz_sa *s)
{
	struct sadb_x_nat_t_type	 nt;
	struct sadb_x_nat_t_port	 np;
	struct sadb_x_sa2		 sa2;
	struct sadb_sa			 sa;
	struct fz_msg			 m;

	fz_begin(&m, SADB_ADD, SADB_SATYPE_ESP);
	memset(&sa, 0, sizeof(sa));
	sa.sadb_sa_len = PFKEY_UNIT64(sizeof(sa));
	sa.sadb_sa_exttype = SADB_EXT_SA;
	sa.sadb_sa_spi = htonl(s->spi);
	sa.sadb_sa_replay = s->replay;
	sa.sadb_sa_auth = s->auth;
	sa.sadb_sa_encrypt = s->enc;
	fz_ext(&m, &sa, sizeof(sa));
	memset(&sa2, 0, sizeof(sa2));
	sa2.sadb_x_sa2_len = PFKEY_UNIT64(sizeof(sa2));
	sa2.sadb_x_sa2_exttype = SADB_X_EXT_SA2;
	sa2.sadb_x_sa2_mode = s->mode;
	sa2.sadb_x_sa2_reqid = s->reqid;
	fz_ext(&m, &sa2, sizeof(sa2));
	fz_addr(&m, SADB_EXT_ADDRESS_SRC, FZ_PEER, 32, IPSEC_ULPROTO_ANY, 0);
	fz_addr(&m, SADB_EXT_ADDRESS_DST, FZ_GW, 32, IPSEC_ULPROTO_ANY, 0);
	if (s->enc_len != 0)
		fz_key(&m, SADB_EXT_KEY_ENCRYPT, s->enc_key, s->enc_len);
	if (s->auth_len != 0)
		fz_key(&m, SADB_EXT_KEY_AUTH, s->auth_key, s->auth_len);
	if (s->natt) {
		memset(&nt, 0, sizeof(nt));
		nt.sadb_x_nat_t_type_len = PFKEY_UNIT64(sizeof(nt));
		nt.sadb_x_nat_t_type_exttype = SADB_X_EXT_NAT_T_TYPE;
		nt.sadb_x_nat_t_type_type = UDP_ENCAP_ESPINUDP;
		fz_ext(&m, &nt, sizeof(nt));
		memset(&np, 0, sizeof(np));
		np.sadb_x_nat_t_port_len = PFKEY_UNIT64(sizeof(np));
		np.sadb_x_nat_t_port_exttype = SADB_X_EXT_NAT_T_SPORT;
		np.sadb_x_nat_t_port_port = htons(4500);
		fz_ext(&m, &np, sizeof(np));
		np.sadb_x_nat_t_port_exttype = SADB_X_EXT_NAT_T_DPORT;
		fz_ext(&m, &np, sizeof(np));
	}
	fz_done(&m);
}

void
fz_install_sas(void)
{
	size_t	 i;

	for (i = 0; i < fz_nsas; i++)
		fz_add_sa(&fz_sas[i]);
}

void
fz_flush_sas(void)
{
	struct fz_msg	 m;

	fz_begin(&m, SADB_FLUSH, SADB_SATYPE_UNSPEC);
	fz_done(&m);
}

/* An inbound policy; policy IPSEC gets one ESP request. */
void
fz_spdadd_in(const char *src, uint8_t splen, const char *dst, uint8_t dplen,
    int policy, uint8_t mode, uint8_t level, uint16_t reqid)
{
	struct sadb_x_ipsecrequest	 xisr;
	struct sadb_x_policy		 xpl;
	struct fz_msg			 m;
	uint8_t				 buf[sizeof(xpl) + sizeof(xisr) +
					    2 * BSD_SIN_LEN];
	size_t				 len = sizeof(xpl);

	fz_begin(&m, SADB_X_SPDADD, SADB_SATYPE_UNSPEC);
	fz_addr(&m, SADB_EXT_ADDRESS_SRC, src, splen, IPSEC_ULPROTO_ANY, 0);
	fz_addr(&m, SADB_EXT_ADDRESS_DST, dst, dplen, IPSEC_ULPROTO_ANY, 0);
	memset(buf, 0, sizeof(buf));
	if (policy == IPSEC_POLICY_IPSEC) {
		memset(&xisr, 0, sizeof(xisr));
		xisr.sadb_x_ipsecrequest_len = sizeof(xisr);
		xisr.sadb_x_ipsecrequest_proto = IPPROTO_ESP;
		xisr.sadb_x_ipsecrequest_mode = mode;
		xisr.sadb_x_ipsecrequest_level = level;
		xisr.sadb_x_ipsecrequest_reqid = reqid;
		if (mode == IPSEC_MODE_TUNNEL) {
			xisr.sadb_x_ipsecrequest_len += 2 * BSD_SIN_LEN;
			buf[len + sizeof(xisr)] = BSD_SIN_LEN;
			buf[len + sizeof(xisr) + 1] = BSD_AF_INET;
			inet_pton(AF_INET, FZ_PEER, buf + len + sizeof(xisr) + 4);
			buf[len + sizeof(xisr) + 16] = BSD_SIN_LEN;
			buf[len + sizeof(xisr) + 17] = BSD_AF_INET;
			inet_pton(AF_INET, FZ_GW, buf + len + sizeof(xisr) + 20);
		}
		memcpy(buf + len, &xisr, sizeof(xisr));
		len += xisr.sadb_x_ipsecrequest_len;
	}
	memset(&xpl, 0, sizeof(xpl));
	xpl.sadb_x_policy_len = PFKEY_UNIT64(len);
	xpl.sadb_x_policy_exttype = SADB_X_EXT_POLICY;
	xpl.sadb_x_policy_type = (uint16_t)policy;
	xpl.sadb_x_policy_dir = IPSEC_DIR_INBOUND;
	memcpy(buf, &xpl, sizeof(xpl));
	fz_ext(&m, buf, len);
	fz_done(&m);
}

void
fz_install_policies(void)
{
	fz_spdadd_in(FZ_PEER, 32, FZ_GW, 32, IPSEC_POLICY_IPSEC,
	    IPSEC_MODE_TRANSPORT, IPSEC_LEVEL_REQUIRE, 0);
	fz_spdadd_in("172.16.1.0", 24, "172.16.2.0", 24, IPSEC_POLICY_IPSEC,
	    IPSEC_MODE_TUNNEL, IPSEC_LEVEL_REQUIRE, 0);
	fz_spdadd_in("172.16.3.0", 24, "172.16.2.0", 24, IPSEC_POLICY_IPSEC,
	    IPSEC_MODE_TUNNEL, IPSEC_LEVEL_UNIQUE, 9);
	fz_spdadd_in("172.16.4.0", 24, "172.16.2.0", 24, IPSEC_POLICY_DISCARD,
	    0, 0, 0);
	fz_spdadd_in("172.16.6.0", 24, "172.16.2.0", 24, IPSEC_POLICY_NONE,
	    0, 0, 0);
}

static int
fz_hmac(const struct fz_sa *s, const uint8_t *p, size_t len, uint8_t *md)
{
	OSSL_PARAM	 params[2];
	EVP_MAC		*mac;
	EVP_MAC_CTX	*ctx;
	size_t		 mdlen;
	int		 ok;

	if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		abort();
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    s->auth == SADB_AALG_SHA1HMAC ? "SHA1" : "SHA2-256", 0);
	params[1] = OSSL_PARAM_construct_end();
	ctx = EVP_MAC_CTX_new(mac);
	ok = ctx != NULL && EVP_MAC_init(ctx, s->auth_key, s->auth_len,
	    params) == 1 && EVP_MAC_update(ctx, p, len) == 1 &&
	    EVP_MAC_final(ctx, md, &mdlen, 64) == 1;
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	if (!ok)
		abort();
	return (s->auth == SADB_AALG_SHA1HMAC ? 12 : 16);
}

/*
 * ESP header .. ICV for one packet of SA s.  With nxt >= 0 the payload
 * gets RFC 4303 padding and a trailer; with nxt < 0 it is the whole
 * plaintext, zero-filled to the cipher block.  0 if it does not fit.
 */
size_t
fz_seal(const struct fz_sa *s, uint32_t seq, const uint8_t *payload,
    size_t plen, uint8_t *out, size_t outsize, int nxt)
{
	uint8_t		 plain[2048], md[64], nonce[12];
	EVP_CIPHER_CTX	*ctx;
	size_t		 blk, ivlen, icvlen, len, i, hdr;
	uint32_t	 v;
	int		 outl, gcm;

	gcm = s->enc >= SADB_X_EALG_AESGCM8 && s->enc <= SADB_X_EALG_AESGCM16;
	blk = s->enc == SADB_X_EALG_AES ? 16 : 4;
	ivlen = s->enc == SADB_X_EALG_AES ? 16 : gcm ? 8 : 0;
	if (plen + blk + 2 > sizeof(plain))
		return (0);
	memcpy(plain, payload, plen);
	len = plen;
	if (nxt >= 0) {
		for (i = 1; (len + 2) % blk != 0; i++)
			plain[len++] = (uint8_t)i;
		plain[len] = (uint8_t)(len - plen);
		plain[len + 1] = (uint8_t)nxt;
		len += 2;
	} else if (s->enc == SADB_X_EALG_AES) {
		while (len % blk != 0)
			plain[len++] = 0;
	}
	hdr = 8 + ivlen;
	if (hdr + len + 32 > outsize)
		return (0);
	v = htonl(s->spi);
	memcpy(out, &v, 4);
	v = htonl(seq);
	memcpy(out + 4, &v, 4);
	for (i = 0; i < ivlen; i++)
		out[8 + i] = (uint8_t)(seq * 7 + i);
	if (s->enc == SADB_EALG_NULL) {
		memcpy(out + hdr, plain, len);
		icvlen = (size_t)fz_hmac(s, out, hdr + len, md);
		memcpy(out + hdr + len, md, icvlen);
		return (hdr + len + icvlen);
	}
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		abort();
	if (gcm) {
		icvlen = s->enc == SADB_X_EALG_AESGCM8 ? 8 :
		    s->enc == SADB_X_EALG_AESGCM12 ? 12 : 16;
		memcpy(nonce, s->enc_key + s->enc_len - 4, 4);
		memcpy(nonce + 4, out + 8, 8);
		if (EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, s->enc_key,
		    nonce) != 1 ||
		    EVP_EncryptUpdate(ctx, NULL, &outl, out, 8) != 1 ||
		    EVP_EncryptUpdate(ctx, out + hdr, &outl, plain,
		    (int)len) != 1 ||
		    EVP_EncryptFinal_ex(ctx, out + hdr + len, &outl) != 1 ||
		    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16,
		    md) != 1)
			abort();
		memcpy(out + hdr + len, md, icvlen);
	} else {
		if (EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, s->enc_key,
		    out + 8) != 1 || EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 ||
		    EVP_EncryptUpdate(ctx, out + hdr, &outl, plain,
		    (int)len) != 1)
			abort();
		icvlen = (size_t)fz_hmac(s, out, hdr + len, md);
		memcpy(out + hdr + len, md, icvlen);
	}
	EVP_CIPHER_CTX_free(ctx);
	return (hdr + len + icvlen);
}

/* An IPv4 header in front of a payload; 0 if it does not fit. */
size_t
fz_ipv4(const char *src, const char *dst, uint8_t proto, const uint8_t *p,
    size_t len, uint8_t *out, size_t outsize)
{
	uint16_t	 v;

	if (len + 20 > outsize || len + 20 > 65535)
		return (0);
	memset(out, 0, 20);
	out[0] = 0x45;
	v = htons((uint16_t)(len + 20));
	memcpy(out + 2, &v, 2);
	out[8] = 64;
	out[9] = proto;
	inet_pton(AF_INET, src, out + 12);
	inet_pton(AF_INET, dst, out + 16);
	memmove(out + 20, p, len);
	return (len + 20);
}
