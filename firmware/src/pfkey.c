/*
 * PF_KEY v2 socket glue: parsing and validating untrusted messages
 * (key_parse, key_align, key_validate_ext), dispatching them through
 * key_typesw[], building replies, and routing them (key_sendup) as the
 * kernel does: to the sender, to all sockets, or to registered ones.
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netkeyd.h"

static TAILQ_HEAD(, keycb)	 keycbs = TAILQ_HEAD_INITIALIZER(keycbs);
static int			 nkeycbs;

static int	 key_register(const struct sadb_msghdr *);
static int	 key_align(struct sadb_msghdr *);
static int	 key_validate_ext(const struct sadb_msghdr *, int, size_t,
		    size_t);
static int	 key_validate_sockaddr(const uint8_t *, size_t, size_t *);
static int	 key_validate_policy(const uint8_t *, size_t);
static int	 key_check_satype(const struct sadb_msghdr *);
static int	 key_check_addresses(const struct sadb_msghdr *);
static void	 key_sa2keyaddr(const uint8_t *, struct keyaddr *);

static int (*const key_typesw[SADB_MAX + 1])(const struct sadb_msghdr *) = {
	NULL,			/* SADB_RESERVED */
	key_getspi,		/* SADB_GETSPI */
	key_update,		/* SADB_UPDATE */
	key_add,		/* SADB_ADD */
	key_delete,		/* SADB_DELETE */
	key_get,		/* SADB_GET */
	NULL,			/* SADB_ACQUIRE */
	key_register,		/* SADB_REGISTER */
	NULL,			/* SADB_EXPIRE */
	key_flush,		/* SADB_FLUSH */
	key_dump,		/* SADB_DUMP */
	NULL,			/* SADB_X_PROMISC */
	NULL,			/* SADB_X_PCHANGE */
	key_spdadd,		/* SADB_X_SPDUPDATE */
	key_spdadd,		/* SADB_X_SPDADD */
	key_spddelete,		/* SADB_X_SPDDELETE */
	key_spdget,		/* SADB_X_SPDGET */
	NULL,			/* SADB_X_SPDACQUIRE */
	key_spddump,		/* SADB_X_SPDDUMP */
	key_spdflush,		/* SADB_X_SPDFLUSH */
	key_spdadd,		/* SADB_X_SPDSETIDX */
	NULL,			/* SADB_X_SPDEXPIRE */
	key_spddelete2,		/* SADB_X_SPDDELETE2 */
};

static const char *const key_msgnames[SADB_MAX + 1] = {
	"RESERVED", "GETSPI", "UPDATE", "ADD", "DELETE", "GET", "ACQUIRE",
	"REGISTER", "EXPIRE", "FLUSH", "DUMP", "X_PROMISC", "X_PCHANGE",
	"X_SPDUPDATE", "X_SPDADD", "X_SPDDELETE", "X_SPDGET", "X_SPDACQUIRE",
	"X_SPDDUMP", "X_SPDFLUSH", "X_SPDSETIDX", "X_SPDEXPIRE",
	"X_SPDDELETE2",
};

