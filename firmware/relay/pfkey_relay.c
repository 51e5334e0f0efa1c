/*
 * pfkey_relay: relays PF_KEY v2 between a kernel (a QEMU guest's af_key, a
 * board's PF_KEY) and the host, over one byte stream: a virtio-serial port,
 * or stdin/stdout when sshd runs it as the command of an SSH channel.
 *
 * The stream shared by every host client, so each PF_KEY
 * message travels in a frame naming its channel:
 *
 *	struct relay_hdr { u16 chan; u8 op; u8 pad; u32 len; }	little-endian
 *
 * followed by len bytes.  Host to guest: OPEN gives the channel a fresh
 * PF_KEY socket (closing an old one), MSG writes one PF_KEY message on it,
 * CLOSE closes it.  Guest to host: MSG carries one message the kernel sent
 * on that channel's socket, CLOSE says the socket is gone, HELLO (channel 0)
 * says the relay is up.  A channel is one PF_KEY socket, so broadcasts,
 * registrations and dumps behave per host client as they do per socket.
 * STAT (host to guest, then back on the same channel) carries the kernel's
 * own counters, read fresh: each file of stat_files[] that opens, as a line
 * "== PATH" then its text (of /proc/slabinfo only the xfrm caches).
 * FLOWS (host to guest, answered by an empty FLOWS) replaces the guest's own
 * flows: its data goes to FLOWS_FILE and a fresh spdlab_flows runs on it
 * (no data: none runs).
 *
 * The frame header is little-endian on every board: it is encoded byte by
 * byte, never copied from a struct.
 *
 * usage: pfkey_relay [-u SOCKET] PORT	PORT: a device (/dev/vport1p1), or -
 *					for stdin/stdout (an SSH channel)
 *        pfkey_relay -t [-u SOCKET]	check that a channel can be opened
 *
 * -u SOCKET: each channel connects to a Unix SOCK_SEQPACKET socket (netkeyd's
 * control socket) instead of opening a PF_KEY socket.  On stdin/stdout the
 * relay exits when the host closes the stream; on a device it waits for the
 * host to come back.
 *
 * Plain POSIX plus PF_KEY: it builds against Linux's <linux/pfkeyv2.h> and
 * the BSDs' <net/pfkeyv2.h> (RELAY_BSD_HEADERS picks the latter on Linux).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#if defined(__linux__) && !defined(RELAY_BSD_HEADERS)
#include <linux/pfkeyv2.h>
#else
#include <net/pfkeyv2.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RELAY_OPEN	1
#define RELAY_MSG	2
#define RELAY_CLOSE	3
#define RELAY_HELLO	4
#define RELAY_STAT	5
#define RELAY_FLOWS	6

#ifndef FLOWS_BIN	/* the fuzz harness starts no flows */
#define FLOWS_BIN	"/bin/spdlab_flows"
#define FLOWS_FILE	"/spdlab_flows.txt"
#endif

#define RELAY_HDRLEN	8
#ifndef RELAY_MAXCHAN
#define RELAY_MAXCHAN	64	/* the fuzz harness makes it small */
#endif
#define RELAY_MAXMSG	(0xffff * 8)
#define RELAY_BUFLEN	(RELAY_HDRLEN + RELAY_MAXMSG)
/*
 * The host pipelines hundreds of requests; af_key drops a reply that does
 * not fit the socket's receive buffer, so give each socket room for them.
 */
#define RELAY_RCVBUF	(8 * 1024 * 1024)

struct relay_hdr {
	uint16_t	chan;
	uint8_t		op;
	uint8_t		pad;
	uint32_t	len;
};

static int		 chanfd[RELAY_MAXCHAN];
static int		 infd = -1;
static int		 outfd = -1;
static int		 onstdio;
static const char	*unixpath;
static unsigned char	*inbuf;
static size_t		 inlen;
static unsigned char	*msgbuf;
static pid_t		 flowspid = -1;

static void
log_warnx(const char *func, const char *what, int err)
{
	if (err)
		fprintf(stderr, "pfkey_relay: %s: %s: %s\n", func, what,
		    strerror(err));
	else
		fprintf(stderr, "pfkey_relay: %s: %s\n", func, what);
}

static int
port_write(const void *buf, size_t len)
{
	const unsigned char	*p = buf;
	ssize_t			 n;

	while (len > 0) {
		n = write(outfd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_warnx(__func__, "write", errno);
			return (-1);
		}
		p += n;
		len -= (size_t)n;
	}
	return (0);
}

