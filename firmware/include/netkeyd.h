/*
 * netkeyd: a userspace model of the 2004-era BSD netkey SPD/SAD.
 *
 * One shared header; prototypes are grouped by the file that defines them.
 * The SPD proper (sys/<tree>/key.c) differs per tree; everything else is
 * common.  Build identity comes from the compiler command line.
 */
#ifndef NETKEYD_H
#define NETKEYD_H

#include <sys/queue.h>
#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "pfkeyv2.h"

#ifndef NETKEYD_BUILD
#define NETKEYD_BUILD		"unknown"
#endif
#ifndef NETKEYD_TREE
#define NETKEYD_TREE		"unknown"
#endif
#ifndef NETKEYD_PATCHES
#define NETKEYD_PATCHES		""
#endif

#define IPSEC_SPSTATE_DEAD	0
#define IPSEC_SPSTATE_ALIVE	1

#define KEY_MAXREQ		4	/* requests per policy; more is EINVAL */
#define KEY_MAXCLIENTS		128

/* An address with its prefix and port, as a selector or an SA endpoint. */
struct keyaddr {
	uint8_t		 ka_family;	/* AF_INET, AF_INET6 (host), 0 = none */
	uint8_t		 ka_plen;
	uint16_t	 ka_port;	/* network order, 0 = any */
	uint8_t		 ka_addr[16];
};

struct secpolicyindex {
	struct keyaddr	 src;
	struct keyaddr	 dst;
	uint8_t		 ul_proto;	/* IPSEC_ULPROTO_ANY = any */
	uint8_t		 dir;
};

struct ipsecrequest {
	uint16_t	 proto;		/* IPPROTO_ESP, IPPROTO_AH, 108 */
	uint8_t		 mode;
	uint8_t		 level;
	uint16_t	 reqid;
	struct keyaddr	 tsrc;		/* tunnel endpoints, family 0 if none */
	struct keyaddr	 tdst;
};

/*
 * A policy handle: a slot in the handle table plus the slot's generation
 * when it was taken.  Flows keep handles, never pointers, so a policy that
 * is freed under them is detected, counted, and never touched.
 */
struct sphandle {
	uint32_t	 slot;		/* 0 = none */
	uint32_t	 gen;
};

#define SPHASH_SPIDX		0	/* index by exact selector */
#define SPHASH_ID		1	/* index by id */
#define SPHASH_MAX		2

struct secpolicy {
	TAILQ_ENTRY(secpolicy)	 chain;		/* sptree[dir] */
	TAILQ_ENTRY(secpolicy)	 tailq;		/* sptailq (netkey tree only) */
	TAILQ_ENTRY(secpolicy)	 hlink[SPHASH_MAX];	/* index buckets */
	uint32_t		 hval[SPHASH_MAX];	/* hash in each index */
	uint8_t			 hashed[SPHASH_MAX];	/* in each index */
	struct secpolicyindex	 spidx;
	uint64_t		 created;
	uint64_t		 lastused;
	uint64_t		 lifetime;	/* HARD addtime, seconds */
	uint64_t		 validtime;	/* HARD usetime, seconds */
	struct ipsecrequest	 req[KEY_MAXREQ];
	uint32_t		 refcnt;
	uint32_t		 id;
	uint32_t		 slot;
	uint32_t		 flowrefs;	/* flows caching it (accounting) */
	int			 state;
	int			 policy;
	int			 nreq;
	int			 linked;
	int			 persist;
	int			 readonly;
};

TAILQ_HEAD(sphead, secpolicy);

