/*
 * The security association database and its PF_KEY handlers, after KAME
 * netkey key.c: GETSPI, UPDATE, ADD, DELETE, GET, FLUSH, DUMP, and the SA
 * lifetimes with SADB_EXPIRE.
 *
 * SAs hang off a hash by SPI for the packet path and off one tail queue in
 * insertion order for DUMP and the timer.  Nothing on the packet path keeps
 * a pointer to an SA across packets, so an SA is freed as soon as it dies.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/queue.h>

#include <netinet/in.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netkeyd.h"

#define SAHASH_BITS		12
#define SAHASH_SIZE		(1U << SAHASH_BITS)

#define KEY_LARVAL_LIFETIME	30	/* seconds a GETSPI SA may stay LARVAL */
#define KEY_SPI_MINVAL		0x100
#define KEY_SPI_MAXVAL		0x0fffffff
#define KEY_SPI_TRYCNT		1000

#define KEY_MAXKEYBYTES		64	/* longest key of any supported alg */

/* What key_setdumpsa() puts beyond SA, SA2, HARD, SOFT and addresses. */
#define DUMP_CURRENT		0x01
#define DUMP_KEYS		0x02

LIST_HEAD(sahashhead, secasvar);
TAILQ_HEAD(satailhead, secasvar);

static struct sahashhead	 sahash[SAHASH_SIZE];
static struct satailhead	 satailq = TAILQ_HEAD_INITIALIZER(satailq);

static unsigned int	 key_sahash(uint32_t);
static int		 key_satype2proto(uint8_t);
static uint8_t		 key_proto2satype(uint8_t);
static int		 key_addreq(const struct keyaddr *,
			    const struct keyaddr *);
static struct secasvar	*key_sa_lookup_satype(const struct keyaddr *,
			    uint32_t, uint8_t);
static void		 key_sa_insert(struct secasvar *);
static void		 key_sa_unlink(struct secasvar *);
static void		 key_sa_destroy(struct secasvar *);
static void		 key_sa_free(struct secasvar *);
static void		 key_sa_replace(struct secasvar *, struct secasvar *);
static int		 key_msgspi(const struct sadb_msghdr *, uint32_t *);
static int		 key_setsaaddrs(const struct sadb_msghdr *,
			    struct secasvar *);
static int		 key_setsakey(const struct sadb_msghdr *, int,
			    uint8_t **, size_t *);
static int		 key_setsaval(const struct sadb_msghdr *,
			    struct secasvar *);
static struct secasvar	*key_newsav(const struct sadb_msghdr *, int *);
static int		 key_sa_lifeover(const struct secasvar *,
			    const struct sadb_lifetime *);
static int		 key_lft_isset(const struct sadb_lifetime *);
static void		 key_addsa(struct kbuf *, const struct secasvar *);
static void		 key_addsa2(struct kbuf *, const struct secasvar *);
static void		 key_addkey(struct kbuf *, int, const uint8_t *,
			    size_t);
static void		 key_addnatt(struct kbuf *, const struct secasvar *);
static void		 key_setdumpsa(struct kbuf *, const struct secasvar *,
			    int);
static void		 key_expire(struct secasvar *, int);
static uint32_t		 key_do_getnewspi(const struct sadb_msghdr *,
			    const struct keyaddr *, uint8_t);
static int		 key_delete_all(const struct sadb_msghdr *);

void
key_sad_init(void)
{
	unsigned int	 i;

	for (i = 0; i < SAHASH_SIZE; i++)
		LIST_INIT(&sahash[i]);
	TAILQ_INIT(&satailq);
	keystat.sas = 0;
}

static unsigned int
key_sahash(uint32_t spi)
{
	return ((ntohl(spi) * 2654435761U) >> (32 - SAHASH_BITS));
}

/* PF_KEY satype to IP protocol; 0 if there is none. */
static int
key_satype2proto(uint8_t satype)
{
	switch (satype) {
	case SADB_SATYPE_ESP:
		return (IPPROTO_ESP);
	case SADB_SATYPE_AH:
		return (IPPROTO_AH);
	case SADB_X_SATYPE_IPCOMP:
		return (IPPROTO_IPCOMP_);
	default:
		return (0);
	}
}

static uint8_t
key_proto2satype(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_ESP:
		return (SADB_SATYPE_ESP);
	case IPPROTO_AH:
		return (SADB_SATYPE_AH);
	case IPPROTO_IPCOMP_:
		return (SADB_X_SATYPE_IPCOMP);
	default:
		return (SADB_SATYPE_UNSPEC);
	}
}

