/*
 * libFuzzer harness for the PF_KEY parser and every handler behind it.
 * The input is a sequence of messages, each as long as its own
 * sadb_msg_len says (the rest of the input if that is 0 or too long), fed
 * to key_parse() from a fake client on a socketpair.  Then one timer tick
 * runs, and both databases are flushed so inputs stay independent.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "netkeyd.h"
#include "fuzz_common.h"

int	 LLVMFuzzerInitialize(int *, char ***);
int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init();
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t	 buf[65536 * 8];
	struct fz_msg	 m;
	size_t		 n;
	uint16_t	 len;
	int		 i;

	for (i = 0; i < 16 && size > 0; i++) {
		n = size;
		if (size >= sizeof(struct sadb_msg)) {
			memcpy(&len, data + offsetof(struct sadb_msg,
			    sadb_msg_len), sizeof(len));
			if (len != 0 && PFKEY_UNUNIT64(len) <= size)
				n = PFKEY_UNUNIT64(len);
		}
		/* A copy, so the parser never reads past what it was given. */
		memcpy(buf, data, n);
		fz_send(buf, n);
		data += n;
		size -= n;
	}
	key_timehandler();
	(void)flow_closeall();
	fz_flush_sas();
	fz_begin(&m, SADB_X_SPDFLUSH, SADB_SATYPE_UNSPEC);
	fz_done(&m);
	key_spd_timehandler();
	return (0);
}