/* Minimum and maximum extension sizes in bytes; 0 max = variable. */
static const struct {
	size_t	 min;
	size_t	 max;
} key_extsize[SADB_EXT_MAX + 1] = {
	[SADB_EXT_SA] = { sizeof(struct sadb_sa), sizeof(struct sadb_sa) },
	[SADB_EXT_LIFETIME_CURRENT] = { sizeof(struct sadb_lifetime),
	    sizeof(struct sadb_lifetime) },
	[SADB_EXT_LIFETIME_HARD] = { sizeof(struct sadb_lifetime),
	    sizeof(struct sadb_lifetime) },
	[SADB_EXT_LIFETIME_SOFT] = { sizeof(struct sadb_lifetime),
	    sizeof(struct sadb_lifetime) },
	[SADB_EXT_ADDRESS_SRC] = { sizeof(struct sadb_address), 0 },
	[SADB_EXT_ADDRESS_DST] = { sizeof(struct sadb_address), 0 },
	[SADB_EXT_ADDRESS_PROXY] = { sizeof(struct sadb_address), 0 },
	[SADB_EXT_KEY_AUTH] = { sizeof(struct sadb_key), 0 },
	[SADB_EXT_KEY_ENCRYPT] = { sizeof(struct sadb_key), 0 },
	[SADB_EXT_IDENTITY_SRC] = { 16, 0 },
	[SADB_EXT_IDENTITY_DST] = { 16, 0 },
	[SADB_EXT_SENSITIVITY] = { 16, 0 },
	[SADB_EXT_PROPOSAL] = { 8, 0 },
	[SADB_EXT_SUPPORTED_AUTH] = { sizeof(struct sadb_supported), 0 },
	[SADB_EXT_SUPPORTED_ENCRYPT] = { sizeof(struct sadb_supported), 0 },
	[SADB_EXT_SPIRANGE] = { sizeof(struct sadb_spirange),
	    sizeof(struct sadb_spirange) },
	[SADB_X_EXT_KMPRIVATE] = { 8, 0 },
	[SADB_X_EXT_POLICY] = { sizeof(struct sadb_x_policy), 0 },
	[SADB_X_EXT_SA2] = { sizeof(struct sadb_x_sa2),
	    sizeof(struct sadb_x_sa2) },
	[SADB_X_EXT_NAT_T_TYPE] = { sizeof(struct sadb_x_nat_t_type),
	    sizeof(struct sadb_x_nat_t_type) },
	[SADB_X_EXT_NAT_T_SPORT] = { sizeof(struct sadb_x_nat_t_port),
	    sizeof(struct sadb_x_nat_t_port) },
	[SADB_X_EXT_NAT_T_DPORT] = { sizeof(struct sadb_x_nat_t_port),
	    sizeof(struct sadb_x_nat_t_port) },
	[SADB_X_EXT_NAT_T_OAI] = { sizeof(struct sadb_address), 0 },
	[SADB_X_EXT_NAT_T_OAR] = { sizeof(struct sadb_address), 0 },
	[SADB_X_EXT_NAT_T_FRAG] = { 8, 8 },
};

const char *
key_msgname(int type)
{
	if (type < 0 || type > SADB_MAX)
		return ("UNKNOWN");
	return (key_msgnames[type]);
}

/*
 * Entry point for one datagram from a control socket.  Structural faults
 * are dropped with EINVAL and no reply, as KAME's key_parse does; semantic
 * faults are echoed to the sender with sadb_msg_errno set.
 */
void
key_parse(struct keycb *so, const uint8_t *buf, size_t len)
{
	struct sadb_msghdr	 mh;
	uint64_t		 unlinked;
	int			 error;

	memset(&mh, 0, sizeof(mh));
	mh.so = so;
	mh.buf = buf;
	mh.len = len;

	if (len < sizeof(struct sadb_msg)) {
		keystat.rej_short++;
		keystat.errors[EINVAL]++;
		return;
	}
	memcpy(&mh.msg, buf, sizeof(mh.msg));
	if (mh.msg.sadb_msg_version != PF_KEY_V2) {
		keystat.rej_version++;
		keystat.errors[EINVAL]++;
		return;
	}
	if (PFKEY_UNUNIT64(mh.msg.sadb_msg_len) != len) {
		keystat.rej_length++;
		keystat.errors[EINVAL]++;
		return;
	}
	if (mh.msg.sadb_msg_type > SADB_MAX) {
		key_senderror(so, &mh, EINVAL);
		return;
	}
	if (key_align(&mh) != 0) {
		keystat.errors[EINVAL]++;
		return;
	}
	keystat.msgs[mh.msg.sadb_msg_type]++;

	if ((error = key_check_satype(&mh)) != 0 ||
	    (error = key_check_addresses(&mh)) != 0) {
		key_senderror(so, &mh, error);
		return;
	}
	if (key_typesw[mh.msg.sadb_msg_type] == NULL) {
		key_senderror(so, &mh, EOPNOTSUPP);
		return;
	}
	unlinked = keystat.unlinked;
	if ((error = key_typesw[mh.msg.sadb_msg_type](&mh)) != 0)
		key_senderror(so, &mh, error);
	/* What messages themselves unlinked, apart from the timer and flows. */
	keystat.msg_unlinked += keystat.unlinked - unlinked;
}