/* Addresses compare equal on family and address; ports do not matter. */
static int
key_addreq(const struct keyaddr *a, const struct keyaddr *b)
{
	size_t	 len;

	if (a->ka_family != b->ka_family)
		return (0);
	len = a->ka_family == AF_INET ? 4 : sizeof(a->ka_addr);
	return (memcmp(a->ka_addr, b->ka_addr, len) == 0);
}

static struct secasvar *
key_sa_lookup_satype(const struct keyaddr *dst, uint32_t spi, uint8_t satype)
{
	struct secasvar	*sav;

	LIST_FOREACH(sav, &sahash[key_sahash(spi)], hash) {
		if (sav->spi == spi && sav->satype == satype &&
		    key_addreq(&sav->dst, dst))
			return (sav);
	}
	return (NULL);
}

/*
 * Any SA for (dst, SPI, IP protocol), whatever its state: ESP input uses
 * it to tell "no SA" from "SA not usable".
 */
struct secasvar *
key_sa_lookup(const struct keyaddr *dst, uint32_t spi, uint8_t proto)
{
	uint8_t	 satype;

	if ((satype = key_proto2satype(proto)) == SADB_SATYPE_UNSPEC)
		return (NULL);
	return (key_sa_lookup_satype(dst, spi, satype));
}

/* The SA for (dst, SPI, IP protocol) if it may carry traffic. */
struct secasvar *
key_allocsa(const struct keyaddr *dst, uint32_t spi, uint8_t proto)
{
	struct secasvar	*sav;

	if ((sav = key_sa_lookup(dst, spi, proto)) == NULL)
		return (NULL);
	if (sav->state != SADB_SASTATE_MATURE &&
	    sav->state != SADB_SASTATE_DYING)
		return (NULL);
	return (sav);
}

static void
key_sa_insert(struct secasvar *sav)
{
	LIST_INSERT_HEAD(&sahash[key_sahash(sav->spi)], sav, hash);
	TAILQ_INSERT_TAIL(&satailq, sav, all);
	keystat.sas++;
}

static void
key_sa_unlink(struct secasvar *sav)
{
	LIST_REMOVE(sav, hash);
	TAILQ_REMOVE(&satailq, sav, all);
	keystat.sas--;
}

/* Free an SA that is on no list. */
static void
key_sa_destroy(struct secasvar *sav)
{
	esp_sa_teardown(sav);
	if (sav->key_auth != NULL) {
		explicit_bzero(sav->key_auth, (sav->key_auth_bits + 7) / 8);
		free(sav->key_auth);
	}
	if (sav->key_enc != NULL) {
		explicit_bzero(sav->key_enc, (sav->key_enc_bits + 7) / 8);
		free(sav->key_enc);
	}
	explicit_bzero(sav, sizeof(*sav));
	free(sav);
}

static void
key_sa_free(struct secasvar *sav)
{
	sav->state = SADB_SASTATE_DEAD;
	key_sa_unlink(sav);
	key_sa_destroy(sav);
}

/* Put nsav where osav was, in the hash and in dump order; free osav. */
static void
key_sa_replace(struct secasvar *osav, struct secasvar *nsav)
{
	LIST_INSERT_BEFORE(osav, nsav, hash);
	LIST_REMOVE(osav, hash);
	TAILQ_INSERT_AFTER(&satailq, osav, nsav, all);
	TAILQ_REMOVE(&satailq, osav, all);
	osav->state = SADB_SASTATE_DEAD;
	key_sa_destroy(osav);
}

static int
key_setsaaddrs(const struct sadb_msghdr *mhp, struct secasvar *sav)
{
	uint8_t	 proto;

	if (key_getaddr(mhp, SADB_EXT_ADDRESS_SRC, &sav->src, &proto) == -1 ||
	    key_getaddr(mhp, SADB_EXT_ADDRESS_DST, &sav->dst, &proto) == -1)
		return (EINVAL);
	if (sav->src.ka_family != sav->dst.ka_family)
		return (EINVAL);
	sav->src.ka_plen = sav->dst.ka_plen =
	    sav->dst.ka_family == AF_INET ? 32 : 128;
	return (0);
}

/*
 * Copy a KEY_AUTH or KEY_ENCRYPT extension out.  An absent extension
 * leaves *keyp NULL and *bitsp 0.
 */
