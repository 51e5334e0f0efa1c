/*
 * espgen: one core's ESP flood, AES-GCM-16 (RFC 4106) encrypted per packet.
 *
 *	espgen [-C cpu] [-N netns] [-n count] [-t seconds] [-r pps] [-s file [-e s]]
 *	    [-k sample] [-w file] -i ifname job
 *
 * The job file (orchestrator/traffic/native.py writes it) holds this process's SAs,
 * each with the last sequence number already used, and its flows: the link, IPv4 (and
 * NAT-T UDP) headers, constant per flow, and the ESP payload before encryption.  Flows
 * are served round-robin; every packet gets its SA's next sequence number, its IV is
 * that number (64 bits, unique per SA), AAD is SPI || seq.  Frames leave by AF_PACKET
 * with the queueing discipline bypassed, 64 per sendmmsg(), from the network namespace
 * -N names (as `ip netns add` made it; entered with setns, so the process keeps its pid).
 *
 * With -r, frames are paced by a token bucket at `pps` (bursts of 5 ms worth, at most
 * 64, from a bucket 100 ms deep); without it they leave as fast as they can.
 * With -s, the stats are written to `file` (atomically, by rename) once the socket is
 * open, every -e seconds (default 1) and at the end: each running report's sequence
 * numbers are leased ahead by what the rate uses in three reports, so a successor that
 * starts from a report never replays a number this process used.
 *
 * Stops after `count` packets, `seconds` seconds, SIGTERM or SIGINT, or when an SA
 * reaches 2^32-1; prints one JSON line: what was sent, the wall and CPU seconds, and
 * the last sequence number of every SA, in job order.  With -w, the first `sample`
 * frames and the last batch's first `sample` frames are written to `file` (u16 length
 * in network order, then the frame), for a check by scapy.
 *
 * Exit status: 0 done, 2 a bad argument or job file (one line names it), 3 a system
 * call failed.
 */
#include <sys/resource.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define JOB_MAGIC	"ESPGEN1\n"
#define BATCH		64
#define FRAME_MAX	2048
#define ESP_HDR		8	/* SPI, sequence number */
#define GCM_IV		8
#define GCM_SALT	4
#define GCM_ICV		16
#define SEQ_MAX		0xffffffffu

struct sa {
	uint32_t	 spi;
	uint32_t	 last;		/* the last sequence number used */
	uint32_t	 nflows;	/* flows that use it: its share of the rate */
	uint8_t		 salt[GCM_SALT];
	EVP_CIPHER_CTX	*ctx;		/* keyed once; a nonce per packet */
};

struct flow {
	uint32_t	 sa;
	uint16_t	 hdr_len;
	uint16_t	 pt_len;
	uint8_t		*hdr;
	uint8_t		*pt;
};

struct job {
	uint8_t		*file;		/* the job file; flows point into it */
	uint32_t	 nsas, nflows;
	struct sa	*sas;
	struct flow	*flows;
};

struct stats {
	uint64_t	 sent, errors, bytes;
	int		 exhausted;
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: espgen [-C cpu] [-N netns] [-n count] [-t seconds] "
	    "[-r pps] [-s file [-e seconds]] [-k sample] [-w file] -i ifname job\n");
	exit(2);
}

/* A bounds-checked reader over the job file; a short read names its offset. */
struct rd {
	const uint8_t	*p;
	size_t		 len, off;
	const char	*path;
};

static const uint8_t *
rd_take(struct rd *r, size_t n, const char *what)
{
	const uint8_t *p;

	if (n > r->len - r->off) {
		fprintf(stderr, "espgen: %s: truncated at byte %zu (%s)\n", r->path,
		    r->off, what);
		exit(2);
	}
	p = r->p + r->off;
	r->off += n;
	return (p);
}

static uint32_t
rd_u32(struct rd *r, const char *what)
{
	uint32_t v;

	memcpy(&v, rd_take(r, 4, what), 4);
	return (ntohl(v));
}

static uint16_t
rd_u16(struct rd *r, const char *what)
{
	uint16_t v;

	memcpy(&v, rd_take(r, 2, what), 2);
	return (ntohs(v));
}

static void
bad(struct rd *r, const char *msg)
{
	fprintf(stderr, "espgen: %s: byte %zu: %s\n", r->path, r->off, msg);
	exit(2);
}