static void
hdr_encode(unsigned char *p, const struct relay_hdr *h)
{
	p[0] = h->chan & 0xff;
	p[1] = (h->chan >> 8) & 0xff;
	p[2] = h->op;
	p[3] = 0;
	p[4] = h->len & 0xff;
	p[5] = (h->len >> 8) & 0xff;
	p[6] = (h->len >> 16) & 0xff;
	p[7] = (h->len >> 24) & 0xff;
}

static void
hdr_decode(struct relay_hdr *h, const unsigned char *p)
{
	h->chan = (uint16_t)(p[0] | p[1] << 8);
	h->op = p[2];
	h->pad = p[3];
	h->len = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
	    (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
}

static int
relay_send(uint16_t chan, uint8_t op, const void *data, uint32_t len)
{
	struct relay_hdr	 h;
	unsigned char		 buf[RELAY_HDRLEN];

	memset(&h, 0, sizeof(h));
	h.chan = chan;
	h.op = op;
	h.len = len;
	hdr_encode(buf, &h);
	if (port_write(buf, sizeof(buf)) == -1)
		return (-1);
	if (len > 0 && port_write(data, len) == -1)
		return (-1);
	return (0);
}

static void
chan_close(uint16_t chan)
{
	if (chanfd[chan] != -1) {
		close(chanfd[chan]);
		chanfd[chan] = -1;
	}
}

/* A connected SOCK_SEQPACKET socket to unixpath, or -1. */
static int
unix_open(void)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(unixpath) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	strncpy(sun.sun_path, unixpath, sizeof(sun.sun_path) - 1);
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET, 0)) == -1)
		return (-1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		close(fd);
		return (-1);
	}
	return (fd);
}

static void
rcvbuf_grow(int fd)
{
	int	 size = RELAY_RCVBUF;

#ifdef SO_RCVBUFFORCE
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size,
	    sizeof(size)) == 0)
		return;
#endif
	/* Without the privilege to force it, take what the system allows. */
	while (size >= 65536 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size,
	    sizeof(size)) == -1)
		size /= 2;
}

/* A fresh socket for one channel: PF_KEY, or the -u socket; -1 on error. */
static int
chan_socket(void)
{
	int	 fd;

	if (unixpath != NULL)
		fd = unix_open();
	else
		fd = socket(PF_KEY, SOCK_RAW, PF_KEY_V2);
	if (fd == -1) {
		log_warnx(__func__, unixpath != NULL ? unixpath :
		    "socket(PF_KEY)", errno);
		return (-1);
	}
	rcvbuf_grow(fd);
	return (fd);
}

static void
chan_open(uint16_t chan)
{
	chan_close(chan);
	chanfd[chan] = chan_socket();
	if (chanfd[chan] == -1)
		relay_send(chan, RELAY_CLOSE, NULL, 0);
}

/* Relay one message the kernel has for this channel; -1 when there is none. */
static int
chan_input(uint16_t chan, int flags)
{
	ssize_t	 n;

	n = recv(chanfd[chan], msgbuf, RELAY_MAXMSG, flags);
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return (-1);
	if (n <= 0) {
		log_warnx(__func__, "recv(PF_KEY)", n == 0 ? 0 : errno);
		chan_close(chan);
		relay_send(chan, RELAY_CLOSE, NULL, 0);
		return (-1);
	}
	relay_send(chan, RELAY_MSG, msgbuf, (uint32_t)n);
	return (0);
}

static void
chan_drain(uint16_t chan)
{
	while (chanfd[chan] != -1 && chan_input(chan, MSG_DONTWAIT) == 0)
		;
}

static void
chan_msg(uint16_t chan, const unsigned char *data, uint32_t len)
{
	if (chanfd[chan] == -1) {
		relay_send(chan, RELAY_CLOSE, NULL, 0);
		return;
	}
	/* af_key answers a bad message itself when it can; the rest is lost. */
	if (write(chanfd[chan], data, len) == -1 && errno != EINVAL)
		log_warnx(__func__, "write(PF_KEY)", errno);
	/* Pass the answers on before the next request adds to them. */
	chan_drain(chan);
}

/*
 * What STAT reads: XFRM's error counters, the bundle cache, the census of an
 * instrumented kernel, and the kprobe hit counts spdlab_init sets up on a
 * kernel that has kprobe events.
 */