static int
key_setsakey(const struct sadb_msghdr *mhp, int exttype, uint8_t **keyp,
    size_t *bitsp)
{
	uint8_t		 buf[sizeof(struct sadb_key) + KEY_MAXKEYBYTES];
	struct sadb_key	 key;
	size_t		 bytes;
	int		 extlen, error = EINVAL;

	*keyp = NULL;
	*bitsp = 0;
	if ((extlen = key_getext(mhp, exttype, buf, sizeof(buf))) == 0)
		return (0);
	if ((size_t)extlen < sizeof(key) || (size_t)extlen > sizeof(buf))
		goto done;
	memcpy(&key, buf, sizeof(key));
	bytes = key.sadb_key_bits / 8;
	if (key.sadb_key_bits % 8 != 0 || sizeof(key) + bytes > (size_t)extlen)
		goto done;
	if (bytes != 0) {
		if ((*keyp = malloc(bytes)) == NULL) {
			error = ENOBUFS;
			goto done;
		}
		memcpy(*keyp, buf + sizeof(key), bytes);
	}
	*bitsp = key.sadb_key_bits;
	error = 0;
 done:
	explicit_bzero(buf, sizeof(buf));
	return (error);
}

/* Fill an SA from an ADD or UPDATE message (KAME key_setsaval). */
static int
key_setsaval(const struct sadb_msghdr *mhp, struct secasvar *sav)
{
	struct sadb_x_nat_t_type	 ntype;
	struct sadb_x_nat_t_port	 nport;
	struct sadb_x_sa2		 sa2;
	struct sadb_sa			 sa0;
	int				 error;

	if (key_getext(mhp, SADB_EXT_SA, &sa0, sizeof(sa0)) <
	    (int)sizeof(sa0))
		return (EINVAL);
	sav->spi = sa0.sadb_sa_spi;
	sav->replay = sa0.sadb_sa_replay;
	sav->alg_auth = sa0.sadb_sa_auth;
	sav->alg_enc = sa0.sadb_sa_encrypt;
	sav->flags = sa0.sadb_sa_flags;
	if (key_getext(mhp, SADB_X_EXT_SA2, &sa2, sizeof(sa2)) != 0) {
		if (sa2.sadb_x_sa2_mode > IPSEC_MODE_TUNNEL)
			return (EINVAL);
		sav->mode = sa2.sadb_x_sa2_mode;
		sav->reqid = sa2.sadb_x_sa2_reqid;
	}
	key_getext(mhp, SADB_EXT_LIFETIME_HARD, &sav->lft_h,
	    sizeof(sav->lft_h));
	key_getext(mhp, SADB_EXT_LIFETIME_SOFT, &sav->lft_s,
	    sizeof(sav->lft_s));
	if (key_getext(mhp, SADB_X_EXT_NAT_T_TYPE, &ntype, sizeof(ntype)) != 0)
		sav->natt_type = ntype.sadb_x_nat_t_type_type;
	if (key_getext(mhp, SADB_X_EXT_NAT_T_SPORT, &nport, sizeof(nport)) != 0)
		sav->natt_sport = nport.sadb_x_nat_t_port_port;
	if (key_getext(mhp, SADB_X_EXT_NAT_T_DPORT, &nport, sizeof(nport)) != 0)
		sav->natt_dport = nport.sadb_x_nat_t_port_port;

	if ((error = key_setsakey(mhp, SADB_EXT_KEY_AUTH, &sav->key_auth,
	    &sav->key_auth_bits)) != 0)
		return (error);
	if ((error = key_setsakey(mhp, SADB_EXT_KEY_ENCRYPT, &sav->key_enc,
	    &sav->key_enc_bits)) != 0)
		return (error);

	switch (sav->satype) {
	case SADB_SATYPE_ESP:
		/* An encryption key is needed unless the algorithm is NULL. */
		if (sav->alg_enc != SADB_EALG_NULL &&
		    mhp->extlen[SADB_EXT_KEY_ENCRYPT] == 0)
			return (EINVAL);
		break;
	case SADB_SATYPE_AH:
		if (mhp->extlen[SADB_EXT_KEY_AUTH] == 0)
			return (EINVAL);
		break;
	default:
		return (EINVAL);
	}
	if (esp_alg_check(sav->satype, sav->alg_enc, sav->key_enc_bits,
	    sav->alg_auth, sav->key_auth_bits) == -1)
		return (EINVAL);
	return (0);
}

/* A new, unlinked SA from an ADD or UPDATE message, crypto ready. */
static struct secasvar *
key_newsav(const struct sadb_msghdr *mhp, int *errp)
{
	struct secasvar	*sav;
	int		 error;

	if ((sav = calloc(1, sizeof(*sav))) == NULL) {
		*errp = ENOBUFS;
		return (NULL);
	}
	sav->satype = mhp->msg.sadb_msg_satype;
	sav->seq = mhp->msg.sadb_msg_seq;
	sav->pid = mhp->msg.sadb_msg_pid;
	sav->lft_c.sadb_lifetime_addtime = key_now;
	if ((error = key_setsaaddrs(mhp, sav)) != 0 ||
	    (error = key_setsaval(mhp, sav)) != 0)
		goto fail;
	if (sav->satype == SADB_SATYPE_ESP && esp_sa_setup(sav) == -1) {
		error = EINVAL;
		goto fail;
	}
	sav->state = SADB_SASTATE_MATURE;
	return (sav);

 fail:
	key_sa_destroy(sav);
	*errp = error;
	return (NULL);
}

