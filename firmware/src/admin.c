/*
 * The admin socket: one line of words in, one JSON object out.  It is the
 * stats endpoint the orchestrator scrapes, and the hand that opens flows
 * and, with --tick-ms 0, turns the clock.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netkeyd.h"

#define ADMIN_MAXCLIENTS	32
#define ADMIN_LINEMAX		1024
#define ADMIN_MAXARGS		8

struct jbuf {
	char	*s;
	size_t	 len;
	size_t	 cap;
	int	 error;
};

struct adminclient {
	int	 fd;
	size_t	 len;
	char	 buf[ADMIN_LINEMAX];
};

struct admincmd {
	const char	*name;
	int		 minargs;
	void		(*fn)(struct jbuf *, int, char **);
};

static struct adminclient	 clients[ADMIN_MAXCLIENTS];
static int			 nclients;
static int			 lfd = -1;
extern unsigned int		 netkeyd_tick_ms;
extern unsigned int		 netkeyd_flow_idle_ticks;

static void	 jprintf(struct jbuf *, const char *, ...)
		    __attribute__((__format__ (printf, 2, 3)));
static void	 admin_ping(struct jbuf *, int, char **);
static void	 admin_version(struct jbuf *, int, char **);
static void	 admin_stats(struct jbuf *, int, char **);
static void	 admin_ticks(struct jbuf *, int, char **);
static void	 admin_policies(struct jbuf *, int, char **);
static void	 admin_flow(struct jbuf *, int, char **);
static void	 admin_tick(struct jbuf *, int, char **);
static void	 admin_persist(struct jbuf *, int, char **);

static const struct admincmd	 admincmds[] = {
	{ "ping",	0, admin_ping },
	{ "version",	0, admin_version },
	{ "stats",	0, admin_stats },
	{ "ticks",	0, admin_ticks },
	{ "policies",	0, admin_policies },
	{ "flow",	1, admin_flow },
	{ "tick",	0, admin_tick },
	{ "persist",	1, admin_persist },
};

static const char *const esp_dropnames[ESP_DROP_MAX] = {
	"no_sa", "bad_icv", "replay", "policy_mismatch", "no_policy",
	"malformed", "decrypt", "sa_state",
};

static void
jprintf(struct jbuf *j, const char *fmt, ...)
{
	va_list	 ap;
	size_t	 ncap;
	char	*ns;
	int	 n;

	if (j->error)
		return;
	for (;;) {
		va_start(ap, fmt);
		/* An empty jbuf has no buffer yet: NULL + 0 is undefined. */
		n = vsnprintf(j->cap == 0 ? NULL : j->s + j->len,
		    j->cap - j->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			j->error = 1;
			return;
		}
		if ((size_t)n < j->cap - j->len) {
			j->len += (size_t)n;
			return;
		}
		ncap = j->cap == 0 ? 4096 : j->cap * 2;
		while (ncap - j->len <= (size_t)n)
			ncap *= 2;
		if ((ns = realloc(j->s, ncap)) == NULL) {
			j->error = 1;
			return;
		}
		j->s = ns;
		j->cap = ncap;
	}
}

int
admin_init(const char *path)
{
	struct sockaddr_un	 sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	memcpy(sun.sun_path, path, strlen(path));
	if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return (-1);
	(void)unlink(path);
	if (bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    chmod(path, 0600) == -1 || listen(lfd, 16) == -1) {
		close(lfd);
		lfd = -1;
		return (-1);
	}
	return (0);
}

int
admin_listen_fd(void)
{
	return (lfd);
}

void
admin_accept(void)
{
	struct timeval	 tv = { 5, 0 };
	int		 fd;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) == -1)
		return;
	if (nclients == ADMIN_MAXCLIENTS) {
		log_warnx("%s: too many admin clients", __func__);
		close(fd);
		return;
	}
	/* A client that stops reading may stall us 5 s, never forever. */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	clients[nclients].fd = fd;
	clients[nclients].len = 0;
	nclients++;
}

int
admin_nclients(void)
{
	return (nclients);
}

void
admin_client_fds(int *fds, int max)
{
	int	 i;

	for (i = 0; i < nclients && i < max; i++)
		fds[i] = clients[i].fd;
}

static void
admin_drop(int i)
{
	close(clients[i].fd);
	clients[i] = clients[--nclients];
}

static int
admin_write(int fd, const char *s, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		if ((n = send(fd, s, len, MSG_NOSIGNAL)) == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		s += n;
		len -= (size_t)n;
	}
	return (0);
}

