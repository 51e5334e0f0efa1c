/*
 * The SPD with KAME netkey semantics (kame/sys/netkey/key.c, ~1.330):
 * a policy is unlinked from sptree once, on delete or flush, and freed
 * when its last reference goes.  sptailq holds every allocated policy.
 *
 * The flush and timer loops keep the shape the 2004 report quotes:
 * `sp = NULL` at the end of the body, then the increment `sp = nextsp`.
 *
 * The duplicate check and the id lookups give the answers of KAME's walks
 * of sptree and sptailq, found through keydb.c's indexes instead.
 */
#include <errno.h>
#include <string.h>

#include "netkeyd.h"

#define KEY_SPID_MANUAL_MAX	0x3fff	/* ids a user may choose */
#define KEY_SPID_AUTO_MIN	0x4000
#define KEY_SPID_TRYCNT		1000

static TAILQ_HEAD(, secpolicy)	 sptailq = TAILQ_HEAD_INITIALIZER(sptailq);

static void		 key_sp_dead(struct secpolicy *);
static void		 key_sp_unlink(struct secpolicy *);
static void		 key_sp_delete(struct secpolicy *);
static struct secpolicy	*key_getsp(const struct secpolicyindex *);
static struct secpolicy	*key_getspbyid(uint32_t);
static uint32_t		 key_getnewspid(void);

void
key_spd_init(void)
{
}

/* key_freesp: drop a reference; the last one frees. */
void
key_freesp(struct secpolicy *sp)
{
	if (sp->refcnt == 0)
		fatal("%s: policy %u refcnt underflow", __func__, sp->id);
	if (--sp->refcnt > 0)
		return;
	TAILQ_REMOVE(&sptailq, sp, tailq);
	key_spid_remove(sp);
	key_delsp(sp);
}

static void
key_sp_dead(struct secpolicy *sp)
{
	key_sp_setstate(sp, IPSEC_SPSTATE_DEAD);
}

/* Leave sptree and drop the table's reference, once. */
static void
key_sp_unlink(struct secpolicy *sp)
{
	if (!sp->linked)
		return;
	key_sptree_remove(sp);
	key_freesp(sp);
}

/* SPDDELETE and SPDDELETE2 end here. */
static void
key_sp_delete(struct secpolicy *sp)
{
	key_sp_dead(sp);
	key_sp_unlink(sp);
}

/* key_getsp: the first ALIVE policy of sptree with exactly this selector. */
static struct secpolicy *
key_getsp(const struct secpolicyindex *spidx)
{
	return (key_spidx_lookup(spidx));
}

/* key_getspbyid: the first of sptailq with this id, dead entries too. */
static struct secpolicy *
key_getspbyid(uint32_t id)
{
	return (key_spid_lookup(id));
}

/* From 0x4000 up, skipping ids still on sptailq, wrapping to 0x4000. */
static uint32_t
key_getnewspid(void)
{
	static uint32_t	 policy_id = KEY_SPID_AUTO_MIN - 1;
	int		 count;

	for (count = 0; count < KEY_SPID_TRYCNT; count++) {
		if (++policy_id == 0)
			policy_id = KEY_SPID_AUTO_MIN;
		if (key_getspbyid(policy_id) == NULL)
			return (policy_id);
	}
	return (0);
}

/* key_spdadd serves SPDADD, SPDUPDATE and SPDSETIDX. */
int
key_spdadd(const struct sadb_msghdr *mhp)
{
	struct secpolicyindex	 spidx;
	struct secpolicy	*sp, *newsp;
	uint32_t		 id;
	int			 error;

	if ((error = key_spidx_frommsg(mhp, &spidx)) != 0)
		return (error);
	if ((error = key_checkpolicy(mhp, &id)) != 0)
		return (error);

	if (id != 0)
		sp = key_getspbyid(id);
	else
		sp = key_getsp(&spidx);
	if (sp != NULL) {
		if (sp->readonly || sp->persist)
			return (EPERM);
		if (mhp->msg.sadb_msg_type != SADB_X_SPDUPDATE)
			return (EEXIST);
		key_sp_dead(sp);
		key_sp_unlink(sp);
	}

	if ((error = key_msg2sp(mhp, &spidx, &newsp)) != 0)
		return (error);
	if (id < 1 || id > KEY_SPID_MANUAL_MAX)
		newsp->id = key_getnewspid();
	if (newsp->id == 0) {
		key_delsp(newsp);
		return (ENOBUFS);
	}
	TAILQ_INSERT_TAIL(&sptailq, newsp, tailq);
	key_spid_insert(newsp);
	key_sptree_link(newsp);

	key_spd_invalidate();
	key_spdadd_reply(mhp, newsp);
	return (0);
}

