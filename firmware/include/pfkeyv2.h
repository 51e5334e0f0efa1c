/*
 * PF_KEY v2 wire format: RFC 2367 plus the KAME extensions, with the
 * NAT-T extension numbers of later NetBSD/FreeBSD.  Our own declarations,
 * so the build never depends on the host's <linux/pfkeyv2.h>, whose
 * sockaddr and NAT-T numbering differ.
 */
#ifndef NETKEYD_PFKEYV2_H
#define NETKEYD_PFKEYV2_H

#include <stdint.h>

#define PF_KEY_V2			2

#define SADB_RESERVED			0
#define SADB_GETSPI			1
#define SADB_UPDATE			2
#define SADB_ADD			3
#define SADB_DELETE			4
#define SADB_GET			5
#define SADB_ACQUIRE			6
#define SADB_REGISTER			7
#define SADB_EXPIRE			8
#define SADB_FLUSH			9
#define SADB_DUMP			10
#define SADB_X_PROMISC			11
#define SADB_X_PCHANGE			12
#define SADB_X_SPDUPDATE		13
#define SADB_X_SPDADD			14
#define SADB_X_SPDDELETE		15
#define SADB_X_SPDGET			16
#define SADB_X_SPDACQUIRE		17
#define SADB_X_SPDDUMP			18
#define SADB_X_SPDFLUSH			19
#define SADB_X_SPDSETIDX		20
#define SADB_X_SPDEXPIRE		21
#define SADB_X_SPDDELETE2		22
#define SADB_MAX			22

#define SADB_EXT_RESERVED		0
#define SADB_EXT_SA			1
#define SADB_EXT_LIFETIME_CURRENT	2
#define SADB_EXT_LIFETIME_HARD		3
#define SADB_EXT_LIFETIME_SOFT		4
#define SADB_EXT_ADDRESS_SRC		5
#define SADB_EXT_ADDRESS_DST		6
#define SADB_EXT_ADDRESS_PROXY		7
#define SADB_EXT_KEY_AUTH		8
#define SADB_EXT_KEY_ENCRYPT		9
#define SADB_EXT_IDENTITY_SRC		10
#define SADB_EXT_IDENTITY_DST		11
#define SADB_EXT_SENSITIVITY		12
#define SADB_EXT_PROPOSAL		13
#define SADB_EXT_SUPPORTED_AUTH		14
#define SADB_EXT_SUPPORTED_ENCRYPT	15
#define SADB_EXT_SPIRANGE		16
#define SADB_X_EXT_KMPRIVATE		17
#define SADB_X_EXT_POLICY		18
#define SADB_X_EXT_SA2			19
#define SADB_X_EXT_NAT_T_TYPE		20
#define SADB_X_EXT_NAT_T_SPORT		21
#define SADB_X_EXT_NAT_T_DPORT		22
#define SADB_X_EXT_NAT_T_OAI		23
#define SADB_X_EXT_NAT_T_OAR		24
#define SADB_X_EXT_NAT_T_FRAG		25
#define SADB_EXT_MAX			25

#define SADB_SATYPE_UNSPEC		0
#define SADB_SATYPE_AH			2
#define SADB_SATYPE_ESP			3
#define SADB_SATYPE_RSVP		5
#define SADB_SATYPE_OSPFV2		6
#define SADB_SATYPE_RIPV2		7
#define SADB_SATYPE_MIP			8
#define SADB_X_SATYPE_IPCOMP		9
#define SADB_SATYPE_MAX			9

#define SADB_SASTATE_LARVAL		0
#define SADB_SASTATE_MATURE		1
#define SADB_SASTATE_DYING		2
#define SADB_SASTATE_DEAD		3

#define SADB_AALG_NONE			0
#define SADB_AALG_MD5HMAC		2
#define SADB_AALG_SHA1HMAC		3
#define SADB_X_AALG_SHA2_256		5
#define SADB_X_AALG_SHA2_384		6
#define SADB_X_AALG_SHA2_512		7
#define SADB_EALG_NONE			0
#define SADB_EALG_3DESCBC		3
#define SADB_EALG_NULL			11
#define SADB_X_EALG_AES			12
#define SADB_X_EALG_AESCTR		13
#define SADB_X_EALG_AESGCM8		18
#define SADB_X_EALG_AESGCM12		19
#define SADB_X_EALG_AESGCM16		20

#define UDP_ENCAP_ESPINUDP		2

/* KAME ipsec.h */
#define IPSEC_DIR_ANY			0
#define IPSEC_DIR_INBOUND		1
#define IPSEC_DIR_OUTBOUND		2
#define IPSEC_DIR_MAX			3

#define IPSEC_POLICY_DISCARD		0
#define IPSEC_POLICY_NONE		1
#define IPSEC_POLICY_IPSEC		2
#define IPSEC_POLICY_ENTRUST		3
#define IPSEC_POLICY_BYPASS		4

#define IPPROTO_IPCOMP_			108
#define IPSEC_MODE_ANY			0
#define IPSEC_MODE_TRANSPORT		1
#define IPSEC_MODE_TUNNEL		2