/* admin_reply: one command line's JSON reply, newline included, into j. */
static void
admin_reply(char *line, struct jbuf *j)
{
	char		*argv[ADMIN_MAXARGS], *p, *save = NULL;
	size_t		 i;
	int		 argc = 0;

	for (p = strtok_r(line, " \t\r", &save); p != NULL && argc <
	    ADMIN_MAXARGS; p = strtok_r(NULL, " \t\r", &save))
		argv[argc++] = p;
	if (argc == 0)
		return;
	for (i = 0; i < sizeof(admincmds) / sizeof(admincmds[0]); i++) {
		if (strcmp(argv[0], admincmds[i].name) != 0)
			continue;
		if (argc - 1 < admincmds[i].minargs)
			jprintf(j, "{\"error\":\"%s: missing argument\"}",
			    argv[0]);
		else
			admincmds[i].fn(j, argc - 1, argv + 1);
		break;
	}
	if (i == sizeof(admincmds) / sizeof(admincmds[0]))
		jprintf(j, "{\"error\":\"unknown command\"}");
	jprintf(j, "\n");
}

/*
 * admin_lines: answer every whole line in c's buffer, each reply passed to
 * out(c->fd, ...) as soon as it is built, and keep a partial line.  -1
 * means drop the client: a reply could not be built or sent, or the buffer
 * is full with no newline in it.
 */
static int
admin_lines(struct adminclient *c, int (*out)(int, const char *, size_t))
{
	struct jbuf	 j;
	char		*nl;
	size_t		 used;
	int		 rv;

	while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
		*nl = '\0';
		used = (size_t)(nl - c->buf) + 1;
		memset(&j, 0, sizeof(j));
		admin_reply(c->buf, &j);
		rv = 0;
		if (j.error)
			rv = -1;
		else if (j.len > 0)	/* an empty line has no reply */
			rv = out(c->fd, j.s, j.len);
		free(j.s);
		if (rv == -1)
			return (-1);
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
	}
	return (c->len == sizeof(c->buf) - 1 ? -1 : 0);
}

void
admin_input(int fd)
{
	struct adminclient	*c = NULL;
	ssize_t			 n;
	int			 i;

	for (i = 0; i < nclients; i++)
		if (clients[i].fd == fd)
			c = &clients[i];
	if (c == NULL)
		return;
	i = (int)(c - clients);
	n = recv(fd, c->buf + c->len, sizeof(c->buf) - c->len - 1,
	    MSG_DONTWAIT);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		admin_drop(i);
		return;
	}
	if (n < 0)
		return;
	c->len += (size_t)n;
	if (admin_lines(c, admin_write) == -1)
		admin_drop(i);
}

static void
admin_ping(struct jbuf *j, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	jprintf(j, "{\"ok\":true}");
}

static void
admin_version(struct jbuf *j, int argc, char **argv)
{
	char	 patches[] = NETKEYD_PATCHES, *p, *save = NULL;
	int	 first = 1;

	(void)argc;
	(void)argv;
	jprintf(j, "{\"build\":\"%s\",\"tree\":\"%s\",\"patches\":[",
	    NETKEYD_BUILD, NETKEYD_TREE);
	for (p = strtok_r(patches, " ", &save); p != NULL;
	    p = strtok_r(NULL, " ", &save)) {
		jprintf(j, "%s\"%s\"", first ? "" : ",", p);
		first = 0;
	}
	jprintf(j, "],\"tick_ms\":%u,\"flow_idle_ticks\":%u,\"pid\":%d}",
	    netkeyd_tick_ms, netkeyd_flow_idle_ticks, (int)getpid());
}