#ifndef RELAY_STAT_FILES	/* the fuzz harness gives files that read in no time */
#define RELAY_STAT_FILES						\
	"/proc/net/xfrm_stat",						\
	"/proc/slabinfo",						\
	"/proc/net/xfrm_census",					\
	"/sys/kernel/tracing/kprobe_profile"
#endif
static const char	*stat_files[] = { RELAY_STAT_FILES };

/* Append the lines of fd that pass (all, or only xfrm caches) to out. */
static size_t
stat_read(int fd, int only_xfrm, unsigned char *out, size_t room)
{
	char	 buf[8192], line[512];
	size_t	 used = 0, ll = 0;
	ssize_t	 n, i;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (i = 0; i < n; i++) {
			if (ll < sizeof(line) - 1)
				line[ll++] = buf[i];
			if (buf[i] != '\n')
				continue;
			if ((!only_xfrm || strncmp(line, "xfrm", 4) == 0) &&
			    used + ll <= room) {
				memcpy(out + used, line, ll);
				used += ll;
			}
			ll = 0;
		}
	}
	return (used);
}

static void
chan_stat(uint16_t chan)
{
	size_t	 used = 0, i;
	int	 fd, n;

	for (i = 0; i < sizeof(stat_files) / sizeof(stat_files[0]); i++) {
		if ((fd = open(stat_files[i], O_RDONLY)) == -1)
			continue;
		n = snprintf((char *)msgbuf + used, RELAY_MAXMSG - used,
		    "== %s\n", stat_files[i]);
		if (n > 0 && (size_t)n < RELAY_MAXMSG - used)
			used += (size_t)n;
		used += stat_read(fd, strcmp(stat_files[i], "/proc/slabinfo") == 0,
		    msgbuf + used, RELAY_MAXMSG - used);
		close(fd);
	}
	relay_send(chan, RELAY_STAT, msgbuf, (uint32_t)used);
}

static int
flows_write(const unsigned char *data, uint32_t len)
{
	int	 fd, rc = 0;

	if ((fd = open(FLOWS_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0644)) == -1)
		return (-1);
	if (write(fd, data, len) != (ssize_t)len)
		rc = -1;
	close(fd);
	return (rc);
}

/* Stop the guest's flows, and start new ones on data unless it is empty. */
static void
chan_flows(uint16_t chan, const unsigned char *data, uint32_t len)
{
	char	*argv[] = { FLOWS_BIN, FLOWS_FILE, NULL };

	if (flowspid > 0) {
		kill(flowspid, SIGKILL);
		waitpid(flowspid, NULL, 0);
		flowspid = -1;
	}
	if (len > 0 && flows_write(data, len) == 0) {
		if ((flowspid = fork()) == 0) {
			execv(FLOWS_BIN, argv);
			_exit(127);
		}
	} else if (len > 0)
		log_warnx(__func__, FLOWS_FILE, errno);
	relay_send(chan, RELAY_FLOWS, NULL, 0);
}

static void
host_gone(void)
{
	int	 i;

	for (i = 0; i < RELAY_MAXCHAN; i++)
		chan_close((uint16_t)i);
	inlen = 0;
}

/*
 * host_frame: decode the frame at the start of buf (len bytes) into h.
 * 1: the frame is whole; 0: more bytes are needed; -1: the frame is bad (a
 * channel or length out of range, an unknown op), said on stderr.
 */
static int
host_frame(const unsigned char *buf, size_t len, struct relay_hdr *h)
{
	if (len < RELAY_HDRLEN)
		return (0);
	hdr_decode(h, buf);
	if (h->chan >= RELAY_MAXCHAN || h->len > RELAY_MAXMSG) {
		log_warnx(__func__, "bad frame from host", 0);
		return (-1);
	}
	if (len - RELAY_HDRLEN < h->len)
		return (0);
	if (h->op != RELAY_OPEN && h->op != RELAY_MSG &&
	    h->op != RELAY_CLOSE && h->op != RELAY_STAT &&
	    h->op != RELAY_FLOWS) {
		log_warnx(__func__, "unknown op from host", 0);
		return (-1);
	}
	return (1);
}

