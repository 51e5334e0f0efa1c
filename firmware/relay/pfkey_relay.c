/*
 * pfkey_relay: runs inside a QEMU guest and relays PF_KEY v2 between the
 * guest kernel's af_key and the host, over one virtio-serial port.
 *
 * The port is a byte stream shared by every host client, so each PF_KEY
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
 *
 * usage: pfkey_relay PORT		e.g. /dev/vport1p1
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <linux/pfkeyv2.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RELAY_OPEN	1
#define RELAY_MSG	2
#define RELAY_CLOSE	3
#define RELAY_HELLO	4

#define RELAY_HDRLEN	8
#define RELAY_MAXCHAN	64
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
static int		 portfd = -1;
static unsigned char	*inbuf;
static size_t		 inlen;
static unsigned char	*msgbuf;

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
		n = write(portfd, p, len);
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

static int
relay_send(uint16_t chan, uint8_t op, const void *data, uint32_t len)
{
	struct relay_hdr	 h;

	memset(&h, 0, sizeof(h));
	h.chan = chan;
	h.op = op;
	h.len = len;
	if (port_write(&h, sizeof(h)) == -1)
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

static void
chan_open(uint16_t chan)
{
	int	 size = RELAY_RCVBUF;

	chan_close(chan);
	chanfd[chan] = socket(PF_KEY, SOCK_RAW, PF_KEY_V2);
	if (chanfd[chan] == -1) {
		log_warnx(__func__, "socket(PF_KEY)", errno);
		relay_send(chan, RELAY_CLOSE, NULL, 0);
		return;
	}
	if (setsockopt(chanfd[chan], SOL_SOCKET, SO_RCVBUFFORCE, &size,
	    sizeof(size)) == -1)
		log_warnx(__func__, "SO_RCVBUFFORCE", errno);
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

static void
host_gone(void)
{
	int	 i;

	for (i = 0; i < RELAY_MAXCHAN; i++)
		chan_close((uint16_t)i);
	inlen = 0;
}

/* Act on every complete frame in inbuf; keep a partial one. */
static int
port_frames(void)
{
	struct relay_hdr	 h;
	size_t			 off = 0;

	while (inlen - off >= RELAY_HDRLEN) {
		memcpy(&h, inbuf + off, sizeof(h));
		if (h.chan >= RELAY_MAXCHAN || h.len > RELAY_MAXMSG) {
			log_warnx(__func__, "bad frame from host", 0);
			return (-1);
		}
		if (inlen - off < RELAY_HDRLEN + h.len)
			break;
		switch (h.op) {
		case RELAY_OPEN:
			chan_open(h.chan);
			break;
		case RELAY_MSG:
			chan_msg(h.chan, inbuf + off + RELAY_HDRLEN, h.len);
			break;
		case RELAY_CLOSE:
			chan_close(h.chan);
			break;
		default:
			log_warnx(__func__, "unknown op from host", 0);
			return (-1);
		}
		off += RELAY_HDRLEN + h.len;
	}
	memmove(inbuf, inbuf + off, inlen - off);
	inlen -= off;
	return (0);
}

static void
port_input(void)
{
	ssize_t	 n;

	n = read(portfd, inbuf + inlen, RELAY_BUFLEN - inlen);
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* The host side is not connected: drop its channels, wait. */
		host_gone();
		usleep(100000);
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
		pfd[0].fd = portfd;
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

int
main(int argc, char *argv[])
{
	int	 i;

	if (argc != 2) {
		fprintf(stderr, "usage: pfkey_relay PORT\n");
		return (2);
	}
	inbuf = malloc(RELAY_BUFLEN);
	msgbuf = malloc(RELAY_MAXMSG);
	if (inbuf == NULL || msgbuf == NULL) {
		log_warnx(__func__, "malloc", errno);
		return (1);
	}
	for (i = 0; i < RELAY_MAXCHAN; i++)
		chanfd[i] = -1;
	portfd = open(argv[1], O_RDWR);
	if (portfd == -1) {
		log_warnx(__func__, argv[1], errno);
		return (1);
	}
	fprintf(stderr, "pfkey_relay: relaying PF_KEY on %s\n", argv[1]);
	relay_send(0, RELAY_HELLO, NULL, 0);
	relay_loop();
	return (0);
}
