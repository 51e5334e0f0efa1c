/*
 * netkeyd: sockets, flags and the poll loop.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netkeyd.h"

#define PFKEY_MSGMAX		(0xffff * 8)
#define CTL_SNDBUF		(16 * 1024 * 1024)
#define CTL_BATCH		64	/* messages read per client per wakeup */

unsigned int		 netkeyd_tick_ms = 1000;
unsigned int		 netkeyd_flow_idle_ticks = 30;

static volatile sig_atomic_t	 quit;
static int			 ctlfd = -1;
static uint8_t			*msgbuf;

static void
sighandler(int sig)
{
	(void)sig;
	quit = 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: netkeyd --control PATH [--admin PATH] "
	    "[--log PATH] [--pidfile PATH]\n"
	    "               [--tick-ms N] [--flow-idle-ticks N] "
	    "[--esp ADDR] [--natt ADDR[:PORT]] [--daemon] [--verbose]\n");
	exit(2);
}

static unsigned int
getnum(const char *name, const char *s, unsigned long max)
{
	unsigned long	 v;
	char		*ep;

	errno = 0;
	v = strtoul(s, &ep, 10);
	if (*s == '\0' || *ep != '\0' || errno != 0 || v > max || *s == '-') {
		fprintf(stderr, "netkeyd: --%s: not a number in 0..%lu: %s\n",
		    name, max, s);
		exit(2);
	}
	return ((unsigned int)v);
}

static int
control_init(const char *path)
{
	struct sockaddr_un	 sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	memcpy(sun.sun_path, path, strlen(path));
	if ((ctlfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0)) == -1)
		return (-1);
	(void)unlink(path);
	if (bind(ctlfd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    chmod(path, 0600) == -1 || listen(ctlfd, 64) == -1)
		return (-1);
	return (0);
}

/* Every pending connection, so none misses a broadcast sent after it. */
static void
control_accept(void)
{
	int	 fd, sz = CTL_SNDBUF;

	while ((fd = accept4(ctlfd, NULL, NULL, SOCK_CLOEXEC |
	    SOCK_NONBLOCK)) != -1) {
		/* Room for a large SPDDUMP without dropping our own answers. */
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz,
		    sizeof(sz)) == -1)
			(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz,
			    sizeof(sz));
		if (key_attach(fd) == NULL) {
			log_warnx("%s: too many PF_KEY clients", __func__);
			close(fd);
		}
	}
}

/*
 * recv() gives 0 both for a zero-length datagram and for a peer that
 * closed; only the latter hangs the socket up.
 */
