/*
 * spd_diff: the SPD's indexes against the walks they replace.
 *
 * This file includes one build's patched sys/<tree>/key.c, so it sees the
 * tree's static key_getsp(), key_getspbyid() and (netkey) sptailq.  It
 * drives a seeded random sequence of PF_KEY messages through key_parse(),
 * with flows holding references and timer ticks in between, and after
 * every step compares:
 *   - key_getsp() with the walk of sptree[dir] (first ALIVE exact match),
 *     for every selector of the pool;
 *   - key_getspbyid() with the walk of sptailq (netkey) or of sptree
 *     (netipsec), for every allocated id and a band of probe ids;
 *   - the errno of every request with the one the walks predict;
 *   - every automatic id with the next one the walk-based counter gives;
 *   - the maintained census with a count over sptree.
 * The first disagreement is printed and the program exits 1.
 *
 *	spd_diff [-M dead|last] [-n steps] [-s seed]
 *
 * -M breaks the reference on purpose (dead: the selector walk does not
 * skip DEAD entries; last: the id walk returns the last match), to show
 * that the sequences reach the cases where the answers could differ.
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

#include "netkeyd.h"
#include "fuzz_common.h"

#include SPD_DIFF_KEY_C

#define NSRC		6
#define NSEL		(NSRC * 2 * 2 * 2)	/* src, plen, proto, dir */
#define PROBE_LOW	24
#define PROBE_AUTO	96
#define MAXFLOWS	64

struct diffstat {
	uint64_t	 steps;
	uint64_t	 checks;
	uint64_t	 ok[SADB_MAX + 1];
	uint64_t	 err[SADB_MAX + 1];
	uint64_t	 autoids;
	uint64_t	 dupids;	/* an id lookup with two candidates */
	uint64_t	 deadsel;	/* a selector lookup past a DEAD twin */
	uint64_t	 maxlinked;
};

static struct diffstat	 ds;
static struct keycb	*kp;
static int		 peerfd;
static uint64_t		 rng;
static uint32_t		 lastauto;
static uint32_t		 flowids[MAXFLOWS];
static int		 mutant;	/* 0, 'd' (dead) or 'l' (last) */
static const char	*what = "start";

static uint32_t
rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return ((uint32_t)(rng % n));
}

static void
disagree(const char *fmt, unsigned long a, unsigned long b)
{
	printf("spd_diff: step %llu (%s): ", (unsigned long long)ds.steps,
	    what);
	printf(fmt, a, b);
	printf("\n");
	exit(1);
}

/* Selector i of the pool: 10.0.0.x[/24|/32] -> 10.1.0.0/16, in or out. */
static void
pool_sel(int i, char *src, size_t len, uint8_t *plen, uint8_t *proto,
    uint8_t *dir)
{
	snprintf(src, len, "10.0.0.%d", i % NSRC + 1);
	*plen = (i / NSRC) % 2 ? 24 : 32;
	*proto = (i / NSRC / 2) % 2 ? IPPROTO_UDP : IPSEC_ULPROTO_ANY;
	*dir = (i / NSRC / 4) % 2 ? IPSEC_DIR_OUTBOUND : IPSEC_DIR_INBOUND;
}

static void
pool_spidx(int i, struct secpolicyindex *spidx)
{
	char	 src[32];
	uint8_t	 plen, proto, dir;

	pool_sel(i, src, sizeof(src), &plen, &proto, &dir);
	memset(spidx, 0, sizeof(*spidx));
	spidx->src.ka_family = spidx->dst.ka_family = AF_INET;
	spidx->src.ka_plen = plen;
	spidx->dst.ka_plen = 16;
	inet_pton(AF_INET, src, spidx->src.ka_addr);
	inet_pton(AF_INET, "10.1.0.0", spidx->dst.ka_addr);
	spidx->ul_proto = proto;
	spidx->dir = dir;
}

/* ---------------------------------------------------- the old walks */

static struct secpolicy *
ref_getsp(const struct secpolicyindex *spidx)
{
	struct secpolicy	*sp, *dead = NULL;

	TAILQ_FOREACH(sp, &sptree[spidx->dir], chain) {
		if (!key_cmpspidx_exactly(spidx, &sp->spidx))
			continue;
		if (sp->state == IPSEC_SPSTATE_DEAD) {
			if (dead == NULL)
				dead = sp;
			if (mutant == 'd')
				return (sp);
			continue;
		}
		if (dead != NULL)
			ds.deadsel++;
		return (sp);
	}
	return (NULL);
}