/*
 * Walk the extensions: lengths must sum exactly to the message length;
 * an unknown or duplicate type, or a zero length, rejects the message.
 */
static int
key_align(struct sadb_msghdr *mhp)
{
	struct sadb_ext	 ext;
	size_t		 off, extlen;
	int		 error;

	for (off = sizeof(struct sadb_msg); off < mhp->len; off += extlen) {
		if (mhp->len - off < sizeof(ext)) {
			keystat.rej_ext_len++;
			return (-1);
		}
		memcpy(&ext, mhp->buf + off, sizeof(ext));
		extlen = PFKEY_UNUNIT64(ext.sadb_ext_len);
		if (extlen == 0 || extlen > mhp->len - off) {
			keystat.rej_ext_len++;
			return (-1);
		}
		if (ext.sadb_ext_type == SADB_EXT_RESERVED ||
		    ext.sadb_ext_type > SADB_EXT_MAX) {
			keystat.rej_ext_unknown++;
			return (-1);
		}
		if (mhp->extlen[ext.sadb_ext_type] != 0) {
			keystat.rej_ext_dup++;
			return (-1);
		}
		if ((error = key_validate_ext(mhp, ext.sadb_ext_type, off,
		    extlen)) != 0)
			return (-1);
		mhp->extoff[ext.sadb_ext_type] = off;
		mhp->extlen[ext.sadb_ext_type] = extlen;
	}
	return (0);
}

static int
key_validate_ext(const struct sadb_msghdr *mhp, int type, size_t off,
    size_t extlen)
{
	const uint8_t	*p = mhp->buf + off;
	struct sadb_key	 key;
	size_t		 salen;

	if (extlen < key_extsize[type].min ||
	    (key_extsize[type].max != 0 && extlen > key_extsize[type].max)) {
		keystat.rej_ext_len++;
		return (-1);
	}
	switch (type) {
	case SADB_EXT_ADDRESS_SRC:
	case SADB_EXT_ADDRESS_DST:
	case SADB_EXT_ADDRESS_PROXY:
	case SADB_X_EXT_NAT_T_OAI:
	case SADB_X_EXT_NAT_T_OAR:
		if (key_validate_sockaddr(p + sizeof(struct sadb_address),
		    extlen - sizeof(struct sadb_address), &salen) != 0 ||
		    PFKEY_ALIGN8(sizeof(struct sadb_address) + salen) !=
		    extlen) {
			keystat.rej_addr++;
			return (-1);
		}
		break;
	case SADB_EXT_KEY_AUTH:
	case SADB_EXT_KEY_ENCRYPT:
		memcpy(&key, p, sizeof(key));
		if (sizeof(key) + ((size_t)key.sadb_key_bits + 7) / 8 >
		    extlen) {
			keystat.rej_ext_len++;
			return (-1);
		}
		break;
	case SADB_X_EXT_POLICY:
		if (key_validate_policy(p, extlen) != 0) {
			keystat.rej_policy++;
			return (-1);
		}
		break;
	default:
		break;
	}
	return (0);
}

/* A BSD sockaddr: sa_len first, then a one-byte family. */
static int
key_validate_sockaddr(const uint8_t *p, size_t avail, size_t *salen)
{
	if (avail < 2)
		return (-1);
	switch (p[1]) {
	case BSD_AF_INET:
		if (p[0] != BSD_SIN_LEN)
			return (-1);
		break;
	case BSD_AF_INET6:
		if (p[0] != BSD_SIN6_LEN)
			return (-1);
		break;
	default:
		return (-1);
	}
	if (p[0] > avail)
		return (-1);
	*salen = p[0];
	return (0);
}