/* The SPI a message names, or 0 with no (or a short) SA extension. */
static int
key_msgspi(const struct sadb_msghdr *mhp, uint32_t *spip)
{
	struct sadb_sa	 sa0;

	if (key_getext(mhp, SADB_EXT_SA, &sa0, sizeof(sa0)) <
	    (int)sizeof(sa0))
		return (-1);
	*spip = sa0.sadb_sa_spi;
	return (0);
}

static void
key_addsa(struct kbuf *kb, const struct secasvar *sav)
{
	struct sadb_sa	 sa;

	memset(&sa, 0, sizeof(sa));
	sa.sadb_sa_len = PFKEY_UNIT64(sizeof(sa));
	sa.sadb_sa_exttype = SADB_EXT_SA;
	sa.sadb_sa_spi = sav->spi;
	sa.sadb_sa_replay = sav->replay;
	sa.sadb_sa_state = sav->state;
	sa.sadb_sa_auth = sav->alg_auth;
	sa.sadb_sa_encrypt = sav->alg_enc;
	sa.sadb_sa_flags = sav->flags;
	kbuf_append(kb, &sa, sizeof(sa));
}

static void
key_addsa2(struct kbuf *kb, const struct secasvar *sav)
{
	struct sadb_x_sa2	 sa2;

	memset(&sa2, 0, sizeof(sa2));
	sa2.sadb_x_sa2_len = PFKEY_UNIT64(sizeof(sa2));
	sa2.sadb_x_sa2_exttype = SADB_X_EXT_SA2;
	sa2.sadb_x_sa2_mode = sav->mode;
	sa2.sadb_x_sa2_sequence = (uint32_t)sav->replay_top;
	sa2.sadb_x_sa2_reqid = sav->reqid;
	kbuf_append(kb, &sa2, sizeof(sa2));
}

static void
key_addkey(struct kbuf *kb, int exttype, const uint8_t *key, size_t bits)
{
	uint8_t		 buf[sizeof(struct sadb_key) + KEY_MAXKEYBYTES];
	struct sadb_key	 k;
	size_t		 bytes = (bits + 7) / 8;

	if (bytes > KEY_MAXKEYBYTES)
		return;
	memset(&k, 0, sizeof(k));
	k.sadb_key_len = PFKEY_UNIT64(PFKEY_ALIGN8(sizeof(k) + bytes));
	k.sadb_key_exttype = exttype;
	k.sadb_key_bits = bits;
	memcpy(buf, &k, sizeof(k));
	if (bytes > 0)
		memcpy(buf + sizeof(k), key, bytes);
	kbuf_append(kb, buf, sizeof(k) + bytes);
	explicit_bzero(buf, sizeof(buf));
}

static void
key_addnatt(struct kbuf *kb, const struct secasvar *sav)
{
	struct sadb_x_nat_t_type	 ntype;
	struct sadb_x_nat_t_port	 nport;

	if (sav->natt_type == 0)
		return;
	memset(&ntype, 0, sizeof(ntype));
	ntype.sadb_x_nat_t_type_len = PFKEY_UNIT64(sizeof(ntype));
	ntype.sadb_x_nat_t_type_exttype = SADB_X_EXT_NAT_T_TYPE;
	ntype.sadb_x_nat_t_type_type = sav->natt_type;
	kbuf_append(kb, &ntype, sizeof(ntype));
	memset(&nport, 0, sizeof(nport));
	nport.sadb_x_nat_t_port_len = PFKEY_UNIT64(sizeof(nport));
	nport.sadb_x_nat_t_port_exttype = SADB_X_EXT_NAT_T_SPORT;
	nport.sadb_x_nat_t_port_port = sav->natt_sport;
	kbuf_append(kb, &nport, sizeof(nport));
	nport.sadb_x_nat_t_port_exttype = SADB_X_EXT_NAT_T_DPORT;
	nport.sadb_x_nat_t_port_port = sav->natt_dport;
	kbuf_append(kb, &nport, sizeof(nport));
}

static int
key_lft_isset(const struct sadb_lifetime *lft)
{
	return (lft->sadb_lifetime_allocations != 0 ||
	    lft->sadb_lifetime_bytes != 0 ||
	    lft->sadb_lifetime_addtime != 0 ||
	    lft->sadb_lifetime_usetime != 0);
}