static void
admin_stats(struct jbuf *j, int argc, char **argv)
{
	struct spd_census	 c;
	int			 i, first;

	(void)argc;
	(void)argv;
	key_spd_census(&c);
	jprintf(j, "{\"now\":%llu,\"ticks\":%llu,\"gen\":%llu,",
	    (unsigned long long)key_now, (unsigned long long)keystat.ticks,
	    (unsigned long long)sp_gen);
	jprintf(j, "\"spd\":{\"alive\":{\"in\":%llu,\"out\":%llu},"
	    "\"dead\":{\"in\":%llu,\"out\":%llu},\"allocated\":%llu,"
	    "\"unlinked\":%llu,\"timer_unlinked\":%llu,\"msg_unlinked\":%llu,"
	    "\"freed\":%llu,"
	    "\"premature_frees\":%llu,\"use_after_free\":%llu,\"lookups\":%llu,"
	    "\"lookup_walked\":%llu,\"flushes\":%llu},",
	    (unsigned long long)c.alive[IPSEC_DIR_INBOUND],
	    (unsigned long long)c.alive[IPSEC_DIR_OUTBOUND],
	    (unsigned long long)c.dead[IPSEC_DIR_INBOUND],
	    (unsigned long long)c.dead[IPSEC_DIR_OUTBOUND],
	    (unsigned long long)keystat.allocated,
	    (unsigned long long)keystat.unlinked,
	    (unsigned long long)keystat.timer_unlinked,
	    (unsigned long long)keystat.msg_unlinked,
	    (unsigned long long)keystat.freed,
	    (unsigned long long)keystat.premature_frees,
	    (unsigned long long)keystat.use_after_free,
	    (unsigned long long)keystat.lookups,
	    (unsigned long long)keystat.lookup_walked,
	    (unsigned long long)keystat.flushes);
	jprintf(j, "\"msgs\":{");
	for (i = 1, first = 1; i <= SADB_MAX; i++) {
		jprintf(j, "%s\"%s\":%llu", first ? "" : ",", key_msgname(i),
		    (unsigned long long)keystat.msgs[i]);
		first = 0;
	}
	jprintf(j, "},\"errors\":{");
	for (i = 1, first = 1; i < 256; i++) {
		if (keystat.errors[i] == 0)
			continue;
		jprintf(j, "%s\"%d\":%llu", first ? "" : ",", i,
		    (unsigned long long)keystat.errors[i]);
		first = 0;
	}
	jprintf(j, "},\"rejects\":{\"short\":%llu,\"version\":%llu,"
	    "\"length\":%llu,\"ext_unknown\":%llu,\"ext_dup\":%llu,"
	    "\"ext_len\":%llu,\"addr\":%llu,\"policy\":%llu},"
	    "\"sendup_drops\":%llu,",
	    (unsigned long long)keystat.rej_short,
	    (unsigned long long)keystat.rej_version,
	    (unsigned long long)keystat.rej_length,
	    (unsigned long long)keystat.rej_ext_unknown,
	    (unsigned long long)keystat.rej_ext_dup,
	    (unsigned long long)keystat.rej_ext_len,
	    (unsigned long long)keystat.rej_addr,
	    (unsigned long long)keystat.rej_policy,
	    (unsigned long long)keystat.sendup_drops);
	jprintf(j, "\"sad\":{\"sas\":%llu,\"expired_soft\":%llu,"
	    "\"expired_hard\":%llu},\"esp\":{\"ok\":%llu,\"bytes\":%llu,"
	    "\"drop\":{",
	    (unsigned long long)keystat.sas,
	    (unsigned long long)keystat.sa_expired_soft,
	    (unsigned long long)keystat.sa_expired_hard,
	    (unsigned long long)keystat.esp_ok,
	    (unsigned long long)keystat.esp_bytes);
	for (i = 0; i < ESP_DROP_MAX; i++)
		jprintf(j, "%s\"%s\":%llu", i == 0 ? "" : ",",
		    esp_dropnames[i], (unsigned long long)keystat.esp_drop[i]);
	jprintf(j, "},\"natt\":{\"keepalives\":%llu,\"non_esp\":%llu}},"
	    "\"flows\":{\"open\":%llu,\"opened\":%llu,"
	    "\"closed\":%llu,\"idled\":%llu}}",
	    (unsigned long long)esp_natt_keepalives(),
	    (unsigned long long)esp_natt_nonesp(),
	    (unsigned long long)keystat.flows_open,
	    (unsigned long long)keystat.flows_opened,
	    (unsigned long long)keystat.flows_closed,
	    (unsigned long long)keystat.flows_idled);
}