/* The request list: each length in bytes, 8-aligned, inside the ext. */
static int
key_validate_policy(const uint8_t *p, size_t extlen)
{
	struct sadb_x_ipsecrequest	 xisr;
	size_t				 off, rlen, a, b;

	for (off = sizeof(struct sadb_x_policy); off < extlen; off += rlen) {
		if (extlen - off < sizeof(xisr))
			return (-1);
		memcpy(&xisr, p + off, sizeof(xisr));
		rlen = xisr.sadb_x_ipsecrequest_len;
		if (rlen < sizeof(xisr) || rlen > extlen - off ||
		    rlen % 8 != 0)
			return (-1);
		if (rlen == sizeof(xisr))
			continue;
		/* Tunnel endpoints: two sockaddrs that fit the request. */
		if (key_validate_sockaddr(p + off + sizeof(xisr),
		    rlen - sizeof(xisr), &a) != 0)
			return (-1);
		if (key_validate_sockaddr(p + off + sizeof(xisr) + a,
		    rlen - sizeof(xisr) - a, &b) != 0)
			return (-1);
		if (PFKEY_ALIGN8(sizeof(xisr) + a + b) != rlen)
			return (-1);
	}
	return (0);
}

static int
key_is_spdmsg(int type)
{
	return (type >= SADB_X_SPDUPDATE && type <= SADB_X_SPDDELETE2);
}

static int
key_check_satype(const struct sadb_msghdr *mhp)
{
	int	 type = mhp->msg.sadb_msg_type;
	int	 satype = mhp->msg.sadb_msg_satype;

	if (key_is_spdmsg(type))
		return (satype == SADB_SATYPE_UNSPEC ? 0 : EINVAL);
	switch (satype) {
	case SADB_SATYPE_UNSPEC:
		switch (type) {
		case SADB_GETSPI:
		case SADB_UPDATE:
		case SADB_ADD:
		case SADB_DELETE:
		case SADB_GET:
		case SADB_ACQUIRE:
		case SADB_EXPIRE:
			return (EINVAL);
		}
		return (0);
	case SADB_SATYPE_AH:
	case SADB_SATYPE_ESP:
	case SADB_X_SATYPE_IPCOMP:
		return (0);
	default:
		return (EINVAL);
	}
}

/* src and dst must agree on family and upper layer; prefixes must fit. */
static int
key_check_addresses(const struct sadb_msghdr *mhp)
{
	struct keyaddr	 src, dst;
	uint8_t		 sproto, dproto;
	int		 hs, hd;

	hs = key_getaddr(mhp, SADB_EXT_ADDRESS_SRC, &src, &sproto) == 0;
	hd = key_getaddr(mhp, SADB_EXT_ADDRESS_DST, &dst, &dproto) == 0;
	if (hs && src.ka_plen > key_addr_bits(src.ka_family))
		return (EINVAL);
	if (hd && dst.ka_plen > key_addr_bits(dst.ka_family))
		return (EINVAL);
	if (hs && hd) {
		if (src.ka_family != dst.ka_family)
			return (EINVAL);
		if (sproto != dproto)
			return (EINVAL);
	}
	return (0);
}

int
key_getext(const struct sadb_msghdr *mhp, int type, void *dst, size_t len)
{
	size_t	 n;

	if (type <= 0 || type > SADB_EXT_MAX || mhp->extlen[type] == 0) {
		memset(dst, 0, len);
		return (0);
	}
	n = mhp->extlen[type] < len ? mhp->extlen[type] : len;
	memcpy(dst, mhp->buf + mhp->extoff[type], n);
	if (n < len)
		memset((uint8_t *)dst + n, 0, len - n);
	return ((int)mhp->extlen[type]);
}

/* BSD sockaddr bytes (validated) to a keyaddr; the port stays in net order. */
static void
key_sa2keyaddr(const uint8_t *sa, struct keyaddr *ka)
{
	memset(ka, 0, sizeof(*ka));
	if (sa[1] == BSD_AF_INET) {
		ka->ka_family = AF_INET;
		memcpy(&ka->ka_port, sa + 2, 2);
		memcpy(ka->ka_addr, sa + 4, 4);
	} else {
		ka->ka_family = AF_INET6;
		memcpy(&ka->ka_port, sa + 2, 2);
		memcpy(ka->ka_addr, sa + 8, 16);
	}
}