/* host_frames: act on every whole frame in buf; the bytes used, or -1. */
static ssize_t
host_frames(const unsigned char *buf, size_t len)
{
	struct relay_hdr	 h;
	size_t			 off = 0;
	int			 rv;

	while ((rv = host_frame(buf + off, len - off, &h)) == 1) {
		switch (h.op) {
		case RELAY_OPEN:
			chan_open(h.chan);
			break;
		case RELAY_MSG:
			chan_msg(h.chan, buf + off + RELAY_HDRLEN, h.len);
			break;
		case RELAY_CLOSE:
			chan_close(h.chan);
			break;
		case RELAY_STAT:
			chan_stat(h.chan);
			break;
		case RELAY_FLOWS:
			chan_flows(h.chan, buf + off + RELAY_HDRLEN, h.len);
			break;
		}
		off += RELAY_HDRLEN + h.len;
	}
	return (rv == -1 ? -1 : (ssize_t)off);
}

/* Act on every whole frame in inbuf; keep a partial one. */
static int
port_frames(void)
{
	ssize_t	 used;

	if ((used = host_frames(inbuf, inlen)) == -1)
		return (-1);
	memmove(inbuf, inbuf + used, inlen - (size_t)used);
	inlen -= (size_t)used;
	return (0);
}

static void
port_input(void)
{
	struct timespec	 ts = { 0, 100000000 };
	ssize_t		 n;

	n = read(infd, inbuf + inlen, RELAY_BUFLEN - inlen);
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0 && onstdio) {
		/* The SSH channel closed: nobody will come back on it. */
		host_gone();
		exit(n == 0 ? 0 : 1);
	}
	if (n <= 0) {
		/* The host side is not connected: drop its channels, wait. */
		host_gone();
		nanosleep(&ts, NULL);
		return;
	}
	inlen += (size_t)n;
	if (port_frames() == -1)
		host_gone();
}


static void
relay_loop(void)
{
	struct pollfd	 pfd[RELAY_MAXCHAN + 1];
	uint16_t	 chan[RELAY_MAXCHAN + 1];
	nfds_t		 n, i;

	for (;;) {
		pfd[0].fd = infd;
		pfd[0].events = POLLIN;
		n = 1;
		for (i = 0; i < RELAY_MAXCHAN; i++) {
			if (chanfd[i] == -1)
				continue;
			pfd[n].fd = chanfd[i];
			pfd[n].events = POLLIN;
			chan[n] = (uint16_t)i;
			n++;
		}
		if (poll(pfd, n, -1) == -1) {
			if (errno != EINTR)
				log_warnx(__func__, "poll", errno);
			continue;
		}
		for (i = 1; i < n; i++)
			if (pfd[i].revents != 0 && chanfd[chan[i]] == pfd[i].fd)
				chan_input(chan[i], 0);
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))
			port_input();
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: pfkey_relay [-u SOCKET] PORT|-\n"
	    "       pfkey_relay -t [-u SOCKET]\n");
	exit(2);
}

/* -t: can a channel's socket be opened here (is there PF_KEY)? */
static int
relay_check(void)
{
	int	 fd;

	if ((fd = chan_socket()) == -1)
		return (1);
	close(fd);
	printf("pfkey_relay: %s opens\n", unixpath != NULL ? unixpath :
	    "PF_KEY");
	return (0);
}

static int
port_open(const char *port)
{
	if (strcmp(port, "-") == 0) {
		onstdio = 1;
		infd = STDIN_FILENO;
		outfd = STDOUT_FILENO;
		return (0);
	}
	infd = outfd = open(port, O_RDWR);
	if (infd == -1) {
		log_warnx(__func__, port, errno);
		return (-1);
	}
	return (0);
}

int
main(int argc, char *argv[])
{
	int	 ch, check = 0, i;

	while ((ch = getopt(argc, argv, "tu:")) != -1) {
		switch (ch) {
		case 't':
			check = 1;
			break;
		case 'u':
			unixpath = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (check)
		return (argc == 0 ? relay_check() : (usage(), 2));
	if (argc != 1)
		usage();
	inbuf = malloc(RELAY_BUFLEN);
	msgbuf = malloc(RELAY_MAXMSG);
	if (inbuf == NULL || msgbuf == NULL) {
		log_warnx(__func__, "malloc", errno);
		return (1);
	}
	for (i = 0; i < RELAY_MAXCHAN; i++)
		chanfd[i] = -1;
	if (port_open(argv[0]) == -1)
		return (1);
	fprintf(stderr, "pfkey_relay: relaying %s on %s\n",
	    unixpath != NULL ? unixpath : "PF_KEY", argv[0]);
	relay_send(0, RELAY_HELLO, NULL, 0);
	relay_loop();
	return (0);
}