/* key_spddelete: by selector and direction; freed now if unreferenced. */
int
key_spddelete(const struct sadb_msghdr *mhp)
{
	struct secpolicyindex	 spidx;
	struct secpolicy	*sp;
	struct kbuf		 kb;
	uint32_t		 id;
	int			 error;

	if ((error = key_spidx_frommsg(mhp, &spidx)) != 0)
		return (error);
	if ((sp = key_getsp(&spidx)) == NULL)
		return (EINVAL);
	if (sp->persist)
		return (EPERM);
	id = sp->id;
	key_sp_delete(sp);
	key_spd_invalidate();

	kbuf_init(&kb, &mhp->msg);
	kbuf_gather_policy(&kb, mhp, id);
	kbuf_gather(&kb, mhp, SADB_EXT_ADDRESS_SRC);
	kbuf_gather(&kb, mhp, SADB_EXT_ADDRESS_DST);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
	return (0);
}

/* key_spddelete2: the same, keyed by id. */
int
key_spddelete2(const struct sadb_msghdr *mhp)
{
	struct sadb_x_policy	 xpl;
	struct secpolicy	*sp;
	struct kbuf		 kb;

	if (key_getext(mhp, SADB_X_EXT_POLICY, &xpl, sizeof(xpl)) == 0)
		return (EINVAL);
	if ((sp = key_getspbyid(xpl.sadb_x_policy_id)) == NULL)
		return (EINVAL);
	if (sp->persist)
		return (EPERM);
	key_sp_delete(sp);
	key_spd_invalidate();

	kbuf_init(&kb, &mhp->msg);
	kbuf_gather(&kb, mhp, SADB_X_EXT_POLICY);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
	return (0);
}

int
key_spdget(const struct sadb_msghdr *mhp)
{
	struct sadb_x_policy	 xpl;
	struct secpolicy	*sp;
	struct kbuf		 kb;

	if (key_getext(mhp, SADB_X_EXT_POLICY, &xpl, sizeof(xpl)) == 0)
		return (EINVAL);
	if ((sp = key_getspbyid(xpl.sadb_x_policy_id)) == NULL)
		return (ENOENT);
	key_setdumpsp(&kb, sp, SADB_X_SPDGET, 0, mhp->msg.sadb_msg_pid);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ONE);
	return (0);
}

/*
 * key_spdflush: every entry on sptailq but persistent and already dead
 * ones is marked dead and unlinked.
 */
int
key_spdflush(const struct sadb_msghdr *mhp)
{
	struct secpolicy	*sp, *nextsp;
	struct kbuf		 kb;

	if (mhp->len != sizeof(struct sadb_msg))
		return (EINVAL);

	for (sp = TAILQ_FIRST(&sptailq); sp != NULL; sp = nextsp) {
		nextsp = TAILQ_NEXT(sp, tailq);
		if (sp->persist)
			continue;
		if (sp->state == IPSEC_SPSTATE_DEAD)
			continue;
		key_sp_dead(sp);
		key_sp_unlink(sp);
		sp = NULL;
	}

	keystat.flushes++;
	key_spd_invalidate();
	kbuf_init(&kb, &mhp->msg);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
	return (0);
}

/*
 * The SPD part of key_timehandler: unlink DEAD entries; expire by
 * lifetime (since created) or validtime (since last use), which marks
 * DEAD and leaves the entry linked until the next tick.
 */
void
key_spd_timehandler(void)
{
	struct secpolicy	*sp, *nextsp;
	int			 dir;

	for (dir = 0; dir < IPSEC_DIR_MAX; dir++) {
		for (sp = TAILQ_FIRST(&sptree[dir]); sp != NULL; sp = nextsp) {
			nextsp = TAILQ_NEXT(sp, chain);
			if (sp->state == IPSEC_SPSTATE_DEAD) {
				key_sp_unlink(sp);
				sp = NULL;
				continue;
			}
			if (sp->lifetime == 0 && sp->validtime == 0)
				continue;
			if ((sp->lifetime &&
			    key_now - sp->created > sp->lifetime) ||
			    (sp->validtime &&
			    key_now - sp->lastused > sp->validtime)) {
				key_sp_dead(sp);
				key_spdexpire(sp);
				continue;
			}
		}
	}
	key_spd_invalidate();
}

/* Kernel-owned policies are persistent; the admin socket makes one. */
int
key_spd_setpersist(uint32_t id)
{
	struct secpolicy	*sp;

	if ((sp = key_getspbyid(id)) == NULL)
		return (-1);
	sp->persist = 1;
	return (0);
}