int
key_getaddr(const struct sadb_msghdr *mhp, int type, struct keyaddr *ka,
    uint8_t *proto)
{
	struct sadb_address	 addr;
	const uint8_t		*p;

	if (mhp->extlen[type] == 0)
		return (-1);
	p = mhp->buf + mhp->extoff[type];
	memcpy(&addr, p, sizeof(addr));
	key_sa2keyaddr(p + sizeof(addr), ka);
	ka->ka_plen = addr.sadb_address_prefixlen;
	if (proto != NULL)
		*proto = addr.sadb_address_proto;
	return (0);
}

static uint16_t
key_newreqid(void)
{
	static uint16_t	 auto_reqid = 0x3fff;	/* manual ids stop here */

	if (++auto_reqid == 0)
		auto_reqid = 0x4000;
	return (auto_reqid);
}

/*
 * key_msg2sp: the X_POLICY extension into sp (type, dir, id, requests).
 * Returns 0 or an errno to echo.
 */
int
key_getpolicy(const struct sadb_msghdr *mhp, struct secpolicy *sp)
{
	struct sadb_x_policy		 xpl;
	struct sadb_x_ipsecrequest	 xisr;
	struct ipsecrequest		*isr;
	const uint8_t			*p;
	size_t				 off, extlen;

	if ((extlen = mhp->extlen[SADB_X_EXT_POLICY]) == 0)
		return (EINVAL);
	p = mhp->buf + mhp->extoff[SADB_X_EXT_POLICY];
	memcpy(&xpl, p, sizeof(xpl));
	sp->policy = xpl.sadb_x_policy_type;
	sp->id = xpl.sadb_x_policy_id;
	sp->nreq = 0;
	switch (sp->policy) {
	case IPSEC_POLICY_DISCARD:
	case IPSEC_POLICY_NONE:
		return (0);
	case IPSEC_POLICY_IPSEC:
		break;
	default:			/* ENTRUST, BYPASS, unknown */
		return (EINVAL);
	}
	for (off = sizeof(xpl); off < extlen;
	    off += xisr.sadb_x_ipsecrequest_len) {
		memcpy(&xisr, p + off, sizeof(xisr));
		if (sp->nreq == KEY_MAXREQ)
			return (EINVAL);
		isr = &sp->req[sp->nreq++];
		memset(isr, 0, sizeof(*isr));
		isr->proto = xisr.sadb_x_ipsecrequest_proto;
		isr->mode = xisr.sadb_x_ipsecrequest_mode;
		isr->level = xisr.sadb_x_ipsecrequest_level;
		isr->reqid = xisr.sadb_x_ipsecrequest_reqid;
		if (isr->proto != IPPROTO_ESP && isr->proto != IPPROTO_AH &&
		    isr->proto != IPPROTO_IPCOMP_)
			return (EINVAL);
		if (isr->mode != IPSEC_MODE_TRANSPORT &&
		    isr->mode != IPSEC_MODE_TUNNEL)
			return (EINVAL);
		if (isr->level > IPSEC_LEVEL_UNIQUE)
			return (EINVAL);
		if (isr->level == IPSEC_LEVEL_UNIQUE && isr->reqid == 0)
			isr->reqid = key_newreqid();
		if (xisr.sadb_x_ipsecrequest_len > sizeof(xisr)) {
			key_sa2keyaddr(p + off + sizeof(xisr), &isr->tsrc);
			key_sa2keyaddr(p + off + sizeof(xisr) +
			    p[off + sizeof(xisr)], &isr->tdst);
		}
	}
	if (sp->nreq == 0)
		return (EINVAL);
	return (0);
}

/*
 * key_register: remember the socket wants ACQUIRE/EXPIRE for satype, and
 * answer with the algorithms we support, as RFC 2367 §3.1.2 says.
 */