static const EVP_CIPHER *
gcm_cipher(size_t keylen)
{
	switch (keylen) {
	case 16:
		return (EVP_aes_128_gcm());
	case 24:
		return (EVP_aes_192_gcm());
	case 32:
		return (EVP_aes_256_gcm());
	}
	return (NULL);
}

static uint8_t *
read_file(const char *path, size_t *lenp)
{
	FILE *f;
	uint8_t *buf;
	long n;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "espgen: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "espgen: %s: cannot size it\n", path);
		exit(2);
	}
	if ((buf = malloc((size_t)n + 1)) == NULL ||
	    fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "espgen: %s: cannot read it\n", path);
		exit(2);
	}
	fclose(f);
	*lenp = (size_t)n;
	return (buf);
}

static void
job_sa(struct rd *r, struct sa *sa)
{
	const EVP_CIPHER *c;
	const uint8_t *key;
	uint8_t keylen;

	sa->spi = rd_u32(r, "SPI");
	sa->last = rd_u32(r, "last sequence number");
	keylen = *rd_take(r, 1, "key length");
	if (keylen < GCM_SALT || (c = gcm_cipher(keylen - GCM_SALT)) == NULL)
		bad(r, "key length: AES-GCM takes 16, 24 or 32 bytes and a 4-byte salt");
	key = rd_take(r, keylen, "key");
	memcpy(sa->salt, key + keylen - GCM_SALT, GCM_SALT);
	if ((sa->ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex(sa->ctx, c, NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(sa->ctx, EVP_CTRL_GCM_SET_IVLEN,
	    GCM_SALT + GCM_IV, NULL) != 1 ||
	    EVP_EncryptInit_ex(sa->ctx, NULL, NULL, key, NULL) != 1) {
		fprintf(stderr, "espgen: libcrypto: cannot key AES-GCM\n");
		exit(3);
	}
}

static void
job_flow(struct rd *r, struct job *job, struct flow *fl)
{
	fl->sa = rd_u32(r, "SA index");
	if (fl->sa >= job->nsas)
		bad(r, "SA index out of range");
	job->sas[fl->sa].nflows++;
	fl->hdr_len = rd_u16(r, "header length");
	fl->pt_len = rd_u16(r, "payload length");
	if ((size_t)fl->hdr_len + ESP_HDR + GCM_IV + fl->pt_len + GCM_ICV > FRAME_MAX)
		bad(r, "frame longer than 2048 bytes");
	fl->hdr = (uint8_t *)rd_take(r, fl->hdr_len, "header");
	fl->pt = (uint8_t *)rd_take(r, fl->pt_len, "payload");
}

static void
job_load(const char *path, struct job *job)
{
	struct rd r;
	uint32_t i;

	r.path = path;
	r.off = 0;
	r.p = job->file = read_file(path, &r.len);
	if (memcmp(rd_take(&r, 8, "magic"), JOB_MAGIC, 8) != 0)
		bad(&r, "not an espgen job (magic)");
	job->nsas = rd_u32(&r, "SA count");
	job->nflows = rd_u32(&r, "flow count");
	if (job->nsas == 0 || job->nflows == 0 || job->nsas > 1u << 24 ||
	    job->nflows > 1u << 24)
		bad(&r, "SA and flow counts must be 1..2^24");
	job->sas = calloc(job->nsas, sizeof(*job->sas));
	job->flows = calloc(job->nflows, sizeof(*job->flows));
	if (job->sas == NULL || job->flows == NULL) {
		fprintf(stderr, "espgen: out of memory\n");
		exit(3);
	}
	for (i = 0; i < job->nsas; i++)
		job_sa(&r, &job->sas[i]);
	for (i = 0; i < job->nflows; i++)
		job_flow(&r, job, &job->flows[i]);
	if (r.off != r.len)
		bad(&r, "trailing bytes after the last flow");
}

/* One packet of `fl` with sequence number `seq` into `out`; its length. */
static size_t
esp_frame(const struct flow *fl, struct sa *sa, uint32_t seq, uint8_t *out)
{
	uint8_t nonce[GCM_SALT + GCM_IV], *esp;
	uint32_t be;
	int n;

	memcpy(out, fl->hdr, fl->hdr_len);
	esp = out + fl->hdr_len;
	be = htonl(sa->spi);
	memcpy(esp, &be, 4);
	be = htonl(seq);
	memcpy(esp + 4, &be, 4);
	memset(esp + ESP_HDR, 0, 4);	/* IV: the sequence number, 64 bits */
	memcpy(esp + ESP_HDR + 4, &be, 4);
	memcpy(nonce, sa->salt, GCM_SALT);
	memcpy(nonce + GCM_SALT, esp + ESP_HDR, GCM_IV);
	if (EVP_EncryptInit_ex(sa->ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_EncryptUpdate(sa->ctx, NULL, &n, esp, ESP_HDR) != 1 ||
	    EVP_EncryptUpdate(sa->ctx, esp + ESP_HDR + GCM_IV, &n, fl->pt,
	    fl->pt_len) != 1 ||
	    EVP_EncryptFinal_ex(sa->ctx, esp + ESP_HDR + GCM_IV + n, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(sa->ctx, EVP_CTRL_GCM_GET_TAG, GCM_ICV,
	    esp + ESP_HDR + GCM_IV + fl->pt_len) != 1) {
		fprintf(stderr, "espgen: libcrypto: AES-GCM failed\n");
		exit(3);
	}
	return ((size_t)fl->hdr_len + ESP_HDR + GCM_IV + fl->pt_len + GCM_ICV);
}

static void
netns_enter(const char *name)
{
	char path[256];
	int fd;

	if (strchr(name, '/') != NULL || (size_t)snprintf(path, sizeof(path),
	    "/run/netns/%s", name) >= sizeof(path)) {
		fprintf(stderr, "espgen: -N %s: not a namespace name\n", name);
		exit(2);
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    setns(fd, CLONE_NEWNET) == -1) {
		fprintf(stderr, "espgen: -N %s: %s\n", name, strerror(errno));
		exit(2);
	}
	close(fd);
}

static int
link_open(const char *ifname)
{
	struct sockaddr_ll sll;
	int fd, one = 1, sndbuf = 4 << 20;

	if ((fd = socket(AF_PACKET, SOCK_RAW, 0)) == -1) {
		fprintf(stderr, "espgen: socket(AF_PACKET): %s\n", strerror(errno));
		exit(3);
	}
	if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) == -1 ||
	    (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) == -1 &&
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == -1)) {
		fprintf(stderr, "espgen: setsockopt: %s\n", strerror(errno));
		exit(3);
	}
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_IP);
	if ((sll.sll_ifindex = (int)if_nametoindex(ifname)) == 0) {
		fprintf(stderr, "espgen: -i %s: no such interface\n", ifname);
		exit(2);
	}
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) == -1) {
		fprintf(stderr, "espgen: bind %s: %s\n", ifname, strerror(errno));
		exit(3);
	}
	return (fd);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + ts.tv_nsec / 1e9);
}

