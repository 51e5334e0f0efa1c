/*
 * Policy constructors and destructors, the handle table, and selector
 * comparison.  Shared by both trees: what differs between them is when
 * key_delsp() gets called, not what it does.
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <stdlib.h>
#include <string.h>

#include "netkeyd.h"

struct keystat	 keystat;
struct sphead	 sptree[IPSEC_DIR_MAX] = {
	TAILQ_HEAD_INITIALIZER(sptree[0]),
	TAILQ_HEAD_INITIALIZER(sptree[1]),
	TAILQ_HEAD_INITIALIZER(sptree[2]),
};
uint64_t	 key_now;
uint64_t	 sp_gen = 1;

/*
 * The handle table: slot i holds a live policy or NULL, and a generation
 * bumped at every free, so a stale handle never resolves.  Slot 0 is the
 * null handle.
 */
struct spslot {
	struct secpolicy	*sp;
	uint32_t		 gen;
	uint32_t		 nextfree;
};

static struct spslot	*slots;
static uint32_t		 nslots;
static uint32_t		 freeslot;	/* head of the free list, 0 = empty */

static uint32_t
key_slot_alloc(void)
{
	struct spslot	*ns;
	uint32_t	 i, first, n;

	if (freeslot != 0) {
		i = freeslot;
		freeslot = slots[i].nextfree;
		return (i);
	}
	if (nslots > UINT32_MAX / 2)
		fatal("%s: handle table full", __func__);
	n = nslots == 0 ? 1024 : nslots * 2;
	if ((ns = reallocarray(slots, n, sizeof(*ns))) == NULL)
		fatal("%s: out of memory", __func__);
	memset(ns + nslots, 0, (n - nslots) * sizeof(*ns));
	slots = ns;
	first = nslots == 0 ? 1 : nslots;
	/* Hand out the first new slot, chain the rest onto the free list. */
	for (i = n - 1; i > first; i--) {
		slots[i].nextfree = freeslot;
		freeslot = i;
	}
	nslots = n;
	return (first);
}

struct secpolicy *
key_newsp(void)
{
	struct secpolicy	*sp;

	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return (NULL);
	sp->refcnt = 1;
	sp->state = IPSEC_SPSTATE_ALIVE;
	sp->created = sp->lastused = key_now;
	sp->slot = key_slot_alloc();
	slots[sp->slot].sp = sp;
	keystat.allocated++;
	return (sp);
}

/*
 * The last step of a policy's life.  A free while flows still cache the
 * policy is what the refcount-as-TTL tree does: count it, and let the
 * stale handles report every later touch as a use after free.
 */
void
key_delsp(struct secpolicy *sp)
{
	struct spslot	*s = &slots[sp->slot];

	if (sp->linked || sp->hashed[SPHASH_ID])
		fatal("%s: policy %u freed while linked or indexed", __func__,
		    sp->id);
	if (sp->flowrefs > 0)
		keystat.premature_frees++;
	s->sp = NULL;
	s->gen++;
	s->nextfree = freeslot;
	freeslot = sp->slot;
	keystat.freed++;
	keystat.allocated--;
	explicit_bzero(sp, sizeof(*sp));
	free(sp);
}

struct sphandle
key_sp_handle(const struct secpolicy *sp)
{
	struct sphandle	 h = { 0, 0 };

	if (sp != NULL) {
		h.slot = sp->slot;
		h.gen = slots[sp->slot].gen;
	}
	return (h);
}

struct secpolicy *
key_sp_byhandle(struct sphandle h)
{
	if (h.slot == 0 || h.slot >= nslots || slots[h.slot].gen != h.gen)
		return (NULL);
	return (slots[h.slot].sp);
}

struct secpolicy *
key_sp_byslot(uint32_t i)
{
	if (i == 0 || i >= nslots)
		return (NULL);
	return (slots[i].sp);
}

uint32_t
key_sp_slots(void)
{
	return (nslots);
}

/* Cached policies are re-validated lazily: bumping the generation is all. */
void
key_spd_invalidate(void)
{
	sp_gen++;
}

/*
 * Two indexes answer the questions SPDADD asks without walking the table:
 * SPHASH_SPIDX holds every linked policy by exact selector, SPHASH_ID the
 * policies a tree finds by id (netkey: all of sptailq; netipsec: the
 * linked ones).  Entries join a bucket at its tail, in the order they join
 * sptree and sptailq, so the first match in a bucket is the first match
 * the walk would have found.  A table doubles when it holds more entries
 * than buckets; doubling splits each bucket in two, each half in order.
 */
#define SPHASH_MINSIZE	64

struct sphash {
	struct sphead	*b;
	uint32_t	 mask;		/* buckets - 1 */
	uint32_t	 n;
};

static struct sphash	 sphash[SPHASH_MAX];
static uint64_t		 census[IPSEC_DIR_MAX][2];	/* [dir][state] */

static uint32_t
sphash_mix(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return (h);
}

static uint32_t
sphash_bytes(uint32_t h, const uint8_t *p, size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return (h);
}