static int
key_register(const struct sadb_msghdr *mhp)
{
	static const struct sadb_alg	 aalgs[] = {
		{ SADB_AALG_SHA1HMAC, 0, 160, 160, 0 },
		{ SADB_X_AALG_SHA2_256, 0, 256, 256, 0 },
		{ SADB_X_AALG_SHA2_384, 0, 384, 384, 0 },
		{ SADB_X_AALG_SHA2_512, 0, 512, 512, 0 },
	}, ealgs[] = {
		{ SADB_EALG_NULL, 0, 0, 2048, 0 },
		{ SADB_X_EALG_AES, 16, 128, 256, 0 },
		{ SADB_X_EALG_AESGCM8, 8, 160, 288, 0 },
		{ SADB_X_EALG_AESGCM12, 8, 160, 288, 0 },
		{ SADB_X_EALG_AESGCM16, 8, 160, 288, 0 },
	};
	struct sadb_supported	 sup;
	struct kbuf		 kb;
	int			 satype = mhp->msg.sadb_msg_satype;

	if (satype != SADB_SATYPE_UNSPEC)
		mhp->so->registered |= 1U << satype;
	kbuf_init(&kb, &mhp->msg);
	memset(&sup, 0, sizeof(sup));
	sup.sadb_supported_len = PFKEY_UNIT64(sizeof(sup) + sizeof(aalgs));
	sup.sadb_supported_exttype = SADB_EXT_SUPPORTED_AUTH;
	/* Header and sadb_alg entries are 8-byte multiples: no padding. */
	kbuf_append(&kb, &sup, sizeof(sup));
	kbuf_append(&kb, aalgs, sizeof(aalgs));
	sup.sadb_supported_len = PFKEY_UNIT64(sizeof(sup) + sizeof(ealgs));
	sup.sadb_supported_exttype = SADB_EXT_SUPPORTED_ENCRYPT;
	kbuf_append(&kb, &sup, sizeof(sup));
	kbuf_append(&kb, ealgs, sizeof(ealgs));
	key_sendup(mhp->so, &kb, satype == SADB_SATYPE_UNSPEC ?
	    KEY_SENDUP_ONE : KEY_SENDUP_REGISTERED);
	return (0);
}

int
key_senderror(struct keycb *so, const struct sadb_msghdr *mhp, int error)
{
	struct kbuf	 kb;

	if (error > 0 && error < 256)
		keystat.errors[error]++;
	if (so == NULL)
		return (0);
	kbuf_init(&kb, &mhp->msg);
	((struct sadb_msg *)(void *)kb.data)->sadb_msg_errno = (uint8_t)error;
	key_sendup(so, &kb, KEY_SENDUP_ONE);
	return (0);
}

/* The reply starts as a copy of the request header. */
void
kbuf_init(struct kbuf *kb, const struct sadb_msg *msg)
{
	struct sadb_msg	 hdr;

	memset(kb, 0, sizeof(*kb));
	hdr = *msg;
	hdr.sadb_msg_errno = 0;
	hdr.sadb_msg_len = PFKEY_UNIT64(sizeof(hdr));
	kbuf_append(kb, &hdr, sizeof(hdr));
}

void
kbuf_append(struct kbuf *kb, const void *p, size_t len)
{
	size_t	 plen = PFKEY_ALIGN8(len), ncap;
	uint8_t	*nd;

	if (kb->error)
		return;
	if (kb->len + plen > kb->cap) {
		ncap = kb->cap == 0 ? 256 : kb->cap;
		while (ncap < kb->len + plen)
			ncap *= 2;
		if ((nd = realloc(kb->data, ncap)) == NULL) {
			kb->error = ENOBUFS;
			return;
		}
		kb->data = nd;
		kb->cap = ncap;
	}
	memcpy(kb->data + kb->len, p, len);
	memset(kb->data + kb->len + len, 0, plen - len);
	kb->len += plen;
}