#define IPSEC_LEVEL_DEFAULT		0
#define IPSEC_LEVEL_USE			1
#define IPSEC_LEVEL_REQUIRE		2
#define IPSEC_LEVEL_UNIQUE		3

#define IPSEC_ULPROTO_ANY		255
#define IPSEC_PORT_ANY			0

/* BSD sockaddr flavour: sa_len then a one-byte family; NetBSD numbering. */
#define BSD_AF_INET			2
#define BSD_AF_INET6			24
#define BSD_SIN_LEN			16
#define BSD_SIN6_LEN			28

#define PFKEY_ALIGN8(a)			(((a) + 7) & ~(size_t)7)
#define PFKEY_UNIT64(a)			((a) >> 3)
#define PFKEY_UNUNIT64(a)		((size_t)(a) << 3)

struct sadb_msg {
	uint8_t		sadb_msg_version;
	uint8_t		sadb_msg_type;
	uint8_t		sadb_msg_errno;
	uint8_t		sadb_msg_satype;
	uint16_t	sadb_msg_len;
	uint16_t	sadb_msg_reserved;
	uint32_t	sadb_msg_seq;
	uint32_t	sadb_msg_pid;
};

struct sadb_ext {
	uint16_t	sadb_ext_len;
	uint16_t	sadb_ext_type;
};

struct sadb_sa {
	uint16_t	sadb_sa_len;
	uint16_t	sadb_sa_exttype;
	uint32_t	sadb_sa_spi;		/* network order */
	uint8_t		sadb_sa_replay;
	uint8_t		sadb_sa_state;
	uint8_t		sadb_sa_auth;
	uint8_t		sadb_sa_encrypt;
	uint32_t	sadb_sa_flags;
};

struct sadb_lifetime {
	uint16_t	sadb_lifetime_len;
	uint16_t	sadb_lifetime_exttype;
	uint32_t	sadb_lifetime_allocations;
	uint64_t	sadb_lifetime_bytes;
	uint64_t	sadb_lifetime_addtime;
	uint64_t	sadb_lifetime_usetime;
};

struct sadb_address {
	uint16_t	sadb_address_len;
	uint16_t	sadb_address_exttype;
	uint8_t		sadb_address_proto;
	uint8_t		sadb_address_prefixlen;
	uint16_t	sadb_address_reserved;
};

struct sadb_key {
	uint16_t	sadb_key_len;
	uint16_t	sadb_key_exttype;
	uint16_t	sadb_key_bits;
	uint16_t	sadb_key_reserved;
};

struct sadb_supported {
	uint16_t	sadb_supported_len;
	uint16_t	sadb_supported_exttype;
	uint32_t	sadb_supported_reserved;
};

struct sadb_alg {
	uint8_t		sadb_alg_id;
	uint8_t		sadb_alg_ivlen;
	uint16_t	sadb_alg_minbits;
	uint16_t	sadb_alg_maxbits;
	uint16_t	sadb_alg_reserved;
};

struct sadb_spirange {
	uint16_t	sadb_spirange_len;
	uint16_t	sadb_spirange_exttype;
	uint32_t	sadb_spirange_min;
	uint32_t	sadb_spirange_max;
	uint32_t	sadb_spirange_reserved;
};

struct sadb_x_sa2 {
	uint16_t	sadb_x_sa2_len;
	uint16_t	sadb_x_sa2_exttype;
	uint8_t		sadb_x_sa2_mode;
	uint8_t		sadb_x_sa2_reserved1;
	uint16_t	sadb_x_sa2_reserved2;
	uint32_t	sadb_x_sa2_sequence;
	uint32_t	sadb_x_sa2_reqid;
};

struct sadb_x_policy {
	uint16_t	sadb_x_policy_len;
	uint16_t	sadb_x_policy_exttype;
	uint16_t	sadb_x_policy_type;
	uint8_t		sadb_x_policy_dir;
	uint8_t		sadb_x_policy_reserved;
	uint32_t	sadb_x_policy_id;
	uint32_t	sadb_x_policy_reserved2;
};

/* Its length is in bytes, unlike every other PF_KEY length. */
struct sadb_x_ipsecrequest {
	uint16_t	sadb_x_ipsecrequest_len;
	uint16_t	sadb_x_ipsecrequest_proto;
	uint8_t		sadb_x_ipsecrequest_mode;
	uint8_t		sadb_x_ipsecrequest_level;
	uint16_t	sadb_x_ipsecrequest_reqid;
};

struct sadb_x_nat_t_type {
	uint16_t	sadb_x_nat_t_type_len;
	uint16_t	sadb_x_nat_t_type_exttype;
	uint8_t		sadb_x_nat_t_type_type;
	uint8_t		sadb_x_nat_t_type_reserved[3];
};

struct sadb_x_nat_t_port {
	uint16_t	sadb_x_nat_t_port_len;
	uint16_t	sadb_x_nat_t_port_exttype;
	uint16_t	sadb_x_nat_t_port_port;	/* network order */
	uint16_t	sadb_x_nat_t_port_reserved;
};

#endif /* NETKEYD_PFKEYV2_H */