/* A security association. */
struct secasvar {
	LIST_ENTRY(secasvar)	 hash;		/* sahash, by SPI */
	TAILQ_ENTRY(secasvar)	 all;		/* insertion order, for DUMP */
	struct keyaddr		 src;
	struct keyaddr		 dst;
	struct sadb_lifetime	 lft_c;		/* current: addtime, first use */
	struct sadb_lifetime	 lft_h;		/* hard, 0 = none */
	struct sadb_lifetime	 lft_s;		/* soft, 0 = none */
	uint64_t		 replay_top;	/* highest sequence accepted */
	uint64_t		 replay_bitmap;	/* 64-packet window, bit 0 = top */
	uint8_t			*key_auth;
	uint8_t			*key_enc;	/* GCM: the salt is its last 4 */
	void			*ctx_enc;	/* EVP_CIPHER_CTX, xform.c owns it */
	void			*ctx_auth;	/* EVP_MAC_CTX, xform.c owns it */
	size_t			 key_auth_bits;
	size_t			 key_enc_bits;
	uint32_t		 spi;		/* network order */
	uint32_t		 flags;
	uint32_t		 reqid;
	uint32_t		 seq;		/* sadb_msg_seq at ADD */
	uint32_t		 pid;
	uint16_t		 natt_sport;	/* network order */
	uint16_t		 natt_dport;
	uint8_t			 satype;
	uint8_t			 state;
	uint8_t			 alg_auth;
	uint8_t			 alg_enc;
	uint8_t			 replay;	/* window size, 0 = off */
	uint8_t			 mode;
	uint8_t			 natt_type;
};

/* What one SA's transform needs on input (xform.c). */
struct esp_xform {
	size_t		 ivlen;
	size_t		 icvlen;
	size_t		 blksz;		/* ciphertext alignment */
	int		 aead;
};

/* One PF_KEY client (a connected control socket). */
struct keycb {
	TAILQ_ENTRY(keycb)	 entry;
	uint64_t		 drops;
	uint32_t		 registered;	/* bit per satype */
	int			 fd;
	int			 promisc;
};

/*
 * A parsed, validated PF_KEY message.  Extensions stay in the caller's
 * buffer; handlers copy them out with key_getext()/key_getaddr().
 */
struct sadb_msghdr {
	struct sadb_msg		 msg;
	const uint8_t		*buf;
	size_t			 len;
	size_t			 extoff[SADB_EXT_MAX + 1];
	size_t			 extlen[SADB_EXT_MAX + 1];	/* 0 = absent */
	struct keycb		*so;
};

/* A growable reply buffer; extensions are appended padded to 8 bytes. */
struct kbuf {
	uint8_t		*data;
	size_t		 len;
	size_t		 cap;
	int		 error;
};

#define KEY_SENDUP_ONE		0
#define KEY_SENDUP_ALL		1
#define KEY_SENDUP_REGISTERED	2

/* Drop reasons of ESP input, one counter each. */
enum esp_drop {
	ESP_DROP_NO_SA,
	ESP_DROP_BAD_ICV,
	ESP_DROP_REPLAY,
	ESP_DROP_POLICY_MISMATCH,
	ESP_DROP_NO_POLICY,
	ESP_DROP_MALFORMED,
	ESP_DROP_DECRYPT,
	ESP_DROP_SA_STATE,
	ESP_DROP_MAX
};

struct keystat {
	uint64_t	 unlinked;
	uint64_t	 timer_unlinked;	/* of unlinked, by key_timehandler */
	uint64_t	 msg_unlinked;		/* of unlinked, by PF_KEY messages */
	uint64_t	 freed;
	uint64_t	 premature_frees;
	uint64_t	 use_after_free;
	uint64_t	 lookups;
	uint64_t	 lookup_walked;
	uint64_t	 flushes;
	uint64_t	 allocated;		/* policies, a level */
	uint64_t	 ticks;
	uint64_t	 sendup_drops;
	uint64_t	 msgs[SADB_MAX + 1];
	uint64_t	 errors[256];
	uint64_t	 rej_short;
	uint64_t	 rej_version;
	uint64_t	 rej_length;
	uint64_t	 rej_ext_unknown;
	uint64_t	 rej_ext_dup;
	uint64_t	 rej_ext_len;
	uint64_t	 rej_addr;
	uint64_t	 rej_policy;
	uint64_t	 sas;			/* a level */
	uint64_t	 sa_expired_soft;
	uint64_t	 sa_expired_hard;
	uint64_t	 esp_ok;
	uint64_t	 esp_bytes;
	uint64_t	 esp_drop[ESP_DROP_MAX];
	uint64_t	 flows_open;		/* a level */
	uint64_t	 flows_opened;
	uint64_t	 flows_closed;
	uint64_t	 flows_idled;
};

/* Linked policies by state and direction, counted as they change. */
struct spd_census {
	uint64_t	 alive[IPSEC_DIR_MAX];
	uint64_t	 dead[IPSEC_DIR_MAX];
};