static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
}

struct batch {
	uint8_t		(*buf)[FRAME_MAX];
	struct iovec	 iov[BATCH];
	struct mmsghdr	 msg[BATCH];
	unsigned int	 n;
};

/* Fill up to `want` frames, round-robin from flow *pos; 0 when an SA ran out. */
static unsigned int
batch_fill(struct batch *b, struct job *job, uint32_t *pos, unsigned int want,
    struct stats *st)
{
	struct flow *fl;
	struct sa *sa;
	unsigned int i;

	for (i = 0; i < want; i++) {
		fl = &job->flows[*pos];
		sa = &job->sas[fl->sa];
		if (sa->last == SEQ_MAX) {
			st->exhausted = 1;
			break;
		}
		sa->last++;
		b->iov[i].iov_len = esp_frame(fl, sa, sa->last, b->buf[i]);
		if (++*pos == job->nflows)
			*pos = 0;
	}
	return (b->n = i);
}

static void
job_free(struct job *job)
{
	uint32_t i;

	for (i = 0; i < job->nsas; i++)
		EVP_CIPHER_CTX_free(job->sas[i].ctx);
	free(job->sas);
	free(job->flows);
	free(job->file);
}

/* Send the batch; a frame the kernel refuses is counted and skipped, not resent. */
static void
batch_send(int fd, struct batch *b, struct stats *st)
{
	unsigned int off = 0, i;
	int r;

	while (off < b->n) {
		r = sendmmsg(fd, b->msg + off, b->n - off, 0);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			st->errors++;
			off++;
			continue;
		}
		for (i = off; i < off + (unsigned int)r; i++)
			st->bytes += b->iov[i].iov_len;
		st->sent += (unsigned int)r;
		off += (unsigned int)r;
	}
}