static void
admin_tickrec(struct jbuf *j, const struct tickrec *r)
{
	jprintf(j, "{\"tick\":%llu,\"unlinked\":%llu,\"timer_unlinked\":%llu,"
	    "\"freed\":%llu,\"premature\":%llu,\"uaf\":%llu,\"lookups\":%llu,"
	    "\"walked\":%llu,"
	    "\"esp_ok\":%llu,\"esp_drop\":%llu,\"alive_in\":%llu,"
	    "\"alive_out\":%llu,\"dead_in\":%llu,\"dead_out\":%llu,"
	    "\"allocated\":%llu,\"flows\":%llu}",
	    (unsigned long long)r->tick, (unsigned long long)r->unlinked,
	    (unsigned long long)r->timer_unlinked,
	    (unsigned long long)r->freed, (unsigned long long)r->premature,
	    (unsigned long long)r->uaf, (unsigned long long)r->lookups,
	    (unsigned long long)r->walked, (unsigned long long)r->esp_ok,
	    (unsigned long long)r->esp_drop,
	    (unsigned long long)r->alive[IPSEC_DIR_INBOUND],
	    (unsigned long long)r->alive[IPSEC_DIR_OUTBOUND],
	    (unsigned long long)r->dead[IPSEC_DIR_INBOUND],
	    (unsigned long long)r->dead[IPSEC_DIR_OUTBOUND],
	    (unsigned long long)r->allocated, (unsigned long long)r->flows);
}

static int
admin_getnum(const char *s, unsigned long long max, unsigned long long *v)
{
	char	*ep;

	errno = 0;
	*v = strtoull(s, &ep, 0);
	if (*s == '\0' || *ep != '\0' || errno != 0 || *v > max ||
	    *s == '-')
		return (-1);
	return (0);
}

/* ticks [SINCE]: the records with tick > SINCE still in the ring. */
static void
admin_ticks(struct jbuf *j, int argc, char **argv)
{
	const struct tickrec	*r;
	unsigned long long	 since = 0;
	uint64_t		 i, n = timer_nrec();
	int			 first = 1;

	if (argc > 0 && admin_getnum(argv[0], UINT64_MAX, &since) == -1) {
		jprintf(j, "{\"error\":\"ticks: bad SINCE\"}");
		return;
	}
	jprintf(j, "{\"ticks\":[");
	for (i = 0; i < n; i++) {
		if ((r = timer_rec(i)) == NULL || r->tick <= since)
			continue;
		if (!first)
			jprintf(j, ",");
		admin_tickrec(j, r);
		first = 0;
	}
	jprintf(j, "],\"last\":%llu,\"now\":%llu}",
	    (unsigned long long)key_now, (unsigned long long)key_now);
}

static void
admin_addr(struct jbuf *j, const char *key, const struct keyaddr *ka)
{
	char	 s[INET6_ADDRSTRLEN];

	if (inet_ntop(ka->ka_family == AF_INET6 ? AF_INET6 : AF_INET,
	    ka->ka_addr, s, sizeof(s)) == NULL)
		snprintf(s, sizeof(s), "?");
	jprintf(j, "\"%s\":\"%s/%u\"", key, s, ka->ka_plen);
}

static void
admin_policies(struct jbuf *j, int argc, char **argv)
{
	static const char *const dirs[] = { "any", "in", "out" };
	static const char *const types[] = { "discard", "none", "ipsec",
	    "entrust", "bypass" };
	const struct secpolicy	*sp;
	uint32_t		 i, n = key_sp_slots();
	int			 first = 1;

	(void)argc;
	(void)argv;
	jprintf(j, "{\"policies\":[");
	for (i = 1; i < n; i++) {
		if ((sp = key_sp_byslot(i)) == NULL)
			continue;
		jprintf(j, "%s{\"id\":%u,\"dir\":\"%s\",\"state\":\"%s\","
		    "\"refcnt\":%u,\"flowrefs\":%u,\"linked\":%s,"
		    "\"persist\":%s,\"policy\":\"%s\",", first ? "" : ",",
		    sp->id, dirs[sp->spidx.dir % 3],
		    sp->state == IPSEC_SPSTATE_DEAD ? "dead" : "alive",
		    sp->refcnt, sp->flowrefs, sp->linked ? "true" : "false",
		    sp->persist ? "true" : "false", types[sp->policy % 5]);
		admin_addr(j, "src", &sp->spidx.src);
		jprintf(j, ",");
		admin_addr(j, "dst", &sp->spidx.dst);
		jprintf(j, ",\"sport\":%u,\"dport\":%u,\"proto\":%u,"
		    "\"created\":%llu,\"lastused\":%llu}",
		    ntohs(sp->spidx.src.ka_port), ntohs(sp->spidx.dst.ka_port),
		    sp->spidx.ul_proto, (unsigned long long)sp->created,
		    (unsigned long long)sp->lastused);
		first = 0;
	}
	jprintf(j, "]}");
}