/* The SA's extensions in KAME dump order (key_setdumpsa). */
static void
key_setdumpsa(struct kbuf *kb, const struct secasvar *sav, int what)
{
	const struct sadb_lifetime	*l;

	key_addsa(kb, sav);
	key_addsa2(kb, sav);
	l = &sav->lft_h;
	if (key_lft_isset(l))
		kbuf_addlifetime(kb, SADB_EXT_LIFETIME_HARD,
		    l->sadb_lifetime_allocations, l->sadb_lifetime_bytes,
		    l->sadb_lifetime_addtime, l->sadb_lifetime_usetime);
	l = &sav->lft_s;
	if (key_lft_isset(l))
		kbuf_addlifetime(kb, SADB_EXT_LIFETIME_SOFT,
		    l->sadb_lifetime_allocations, l->sadb_lifetime_bytes,
		    l->sadb_lifetime_addtime, l->sadb_lifetime_usetime);
	l = &sav->lft_c;
	if (what & DUMP_CURRENT)
		kbuf_addlifetime(kb, SADB_EXT_LIFETIME_CURRENT,
		    l->sadb_lifetime_allocations, l->sadb_lifetime_bytes,
		    l->sadb_lifetime_addtime, l->sadb_lifetime_usetime);
	kbuf_addaddr(kb, SADB_EXT_ADDRESS_SRC, &sav->src, IPSEC_ULPROTO_ANY);
	kbuf_addaddr(kb, SADB_EXT_ADDRESS_DST, &sav->dst, IPSEC_ULPROTO_ANY);
	if (what & DUMP_KEYS) {
		if (sav->key_auth_bits != 0)
			key_addkey(kb, SADB_EXT_KEY_AUTH, sav->key_auth,
			    sav->key_auth_bits);
		if (sav->key_enc_bits != 0)
			key_addkey(kb, SADB_EXT_KEY_ENCRYPT, sav->key_enc,
			    sav->key_enc_bits);
	}
	key_addnatt(kb, sav);
}

/*
 * SADB_GETSPI: reserve an SPI as a LARVAL SA that a later UPDATE fills in
 * (KAME key_getspi/key_do_getnewspi).  The reply goes to the sender.
 */
int
key_getspi(const struct sadb_msghdr *mhp)
{
	struct sadb_x_sa2	 sa2;
	struct secasvar		*sav;
	struct kbuf		 kb;
	struct keyaddr		 src, dst;
	uint32_t		 spi;
	uint8_t			 satype = mhp->msg.sadb_msg_satype;
	uint8_t			 proto;

	if (satype != SADB_SATYPE_ESP && satype != SADB_SATYPE_AH)
		return (EINVAL);
	if (key_getaddr(mhp, SADB_EXT_ADDRESS_SRC, &src, &proto) == -1 ||
	    key_getaddr(mhp, SADB_EXT_ADDRESS_DST, &dst, &proto) == -1 ||
	    src.ka_family != dst.ka_family)
		return (EINVAL);
	memset(&sa2, 0, sizeof(sa2));
	key_getext(mhp, SADB_X_EXT_SA2, &sa2, sizeof(sa2));
	if (sa2.sadb_x_sa2_mode > IPSEC_MODE_TUNNEL)
		return (EINVAL);
	if ((spi = key_do_getnewspi(mhp, &dst, satype)) == 0)
		return (EINVAL);
	if ((sav = calloc(1, sizeof(*sav))) == NULL)
		return (ENOBUFS);
	sav->src = src;
	sav->dst = dst;
	sav->src.ka_plen = sav->dst.ka_plen = dst.ka_family == AF_INET ?
	    32 : 128;
	sav->spi = spi;
	sav->satype = satype;
	sav->mode = sa2.sadb_x_sa2_mode;
	sav->reqid = sa2.sadb_x_sa2_reqid;
	sav->seq = mhp->msg.sadb_msg_seq;
	sav->pid = mhp->msg.sadb_msg_pid;
	sav->state = SADB_SASTATE_LARVAL;
	sav->lft_c.sadb_lifetime_addtime = key_now;
	key_sa_insert(sav);

	kbuf_init(&kb, &mhp->msg);
	key_addsa(&kb, sav);
	kbuf_addaddr(&kb, SADB_EXT_ADDRESS_SRC, &sav->src, IPSEC_ULPROTO_ANY);
	kbuf_addaddr(&kb, SADB_EXT_ADDRESS_DST, &sav->dst, IPSEC_ULPROTO_ANY);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ONE);
	return (0);
}