static void
sample_write(FILE *f, const struct batch *b, unsigned int k)
{
	unsigned int i;
	uint16_t len;

	for (i = 0; i < k && i < b->n; i++) {
		len = htons((uint16_t)b->iov[i].iov_len);
		fwrite(&len, 2, 1, f);
		fwrite(b->buf[i], 1, b->iov[i].iov_len, f);
	}
}

static double
wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((double)ts.tv_sec + ts.tv_nsec / 1e9);
}

/*
 * The stats as one JSON line.  `ahead` > 0 leases each SA's number ahead by what
 * `ahead` packets of this process would use of it (a running report).
 */
static void
report(FILE *f, const struct job *job, const struct stats *st, double wall,
    double cpu, const char *state, double ahead)
{
	uint64_t attempts = st->sent + st->errors, seq;
	uint32_t i;

	fprintf(f, "{\"sent\": %llu, \"errors\": %llu, \"bytes\": %llu, "
	    "\"elapsed\": %.6f, \"cpu_s\": %.6f, \"exhausted\": %d, "
	    "\"rounds\": %llu, \"at\": %.6f, \"state\": \"%s\", \"last_seq\": [",
	    (unsigned long long)st->sent, (unsigned long long)st->errors,
	    (unsigned long long)st->bytes, wall, cpu, st->exhausted,
	    (unsigned long long)(attempts / job->nflows), wall_s(), state);
	for (i = 0; i < job->nsas; i++) {
		seq = job->sas[i].last;
		if (ahead > 0)
			seq += (uint64_t)(ahead * job->sas[i].nflows / job->nflows) + 1;
		fprintf(f, "%s%llu", i ? ", " : "",
		    (unsigned long long)(seq < SEQ_MAX ? seq : SEQ_MAX));
	}
	fprintf(f, "]}\n");
}

/* The stats to `path`, by rename, so a reader sees a whole report or the one before. */
static void
stats_write(const char *path, const struct job *job, const struct stats *st,
    double wall, double cpu, const char *state, double ahead)
{
	char tmp[4096];
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp) ||
	    (f = fopen(tmp, "w")) == NULL) {
		fprintf(stderr, "espgen: -s %s: %s\n", path, strerror(errno));
		exit(3);
	}
	report(f, job, st, wall, cpu, state, ahead);
	if (fclose(f) != 0 || rename(tmp, path) == -1) {
		fprintf(stderr, "espgen: -s %s: %s\n", path, strerror(errno));
		exit(3);
	}
}

/* Sleep `s` seconds at most; a signal ends it early (stop is checked after). */
static void
nap(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
}

static long long
number(const char *s, const char *opt, long long max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < 0 || v > max) {
		fprintf(stderr, "espgen: %s: not a number 0..%lld: '%s'\n", opt, max, s);
		exit(2);
	}
	return (v);
}

static double
positive(const char *s, const char *opt, int zero_ok)
{
	char *end;
	double v;

	v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || !(zero_ok ? v >= 0 : v > 0) || v > 1e9) {
		fprintf(stderr, "espgen: %s: not a number %s 1e9: '%s'\n", opt,
		    zero_ok ? "0.." : "above 0, up to", s);
		exit(2);
	}
	return (v);
}

struct opts {
	long long	 count;		/* -1: no limit */
	double		 seconds;	/* -1: no limit */
	double		 rate;		/* 0: as fast as possible */
	double		 every;		/* between stats reports */
	const char	*spath;		/* stats file, or NULL */
	FILE		*samples;	/* or NULL */
	unsigned int	 k;		/* frames to sample from a batch */
};