static int
control_hungup(int fd)
{
	struct pollfd	 pfd = { fd, POLLRDHUP, 0 };

	return (poll(&pfd, 1, 0) == 1 &&
	    (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0);
}

/*
 * One datagram is one PF_KEY message.  MSG_TRUNC reports the real size,
 * so an oversized datagram is seen as the length mismatch it is.  An
 * empty one is a message too short, as a PF_KEY socket takes it.
 */
static void
control_input(struct keycb *kp)
{
	ssize_t	 n;
	int	 i;

	for (i = 0; i < CTL_BATCH; i++) {
		n = recv(kp->fd, msgbuf, PFKEY_MSGMAX, MSG_DONTWAIT |
		    MSG_TRUNC);
		if (n == 0 && !control_hungup(kp->fd)) {
			key_parse(kp, msgbuf, 0);
			continue;
		}
		if (n == 0 || (n == -1 && errno != EAGAIN &&
		    errno != EWOULDBLOCK && errno != EINTR)) {
			key_detach(kp);
			return;
		}
		if (n == -1)
			return;
		if ((size_t)n > PFKEY_MSGMAX) {
			keystat.rej_length++;
			keystat.errors[EINVAL]++;
			continue;
		}
		key_parse(kp, msgbuf, (size_t)n);
	}
}

static void
writepid(const char *path, pid_t pid)
{
	FILE	*fp;

	if (path == NULL)
		return;
	if ((fp = fopen(path, "w")) == NULL) {
		log_warnx("%s: %s: %s", __func__, path, strerror(errno));
		return;
	}
	fprintf(fp, "%d\n", (int)pid);
	fclose(fp);
}

static void
daemonize(const char *pidfile)
{
	pid_t	 pid;
	int	 fd;

	if ((pid = fork()) == -1)
		fatal("%s: fork: %s", __func__, strerror(errno));
	if (pid != 0) {
		/* The pidfile exists before the parent returns. */
		writepid(pidfile, pid);
		_exit(0);
	}
	(void)setsid();
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		(void)dup2(fd, STDIN_FILENO);
		(void)dup2(fd, STDOUT_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
}

#define MAXFDS	(5 + KEY_MAXCLIENTS + 32)

static void
mainloop(void)
{
	struct pollfd	 pfd[MAXFDS];
	struct keycb	*kp;
	int		 fds[KEY_MAXCLIENTS + 32], nctl, nadm, n, i;

	while (!quit) {
		n = 0;
		pfd[n].fd = ctlfd;
		pfd[n++].events = POLLIN;
		pfd[n].fd = admin_listen_fd();
		pfd[n++].events = POLLIN;
		pfd[n].fd = timer_fd();
		pfd[n++].events = POLLIN;
		pfd[n].fd = esp_raw_fd();
		pfd[n++].events = POLLIN;
		pfd[n].fd = esp_udp_fd();
		pfd[n++].events = POLLIN;
		nctl = key_nclients();
		key_client_fds(fds, KEY_MAXCLIENTS);
		nadm = admin_nclients();
		admin_client_fds(fds + nctl, 32);
		for (i = 0; i < nctl + nadm; i++) {
			pfd[n].fd = fds[i];
			pfd[n++].events = POLLIN;
		}
		if (poll(pfd, (nfds_t)n, -1) == -1) {
			if (errno == EINTR)
				continue;
			fatal("%s: poll: %s", __func__, strerror(errno));
		}
		/*
		 * New sockets first: a socket whose connect() returned before
		 * another client's message must see that message's broadcast,
		 * as it would on a kernel.  Then the clock, so a busy data path
		 * cannot starve it.
		 */
		if (pfd[0].revents & POLLIN)
			control_accept();
		if (pfd[1].revents & POLLIN)
			admin_accept();
		if (pfd[2].revents & POLLIN)
			timer_expire();
		if (pfd[3].revents & POLLIN)
			esp_input_raw();
		if (pfd[4].revents & POLLIN)
			esp_input_udp();
		for (i = 0; i < nctl; i++) {
			if (pfd[5 + i].revents == 0)
				continue;
			if ((kp = key_client_byfd(fds[i])) != NULL)
				control_input(kp);
		}
		for (i = nctl; i < nctl + nadm; i++)
			if (pfd[5 + i].revents != 0)
				admin_input(fds[i]);
	}
}

int
main(int argc, char *argv[])
{
	static const struct option	 longopts[] = {
		{ "control",		required_argument, NULL, 'c' },
		{ "admin",		required_argument, NULL, 'a' },
		{ "log",		required_argument, NULL, 'l' },
		{ "pidfile",		required_argument, NULL, 'p' },
		{ "tick-ms",		required_argument, NULL, 't' },
		{ "flow-idle-ticks",	required_argument, NULL, 'i' },
		{ "esp",		required_argument, NULL, 'e' },
		{ "natt",		required_argument, NULL, 'n' },
		{ "daemon",		no_argument,	   NULL, 'd' },
		{ "verbose",		no_argument,	   NULL, 'v' },
		{ "version",		no_argument,	   NULL, 'V' },
		{ NULL,			0,		   NULL, 0 },
	};
	struct sigaction	 sa;
	const char		*control = NULL, *admin = NULL, *logpath = NULL;
	const char		*pidfile = NULL, *esp = NULL, *natt = NULL;
	int			 ch, daemon = 0, verbose = 0;

	while ((ch = getopt_long(argc, argv, "c:a:l:p:t:i:e:n:dvV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c': control = optarg; break;
		case 'a': admin = optarg; break;
		case 'l': logpath = optarg; break;
		case 'p': pidfile = optarg; break;
		case 't':
			netkeyd_tick_ms = getnum("tick-ms", optarg, 3600000);
			break;
		case 'i':
			netkeyd_flow_idle_ticks = getnum("flow-idle-ticks",
			    optarg, 1000000);
			break;
		case 'e': esp = optarg; break;
		case 'n': natt = optarg; break;
		case 'd': daemon = 1; break;
		case 'v': verbose = 1; break;
		case 'V':
			printf("netkeyd %s tree=%s patches=%s\n", NETKEYD_BUILD,
			    NETKEYD_TREE, NETKEYD_PATCHES);
			return (0);
		default:
			usage();
		}
	}
	if (control == NULL || optind != argc)
		usage();

	log_init(logpath, verbose);
	if ((msgbuf = malloc(PFKEY_MSGMAX + 8)) == NULL)
		fatal("out of memory");
	if (control_init(control) == -1)
		fatal("--control %s: %s", control, strerror(errno));
	if (admin != NULL && admin_init(admin) == -1)
		fatal("--admin %s: %s", admin, strerror(errno));
	if (esp_init(esp, natt) == -1)
		fatal("--esp/--natt: %s", strerror(errno));
	key_spd_init();
	key_sad_init();
	flow_init(netkeyd_flow_idle_ticks);
	if (timer_init(netkeyd_tick_ms) == -1)
		fatal("timer: %s", strerror(errno));

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sighandler;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	if (daemon)
		daemonize(pidfile);
	else
		writepid(pidfile, getpid());
	log_info("netkeyd %s (tree %s, patches \"%s\") up, tick %u ms, "
	    "flow idle %u ticks", NETKEYD_BUILD, NETKEYD_TREE, NETKEYD_PATCHES,
	    netkeyd_tick_ms, netkeyd_flow_idle_ticks);

	mainloop();

	log_info("shutting down");
	(void)flow_closeall();
	key_spd_destroy();
	key_sad_destroy();
	key_shutdown();
	timer_shutdown();
	(void)unlink(control);
	if (admin != NULL)
		(void)unlink(admin);
	if (pidfile != NULL)
		(void)unlink(pidfile);
	free(msgbuf);
	return (0);
}