static size_t
key_keyaddr2sa(const struct keyaddr *ka, uint8_t *sa)
{
	if (ka->ka_family == AF_INET6) {
		memset(sa, 0, BSD_SIN6_LEN);
		sa[0] = BSD_SIN6_LEN;
		sa[1] = BSD_AF_INET6;
		memcpy(sa + 2, &ka->ka_port, 2);
		memcpy(sa + 8, ka->ka_addr, 16);
		return (BSD_SIN6_LEN);
	}
	memset(sa, 0, BSD_SIN_LEN);
	sa[0] = BSD_SIN_LEN;
	sa[1] = BSD_AF_INET;
	memcpy(sa + 2, &ka->ka_port, 2);
	memcpy(sa + 4, ka->ka_addr, 4);
	return (BSD_SIN_LEN);
}

void
kbuf_addaddr(struct kbuf *kb, int exttype, const struct keyaddr *ka,
    uint8_t proto)
{
	struct sadb_address	 addr;
	uint8_t			 buf[sizeof(addr) + BSD_SIN6_LEN];
	size_t			 salen;

	salen = key_keyaddr2sa(ka, buf + sizeof(addr));
	memset(&addr, 0, sizeof(addr));
	addr.sadb_address_len = PFKEY_UNIT64(PFKEY_ALIGN8(sizeof(addr) +
	    salen));
	addr.sadb_address_exttype = exttype;
	addr.sadb_address_proto = proto;
	addr.sadb_address_prefixlen = ka->ka_plen;
	memcpy(buf, &addr, sizeof(addr));
	kbuf_append(kb, buf, sizeof(addr) + salen);
}

void
kbuf_addlifetime(struct kbuf *kb, int exttype, uint32_t allocations,
    uint64_t bytes, uint64_t addtime, uint64_t usetime)
{
	struct sadb_lifetime	 lft;

	memset(&lft, 0, sizeof(lft));
	lft.sadb_lifetime_len = PFKEY_UNIT64(sizeof(lft));
	lft.sadb_lifetime_exttype = exttype;
	lft.sadb_lifetime_allocations = allocations;
	lft.sadb_lifetime_bytes = bytes;
	lft.sadb_lifetime_addtime = addtime;
	lft.sadb_lifetime_usetime = usetime;
	kbuf_append(kb, &lft, sizeof(lft));
}

/* key_sp2msg: a policy as an X_POLICY extension with its requests. */
void
kbuf_addpolicy(struct kbuf *kb, const struct secpolicy *sp)
{
	struct sadb_x_policy		 xpl;
	struct sadb_x_ipsecrequest	 xisr;
	const struct ipsecrequest	*isr;
	uint8_t				 buf[sizeof(xpl) + KEY_MAXREQ *
					    (sizeof(xisr) + 2 * BSD_SIN6_LEN)];
	size_t				 off, a, b;
	int				 i;

	off = sizeof(xpl);
	for (i = 0; i < sp->nreq; i++) {
		isr = &sp->req[i];
		a = b = 0;
		if (isr->tsrc.ka_family != 0 && isr->tdst.ka_family != 0) {
			a = key_keyaddr2sa(&isr->tsrc, buf + off +
			    sizeof(xisr));
			b = key_keyaddr2sa(&isr->tdst, buf + off +
			    sizeof(xisr) + a);
		}
		memset(&xisr, 0, sizeof(xisr));
		xisr.sadb_x_ipsecrequest_len = (uint16_t)PFKEY_ALIGN8(
		    sizeof(xisr) + a + b);
		xisr.sadb_x_ipsecrequest_proto = isr->proto;
		xisr.sadb_x_ipsecrequest_mode = isr->mode;
		xisr.sadb_x_ipsecrequest_level = isr->level;
		xisr.sadb_x_ipsecrequest_reqid = isr->reqid;
		memcpy(buf + off, &xisr, sizeof(xisr));
		memset(buf + off + sizeof(xisr) + a + b, 0,
		    xisr.sadb_x_ipsecrequest_len - sizeof(xisr) - a - b);
		off += xisr.sadb_x_ipsecrequest_len;
	}
	memset(&xpl, 0, sizeof(xpl));
	xpl.sadb_x_policy_len = PFKEY_UNIT64(off);
	xpl.sadb_x_policy_exttype = SADB_X_EXT_POLICY;
	xpl.sadb_x_policy_type = (uint16_t)sp->policy;
	xpl.sadb_x_policy_dir = sp->spidx.dir;
	xpl.sadb_x_policy_id = sp->id;
	memcpy(buf, &xpl, sizeof(xpl));
	kbuf_append(kb, buf, off);
}

