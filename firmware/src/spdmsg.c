/*
 * SPD messages both trees build the same way: the selector from a
 * request, dump and get replies (key_setdumpsp), SPDEXPIRE and SPDDUMP.
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <string.h>

#include "netkeyd.h"

/*
 * The selector of an SPD request: SRC, DST and the X_POLICY direction,
 * which must be in or out.  Returns 0 or an errno to echo.
 */
int
key_spidx_frommsg(const struct sadb_msghdr *mhp, struct secpolicyindex *spidx)
{
	struct sadb_x_policy	 xpl;
	uint8_t			 proto;

	if (mhp->extlen[SADB_EXT_ADDRESS_SRC] == 0 ||
	    mhp->extlen[SADB_EXT_ADDRESS_DST] == 0 ||
	    mhp->extlen[SADB_X_EXT_POLICY] == 0)
		return (EINVAL);
	key_getext(mhp, SADB_X_EXT_POLICY, &xpl, sizeof(xpl));
	if (xpl.sadb_x_policy_dir != IPSEC_DIR_INBOUND &&
	    xpl.sadb_x_policy_dir != IPSEC_DIR_OUTBOUND)
		return (EINVAL);
	memset(spidx, 0, sizeof(*spidx));
	key_getaddr(mhp, SADB_EXT_ADDRESS_SRC, &spidx->src, &proto);
	key_getaddr(mhp, SADB_EXT_ADDRESS_DST, &spidx->dst, NULL);
	spidx->ul_proto = proto;
	spidx->dir = xpl.sadb_x_policy_dir;
	return (0);
}

/* Copy a request's extension into a reply unchanged. */
void
kbuf_gather(struct kbuf *kb, const struct sadb_msghdr *mhp, int type)
{
	if (mhp->extlen[type] != 0)
		kbuf_append(kb, mhp->buf + mhp->extoff[type], mhp->extlen[type]);
}

/* The request's X_POLICY, with the id the kernel assigned or found. */
void
kbuf_gather_policy(struct kbuf *kb, const struct sadb_msghdr *mhp,
    uint32_t id)
{
	struct sadb_x_policy	 xpl;
	size_t			 off;

	if (mhp->extlen[SADB_X_EXT_POLICY] == 0)
		return;
	off = kb->len;
	kbuf_gather(kb, mhp, SADB_X_EXT_POLICY);
	if (kb->error != 0)
		return;
	memcpy(&xpl, kb->data + off, sizeof(xpl));
	xpl.sadb_x_policy_id = id;
	memcpy(kb->data + off, &xpl, sizeof(xpl));
}

/* key_setdumpsp: one policy as an SPDDUMP/SPDGET/SPDEXPIRE message. */
void
key_setdumpsp(struct kbuf *kb, const struct secpolicy *sp, uint8_t type,
    uint32_t seq, uint32_t pid)
{
	struct sadb_msg	 hdr;

	memset(&hdr, 0, sizeof(hdr));
	hdr.sadb_msg_version = PF_KEY_V2;
	hdr.sadb_msg_type = type;
	hdr.sadb_msg_satype = SADB_SATYPE_UNSPEC;
	/* KAME puts the refcount where setkey -DP reads it. */
	hdr.sadb_msg_reserved = sp->refcnt > 0xffff ? 0xffff :
	    (uint16_t)sp->refcnt;
	hdr.sadb_msg_seq = seq;
	hdr.sadb_msg_pid = pid;
	kbuf_init(kb, &hdr);
	kbuf_addaddr(kb, SADB_EXT_ADDRESS_SRC, &sp->spidx.src,
	    sp->spidx.ul_proto);
	kbuf_addaddr(kb, SADB_EXT_ADDRESS_DST, &sp->spidx.dst,
	    sp->spidx.ul_proto);
	kbuf_addpolicy(kb, sp);
	kbuf_addlifetime(kb, SADB_EXT_LIFETIME_CURRENT, 0, 0, sp->created,
	    sp->lastused);
	kbuf_addlifetime(kb, SADB_EXT_LIFETIME_HARD, 0, 0, sp->lifetime,
	    sp->validtime);
}

