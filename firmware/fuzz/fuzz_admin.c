/*
 * libFuzzer harness for the admin protocol: admin_lines(), which splits a
 * client's bytes into lines, and every command behind it (the tick ring's
 * readers, flow open/send/close, persist).  The first byte sets the read
 * size; the rest arrives in the client's buffer in reads of that size, as
 * recv() would put it there, and admin_lines() runs after each.  Each reply
 * must be one line.  No socket is involved: admin_input()'s recv() and
 * send() are tested against a real netkeyd (tests/test_export.py).
 *
 * admin.c and timer.c are included so each input starts from an empty tick
 * ring and a fresh client.  The ring holds FZ_TICKRING records, not
 * netkeyd's 16384, so a few dozen ticks wrap it and the paths that skip
 * overwritten records run; FZ_MAXTICKS bounds the ticks one input runs.
 * A full ring's reply is still longer than a jbuf's first 4096 bytes, so
 * the buffer grows.  The policies fz_install_policies() puts in stay.
 */

#include <stdlib.h>
#include <string.h>

#define FZ_TICKRING	32
#define TICKRING	FZ_TICKRING
#include "../src/admin.c"
#include "../src/timer.c"
#include "fuzz_common.h"

#define FZ_MAXTICKS	64

unsigned int	 netkeyd_tick_ms = 0;
unsigned int	 netkeyd_flow_idle_ticks = 30;

int	 LLVMFuzzerInitialize(int *, char ***);
int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* A reply goes nowhere, but it must be exactly one line. */
static int
fz_reply(int fd, const char *s, size_t len)
{
	(void)fd;
	if (len == 0 || memchr(s, '\n', len) != s + len - 1)
		abort();
	return (0);
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
	return (0);
}

/*
 * The input is a byte stream to the client: each read takes what was sent
 * and not yet read, up to the room in the client's buffer.  A dropped
 * client loses what it had not read, and the next chunk starts a new one.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct adminclient	*c = &clients[0];
	size_t			 chunk, sent = 0, rd = 0, n;

	if (size < 1 || fz_ticks_asked(data + 1, size - 1) > FZ_MAXTICKS)
		return (-1);
	chunk = (size_t)data[0] % 128 + 1;
	data++;
	size--;
	nrec = 0;
	memset(&prev, 0, sizeof(prev));
	c->fd = -1;
	c->len = 0;
	while (sent < size) {
		sent += size - sent < chunk ? size - sent : chunk;
		n = sent - rd;
		if (n > sizeof(c->buf) - c->len - 1)
			n = sizeof(c->buf) - c->len - 1;
		memcpy(c->buf + c->len, data + rd, n);
		c->len += n;
		rd += n;
		if (admin_lines(c, fz_reply) == -1) {
			c->len = 0;
			rd = sent;
		}
	}
	(void)flow_closeall();
	return (0);
}