void
kbuf_free(struct kbuf *kb)
{
	free(kb->data);
	memset(kb, 0, sizeof(*kb));
}

/*
 * Deliver one message.  The sender of a request gets its answer even if
 * that means waiting briefly for room; anyone else whose buffer is full
 * loses the message, and we count it, as key_sendup_mbuf does.
 */
static void
key_sendup_one(struct keycb *kp, const struct kbuf *kb, int wait)
{
	struct pollfd	 pfd;
	ssize_t		 n;
	int		 tries;

	for (tries = 0; tries < 50; tries++) {
		n = send(kp->fd, kb->data, kb->len, MSG_DONTWAIT |
		    MSG_NOSIGNAL);
		if (n == (ssize_t)kb->len)
			return;
		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK) ||
		    !wait)
			break;
		pfd.fd = kp->fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, 100) < 0)
			break;
	}
	kp->drops++;
	keystat.sendup_drops++;
}

void
key_sendup(struct keycb *so, struct kbuf *kb, int target)
{
	struct keycb	*kp;
	struct sadb_msg	 hdr;
	uint32_t	 bit;

	if (kb->error != 0 || kb->len > 0xffff * 8) {
		log_warnx("%s: reply too large or out of memory", __func__);
		kbuf_free(kb);
		return;
	}
	memcpy(&hdr, kb->data, sizeof(hdr));
	hdr.sadb_msg_len = (uint16_t)PFKEY_UNIT64(kb->len);
	memcpy(kb->data, &hdr, sizeof(hdr));

	switch (target) {
	case KEY_SENDUP_ONE:
		if (so != NULL)
			key_sendup_one(so, kb, 1);
		break;
	case KEY_SENDUP_ALL:
		TAILQ_FOREACH(kp, &keycbs, entry)
			key_sendup_one(kp, kb, kp == so);
		break;
	case KEY_SENDUP_REGISTERED:
		/* Registered for this satype; an SPD message goes to any. */
		bit = hdr.sadb_msg_satype == SADB_SATYPE_UNSPEC ? ~0U :
		    1U << hdr.sadb_msg_satype;
		TAILQ_FOREACH(kp, &keycbs, entry)
			if (kp->registered & bit)
				key_sendup_one(kp, kb, kp == so);
		break;
	}
	kbuf_free(kb);
}

struct keycb *
key_attach(int fd)
{
	struct keycb	*kp;

	if (nkeycbs >= KEY_MAXCLIENTS)
		return (NULL);
	if ((kp = calloc(1, sizeof(*kp))) == NULL)
		return (NULL);
	kp->fd = fd;
	TAILQ_INSERT_TAIL(&keycbs, kp, entry);
	nkeycbs++;
	return (kp);
}

void
key_detach(struct keycb *kp)
{
	TAILQ_REMOVE(&keycbs, kp, entry);
	nkeycbs--;
	close(kp->fd);
	free(kp);
}

int
key_nclients(void)
{
	return (nkeycbs);
}

void
key_client_fds(int *fds, int max)
{
	struct keycb	*kp;
	int		 i = 0;

	TAILQ_FOREACH(kp, &keycbs, entry) {
		if (i == max)
			break;
		fds[i++] = kp->fd;
	}
}

struct keycb *
key_client_byfd(int fd)
{
	struct keycb	*kp;

	TAILQ_FOREACH(kp, &keycbs, entry)
		if (kp->fd == fd)
			return (kp);
	return (NULL);
}

void
key_shutdown(void)
{
	struct keycb	*kp;

	while ((kp = TAILQ_FIRST(&keycbs)) != NULL)
		key_detach(kp);
}