/* What one timer tick did; the admin socket serves a ring of these. */
struct tickrec {
	uint64_t	 tick;
	uint64_t	 unlinked;
	uint64_t	 timer_unlinked;
	uint64_t	 freed;
	uint64_t	 premature;
	uint64_t	 uaf;
	uint64_t	 lookups;
	uint64_t	 walked;
	uint64_t	 esp_ok;
	uint64_t	 esp_drop;
	uint64_t	 alive[IPSEC_DIR_MAX];
	uint64_t	 dead[IPSEC_DIR_MAX];
	uint64_t	 allocated;
	uint64_t	 flows;
};

#define FLOW_LOCAL		0	/* a local socket: OUT and reversed IN */
#define FLOW_FORWARD_IN		1	/* a decapsulated packet: IN only */

struct flowkey {
	uint8_t		 family;
	uint8_t		 proto;
	uint16_t	 sport;		/* network order */
	uint16_t	 dport;
	uint8_t		 src[16];
	uint8_t		 dst[16];
};

struct flow {
	LIST_ENTRY(flow)	 hash;
	TAILQ_ENTRY(flow)	 all;
	struct flowkey		 key;
	struct sphandle		 sp[IPSEC_DIR_MAX];
	uint64_t		 gen[IPSEC_DIR_MAX];	/* sp_gen when cached */
	uint64_t		 lastused;
	uint32_t		 id;
	int			 kind;
};

extern struct keystat	 keystat;
extern struct sphead	 sptree[IPSEC_DIR_MAX];
extern uint64_t		 key_now;	/* the virtual clock, in seconds */
extern uint64_t		 sp_gen;	/* bumped on every SPD change */

/* log.c */
void		 log_init(const char *, int);
void		 log_info(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));
void		 log_warnx(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));
void		 log_debug(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));
void		 fatal(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2), __noreturn__));

/* keydb.c */
struct secpolicy *key_newsp(void);
void		 key_delsp(struct secpolicy *);
struct sphandle	 key_sp_handle(const struct secpolicy *);
struct secpolicy *key_sp_byhandle(struct sphandle);
struct secpolicy *key_sp_byslot(uint32_t);
uint32_t	 key_sp_slots(void);
void		 key_spd_invalidate(void);
void		 key_spd_census(struct spd_census *);
void		 key_sptree_link(struct secpolicy *);
void		 key_sptree_remove(struct secpolicy *);
void		 key_sp_setstate(struct secpolicy *, int);
struct secpolicy *key_spidx_lookup(const struct secpolicyindex *);
void		 key_spid_insert(struct secpolicy *);
void		 key_spid_remove(struct secpolicy *);
struct secpolicy *key_spid_lookup(uint32_t);
void		 key_spd_destroy(void);
struct secpolicy *key_allocsp(const struct secpolicyindex *, int);
int		 key_cmpspidx_exactly(const struct secpolicyindex *,
		    const struct secpolicyindex *);
int		 key_cmpspidx_withmask(const struct secpolicyindex *,
		    const struct secpolicyindex *);
int		 key_addr_bits(int);

/* pfkey.c */
void		 key_parse(struct keycb *, const uint8_t *, size_t);
int		 key_getext(const struct sadb_msghdr *, int, void *, size_t);
int		 key_getaddr(const struct sadb_msghdr *, int, struct keyaddr *,
		    uint8_t *);
int		 key_getpolicy(const struct sadb_msghdr *, struct secpolicy *);
int		 key_senderror(struct keycb *, const struct sadb_msghdr *, int);
void		 key_sendup(struct keycb *, struct kbuf *, int);
struct keycb	*key_attach(int);
void		 key_detach(struct keycb *);
void		 key_shutdown(void);
int		 key_nclients(void);
void		 key_client_fds(int *, int);
struct keycb	*key_client_byfd(int);
const char	*key_msgname(int);
void		 kbuf_init(struct kbuf *, const struct sadb_msg *);
void		 kbuf_append(struct kbuf *, const void *, size_t);
void		 kbuf_addaddr(struct kbuf *, int, const struct keyaddr *,
		    uint8_t);
