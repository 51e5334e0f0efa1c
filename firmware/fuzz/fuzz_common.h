/*
 * Shared by the libFuzzer harnesses and the ESP input benchmark: a fake
 * PF_KEY client on a socketpair, builders for the few messages they send,
 * and an ESP sealer for the SAs they install.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define FZ_GW		"10.99.0.1"
#define FZ_PEER		"10.99.0.2"

/* The SAs fz_install_sas() puts in, all from FZ_PEER to FZ_GW. */
struct fz_sa {
	uint32_t	 spi;		/* host order */
	uint8_t		 enc;
	uint8_t		 auth;
	uint8_t		 mode;
	uint8_t		 replay;
	uint8_t		 natt;
	uint16_t	 reqid;
	const uint8_t	*enc_key;
	size_t		 enc_len;
	const uint8_t	*auth_key;
	size_t		 auth_len;
};

struct fz_msg {
	uint8_t		 buf[4096];
	size_t		 len;
};

extern const uint8_t		 fz_gcm_key[20];
extern const uint8_t		 fz_cbc_key[16];
extern const uint8_t		 fz_hmac_key[32];
extern const struct fz_sa	 fz_sas[];
extern const size_t		 fz_nsas;

void	 fz_init(void);
void	 fz_send(const uint8_t *, size_t);
void	 fz_drain(void);

void	 fz_begin(struct fz_msg *, uint8_t, uint8_t);
void	 fz_ext(struct fz_msg *, const void *, size_t);
void	 fz_addr(struct fz_msg *, int, const char *, uint8_t, uint8_t,
	    uint16_t);
void	 fz_key(struct fz_msg *, int, const uint8_t *, size_t);
void	 fz_done(struct fz_msg *);

void	 fz_add_sa(const struct fz_sa *);
void	 fz_install_sas(void);
void	 fz_flush_sas(void);
void	 fz_spdadd_in(const char *, uint8_t, const char *, uint8_t, int,
	    uint8_t, uint8_t, uint16_t);
void	 fz_install_policies(void);

size_t	 fz_seal(const struct fz_sa *, uint32_t, const uint8_t *, size_t,
	    uint8_t *, size_t, int);
size_t	 fz_ipv4(const char *, const char *, uint8_t, const uint8_t *,
	    size_t, uint8_t *, size_t);

#endif /* FUZZ_COMMON_H */