/* A free SPI (network order) in SPIRANGE or the default range; 0 if none. */
static uint32_t
key_do_getnewspi(const struct sadb_msghdr *mhp, const struct keyaddr *dst,
    uint8_t satype)
{
	struct sadb_spirange	 r;
	uint32_t		 min, max, spi;
	int			 count;

	min = KEY_SPI_MINVAL;
	max = KEY_SPI_MAXVAL;
	if (key_getext(mhp, SADB_EXT_SPIRANGE, &r, sizeof(r)) >=
	    (int)sizeof(r)) {
		min = r.sadb_spirange_min;
		max = r.sadb_spirange_max;
		if (min > max) {
			spi = min;
			min = max;
			max = spi;
		}
		if (min < KEY_SPI_MINVAL)
			min = KEY_SPI_MINVAL;
		if (max < min)
			return (0);
	}
	if (min == max) {
		spi = htonl(min);
		if (key_sa_lookup_satype(dst, spi, satype) != NULL)
			return (0);
		return (spi);
	}
	for (count = 0; count < KEY_SPI_TRYCNT; count++) {
		if (max - min == UINT32_MAX)
			spi = htonl(arc4random());
		else
			spi = htonl(min + arc4random_uniform(max - min + 1));
		if (spi != 0 && key_sa_lookup_satype(dst, spi, satype) == NULL)
			return (spi);
	}
	return (0);
}

/*
 * SADB_UPDATE: give an existing SA (usually the LARVAL one from GETSPI)
 * new keys and lifetimes.  The reply, without keys, goes to all sockets.
 */
int
key_update(const struct sadb_msghdr *mhp)
{
	struct secasvar	*osav, *nsav;
	struct kbuf	 kb;
	struct keyaddr	 dst;
	uint32_t	 spi;
	uint8_t		 proto;
	int		 error;

	if (key_msgspi(mhp, &spi) == -1 ||
	    mhp->extlen[SADB_EXT_ADDRESS_SRC] == 0 ||
	    key_getaddr(mhp, SADB_EXT_ADDRESS_DST, &dst, &proto) == -1)
		return (EINVAL);
	if ((osav = key_sa_lookup_satype(&dst, spi,
	    mhp->msg.sadb_msg_satype)) == NULL)
		return (ENOENT);
	if ((nsav = key_newsav(mhp, &error)) == NULL)
		return (error);
	if (mhp->extlen[SADB_X_EXT_SA2] == 0) {
		nsav->mode = osav->mode;
		nsav->reqid = osav->reqid;
	}
	nsav->seq = osav->seq;
	key_sa_replace(osav, nsav);

	kbuf_init(&kb, &mhp->msg);
	key_setdumpsa(&kb, nsav, 0);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
	return (0);
}

/* SADB_ADD: a MATURE SA; the reply, without keys, goes to all sockets. */
int
key_add(const struct sadb_msghdr *mhp)
{
	struct secasvar	*sav;
	struct kbuf	 kb;
	struct keyaddr	 dst;
	uint32_t	 spi;
	uint8_t		 proto;
	int		 error;

	if (key_msgspi(mhp, &spi) == -1 ||
	    mhp->extlen[SADB_EXT_ADDRESS_SRC] == 0 ||
	    key_getaddr(mhp, SADB_EXT_ADDRESS_DST, &dst, &proto) == -1)
		return (EINVAL);
	if (key_satype2proto(mhp->msg.sadb_msg_satype) == 0)
		return (EINVAL);
	if (key_sa_lookup_satype(&dst, spi, mhp->msg.sadb_msg_satype) != NULL)
		return (EEXIST);
	if ((sav = key_newsav(mhp, &error)) == NULL)
		return (error);
	key_sa_insert(sav);

	kbuf_init(&kb, &mhp->msg);
	key_setdumpsa(&kb, sav, 0);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
	return (0);
}

/*
 * SADB_DELETE: by src, dst and SPI.  Without an SA extension, every SA
 * between src and dst goes (KAME key_delete_all, IKE INITIAL-CONTACT).
 */
int
key_delete(const struct sadb_msghdr *mhp)
{
	struct secasvar	*sav;
	struct kbuf	 kb;
	struct keyaddr	 src, dst;
	uint32_t	 spi;
	uint8_t		 proto;

	if (key_getaddr(mhp, SADB_EXT_ADDRESS_SRC, &src, &proto) == -1 ||
	    key_getaddr(mhp, SADB_EXT_ADDRESS_DST, &dst, &proto) == -1)
		return (EINVAL);
	if (mhp->extlen[SADB_EXT_SA] == 0)
		return (key_delete_all(mhp));
	if (key_msgspi(mhp, &spi) == -1)
		return (EINVAL);
	sav = key_sa_lookup_satype(&dst, spi, mhp->msg.sadb_msg_satype);
	if (sav == NULL || !key_addreq(&sav->src, &src))
		return (ESRCH);

	kbuf_init(&kb, &mhp->msg);
	key_addsa(&kb, sav);
	kbuf_addaddr(&kb, SADB_EXT_ADDRESS_SRC, &src, IPSEC_ULPROTO_ANY);
	kbuf_addaddr(&kb, SADB_EXT_ADDRESS_DST, &dst, IPSEC_ULPROTO_ANY);
	key_sa_free(sav);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
	return (0);
}