/* key_spdexpire: tell registered sockets a policy's lifetime ran out. */
void
key_spdexpire(const struct secpolicy *sp)
{
	struct sadb_msg	 hdr;
	struct kbuf	 kb;

	memset(&hdr, 0, sizeof(hdr));
	hdr.sadb_msg_version = PF_KEY_V2;
	hdr.sadb_msg_type = SADB_X_SPDEXPIRE;
	hdr.sadb_msg_satype = SADB_SATYPE_UNSPEC;
	kbuf_init(&kb, &hdr);
	kbuf_addlifetime(&kb, SADB_EXT_LIFETIME_CURRENT, 0, 0, sp->created,
	    sp->lastused);
	kbuf_addlifetime(&kb, SADB_EXT_LIFETIME_HARD, 0, 0, sp->lifetime,
	    sp->validtime);
	kbuf_addaddr(&kb, SADB_EXT_ADDRESS_SRC, &sp->spidx.src,
	    sp->spidx.ul_proto);
	kbuf_addaddr(&kb, SADB_EXT_ADDRESS_DST, &sp->spidx.dst,
	    sp->spidx.ul_proto);
	kbuf_addpolicy(&kb, sp);
	key_sendup(NULL, &kb, KEY_SENDUP_REGISTERED);
}

/*
 * key_spddump: every entry in sptree, whatever its state, one message
 * each to the requester, seq counting down to 0.
 */
int
key_spddump(const struct sadb_msghdr *mhp)
{
	struct secpolicy	*sp;
	struct kbuf		 kb;
	uint32_t		 cnt = 0;
	int			 dir;

	for (dir = 0; dir < IPSEC_DIR_MAX; dir++)
		TAILQ_FOREACH(sp, &sptree[dir], chain)
			cnt++;
	if (cnt == 0)
		return (ENOENT);
	for (dir = 0; dir < IPSEC_DIR_MAX; dir++) {
		TAILQ_FOREACH(sp, &sptree[dir], chain) {
			key_setdumpsp(&kb, sp, SADB_X_SPDDUMP, --cnt,
			    mhp->msg.sadb_msg_pid);
			key_sendup(mhp->so, &kb, KEY_SENDUP_ONE);
		}
	}
	return (0);
}

/* The reply every successful SPDADD/SPDUPDATE/SPDSETIDX gets, to all. */
void
key_spdadd_reply(const struct sadb_msghdr *mhp, const struct secpolicy *sp)
{
	struct kbuf	 kb;

	kbuf_init(&kb, &mhp->msg);
	kbuf_gather_policy(&kb, mhp, sp->id);
	kbuf_gather(&kb, mhp, SADB_EXT_ADDRESS_SRC);
	kbuf_gather(&kb, mhp, SADB_EXT_ADDRESS_DST);
	kbuf_gather(&kb, mhp, SADB_EXT_LIFETIME_HARD);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
}

/* A new policy from a validated request; the tree links it and sets id. */
int
key_msg2sp(const struct sadb_msghdr *mhp, const struct secpolicyindex *spidx,
    struct secpolicy **spp)
{
	struct secpolicy	 tmp, *sp;
	struct sadb_lifetime	 lft;
	int			 error;

	memset(&tmp, 0, sizeof(tmp));
	if ((error = key_getpolicy(mhp, &tmp)) != 0)
		return (error);
	if ((sp = key_newsp()) == NULL)
		return (ENOBUFS);
	sp->spidx = *spidx;
	sp->policy = tmp.policy;
	sp->id = tmp.id;
	sp->nreq = tmp.nreq;
	memcpy(sp->req, tmp.req, sizeof(sp->req));
	if (key_getext(mhp, SADB_EXT_LIFETIME_HARD, &lft, sizeof(lft)) != 0) {
		sp->lifetime = lft.sadb_lifetime_addtime;
		sp->validtime = lft.sadb_lifetime_usetime;
	}
	*spp = sp;
	return (0);
}

/* Parse only the policy part, to report its errors before any lookup. */
int
key_checkpolicy(const struct sadb_msghdr *mhp, uint32_t *id)
{
	struct secpolicy	 tmp;
	int			 error;

	memset(&tmp, 0, sizeof(tmp));
	if ((error = key_getpolicy(mhp, &tmp)) != 0)
		return (error);
	*id = tmp.id;
	return (0);
}