/* Over what key_cmpspidx_exactly compares, and nothing else. */
static uint32_t
sphash_spidx(const struct secpolicyindex *spidx)
{
	const struct keyaddr	*ka[2] = { &spidx->src, &spidx->dst };
	uint32_t		 h = 2166136261u;
	uint8_t			 hdr[4];
	int			 i;

	h = sphash_bytes(h, &spidx->dir, 1);
	h = sphash_bytes(h, &spidx->ul_proto, 1);
	for (i = 0; i < 2; i++) {
		hdr[0] = ka[i]->ka_family;
		hdr[1] = ka[i]->ka_plen;
		memcpy(hdr + 2, &ka[i]->ka_port, 2);
		h = sphash_bytes(h, hdr, sizeof(hdr));
		h = sphash_bytes(h, ka[i]->ka_addr,
		    ka[i]->ka_family == AF_INET6 ? 16 : 4);
	}
	return (sphash_mix(h));
}

static void
sphash_grow(struct sphash *t, int k)
{
	struct sphead		*nb;
	struct secpolicy	*sp;
	uint32_t		 i, n;

	n = t->b == NULL ? SPHASH_MINSIZE : (t->mask + 1) * 2;
	if (n == 0 || (nb = reallocarray(NULL, n, sizeof(*nb))) == NULL)
		fatal("%s: out of memory", __func__);
	for (i = 0; i < n; i++)
		TAILQ_INIT(&nb[i]);
	for (i = 0; t->b != NULL && i <= t->mask; i++) {
		while ((sp = TAILQ_FIRST(&t->b[i])) != NULL) {
			TAILQ_REMOVE(&t->b[i], sp, hlink[k]);
			TAILQ_INSERT_TAIL(&nb[sp->hval[k] & (n - 1)], sp,
			    hlink[k]);
		}
	}
	free(t->b);
	t->b = nb;
	t->mask = n - 1;
}

static void
sphash_insert(int k, struct secpolicy *sp, uint32_t hval)
{
	struct sphash	*t = &sphash[k];

	if (sp->hashed[k])
		fatal("%s: policy %u indexed twice", __func__, sp->id);
	if (t->b == NULL || t->n > t->mask)
		sphash_grow(t, k);
	sp->hval[k] = hval;
	sp->hashed[k] = 1;
	TAILQ_INSERT_TAIL(&t->b[hval & t->mask], sp, hlink[k]);
	t->n++;
}

static void
sphash_remove(int k, struct secpolicy *sp)
{
	struct sphash	*t = &sphash[k];

	if (!sp->hashed[k])
		return;
	TAILQ_REMOVE(&t->b[sp->hval[k] & t->mask], sp, hlink[k]);
	sp->hashed[k] = 0;
	t->n--;
}

static struct sphead *
sphash_bucket(int k, uint32_t hval)
{
	struct sphash	*t = &sphash[k];

	return (t->b == NULL ? NULL : &t->b[hval & t->mask]);
}

static int
key_sp_alive(const struct secpolicy *sp)
{
	return (sp->state != IPSEC_SPSTATE_DEAD);
}

/* Append to sptree[dir]: the table's reference is the one key_newsp set. */
void
key_sptree_link(struct secpolicy *sp)
{
	if (sp->linked)
		fatal("%s: policy %u linked twice", __func__, sp->id);
	TAILQ_INSERT_TAIL(&sptree[sp->spidx.dir], sp, chain);
	sp->linked = 1;
	sphash_insert(SPHASH_SPIDX, sp, sphash_spidx(&sp->spidx));
	census[sp->spidx.dir][key_sp_alive(sp)]++;
}

/* Leave sptree; the caller drops the table's reference. */
void
key_sptree_remove(struct secpolicy *sp)
{
	if (!sp->linked)
		fatal("%s: policy %u not linked", __func__, sp->id);
	TAILQ_REMOVE(&sptree[sp->spidx.dir], sp, chain);
	sp->linked = 0;
	sphash_remove(SPHASH_SPIDX, sp);
	census[sp->spidx.dir][key_sp_alive(sp)]--;
	keystat.unlinked++;
}

void
key_sp_setstate(struct secpolicy *sp, int state)
{
	if (sp->linked)
		census[sp->spidx.dir][key_sp_alive(sp)]--;
	sp->state = state;
	if (sp->linked)
		census[sp->spidx.dir][key_sp_alive(sp)]++;
}

/* The first ALIVE entry of sptree[spidx->dir] with exactly this selector. */
struct secpolicy *
key_spidx_lookup(const struct secpolicyindex *spidx)
{
	struct secpolicy	*sp;
	struct sphead		*b;
	uint32_t		 hval = sphash_spidx(spidx);

	if ((b = sphash_bucket(SPHASH_SPIDX, hval)) == NULL)
		return (NULL);
	TAILQ_FOREACH(sp, b, hlink[SPHASH_SPIDX]) {
		if (sp->hval[SPHASH_SPIDX] != hval || !key_sp_alive(sp))
			continue;
		if (key_cmpspidx_exactly(spidx, &sp->spidx))
			return (sp);
	}
	return (NULL);
}

