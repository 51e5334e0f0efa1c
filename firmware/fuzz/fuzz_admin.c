/*
 * libFuzzer harness for the admin socket's line parser and every command
 * behind it (the tick ring's readers, flow open/send/close, persist).  The
 * first byte sets the chunk size; the rest is written to the admin client
 * in chunks of that size, and admin_input() runs after each, as it would
 * after each read.  The replies are drained and thrown away.  admin.c and
 * timer.c are included so each input starts from an empty tick ring and a
 * fresh client; the policies fz_install_policies() puts in stay.
 */

#include <sys/socket.h>

#include <stdlib.h>
#include <string.h>

#include "../src/admin.c"
#include "../src/timer.c"
#include "fuzz_common.h"

/* Most ticks one input may ask for, so no input runs for minutes. */
#define FZ_MAXTICKS	1024

unsigned int	 netkeyd_tick_ms = 0;
unsigned int	 netkeyd_flow_idle_ticks = 30;

static int	 fz_client = -1;	/* our end; admin.c has the other */

int	 LLVMFuzzerInitialize(int *, char ***);
int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fz_admin_connect(void)
{
	int	 sv[2], sz = 1024 * 1024;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) == -1)
		abort();
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	(void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	clients[0].fd = sv[0];
	clients[0].len = 0;
	nclients = 1;
	fz_client = sv[1];
}

static void
fz_admin_drain(void)
{
	static char	 buf[65536];

	while (recv(fz_client, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* The ticks the input's `tick N` lines ask for, split as admin.c splits. */
static unsigned long long
fz_ticks_asked(const uint8_t *data, size_t size)
{
	static char		 line[ADMIN_LINEMAX];
	const uint8_t		*nl;
	unsigned long long	 total = 0, n;
	size_t			 len;
	char			*w, *save = NULL;

	while (size > 0) {
		nl = memchr(data, '\n', size);
		len = nl != NULL ? (size_t)(nl - data) : size;
		if (len < sizeof(line)) {
			memcpy(line, data, len);
			line[len] = '\0';
			w = strtok_r(line, " \t\r", &save);
			if (w != NULL && strcmp(w, "tick") == 0) {
				w = strtok_r(NULL, " \t\r", &save);
				if (w == NULL || admin_getnum(w, 1000000,
				    &n) == -1)
					n = 1;
				total += n;
			}
		}
		if (nl == NULL)
			break;
		size -= len + 1;
		data += len + 1;
	}
	return (total);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init();
	fz_install_policies();
	fz_admin_connect();
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t	 chunk, n;

	if (size < 1 || fz_ticks_asked(data + 1, size - 1) > FZ_MAXTICKS)
		return (-1);
	chunk = (size_t)data[0] % 128 + 1;
	data++;
	size--;
	nrec = 0;
	memset(&prev, 0, sizeof(prev));
	clients[0].len = 0;
	while (size > 0) {
		n = size < chunk ? size : chunk;
		if (send(fz_client, data, n, MSG_NOSIGNAL) != (ssize_t)n)
			abort();
		admin_input(clients[0].fd);
		fz_admin_drain();
		if (nclients == 0) {
			/* admin.c dropped the client, as it does an overlong line. */
			close(fz_client);
			fz_admin_connect();
		}
		data += n;
		size -= n;
	}
	(void)flow_closeall();
	return (0);
}