/* The first entry with this id, or with -M last the last one. */
static struct secpolicy *
ref_getspbyid(uint32_t id, const struct secpolicy *skip)
{
	struct secpolicy	*sp, *found = NULL;
	int			 n = 0;

#ifdef SPD_DIFF_NETKEY
	TAILQ_FOREACH(sp, &sptailq, tailq) {
		if (sp->id != id || sp == skip)
			continue;
		if (n++ == 0 || mutant == 'l')
			found = sp;
	}
#else
	int			 dir;	/* without sptailq: the table, by dir */

	for (dir = 0; dir < IPSEC_DIR_MAX; dir++) {
		TAILQ_FOREACH(sp, &sptree[dir], chain) {
			if (sp->id != id || sp == skip)
				continue;
			if (n++ == 0 || mutant == 'l')
				found = sp;
		}
	}
#endif
	if (n > 1)
		ds.dupids++;
	return (found);
}

/* key_getnewspid's answer after prev, computed with the walk. */
static uint32_t
ref_nextid(uint32_t prev, const struct secpolicy *newsp)
{
	uint32_t	 id = prev;
	int		 count;

	for (count = 0; count < 1000; count++) {
#ifdef SPD_DIFF_NETKEY
		if (++id == 0)
			id = 0x4000;
#else
		if (++id == 0)
			id = 1;
#endif
		if (ref_getspbyid(id, newsp) == NULL)
			return (id);
	}
	return (0);
}

/* ------------------------------------------------------- the checks */

static void
check_census(void)
{
	struct spd_census	 c;
	struct secpolicy	*sp;
	uint64_t		 alive, dead, linked = 0;
	int			 dir;

	key_spd_census(&c);
	for (dir = 0; dir < IPSEC_DIR_MAX; dir++) {
		alive = dead = 0;
		TAILQ_FOREACH(sp, &sptree[dir], chain) {
			if (sp->state == IPSEC_SPSTATE_DEAD)
				dead++;
			else
				alive++;
		}
		if (c.alive[dir] != alive)
			disagree("census alive %lu, walk %lu", c.alive[dir],
			    alive);
		if (c.dead[dir] != dead)
			disagree("census dead %lu, walk %lu", c.dead[dir],
			    dead);
		linked += alive + dead;
	}
	if (linked > ds.maxlinked)
		ds.maxlinked = linked;
	ds.checks++;
}

static void
check_id(uint32_t id)
{
	struct secpolicy	*a, *b;

	a = key_getspbyid(id);
	b = ref_getspbyid(id, NULL);
	if (a != b)
		disagree("id %lu: index policy slot %lu, walk differs", id,
		    a != NULL ? a->slot : 0);
	ds.checks++;
}

static void
check_all(void)
{
	struct secpolicyindex	 spidx;
	struct secpolicy	*a, *b, *sp;
	uint32_t		 i;

	for (i = 0; i < NSEL; i++) {
		pool_spidx((int)i, &spidx);
		a = key_getsp(&spidx);
		b = ref_getsp(&spidx);
		if (a != b)
			disagree("selector %lu: index id %lu, walk differs", i,
			    a != NULL ? a->id : 0);
		ds.checks++;
	}
	for (i = 0; i < PROBE_LOW; i++)
		check_id(i);
	for (i = 0; i < PROBE_AUTO; i++)
		check_id(lastauto + i);
	for (i = 1; i < key_sp_slots(); i++)
		if ((sp = key_sp_byslot(i)) != NULL)
			check_id(sp->id);
	check_census();
}

/* -------------------------------------------------- the PF_KEY side */

