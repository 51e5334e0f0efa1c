/*
 * pfkey_send: send PF_KEY messages encoded beforehand to netkeyd's control
 * socket, at most WINDOW unanswered, and wait for every reply: what
 * `ip -batch` is to XFRM, so an install measures the SPD, not a client.
 *
 *	pfkey_send SOCKET FILE [WINDOW]
 *
 * FILE holds whole sadb_msgs back to back.  Each gets a fresh seq and our
 * pid.  Prints "sent N errors E seconds S" and exits 0 if every reply came.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <err.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct hdr {
	uint8_t		 version;
	uint8_t		 type;
	uint8_t		 errno_;
	uint8_t		 satype;
	uint16_t	 len;
	uint16_t	 reserved;
	uint32_t	 seq;
	uint32_t	 pid;
};

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static uint8_t *
slurp(const char *path, size_t *lenp)
{
	struct stat	 st;
	uint8_t		*buf;
	ssize_t		 n;
	size_t		 off = 0;
	int		 fd;

	if ((fd = open(path, O_RDONLY)) == -1 || fstat(fd, &st) == -1)
		err(1, "%s", path);
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
		err(1, "malloc");
	while (off < (size_t)st.st_size &&
	    (n = read(fd, buf + off, (size_t)st.st_size - off)) > 0)
		off += (size_t)n;
	close(fd);
	*lenp = off;
	return (buf);
}

int
main(int argc, char *argv[])
{
	static uint8_t		 rbuf[65536];
	struct sockaddr_un	 sun;
	struct hdr		 h;
	uint8_t			*buf;
	size_t			 len, off = 0, mlen;
	uint64_t		 sent = 0, answered = 0, errors = 0;
	uint32_t		 seq = 0, pid = (uint32_t)getpid();
	double			 t0;
	ssize_t			 n;
	int			 fd, window = 256, rcv = 8 << 20;

	if (argc < 3 || argc > 4)
		errx(2, "usage: pfkey_send SOCKET FILE [WINDOW]");
	if (argc == 4 && (window = atoi(argv[3])) < 1)
		errx(2, "WINDOW: %s is not a positive number", argv[3]);
	buf = slurp(argv[2], &len);
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET, 0)) == -1)
		err(1, "socket");
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(argv[1]) >= sizeof(sun.sun_path))
		errx(2, "SOCKET: path too long");
	strcpy(sun.sun_path, argv[1]);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		err(1, "connect %s", argv[1]);

	t0 = now();
	while (off < len || answered < sent) {
		while (off < len && sent - answered < (uint64_t)window) {
			if (len - off < sizeof(h))
				errx(1, "%s: byte %zu: short header", argv[2],
				    off);
			memcpy(&h, buf + off, sizeof(h));
			mlen = (size_t)h.len * 8;
			if (mlen < sizeof(h) || mlen > len - off)
				errx(1, "%s: byte %zu: bad sadb_msg_len",
				    argv[2], off);
			h.seq = ++seq;
			h.pid = pid;
			memcpy(buf + off, &h, sizeof(h));
			if (send(fd, buf + off, mlen, 0) != (ssize_t)mlen)
				err(1, "send");
			off += mlen;
			sent++;
		}
		if ((n = recv(fd, rbuf, sizeof(rbuf), 0)) == -1)
			err(1, "recv");
		if ((size_t)n < sizeof(h))
			continue;
		memcpy(&h, rbuf, sizeof(h));
		if (h.pid != pid || h.seq == 0 || h.seq > seq)
			continue;
		answered++;
		if (h.errno_ != 0)
			errors++;
	}
	printf("sent %llu errors %llu seconds %.6f\n", (unsigned long long)sent,
	    (unsigned long long)errors, now() - t0);
	close(fd);
	return (0);
}
