/*
 * libFuzzer harness for the relay's framing: the host-to-guest byte stream
 * that host_frame() decodes and host_frames() acts on: OPEN, MSG, CLOSE, STAT
 * and FLOWS (whose flows process never starts here).
 * The first byte sets the read size; the rest arrives in inbuf in reads of
 * that size, as from the port, and port_frames() runs after each.
 *
 * Channels are the relay's own -u sockets, but cheap: socket() and
 * connect() in the relay become a dup(2) of one end of a SOCK_SEQPACKET
 * socketpair, so an OPEN costs no connection.  The harness holds the other
 * end and sends back once each message a channel writes, so the
 * guest-to-host path (chan_input, relay_send) runs too; all channels share
 * one socket, so the lowest open channel reads every answer.  Frames to the
 * host go to /dev/null.  Every input ends as the host going away does.
 * Connecting for real is tested with netkeyd (tests/test_ssh_relay.py).
 */

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * Channels 0..FZ_MAXCHAN-1, not 64: the range check is the same code, and
 * the per-read and per-input loops over every channel are 8 times shorter.
 */
#define FZ_MAXCHAN	8

static int	 fz_chan = -1;		/* what every channel is a dup of */
static int	 fz_peer = -1;		/* the other end, ours */

static int
fz_socket(int domain, int type, int protocol)
{
	(void)domain;
	(void)type;
	(void)protocol;
	return (dup(fz_chan));
}

static int
fz_connect(int fd, const void *sa, socklen_t len)
{
	(void)fd;
	(void)sa;
	(void)len;
	return (0);
}

/* FLOWS and STAT are decoded and acted on, but no flows process starts. */
static pid_t
fz_fork(void)
{
	errno = EAGAIN;
	return (-1);
}

/* The relay's complaints about bad frames are expected here: drop them. */
static FILE	*fz_relay_log;
#undef stderr
#define stderr	fz_relay_log
#define socket(d, t, p)		fz_socket(d, t, p)
#define connect(fd, sa, len)	fz_connect(fd, sa, len)
#define main	pfkey_relay_main
#define RELAY_MAXCHAN		FZ_MAXCHAN
#define FLOWS_BIN		"/nonexistent/spdlab_flows"
#define FLOWS_FILE		"/dev/null"
#define fork()			fz_fork()
/* /proc/slabinfo takes a millisecond to read: a STAT per input was the rate */
#define RELAY_STAT_FILES	"/proc/self/statm", "/dev/null"
#include "../relay/pfkey_relay.c"
#undef fork
#undef main
#undef connect
#undef socket

int	 LLVMFuzzerInitialize(int *, char ***);
int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Send back, once, what the channels wrote; how many messages. */
static int
fz_answer(void)
{
	static unsigned char	 buf[RELAY_MAXMSG];
	ssize_t			 n;
	int			 sent = 0;

	while ((n = recv(fz_peer, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		sent += send(fz_peer, buf, (size_t)n, MSG_NOSIGNAL) == n;
	return (sent);
}

/* Empty both ends, so the next input starts with nothing queued. */
static void
fz_hangup(void)
{
	static unsigned char	 buf[RELAY_MAXMSG];

	host_gone();
	while (recv(fz_peer, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
		;
	while (recv(fz_chan, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
		;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int	 sv[2], i;

	(void)argc;
	(void)argv;
	if ((fz_relay_log = fopen("/dev/null", "w")) == NULL)
		abort();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv) == -1)
		abort();
	fz_chan = sv[0];
	fz_peer = sv[1];
	unixpath = "fuzz_relay";	/* never connected to: see fz_connect */
	inbuf = malloc(RELAY_BUFLEN);
	msgbuf = malloc(RELAY_MAXMSG);
	if (inbuf == NULL || msgbuf == NULL)
		abort();
	for (i = 0; i < RELAY_MAXCHAN; i++)
		chanfd[i] = -1;
	if ((outfd = open("/dev/null", O_WRONLY)) == -1)
		abort();
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t	 chunk, n, had;
	int	 i;

	if (size < 1)
		return (0);
	chunk = (size_t)data[0] % 64 + 1;
	data++;
	size--;
	while (size > 0) {
		n = size < chunk ? size : chunk;
		if (n > RELAY_BUFLEN - inlen)
			n = RELAY_BUFLEN - inlen;
		memcpy(inbuf + inlen, data, n);
		inlen += n;
		had = inlen;
		/* Only a frame acted on can have written to a channel. */
		if (port_frames() == -1)
			fz_hangup();
		else if (inlen < had && fz_answer() > 0)
			for (i = 0; i < RELAY_MAXCHAN; i++)
				chan_drain((uint16_t)i);
		data += n;
		size -= n;
	}
	fz_hangup();
	return (0);
}