static int
admin_parseflow(int argc, char **argv, struct flowkey *k)
{
	unsigned long long	 proto, sport, dport;

	if (argc < 5)
		return (-1);
	memset(k, 0, sizeof(*k));
	if (inet_pton(AF_INET, argv[0], k->src) == 1 &&
	    inet_pton(AF_INET, argv[1], k->dst) == 1)
		k->family = AF_INET;
	else if (inet_pton(AF_INET6, argv[0], k->src) == 1 &&
	    inet_pton(AF_INET6, argv[1], k->dst) == 1)
		k->family = AF_INET6;
	else
		return (-1);
	if (admin_getnum(argv[2], 255, &proto) == -1 ||
	    admin_getnum(argv[3], 65535, &sport) == -1 ||
	    admin_getnum(argv[4], 65535, &dport) == -1)
		return (-1);
	k->proto = (uint8_t)proto;
	k->sport = htons((uint16_t)sport);
	k->dport = htons((uint16_t)dport);
	return (0);
}

static void
admin_flowrefs(struct jbuf *j, const struct flow *f)
{
	const struct secpolicy	*in, *out;

	in = key_sp_byhandle(f->sp[IPSEC_DIR_INBOUND]);
	out = key_sp_byhandle(f->sp[IPSEC_DIR_OUTBOUND]);
	jprintf(j, "{\"flow\":%u,", f->id);
	if (out != NULL)
		jprintf(j, "\"out\":%u,", out->id);
	else
		jprintf(j, "\"out\":null,");
	if (in != NULL)
		jprintf(j, "\"in\":%u}", in->id);
	else
		jprintf(j, "\"in\":null}");
}

/* flow open SRC DST PROTO SPORT DPORT | send ID | sendall | close ID | closeall */
static void
admin_flow(struct jbuf *j, int argc, char **argv)
{
	unsigned long long	 id;
	struct flowkey		 k;
	struct flow		*f;

	if (strcmp(argv[0], "open") == 0) {
		if (admin_parseflow(argc - 1, argv + 1, &k) == -1) {
			jprintf(j, "{\"error\":\"flow open: usage: SRC DST "
			    "PROTO SPORT DPORT\"}");
			return;
		}
		if ((f = flow_lookup(&k)) == NULL &&
		    (f = flow_open(&k, FLOW_LOCAL)) == NULL) {
			jprintf(j, "{\"error\":\"flow open: out of memory\"}");
			return;
		}
		admin_flowrefs(j, f);
	} else if (strcmp(argv[0], "sendall") == 0) {
		jprintf(j, "{\"flows\":%d}", flow_sendall());
	} else if (strcmp(argv[0], "closeall") == 0) {
		jprintf(j, "{\"closed\":%d}", flow_closeall());
	} else if (strcmp(argv[0], "send") == 0 ||
	    strcmp(argv[0], "close") == 0) {
		if (argc < 2 || admin_getnum(argv[1], UINT32_MAX, &id) == -1 ||
		    (f = flow_byid((uint32_t)id)) == NULL) {
			jprintf(j, "{\"error\":\"flow %s: no such flow\"}",
			    argv[0]);
			return;
		}
		if (argv[0][0] == 's') {
			flow_revalidate(f);
			admin_flowrefs(j, f);
		} else {
			flow_close(f);
			jprintf(j, "{\"closed\":1}");
		}
	} else
		jprintf(j, "{\"error\":\"flow: unknown subcommand\"}");
}

/* tick [N]: run N timer ticks now and return their records. */
static void
admin_tick(struct jbuf *j, int argc, char **argv)
{
	const struct tickrec	*r;
	unsigned long long	 n = 1, i;
	uint64_t		 first = timer_nrec();
	const char		*sep;

	if (argc > 0 && admin_getnum(argv[0], 1000000, &n) == -1) {
		jprintf(j, "{\"error\":\"tick: bad count\"}");
		return;
	}
	for (i = 0; i < n; i++)
		key_timehandler();
	jprintf(j, "{\"now\":%llu,\"ticks\":[", (unsigned long long)key_now);
	for (sep = ""; first < timer_nrec(); first++) {
		if ((r = timer_rec(first)) == NULL)
			continue;
		jprintf(j, "%s", sep);
		admin_tickrec(j, r);
		sep = ",";
	}
	jprintf(j, "]}");
}

static void
admin_persist(struct jbuf *j, int argc, char **argv)
{
	unsigned long long	 id;

	(void)argc;
	if (admin_getnum(argv[0], UINT32_MAX, &id) == -1 ||
	    key_spd_setpersist((uint32_t)id) == -1) {
		jprintf(j, "{\"error\":\"persist: no such policy\"}");
		return;
	}
	jprintf(j, "{\"ok\":true}");
}
