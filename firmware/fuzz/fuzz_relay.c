/*
 * libFuzzer harness for the relay's framing: the host-to-guest byte stream
 * that port_frames() splits into OPEN, MSG and CLOSE frames.  The first
 * byte sets the read size; the rest arrives in reads of that size, as from
 * the port.  Channels connect (-u) to a Unix socket this harness listens on
 * and answers itself: each message a channel writes comes back once, so the
 * guest-to-host path (chan_input, relay_send) runs too.  Frames to the host
 * go to /dev/null.  Every input ends as the host going away does.
 */

#include <sys/socket.h>
#include <sys/un.h>

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

/* The relay's complaints about bad frames are expected here: drop them. */
static FILE	*fz_relay_log;
#undef stderr
#define stderr	fz_relay_log
#define main	pfkey_relay_main
#include "../relay/pfkey_relay.c"
#undef main

#define FZ_MAXPEERS	1024

static int	 fz_lfd = -1;
static int	 fz_peer[FZ_MAXPEERS];
static int	 fz_npeers;
static char	 fz_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

int	 LLVMFuzzerInitialize(int *, char ***);
int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fz_cleanup(void)
{
	(void)unlink(fz_path);
}

/* Accept the channels' connections and echo what they wrote, once. */
static void
fz_serve(void)
{
	static unsigned char	 buf[RELAY_MAXMSG];
	ssize_t			 n;
	int			 fd, i;

	while (fz_npeers < FZ_MAXPEERS &&
	    (fd = accept4(fz_lfd, NULL, NULL, SOCK_NONBLOCK)) != -1)
		fz_peer[fz_npeers++] = fd;
	for (i = 0; i < fz_npeers; i++)
		while ((n = recv(fz_peer[i], buf, sizeof(buf), 0)) > 0)
			(void)send(fz_peer[i], buf, (size_t)n, MSG_NOSIGNAL);
}

static void
fz_hangup(void)
{
	int	 i;

	host_gone();
	for (i = 0; i < fz_npeers; i++)
		close(fz_peer[i]);
	fz_npeers = 0;
	fz_serve();		/* connections never accepted */
	for (i = 0; i < fz_npeers; i++)
		close(fz_peer[i]);
	fz_npeers = 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un	 sun;
	int			 i;

	(void)argc;
	(void)argv;
	if ((fz_relay_log = fopen("/dev/null", "w")) == NULL)
		abort();
	snprintf(fz_path, sizeof(fz_path), "/tmp/fuzz_relay.%d", (int)getpid());
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, fz_path, strlen(fz_path));
	(void)unlink(fz_path);
	if ((fz_lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0)) ==
	    -1 || bind(fz_lfd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    listen(fz_lfd, 4096) == -1)
		abort();
	atexit(fz_cleanup);
	unixpath = fz_path;
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
	size_t	 chunk, n;
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
		if (port_frames() == -1)
			host_gone();
		fz_serve();
		for (i = 0; i < RELAY_MAXCHAN; i++)
			chan_drain((uint16_t)i);
		data += n;
		size -= n;
	}
	fz_hangup();
	return (0);
}