void
key_spid_insert(struct secpolicy *sp)
{
	sphash_insert(SPHASH_ID, sp, sphash_mix(sp->id));
}

void
key_spid_remove(struct secpolicy *sp)
{
	sphash_remove(SPHASH_ID, sp);
}

/* The first policy indexed with this id, whatever its state. */
struct secpolicy *
key_spid_lookup(uint32_t id)
{
	struct secpolicy	*sp;
	struct sphead		*b;
	uint32_t		 hval = sphash_mix(id);

	if ((b = sphash_bucket(SPHASH_ID, hval)) == NULL)
		return (NULL);
	TAILQ_FOREACH(sp, b, hlink[SPHASH_ID])
		if (sp->id == id)
			return (sp);
	return (NULL);
}

void
key_spd_census(struct spd_census *c)
{
	int	 dir;

	for (dir = 0; dir < IPSEC_DIR_MAX; dir++) {
		c->alive[dir] = census[dir][1];
		c->dead[dir] = census[dir][0];
	}
}

/*
 * key_allocsp: a linear scan of sptree[dir], skipping DEAD entries; the
 * first masked match wins and gains a reference.  Both trees look up
 * alike; they differ in what delete, flush and the timer leave behind.
 */
struct secpolicy *
key_allocsp(const struct secpolicyindex *spidx, int dir)
{
	struct secpolicy	*sp;

	keystat.lookups++;
	TAILQ_FOREACH(sp, &sptree[dir], chain) {
		keystat.lookup_walked++;
		if (sp->state == IPSEC_SPSTATE_DEAD)
			continue;
		if (key_cmpspidx_withmask(&sp->spidx, spidx))
			goto found;
	}
	return (NULL);
found:
	sp->lastused = key_now;
	sp->refcnt++;
	return (sp);
}

int
key_addr_bits(int family)
{
	return (family == AF_INET6 ? 128 : 32);
}

static int
key_addr_equal(const struct keyaddr *a, const struct keyaddr *b)
{
	size_t	 n = a->ka_family == AF_INET6 ? 16 : 4;

	return (a->ka_family == b->ka_family && a->ka_plen == b->ka_plen &&
	    a->ka_port == b->ka_port && memcmp(a->ka_addr, b->ka_addr, n) == 0);
}

/* Does address b fall in the prefix of a? */
static int
key_bbcmp(const uint8_t *a, const uint8_t *b, unsigned int bits)
{
	unsigned int	 bytes = bits / 8, rem = bits % 8;
	uint8_t		 mask;

	if (memcmp(a, b, bytes) != 0)
		return (0);
	if (rem == 0)
		return (1);
	mask = (uint8_t)(0xff << (8 - rem));
	return ((a[bytes] & mask) == (b[bytes] & mask));
}

int
key_cmpspidx_exactly(const struct secpolicyindex *a,
    const struct secpolicyindex *b)
{
	return (a->dir == b->dir && a->ul_proto == b->ul_proto &&
	    key_addr_equal(&a->src, &b->src) &&
	    key_addr_equal(&a->dst, &b->dst));
}

/*
 * key_allocsp's match: a is the policy's selector, b the packet's.
 * Family must be equal, the policy's upper-layer protocol and non-zero
 * ports must match, and addresses are compared on the policy's prefix.
 */
int
key_cmpspidx_withmask(const struct secpolicyindex *a,
    const struct secpolicyindex *b)
{
	if (a->src.ka_family != b->src.ka_family ||
	    a->dst.ka_family != b->dst.ka_family)
		return (0);
	if (a->ul_proto != IPSEC_ULPROTO_ANY && a->ul_proto != b->ul_proto)
		return (0);
	if (a->src.ka_port != IPSEC_PORT_ANY && a->src.ka_port != b->src.ka_port)
		return (0);
	if (a->dst.ka_port != IPSEC_PORT_ANY && a->dst.ka_port != b->dst.ka_port)
		return (0);
	if (!key_bbcmp(a->src.ka_addr, b->src.ka_addr, a->src.ka_plen))
		return (0);
	if (!key_bbcmp(a->dst.ka_addr, b->dst.ka_addr, a->dst.ka_plen))
		return (0);
	return (1);
}

/* At exit: free every policy regardless of references. */
void
key_spd_destroy(void)
{
	struct secpolicy	*sp;
	uint32_t		 i;
	int			 dir, k;

	for (dir = 0; dir < IPSEC_DIR_MAX; dir++)
		TAILQ_INIT(&sptree[dir]);
	for (k = 0; k < SPHASH_MAX; k++) {
		free(sphash[k].b);
		memset(&sphash[k], 0, sizeof(sphash[k]));
	}
	memset(census, 0, sizeof(census));
	for (i = 1; i < nslots; i++) {
		if ((sp = slots[i].sp) == NULL)
			continue;
		free(sp);
	}
	free(slots);
	slots = NULL;
	nslots = freeslot = 0;
}