void		 kbuf_addlifetime(struct kbuf *, int, uint32_t, uint64_t,
		    uint64_t, uint64_t);
void		 kbuf_addpolicy(struct kbuf *, const struct secpolicy *);
void		 kbuf_free(struct kbuf *);

/* spdmsg.c */
int		 key_spidx_frommsg(const struct sadb_msghdr *,
		    struct secpolicyindex *);
void		 kbuf_gather(struct kbuf *, const struct sadb_msghdr *, int);
void		 kbuf_gather_policy(struct kbuf *, const struct sadb_msghdr *,
		    uint32_t);
void		 key_setdumpsp(struct kbuf *, const struct secpolicy *, uint8_t,
		    uint32_t, uint32_t);
void		 key_spdexpire(const struct secpolicy *);
int		 key_spddump(const struct sadb_msghdr *);
void		 key_spdadd_reply(const struct sadb_msghdr *,
		    const struct secpolicy *);
int		 key_msg2sp(const struct sadb_msghdr *,
		    const struct secpolicyindex *, struct secpolicy **);
int		 key_checkpolicy(const struct sadb_msghdr *, uint32_t *);

/* sys/<tree>/key.c: the SPD, per tree */
void		 key_spd_init(void);
int		 key_spdadd(const struct sadb_msghdr *);
int		 key_spddelete(const struct sadb_msghdr *);
int		 key_spddelete2(const struct sadb_msghdr *);
int		 key_spdget(const struct sadb_msghdr *);
int		 key_spdflush(const struct sadb_msghdr *);
void		 key_freesp(struct secpolicy *);
void		 key_spd_timehandler(void);
int		 key_spd_setpersist(uint32_t);

/* sad.c */
void		 key_sad_init(void);
int		 key_getspi(const struct sadb_msghdr *);
int		 key_update(const struct sadb_msghdr *);
int		 key_add(const struct sadb_msghdr *);
int		 key_delete(const struct sadb_msghdr *);
int		 key_get(const struct sadb_msghdr *);
int		 key_flush(const struct sadb_msghdr *);
int		 key_dump(const struct sadb_msghdr *);
struct secasvar	*key_allocsa(const struct keyaddr *, uint32_t, uint8_t);
struct secasvar	*key_sa_lookup(const struct keyaddr *, uint32_t, uint8_t);
void		 key_sad_timehandler(void);
void		 key_sa_touch(struct secasvar *, size_t);
void		 key_sad_destroy(void);

/* esp.c */
int		 esp_init(const char *, const char *);
int		 esp_raw_fd(void);
int		 esp_udp_fd(void);
void		 esp_input_raw(void);
void		 esp_input_udp(void);
int		 esp4_input(const uint8_t *, size_t, int);
uint64_t	 esp_natt_keepalives(void);
uint64_t	 esp_natt_nonesp(void);

/* xform.c */
int		 esp_alg_check(uint8_t, uint8_t, size_t, uint8_t, size_t);
int		 esp_sa_setup(struct secasvar *);
void		 esp_sa_teardown(struct secasvar *);
int		 esp_sa_xform(const struct secasvar *, struct esp_xform *);

/* flow.c */
void		 flow_init(uint64_t);
struct flow	*flow_open(const struct flowkey *, int);
struct flow	*flow_lookup(const struct flowkey *);
struct flow	*flow_byid(uint32_t);
struct secpolicy *flow_checkpolicy(struct flow *, int);
void		 flow_revalidate(struct flow *);
void		 flow_close(struct flow *);
int		 flow_closeall(void);
int		 flow_sendall(void);
void		 flow_timehandler(void);
void		 flow_spidx(const struct flow *, int, struct secpolicyindex *);
void		 flow_foreach(void (*)(const struct flow *, void *), void *);

/* timer.c */
int		 timer_init(unsigned int);
int		 timer_fd(void);
void		 timer_expire(void);
void		 key_timehandler(void);
uint64_t	 timer_nrec(void);
const struct tickrec *timer_rec(uint64_t);
void		 timer_shutdown(void);

/* admin.c */
int		 admin_init(const char *);
int		 admin_listen_fd(void);
void		 admin_accept(void);
int		 admin_nclients(void);
void		 admin_client_fds(int *, int);
void		 admin_input(int);

#endif /* NETKEYD_H */
