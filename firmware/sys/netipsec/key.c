/*
 * The SPD with FAST_IPSEC semantics of FreeBSD-4 lineage
 * (sys/netipsec/key.c 1.3.2.1): there is no sptailq and no persist
 * flag, and the direction is part of the selector.  Flush and delete
 * only mark policies DEAD; each timer tick then drops one reference on
 * every DEAD policy still in the table, so the reference count doubles
 * as a time to live, and a policy is freed after about refcnt ticks even
 * while flows still point at it.
 *
 * The duplicate check and the id lookups give the answers of the table
 * walks, found through keydb.c's indexes instead.
 */
#include <errno.h>
#include <string.h>

#include "netkeyd.h"

#define KEY_SPID_TRYCNT		1000

static void		 key_sp_dead(struct secpolicy *);
static struct secpolicy	*key_getsp(const struct secpolicyindex *);
static struct secpolicy	*key_getspbyid(uint32_t);
static uint32_t		 key_getnewspid(void);

void
key_spd_init(void)
{
}

/* key_freesp: at zero the policy leaves the table and is freed. */
void
key_freesp(struct secpolicy *sp)
{
	if (sp->refcnt == 0)
		fatal("%s: policy %u refcnt underflow", __func__, sp->id);
	if (--sp->refcnt > 0)
		return;
	if (sp->linked) {
		key_sptree_remove(sp);
		key_spid_remove(sp);
	}
	key_delsp(sp);
}

static void
key_sp_dead(struct secpolicy *sp)
{
	key_sp_setstate(sp, IPSEC_SPSTATE_DEAD);
}

/* key_getsp: the first ALIVE policy in the table with this selector. */
static struct secpolicy *
key_getsp(const struct secpolicyindex *spidx)
{
	return (key_spidx_lookup(spidx));
}

/*
 * Without sptailq, only policies still in the table can be found: the id
 * index holds the linked ones, and their ids are unique.
 */
static struct secpolicy *
key_getspbyid(uint32_t id)
{
	return (key_spid_lookup(id));
}

/* A global counter from 1, skipping live ids; give up after 1000 tries. */
static uint32_t
key_getnewspid(void)
{
	static uint32_t	 policy_id;
	int		 count;

	for (count = 0; count < KEY_SPID_TRYCNT; count++) {
		if (++policy_id == 0)
			policy_id = 1;
		if (key_getspbyid(policy_id) == NULL)
			return (policy_id);
	}
	return (0);
}

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

	if ((sp = key_getsp(&spidx)) != NULL) {
		if (mhp->msg.sadb_msg_type != SADB_X_SPDUPDATE)
			return (EEXIST);
		key_sp_dead(sp);
	}

	if ((error = key_msg2sp(mhp, &spidx, &newsp)) != 0)
		return (error);
	if ((newsp->id = key_getnewspid()) == 0) {
		key_delsp(newsp);
		return (ENOBUFS);
	}
	key_sptree_link(newsp);
	key_spid_insert(newsp);

	key_spd_invalidate();
	key_spdadd_reply(mhp, newsp);
	return (0);
}

int
key_spddelete(const struct sadb_msghdr *mhp)
{
	struct secpolicyindex	 spidx;
	struct secpolicy	*sp;
	struct kbuf		 kb;
	int			 error;

	if ((error = key_spidx_frommsg(mhp, &spidx)) != 0)
		return (error);
	if ((sp = key_getsp(&spidx)) == NULL)
		return (EINVAL);
	key_sp_dead(sp);
	key_spd_invalidate();

	kbuf_init(&kb, &mhp->msg);
	kbuf_gather_policy(&kb, mhp, sp->id);
	kbuf_gather(&kb, mhp, SADB_EXT_ADDRESS_SRC);
	kbuf_gather(&kb, mhp, SADB_EXT_ADDRESS_DST);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
	return (0);
}

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
	key_sp_dead(sp);
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

/* key_spdflush marks every table entry DEAD; the timer does the rest. */
int
key_spdflush(const struct sadb_msghdr *mhp)
{
	struct secpolicy	*sp;
	struct kbuf		 kb;
	int			 dir;

	if (mhp->len != sizeof(struct sadb_msg))
		return (EINVAL);

	for (dir = 0; dir < IPSEC_DIR_MAX; dir++)
		TAILQ_FOREACH(sp, &sptree[dir], chain)
			key_sp_dead(sp);

	keystat.flushes++;
	key_spd_invalidate();
	kbuf_init(&kb, &mhp->msg);
	key_sendup(mhp->so, &kb, KEY_SENDUP_ALL);
	return (0);
}

/*
 * Each tick releases one reference on every DEAD entry still in the
 * table: the reference count used as a time to live.
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
				key_freesp(sp);
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

/* This tree has no persist flag. */
int
key_spd_setpersist(uint32_t id)
{
	(void)id;
	return (-1);
}