/* The send loop: until a limit, a signal or an exhausted SA; the wall seconds. */
static double
run(int fd, struct job *job, struct batch *b, struct opts *o, struct stats *st)
{
	double t0, c0, now, last, next, tokens, burst, depth, lease;
	unsigned int want;
	uint32_t pos = 0;

	burst = BATCH;
	if (o->rate > 0 && (burst = o->rate * 0.005) < 1)
		burst = 1;
	if (burst > BATCH)
		burst = BATCH;
	/*
	 * The bucket holds 100 ms of packets: a nap that oversleeps (a loaded machine) is
	 * made up in the next batches, so the rate holds; a longer stall is not (no flood
	 * after SIGSTOP).
	 */
	if ((depth = o->rate * 0.1) < BATCH)
		depth = BATCH;
	lease = o->rate > 0 ? 3 * o->every * o->rate : 0;
	t0 = last = now_s();
	c0 = cpu_s();
	next = t0 + o->every;
	tokens = burst;
	if (o->spath != NULL)
		stats_write(o->spath, job, st, 0, 0, "running", lease + 1);
	while (!stop && !st->exhausted && o->count != 0) {
		now = now_s();
		if (o->seconds >= 0 && now - t0 >= o->seconds)
			break;
		if (o->spath != NULL && now >= next) {
			stats_write(o->spath, job, st, now - t0, cpu_s() - c0,
			    "running", lease + 1);
			next = now + o->every;
		}
		want = BATCH;
		if (o->rate > 0) {
			tokens += (now - last) * o->rate;
			if (tokens > depth)
				tokens = depth;
			last = now;
			if (tokens < burst) {
				nap((burst - tokens) / o->rate);
				continue;
			}
			if (tokens < BATCH)
				want = (unsigned int)tokens;
		}
		if (o->count >= 0 && o->count < want)
			want = (unsigned int)o->count;
		if (batch_fill(b, job, &pos, want, st) == 0)
			break;
		tokens -= b->n;
		if (o->samples != NULL && st->sent + st->errors == 0)
			sample_write(o->samples, b, o->k);
		batch_send(fd, b, st);
		if (o->count > 0)
			o->count -= b->n;
	}
	return (now_s() - t0);
}

int
main(int argc, char **argv)
{
	struct job job;
	struct batch b;
	struct stats st;
	struct opts o;
	cpu_set_t set;
	const char *ifname = NULL, *wpath = NULL, *netns = NULL;
	long long cpu = -1;
	double wall, c0;
	unsigned int i;
	int ch, fd;

	memset(&o, 0, sizeof(o));
	o.count = -1;
	o.seconds = -1;
	o.every = 1;
	while ((ch = getopt(argc, argv, "C:N:e:i:k:n:r:s:t:w:")) != -1) {
		switch (ch) {
		case 'C':
			cpu = number(optarg, "-C", CPU_SETSIZE - 1);
			break;
		case 'N':
			netns = optarg;
			break;
		case 'e':
			o.every = positive(optarg, "-e", 0);
			break;
		case 'i':
			ifname = optarg;
			break;
		case 'k':
			o.k = (unsigned int)number(optarg, "-k", BATCH);
			break;
		case 'n':
			o.count = number(optarg, "-n", 1LL << 62);
			break;
		case 'r':
			o.rate = positive(optarg, "-r", 0);
			break;
		case 's':
			o.spath = optarg;
			break;
		case 't':
			o.seconds = positive(optarg, "-t", 1);
			break;
		case 'w':
			wpath = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || ifname == NULL)
		usage();
	job_load(argv[optind], &job);
	if (cpu >= 0) {
		CPU_ZERO(&set);
		CPU_SET((int)cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) == -1) {
			fprintf(stderr, "espgen: -C %lld: %s\n", cpu, strerror(errno));
			exit(2);
		}
	}
	if (wpath != NULL && (o.samples = fopen(wpath, "wb")) == NULL) {
		fprintf(stderr, "espgen: -w %s: %s\n", wpath, strerror(errno));
		exit(2);
	}
	if (netns != NULL)
		netns_enter(netns);
	fd = link_open(ifname);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	memset(&st, 0, sizeof(st));
	memset(&b, 0, sizeof(b));
	if ((b.buf = malloc(sizeof(*b.buf) * BATCH)) == NULL) {
		fprintf(stderr, "espgen: out of memory\n");
		exit(3);
	}
	for (i = 0; i < BATCH; i++) {
		b.iov[i].iov_base = b.buf[i];
		b.msg[i].msg_hdr.msg_iov = &b.iov[i];
		b.msg[i].msg_hdr.msg_iovlen = 1;
	}
	c0 = cpu_s();
	wall = run(fd, &job, &b, &o, &st);
	if (o.samples != NULL) {
		sample_write(o.samples, &b, o.k);	/* the last batch sent */
		if (fclose(o.samples) != 0) {
			fprintf(stderr, "espgen: -w %s: %s\n", wpath, strerror(errno));
			exit(3);
		}
	}
	if (o.spath != NULL)
		stats_write(o.spath, &job, &st, wall, cpu_s() - c0, "done", 0);
	report(stdout, &job, &st, wall, cpu_s() - c0, "done", 0);
	close(fd);
	free(b.buf);
	job_free(&job);
	OPENSSL_cleanup();	/* libcrypto's own allocations: no leak to report */
	return (0);
}