static int
key_delete_all(const struct sadb_msghdr *mhp)
{
	struct secasvar	*sav, *nextsav;
	struct kbuf	 kb;
	struct keyaddr	 src, dst;
	uint8_t		 proto;

	if (key_getaddr(mhp, SADB_EXT_ADDRESS_SRC, &src, &proto) == -1 ||
	    key_getaddr(mhp, SADB_EXT_ADDRESS_DST, &dst, &proto) == -1)
		return (EINVAL);
	for (sav = TAILQ_FIRST(&satailq); sav != NULL; sav = nextsav) {
		nextsav = TAILQ_NEXT(sav, all);
		if (sav->satype == mhp->msg.sadb_msg_satype &&
		    key_addreq(&sav->src, &src) && key_addreq(&sav->dst, &dst))
			key_sa_free(sav);
	}
	kbuf_init(&kb, &mhp->msg);
	kbuf_addaddr(&kb, SADB_EXT_ADDRESS_SRC, &src, IPSEC_ULPROTO_ANY);
	kbuf_addaddr(&kb, SADB_EXT_ADDRESS_DST, &dst, IPSEC_ULPROTO_ANY);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
	return (0);
}

/* SADB_GET: one SA with its keys and lifetimes, to the sender. */
int
key_get(const struct sadb_msghdr *mhp)
{
	struct secasvar	*sav;
	struct kbuf	 kb;
	struct keyaddr	 src, dst;
	uint32_t	 spi;
	uint8_t		 proto;

	if (key_msgspi(mhp, &spi) == -1 ||
	    key_getaddr(mhp, SADB_EXT_ADDRESS_SRC, &src, &proto) == -1 ||
	    key_getaddr(mhp, SADB_EXT_ADDRESS_DST, &dst, &proto) == -1)
		return (EINVAL);
	sav = key_sa_lookup_satype(&dst, spi, mhp->msg.sadb_msg_satype);
	if (sav == NULL || !key_addreq(&sav->src, &src))
		return (ESRCH);

	kbuf_init(&kb, &mhp->msg);
	key_setdumpsa(&kb, sav, DUMP_CURRENT | DUMP_KEYS);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ONE);
	return (0);
}

/* SADB_FLUSH: every SA of the satype, or all of them; echo to all. */
int
key_flush(const struct sadb_msghdr *mhp)
{
	struct secasvar	*sav, *nextsav;
	struct kbuf	 kb;
	uint8_t		 satype = mhp->msg.sadb_msg_satype;

	for (sav = TAILQ_FIRST(&satailq); sav != NULL; sav = nextsav) {
		nextsav = TAILQ_NEXT(sav, all);
		if (satype == SADB_SATYPE_UNSPEC || sav->satype == satype)
			key_sa_free(sav);
	}
	kbuf_init(&kb, &mhp->msg);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
	return (0);
}

/* SADB_DUMP: one message per SA to the sender, seq counting down to 0. */
int
key_dump(const struct sadb_msghdr *mhp)
{
	struct secasvar	*sav;
	struct sadb_msg	 msg;
	struct kbuf	 kb;
	uint32_t	 cnt = 0;
	uint8_t		 satype = mhp->msg.sadb_msg_satype;

	TAILQ_FOREACH(sav, &satailq, all) {
		if (satype == SADB_SATYPE_UNSPEC || sav->satype == satype)
			cnt++;
	}
	if (cnt == 0)
		return (ENOENT);
	TAILQ_FOREACH(sav, &satailq, all) {
		if (satype != SADB_SATYPE_UNSPEC && sav->satype != satype)
			continue;
		msg = mhp->msg;
		msg.sadb_msg_errno = 0;
		msg.sadb_msg_satype = sav->satype;
		msg.sadb_msg_seq = --cnt;
		kbuf_init(&kb, &msg);
		key_setdumpsa(&kb, sav, DUMP_CURRENT | DUMP_KEYS);
		key_sendup(mhp->so, &kb, KEY_SENDUP_ONE);
	}
	return (0);
}