static void
x_policy(struct fz_msg *m, uint8_t dir, uint32_t id, int type)
{
	struct sadb_x_ipsecrequest	 xisr;
	struct sadb_x_policy		 xpl;
	uint8_t				 buf[sizeof(xpl) + sizeof(xisr)];
	size_t				 len = sizeof(xpl);

	memset(buf, 0, sizeof(buf));
	if (type == IPSEC_POLICY_IPSEC) {
		memset(&xisr, 0, sizeof(xisr));
		xisr.sadb_x_ipsecrequest_len = sizeof(xisr);
		xisr.sadb_x_ipsecrequest_proto = IPPROTO_ESP;
		xisr.sadb_x_ipsecrequest_mode = IPSEC_MODE_TRANSPORT;
		xisr.sadb_x_ipsecrequest_level = IPSEC_LEVEL_REQUIRE;
		memcpy(buf + len, &xisr, sizeof(xisr));
		len += sizeof(xisr);
	}
	memset(&xpl, 0, sizeof(xpl));
	xpl.sadb_x_policy_len = PFKEY_UNIT64(len);
	xpl.sadb_x_policy_exttype = SADB_X_EXT_POLICY;
	xpl.sadb_x_policy_type = (uint16_t)type;
	xpl.sadb_x_policy_dir = dir;
	xpl.sadb_x_policy_id = id;
	memcpy(buf, &xpl, sizeof(xpl));
	fz_ext(m, buf, len);
}

static void
sel_exts(struct fz_msg *m, int sel, uint8_t *dirp)
{
	char	 src[32];
	uint8_t	 plen, proto, dir;

	pool_sel(sel, src, sizeof(src), &plen, &proto, &dir);
	fz_addr(m, SADB_EXT_ADDRESS_SRC, src, plen, proto, 0);
	fz_addr(m, SADB_EXT_ADDRESS_DST, "10.1.0.0", 16, proto, 0);
	*dirp = dir;
}

