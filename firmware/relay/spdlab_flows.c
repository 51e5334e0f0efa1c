/*
 * spdlab_flows: the guest's own flows, one per outbound policy, so that each
 * policy is held the way Linux holds it: by the bundle (xfrm_dst) cached in
 * a connected socket's route.  In the qemu initramfs, started by pfkey_relay
 * on the host's FLOWS frame.
 *
 * usage: spdlab_flows FILE
 *	FILE: a first line "INTERVAL_MS", then one "SRC DST SPORT DPORT" line
 *	per flow (IPv4, decimal ports).
 *
 * Each flow is a UDP socket bound to SRC:SPORT and connected to DST:DPORT;
 * connect() resolves the route through the policy and caches the bundle.
 * Every INTERVAL_MS each socket sends one byte, which revalidates the bundle
 * as a real sender would: after the policy is deleted the next send lets it
 * go.  Whatever arrives on the sockets (the traffic host's flows, delivered
 * once the inbound policy check passed) is read and dropped.
 */
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FLOWS_MAX	65536
#define FLOWS_WARN	3	/* bad lines told one by one; the rest counted */

static int	 flowfd[FLOWS_MAX];
static int	 nflows;
static int	 nbad;

static int
sin_parse(struct sockaddr_in *sin, const char *addr, const char *port)
{
	char	*end;
	long	 p;

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	p = strtol(port, &end, 10);
	if (*end != '\0' || p < 0 || p > 65535)
		return (-1);
	sin->sin_port = htons((uint16_t)p);
	return (inet_pton(AF_INET, addr, &sin->sin_addr) == 1 ? 0 : -1);
}

/* One flow: bound, connected (the bundle resolved); -1 on a bad line. */
static int
flow_open(const char *line, int lineno)
{
	struct sockaddr_in	 src, dst;
	char			 a[64], b[64], sp[16], dp[16];
	int			 fd, on = 1;

	if (sscanf(line, "%63s %63s %15s %15s", a, b, sp, dp) != 4 ||
	    sin_parse(&src, a, sp) == -1 || sin_parse(&dst, b, dp) == -1) {
		if (nbad++ < FLOWS_WARN)
			fprintf(stderr, "spdlab_flows: line %d: bad flow\n",
			    lineno);
		return (-1);
	}
	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0)) == -1) {
		if (nbad++ < FLOWS_WARN)
			fprintf(stderr, "spdlab_flows: line %d: socket: %s\n",
			    lineno, strerror(errno));
		return (-1);
	}
	/* Every reply flow binds the same protected address and port. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1 ||
	    connect(fd, (struct sockaddr *)&dst, sizeof(dst)) == -1) {
		if (nbad++ < FLOWS_WARN)
			fprintf(stderr, "spdlab_flows: line %d: %s\n", lineno,
			    strerror(errno));
		close(fd);
		return (-1);
	}
	flowfd[nflows++] = fd;
	return (0);
}

static void
nap(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void
flows_round(void)
{
	char	 buf[2048];
	int	 i;

	for (i = 0; i < nflows; i++) {
		while (recv(flowfd[i], buf, sizeof(buf), 0) > 0)
			;
		/* EAGAIN while a bundle resolves, ENETUNREACH: try next round. */
		(void)send(flowfd[i], "k", 1, 0);
	}
}

int
main(int argc, char *argv[])
{
	struct rlimit	 rl = { FLOWS_MAX + 64, FLOWS_MAX + 64 };
	char		 line[256];
	FILE		*f;
	long		 interval;
	int		 lineno = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: spdlab_flows FILE\n");
		return (2);
	}
	/* A socket a flow: far more than the default 1024 descriptors. */
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		fprintf(stderr, "spdlab_flows: setrlimit: %s\n", strerror(errno));
	if ((f = fopen(argv[1], "r")) == NULL) {
		fprintf(stderr, "spdlab_flows: %s: %s\n", argv[1],
		    strerror(errno));
		return (1);
	}
	if (fgets(line, sizeof(line), f) == NULL ||
	    (interval = strtol(line, NULL, 10)) <= 0) {
		fprintf(stderr, "spdlab_flows: line 1: bad interval\n");
		fclose(f);
		return (1);
	}
	while (fgets(line, sizeof(line), f) != NULL && nflows < FLOWS_MAX) {
		lineno++;
		flow_open(line, lineno);
	}
	fclose(f);
	fprintf(stderr, "spdlab_flows: %d flows every %ld ms, %d refused\n",
	    nflows, interval, nbad);
	for (;;) {
		flows_round();
		nap(interval);
	}
}