/* SADB_EXPIRE to the registered sockets (RFC 2367 3.1.9). */
static void
key_expire(struct secasvar *sav, int hard)
{
	const struct sadb_lifetime	*l;
	struct sadb_msg			 msg;
	struct kbuf			 kb;

	memset(&msg, 0, sizeof(msg));
	msg.sadb_msg_version = PF_KEY_V2;
	msg.sadb_msg_type = SADB_EXPIRE;
	msg.sadb_msg_satype = sav->satype;
	msg.sadb_msg_seq = sav->seq;
	kbuf_init(&kb, &msg);
	key_addsa(&kb, sav);
	key_addsa2(&kb, sav);
	l = &sav->lft_c;
	kbuf_addlifetime(&kb, SADB_EXT_LIFETIME_CURRENT,
	    l->sadb_lifetime_allocations, l->sadb_lifetime_bytes,
	    l->sadb_lifetime_addtime, l->sadb_lifetime_usetime);
	l = hard ? &sav->lft_h : &sav->lft_s;
	kbuf_addlifetime(&kb, hard ? SADB_EXT_LIFETIME_HARD :
	    SADB_EXT_LIFETIME_SOFT, l->sadb_lifetime_allocations,
	    l->sadb_lifetime_bytes, l->sadb_lifetime_addtime,
	    l->sadb_lifetime_usetime);
	kbuf_addaddr(&kb, SADB_EXT_ADDRESS_SRC, &sav->src, IPSEC_ULPROTO_ANY);
	kbuf_addaddr(&kb, SADB_EXT_ADDRESS_DST, &sav->dst, IPSEC_ULPROTO_ANY);
	key_sendup(NULL, &kb, KEY_SENDUP_REGISTERED);
	if (hard)
		keystat.sa_expired_hard++;
	else
		keystat.sa_expired_soft++;
}

/* Whether a soft or hard lifetime has run out by time. */
static int
key_sa_lifeover(const struct secasvar *sav, const struct sadb_lifetime *lft)
{
	const struct sadb_lifetime	*c = &sav->lft_c;

	if (lft->sadb_lifetime_addtime != 0 &&
	    key_now - c->sadb_lifetime_addtime > lft->sadb_lifetime_addtime)
		return (1);
	/* usetime counts from the first use; an unused SA has none. */
	if (lft->sadb_lifetime_usetime != 0 &&
	    c->sadb_lifetime_allocations != 0 &&
	    key_now - c->sadb_lifetime_usetime > lft->sadb_lifetime_usetime)
		return (1);
	return (0);
}

/*
 * Once per tick: LARVAL SAs left by GETSPI time out silently; a MATURE SA
 * past its soft lifetime turns DYING with a soft SADB_EXPIRE; any SA past
 * its hard lifetime is announced and goes.
 */
void
key_sad_timehandler(void)
{
	struct secasvar	*sav, *nextsav;

	for (sav = TAILQ_FIRST(&satailq); sav != NULL; sav = nextsav) {
		nextsav = TAILQ_NEXT(sav, all);
		if (sav->state == SADB_SASTATE_LARVAL) {
			if (key_now - sav->lft_c.sadb_lifetime_addtime >
			    KEY_LARVAL_LIFETIME)
				key_sa_free(sav);
			continue;
		}
		if (key_sa_lifeover(sav, &sav->lft_h)) {
			key_expire(sav, 1);
			key_sa_free(sav);
			continue;
		}
		if (sav->state == SADB_SASTATE_MATURE &&
		    key_sa_lifeover(sav, &sav->lft_s)) {
			sav->state = SADB_SASTATE_DYING;
			key_expire(sav, 0);
		}
	}
}

/*
 * An accepted packet used the SA: update its current lifetime and check
 * the byte limits.  The SA may be gone when this returns.
 */
void
key_sa_touch(struct secasvar *sav, size_t bytes)
{
	struct sadb_lifetime	*c = &sav->lft_c;

	if (c->sadb_lifetime_allocations == 0)
		c->sadb_lifetime_usetime = key_now;
	if (c->sadb_lifetime_allocations != UINT32_MAX)
		c->sadb_lifetime_allocations++;
	c->sadb_lifetime_bytes += bytes;

	if (sav->lft_h.sadb_lifetime_bytes != 0 &&
	    c->sadb_lifetime_bytes > sav->lft_h.sadb_lifetime_bytes) {
		key_expire(sav, 1);
		key_sa_free(sav);
		return;
	}
	if (sav->state == SADB_SASTATE_MATURE &&
	    sav->lft_s.sadb_lifetime_bytes != 0 &&
	    c->sadb_lifetime_bytes > sav->lft_s.sadb_lifetime_bytes) {
		sav->state = SADB_SASTATE_DYING;
		key_expire(sav, 0);
	}
}

/* At shutdown: every SA goes, keys wiped, no messages. */
void
key_sad_destroy(void)
{
	struct secasvar	*sav;

	while ((sav = TAILQ_FIRST(&satailq)) != NULL)
		key_sa_free(sav);
}
