/*
 * Per-SA transforms: which algorithms and key lengths ESP input runs, and
 * each SA's OpenSSL cipher and MAC contexts, keyed once at ADD or UPDATE.
 * sad.c sets them up and tears them down; esp.c uses them per packet.
 */

#include <sys/types.h>
#include <sys/queue.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "netkeyd.h"

static EVP_MAC		*esp_hmac;

static int	 esp_enc_xform(uint8_t, size_t, struct esp_xform *,
		    const char **);
static int	 esp_auth_xform(uint8_t, size_t, size_t *, const char **);

/*
 * The encryption transform for an algorithm and key length, with the
 * OpenSSL cipher name (NULL for NULL encryption).
 */
static int
esp_enc_xform(uint8_t alg, size_t bits, struct esp_xform *x,
    const char **name)
{
	memset(x, 0, sizeof(*x));
	*name = NULL;
	switch (alg) {
	case SADB_EALG_NULL:
		if (bits != 0)
			return (-1);
		x->blksz = 1;
		return (0);
	case SADB_X_EALG_AES:
		x->ivlen = x->blksz = 16;
		if (bits == 128)
			*name = "AES-128-CBC";
		else if (bits == 192)
			*name = "AES-192-CBC";
		else if (bits == 256)
			*name = "AES-256-CBC";
		else
			return (-1);
		return (0);
	case SADB_X_EALG_AESGCM8:
	case SADB_X_EALG_AESGCM12:
	case SADB_X_EALG_AESGCM16:
		x->aead = 1;
		x->ivlen = 8;
		x->blksz = 1;
		x->icvlen = alg == SADB_X_EALG_AESGCM8 ? 8 :
		    alg == SADB_X_EALG_AESGCM12 ? 12 : 16;
		/* The key carries a 4-byte salt at its end. */
		if (bits == 128 + 32)
			*name = "AES-128-GCM";
		else if (bits == 192 + 32)
			*name = "AES-192-GCM";
		else if (bits == 256 + 32)
			*name = "AES-256-GCM";
		else
			return (-1);
		return (0);
	default:
		return (-1);
	}
}

/* The authentication transform: ICV length and OpenSSL digest name. */
static int
esp_auth_xform(uint8_t alg, size_t bits, size_t *icvlen, const char **name)
{
	*icvlen = 0;
	*name = NULL;
	switch (alg) {
	case SADB_AALG_NONE:
		return (bits == 0 ? 0 : -1);
	case SADB_AALG_SHA1HMAC:
		*icvlen = 12;
		*name = "SHA1";
		return (bits == 160 ? 0 : -1);
	case SADB_X_AALG_SHA2_256:
		*icvlen = 16;
		*name = "SHA2-256";
		return (bits == 256 ? 0 : -1);
	case SADB_X_AALG_SHA2_384:
		*icvlen = 24;
		*name = "SHA2-384";
		return (bits == 384 ? 0 : -1);
	case SADB_X_AALG_SHA2_512:
		*icvlen = 32;
		*name = "SHA2-512";
		return (bits == 512 ? 0 : -1);
	default:
		return (-1);
	}
}

/*
 * Whether an SA's algorithms and key lengths are ones ESP input can run:
 * a combined-mode cipher takes no separate authenticator, and an AH SA has
 * only an authenticator.  NULL encryption without one (RFC 4303 says not
 * to configure it) is taken, as KAME's key_mature() and Linux take it:
 * setkey's `-E null;` is how test beds send plaintext ESP.
 */
int
esp_alg_check(uint8_t satype, uint8_t enc, size_t encbits, uint8_t auth,
    size_t authbits)
{
	struct esp_xform	 x;
	const char		*name;
	size_t			 icvlen;

	if (satype == SADB_SATYPE_AH)
		return (enc == SADB_EALG_NONE && encbits == 0 &&
		    auth != SADB_AALG_NONE &&
		    esp_auth_xform(auth, authbits, &icvlen, &name) == 0 ?
		    0 : -1);
	if (satype != SADB_SATYPE_ESP)
		return (-1);
	if (esp_enc_xform(enc, encbits, &x, &name) == -1 ||
	    esp_auth_xform(auth, authbits, &icvlen, &name) == -1)
		return (-1);
	if (x.aead && auth != SADB_AALG_NONE)
		return (-1);
	return (0);
}

