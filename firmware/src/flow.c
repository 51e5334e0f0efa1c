/*
 * Flows play the role of sockets and their PCB policy caches.  A flow
 * caches a referenced policy per direction and lets go of it lazily:
 * on its next packet if the SPD generation moved or the policy is no
 * longer ALIVE, on refill, and when it closes or idles out.  Admin-opened
 * flows and decapsulated ESP packets share this one code path.
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <stdlib.h>
#include <string.h>

#include "netkeyd.h"

#define FLOW_HASHSIZE	8192

static LIST_HEAD(, flow)	 flowhash[FLOW_HASHSIZE];
static TAILQ_HEAD(, flow)	 flows = TAILQ_HEAD_INITIALIZER(flows);
static uint64_t			 flow_idle_ticks;
static uint32_t			 flow_nextid = 1;

static void	 flow_release(struct flow *, int);
static void	 flow_fill(struct flow *, int);

void
flow_init(uint64_t idle_ticks)
{
	int	 i;

	flow_idle_ticks = idle_ticks;
	for (i = 0; i < FLOW_HASHSIZE; i++)
		LIST_INIT(&flowhash[i]);
}

/* Eight bytes at a time: ESP input hashes every packet's key. */
static uint32_t
flow_hash(const struct flowkey *k)
{
	uint64_t	 w[(sizeof(*k) + 7) / 8], h = 0;
	size_t		 i;

	w[sizeof(w) / sizeof(w[0]) - 1] = 0;
	memcpy(w, k, sizeof(*k));
	for (i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		h = (h ^ w[i]) * 0x9e3779b97f4a7c15ull;
	h ^= h >> 32;
	return ((uint32_t)(h * 0x9e3779b97f4a7c15ull >> 40) &
	    (FLOW_HASHSIZE - 1));
}

static int
flow_hasdir(const struct flow *f, int dir)
{
	if (f->kind == FLOW_FORWARD_IN)
		return (dir == IPSEC_DIR_INBOUND);
	return (dir == IPSEC_DIR_INBOUND || dir == IPSEC_DIR_OUTBOUND);
}

/*
 * The selector a flow presents in one direction.  A local socket sends
 * src→dst and receives dst→src; a decapsulated packet is inbound as is.
 */
void
flow_spidx(const struct flow *f, int dir, struct secpolicyindex *spidx)
{
	const struct flowkey	*k = &f->key;
	int			 swap;

	memset(spidx, 0, sizeof(*spidx));
	swap = f->kind == FLOW_LOCAL && dir == IPSEC_DIR_INBOUND;
	spidx->src.ka_family = spidx->dst.ka_family = k->family;
	spidx->src.ka_plen = spidx->dst.ka_plen = key_addr_bits(k->family);
	memcpy(spidx->src.ka_addr, swap ? k->dst : k->src, 16);
	memcpy(spidx->dst.ka_addr, swap ? k->src : k->dst, 16);
	spidx->src.ka_port = swap ? k->dport : k->sport;
	spidx->dst.ka_port = swap ? k->sport : k->dport;
	spidx->ul_proto = k->proto;
	spidx->dir = (uint8_t)dir;
}

/*
 * Let go of the cached reference.  If the policy was freed under us (the
 * refcount-as-TTL tree does that), the kernel would now write to freed
 * memory: count a use after free and touch nothing.
 */
static void
flow_release(struct flow *f, int dir)
{
	struct secpolicy	*sp;
	struct sphandle		 h = f->sp[dir];

	if (h.slot == 0)
		return;
	f->sp[dir].slot = 0;
	f->sp[dir].gen = 0;
	if ((sp = key_sp_byhandle(h)) == NULL) {
		keystat.use_after_free++;
		return;
	}
	sp->flowrefs--;
	key_freesp(sp);
}

/* Negative answers are not cached: a miss walks the SPD every packet. */
static void
flow_fill(struct flow *f, int dir)
{
	struct secpolicyindex	 spidx;
	struct secpolicy	*sp;

	flow_spidx(f, dir, &spidx);
	if ((sp = key_allocsp(&spidx, dir)) == NULL)
		return;
	sp->flowrefs++;
	f->sp[dir] = key_sp_handle(sp);
	f->gen[dir] = sp_gen;
}

struct flow *
flow_open(const struct flowkey *key, int kind)
{
	struct flow	*f;
	int		 dir;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return (NULL);
	f->key = *key;
	f->kind = kind;
	f->id = flow_nextid++;
	f->lastused = key_now;
	LIST_INSERT_HEAD(&flowhash[flow_hash(key)], f, hash);
	TAILQ_INSERT_TAIL(&flows, f, all);
	keystat.flows_open++;
	keystat.flows_opened++;
	for (dir = 0; dir < IPSEC_DIR_MAX; dir++)
		if (flow_hasdir(f, dir))
			flow_fill(f, dir);
	return (f);
}

struct flow *
flow_lookup(const struct flowkey *key)
{
	struct flow	*f;

	LIST_FOREACH(f, &flowhash[flow_hash(key)], hash)
		if (memcmp(&f->key, key, sizeof(*key)) == 0)
			return (f);
	return (NULL);
}

struct flow *
flow_byid(uint32_t id)
{
	struct flow	*f;

	TAILQ_FOREACH(f, &flows, all)
		if (f->id == id)
			return (f);
	return (NULL);
}

/*
 * A packet on the flow: use the cached policy if the generation still
 * matches and it is ALIVE, else let go of it and look up again.
 */
struct secpolicy *
flow_checkpolicy(struct flow *f, int dir)
{
	struct secpolicy	*sp;

	f->lastused = key_now;
	if (f->sp[dir].slot != 0) {
		sp = key_sp_byhandle(f->sp[dir]);
		if (sp != NULL && f->gen[dir] == sp_gen &&
		    sp->state == IPSEC_SPSTATE_ALIVE)
			return (sp);
		flow_release(f, dir);
	}
	flow_fill(f, dir);
	return (key_sp_byhandle(f->sp[dir]));
}

void
flow_revalidate(struct flow *f)
{
	int	 dir;

	for (dir = 0; dir < IPSEC_DIR_MAX; dir++)
		if (flow_hasdir(f, dir))
			(void)flow_checkpolicy(f, dir);
}

void
flow_close(struct flow *f)
{
	int	 dir;

	for (dir = 0; dir < IPSEC_DIR_MAX; dir++)
		flow_release(f, dir);
	LIST_REMOVE(f, hash);
	TAILQ_REMOVE(&flows, f, all);
	keystat.flows_open--;
	keystat.flows_closed++;
	free(f);
}

int
flow_closeall(void)
{
	struct flow	*f;
	int		 n = 0;

	while ((f = TAILQ_FIRST(&flows)) != NULL) {
		flow_close(f);
		n++;
	}
	return (n);
}

int
flow_sendall(void)
{
	struct flow	*f;
	int		 n = 0;

	TAILQ_FOREACH(f, &flows, all) {
		flow_revalidate(f);
		n++;
	}
	return (n);
}

/* Close flows that saw no packet for flow_idle_ticks. */
void
flow_timehandler(void)
{
	struct flow	*f, *next;

	if (flow_idle_ticks == 0)
		return;
	for (f = TAILQ_FIRST(&flows); f != NULL; f = next) {
		next = TAILQ_NEXT(f, all);
		if (key_now - f->lastused >= flow_idle_ticks) {
			flow_close(f);
			keystat.flows_idled++;
		}
	}
}

void
flow_foreach(void (*fn)(const struct flow *, void *), void *arg)
{
	struct flow	*f;

	TAILQ_FOREACH(f, &flows, all)
		fn(f, arg);
}