/* Send one request; its reply's errno, and the policy id it carries. */
static int
request(struct fz_msg *m, uint32_t *idp)
{
	static uint8_t		 buf[65536];
	struct sadb_msg		 req, h;
	struct sadb_x_policy	 xpl;
	struct sadb_ext		 ext;
	uint16_t		 len = (uint16_t)PFKEY_UNIT64(m->len);
	size_t			 off;
	ssize_t			 n;
	int			 error = -1;

	memcpy(m->buf + offsetof(struct sadb_msg, sadb_msg_len), &len,
	    sizeof(len));
	memcpy(&req, m->buf, sizeof(req));
	key_parse(kp, m->buf, m->len);
	while ((n = recv(peerfd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		memcpy(&h, buf, sizeof(h));
		/* An SPDGET reply is built like a dump entry: seq 0. */
		if (h.sadb_msg_type != req.sadb_msg_type ||
		    (h.sadb_msg_seq != req.sadb_msg_seq &&
		    h.sadb_msg_type != SADB_X_SPDGET))
			continue;
		error = h.sadb_msg_errno;
		for (off = sizeof(h); off + sizeof(ext) <= (size_t)n;
		    off += (size_t)ext.sadb_ext_len * 8) {
			memcpy(&ext, buf + off, sizeof(ext));
			if (ext.sadb_ext_len == 0)
				break;
			if (ext.sadb_ext_type == SADB_X_EXT_POLICY &&
			    idp != NULL) {
				memcpy(&xpl, buf + off, sizeof(xpl));
				*idp = xpl.sadb_x_policy_id;
			}
		}
	}
	if (error == -1)
		disagree("no reply to type %lu seq %lu", req.sadb_msg_type,
		    req.sadb_msg_seq);
	if (error == 0)
		ds.ok[req.sadb_msg_type]++;
	else
		ds.err[req.sadb_msg_type]++;
	return (error);
}

static void
expect(int got, int want)
{
	if (got != want)
		disagree("errno %lu, the walk predicts %lu", (unsigned long)got,
		    (unsigned long)want);
}

/* A random id: automatic, a small user id, or one past the user range. */
static uint32_t
rnd_id(void)
{
	switch (rnd(8)) {
	case 0:
	case 1:
		return (1 + rnd(12));
	case 2:
		return (0x3ffe + rnd(4));
	case 3:
		return (lastauto + rnd(6));
	default:
		return (0);
	}
}

/* SPDADD, SPDUPDATE or SPDSETIDX of a pool selector. */
static void
op_add(uint8_t type)
{
	struct sadb_lifetime	 lft;
	struct secpolicyindex	 spidx;
	struct secpolicy	*old, *newsp;
	struct fz_msg		 m;
	uint32_t		 id = rnd_id(), got = 0, want;
	uint8_t			 dir;
	int			 sel = (int)rnd(NSEL), error, expected = 0;
	int			 autoid;

	what = type == SADB_X_SPDUPDATE ? "SPDUPDATE" :
	    type == SADB_X_SPDSETIDX ? "SPDSETIDX" : "SPDADD";
	pool_spidx(sel, &spidx);
#ifdef SPD_DIFF_NETKEY
	old = id != 0 ? ref_getspbyid(id, NULL) : ref_getsp(&spidx);
	if (old != NULL && (old->readonly || old->persist))
		expected = EPERM;
	autoid = id < 1 || id > 0x3fff;
#else
	old = ref_getsp(&spidx);
	autoid = 1;
#endif
	if (old != NULL && expected == 0 && type != SADB_X_SPDUPDATE)
		expected = EEXIST;
	fz_begin(&m, type, SADB_SATYPE_UNSPEC);
	sel_exts(&m, sel, &dir);
	x_policy(&m, dir, id, rnd(4) ? IPSEC_POLICY_IPSEC :
	    IPSEC_POLICY_DISCARD);
	if (rnd(5) == 0) {
		memset(&lft, 0, sizeof(lft));
		lft.sadb_lifetime_len = PFKEY_UNIT64(sizeof(lft));
		lft.sadb_lifetime_exttype = SADB_EXT_LIFETIME_HARD;
		if (rnd(2))
			lft.sadb_lifetime_addtime = 1 + rnd(4);
		else
			lft.sadb_lifetime_usetime = 1 + rnd(4);
		fz_ext(&m, &lft, sizeof(lft));
	}
	error = request(&m, &got);
	expect(error, expected);
	if (error != 0)
		return;
	newsp = TAILQ_LAST(&sptree[dir], sphead);
	if (newsp == NULL || newsp->id != got)
		disagree("new policy id %lu is not at the tail (%lu)", got,
		    newsp != NULL ? newsp->id : 0);
	if (!autoid) {
		if (got != id)
			disagree("user id %lu came back as %lu", id, got);
		return;
	}
	want = ref_nextid(lastauto, newsp);
	if (got != want)
		disagree("automatic id %lu, the walk gives %lu", got, want);
	lastauto = got;
	ds.autoids++;
}

static void
op_delete(void)
{
	struct secpolicyindex	 spidx;
	struct secpolicy	*sp;
	struct fz_msg		 m;
	uint8_t			 dir;
	int			 sel = (int)rnd(NSEL), expected = 0;

	what = "SPDDELETE";
	pool_spidx(sel, &spidx);
	sp = ref_getsp(&spidx);
	if (sp == NULL)
		expected = EINVAL;
#ifdef SPD_DIFF_NETKEY
	else if (sp->persist)
		expected = EPERM;
#endif
	fz_begin(&m, SADB_X_SPDDELETE, SADB_SATYPE_UNSPEC);
	sel_exts(&m, sel, &dir);
	x_policy(&m, dir, 0, IPSEC_POLICY_DISCARD);
	expect(request(&m, NULL), expected);
}

/* SPDDELETE2 or SPDGET by id. */
static void
op_byid(uint8_t type)
{
	struct secpolicy	*sp;
	struct fz_msg		 m;
	uint32_t		 id = rnd(3) ? lastauto - rnd(8) : 1 + rnd(12);
	int			 expected = 0;

	what = type == SADB_X_SPDGET ? "SPDGET" : "SPDDELETE2";
	sp = ref_getspbyid(id, NULL);
	if (sp == NULL)
		expected = type == SADB_X_SPDGET ? ENOENT : EINVAL;
#ifdef SPD_DIFF_NETKEY
	else if (type == SADB_X_SPDDELETE2 && sp->persist)
		expected = EPERM;
#endif
	fz_begin(&m, type, SADB_SATYPE_UNSPEC);
	x_policy(&m, IPSEC_DIR_INBOUND, id, IPSEC_POLICY_DISCARD);
	expect(request(&m, NULL), expected);
}

static void
op_flush(void)
{
	struct fz_msg	 m;

	what = "SPDFLUSH";
	fz_begin(&m, SADB_X_SPDFLUSH, SADB_SATYPE_UNSPEC);
	expect(request(&m, NULL), 0);
}

/* A flow whose lookups land on pool selectors: it holds references. */
static void
op_flow_open(void)
{
	struct flowkey	 key;
	struct flow	*f;
	int		 slot = (int)rnd(MAXFLOWS);

	what = "flow open";
	if (flowids[slot] != 0 && (f = flow_byid(flowids[slot])) != NULL)
		flow_close(f);
	memset(&key, 0, sizeof(key));
	key.family = AF_INET;
	key.proto = rnd(2) ? IPPROTO_UDP : IPPROTO_TCP;
	key.sport = key.dport = htons(80);
	inet_pton(AF_INET, "10.0.0.1", key.src);
	key.src[3] = (uint8_t)(1 + rnd(NSRC));
	inet_pton(AF_INET, "10.1.0.9", key.dst);
	f = flow_open(&key, rnd(2) ? FLOW_LOCAL : FLOW_FORWARD_IN);
	flowids[slot] = f != NULL ? f->id : 0;
}

static void
op_flow(void)
{
	struct flow	*f;
	int		 slot = (int)rnd(MAXFLOWS);

	what = "flow close";
	if (rnd(4) == 0) {
		what = "flow sendall";
		(void)flow_sendall();
	} else if (flowids[slot] != 0 &&
	    (f = flow_byid(flowids[slot])) != NULL)
		flow_close(f);
	flowids[slot] = 0;
}

static void
op_persist(void)
{
	/* Rare: a persistent policy stays until the end. */
	what = "persist";
	if (rnd(8) == 0)
		(void)key_spd_setpersist(lastauto - rnd(6));
}

static void
step(void)
{
	uint32_t	 r = rnd(100);

	if (r < 28)
		op_add(SADB_X_SPDADD);
	else if (r < 38)
		op_add(SADB_X_SPDUPDATE);
	else if (r < 41)
		op_add(SADB_X_SPDSETIDX);
	else if (r < 53)
		op_delete();
	else if (r < 61)
		op_byid(SADB_X_SPDDELETE2);
	else if (r < 65)
		op_byid(SADB_X_SPDGET);
	else if (r < 66)
		op_flush();
	else if (r < 78)
		op_flow_open();
	else if (r < 86)
		op_flow();
	else if (r < 88)
		op_persist();
	else {
		what = "tick";
		key_timehandler();
	}
}

static void
setup(void)
{
	int	 sv[2], sz = 4 * 1024 * 1024;

	log_init("/dev/null", 0);
	key_spd_init();
	key_sad_init();
	flow_init(6);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv) == -1)
		abort();
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	(void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if ((kp = key_attach(sv[0])) == NULL)
		abort();
	peerfd = sv[1];
#ifdef SPD_DIFF_NETKEY
	lastauto = 0x3fff;
#endif
}

int
main(int argc, char *argv[])
{
	unsigned long long	 seed = 1, n = 20000, i;
	int			 ch, t;

	while ((ch = getopt(argc, argv, "M:n:s:")) != -1) {
		switch (ch) {
		case 'M':
			if (strcmp(optarg, "dead") != 0 &&
			    strcmp(optarg, "last") != 0) {
				fprintf(stderr, "spd_diff: -M: dead or last\n");
				return (2);
			}
			mutant = optarg[0];
			break;
		case 'n':
			n = strtoull(optarg, NULL, 10);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr, "usage: spd_diff [-M dead|last] "
			    "[-n steps] [-s seed]\n");
			return (2);
		}
	}
	rng = seed * 0x9e3779b97f4a7c15ull + 1;
	setup();
	for (i = 0; i < n; i++) {
		ds.steps = i + 1;
		step();
		check_all();
	}
	printf("spd_diff: tree %s seed %llu steps %llu checks %llu "
	    "autoids %llu dupids %llu deadsel %llu maxlinked %llu",
	    NETKEYD_TREE, seed, (unsigned long long)ds.steps,
	    (unsigned long long)ds.checks, (unsigned long long)ds.autoids,
	    (unsigned long long)ds.dupids, (unsigned long long)ds.deadsel,
	    (unsigned long long)ds.maxlinked);
	for (t = 1; t <= SADB_MAX; t++)
		if (ds.ok[t] + ds.err[t] != 0)
			printf(" %s %llu/%llu", key_msgname(t),
			    (unsigned long long)ds.ok[t],
			    (unsigned long long)ds.err[t]);
	printf("\n");
	(void)flow_closeall();
	key_spd_destroy();
	key_sad_destroy();
	key_shutdown();
	return (0);
}