/* The transform of a set-up SA; -1 if it has none. */
int
esp_sa_xform(const struct secasvar *sav, struct esp_xform *x)
{
	const char	*name;
	size_t		 icvlen;

	if (esp_enc_xform(sav->alg_enc, sav->key_enc_bits, x, &name) == -1 ||
	    esp_auth_xform(sav->alg_auth, sav->key_auth_bits, &icvlen,
	    &name) == -1)
		return (-1);
	if (!x->aead)
		x->icvlen = icvlen;
	return (0);
}

/* Key the SA's cipher and MAC contexts once, at ADD or UPDATE. */
int
esp_sa_setup(struct secasvar *sav)
{
	OSSL_PARAM		 params[2];
	struct esp_xform	 x;
	EVP_CIPHER_CTX		*cctx = NULL;
	EVP_MAC_CTX		*mctx = NULL;
	EVP_CIPHER		*cipher = NULL;
	const char		*cname, *dname;
	size_t			 icvlen;

	if (esp_alg_check(sav->satype, sav->alg_enc, sav->key_enc_bits,
	    sav->alg_auth, sav->key_auth_bits) == -1 ||
	    sav->satype != SADB_SATYPE_ESP)
		goto fail;
	esp_enc_xform(sav->alg_enc, sav->key_enc_bits, &x, &cname);
	esp_auth_xform(sav->alg_auth, sav->key_auth_bits, &icvlen, &dname);
	if (cname != NULL) {
		if ((cipher = EVP_CIPHER_fetch(NULL, cname, NULL)) == NULL ||
		    (cctx = EVP_CIPHER_CTX_new()) == NULL ||
		    EVP_DecryptInit_ex(cctx, cipher, NULL, NULL, NULL) != 1)
			goto fail;
		if (x.aead && EVP_CIPHER_CTX_ctrl(cctx,
		    EVP_CTRL_AEAD_SET_IVLEN, 4 + x.ivlen, NULL) != 1)
			goto fail;
		/*
		 * CBC decrypts whole blocks as they come; GCM has no padding,
		 * and setting it anyway costs a parameter lookup per packet.
		 */
		if (EVP_DecryptInit_ex(cctx, NULL, NULL, sav->key_enc,
		    NULL) != 1 ||
		    (!x.aead && EVP_CIPHER_CTX_set_padding(cctx, 0) != 1))
			goto fail;
		EVP_CIPHER_free(cipher);
		cipher = NULL;
	}
	if (dname != NULL) {
		if (esp_hmac == NULL &&
		    (esp_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
			goto fail;
		params[0] = OSSL_PARAM_construct_utf8_string(
		    OSSL_MAC_PARAM_DIGEST, (char *)dname, 0);
		params[1] = OSSL_PARAM_construct_end();
		if ((mctx = EVP_MAC_CTX_new(esp_hmac)) == NULL ||
		    EVP_MAC_init(mctx, sav->key_auth, sav->key_auth_bits / 8,
		    params) != 1)
			goto fail;
	}
	sav->ctx_enc = cctx;
	sav->ctx_auth = mctx;
	return (0);

 fail:
	log_warnx("%s: cannot set up SA spi 0x%08x", __func__,
	    ntohl(sav->spi));
	EVP_CIPHER_free(cipher);
	EVP_CIPHER_CTX_free(cctx);
	EVP_MAC_CTX_free(mctx);
	return (-1);
}

void
esp_sa_teardown(struct secasvar *sav)
{
	EVP_CIPHER_CTX_free(sav->ctx_enc);
	EVP_MAC_CTX_free(sav->ctx_auth);
	sav->ctx_enc = NULL;
	sav->ctx_auth = NULL;
}
