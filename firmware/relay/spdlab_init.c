/*
 * spdlab_init: /init of the built kernels' initramfs.  Mounts proc, sysfs
 * and devtmpfs, sets up the network the kernel command line names, finds the
 * virtio-serial port named spdlab.pfkey and keeps pfkey_relay running on it.
 * No port: power off, so QEMU exits.
 *
 * The network: spdlab.addr=A/P is eth0's address on the lab switch,
 * spdlab.local=A/P one more address on lo (the protected side the traffic
 * host's tunnels lead to, so that decapsulated packets are delivered here
 * and checked against the inbound policies), spdlab.gw=A the default route
 * (the traffic host: the guest's own flows go out through their outbound
 * policies' tunnels to it).  Debian's kernel runs this too,
 * after its shell init has loaded the modules.
 *
 * A kernel with kprobe events (Debian's) also gets two probes, on the policy
 * allocation and on the RCU callback that frees a policy: their hit counts in
 * kprobe_profile say how many policies are allocated.  Tracing stays off; the
 * hits are counted all the same.
 *
 * A static C init rather than busybox: the same two binaries on every
 * architecture, cross-built here, with no foreign dpkg architecture on the
 * build machine.
 */
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME	"spdlab.pfkey"
#define PORT_TRIES	40
#define RELAY		"/bin/pfkey_relay"
#define TRACEFS		"/sys/kernel/tracing"
#define PROBES		"p:spdlab/policy_alloc xfrm_policy_alloc\n" \
			"p:spdlab/policy_free xfrm_policy_destroy_rcu\n"

static void
nap(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* The value of word KEY= on the kernel command line, into out; 0 if none. */
static int
cmdline_get(const char *key, char *out, size_t len)
{
	char	 buf[4096], *w, *save;
	size_t	 klen = strlen(key);
	ssize_t	 n;
	int	 fd;

	if ((fd = open("/proc/cmdline", O_RDONLY)) == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (w = strtok_r(buf, " \n", &save); w != NULL;
	    w = strtok_r(NULL, " \n", &save)) {
		if (strncmp(w, key, klen) == 0 && w[klen] == '=') {
			snprintf(out, len, "%s", w + klen + 1);
			return 1;
		}
	}
	return 0;
}

static void
sin_set(struct sockaddr *sa, in_addr_t a)
{
	struct sockaddr_in	 sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = a;
	memcpy(sa, &sin, sizeof(sin));
}

/* Give ifname (an alias such as lo:1 adds one) the address cidr and bring it up. */
static int
if_config(int s, const char *ifname, const char *cidr)
{
	struct ifreq	 ifr;
	struct in_addr	 a;
	char		 addr[64], *slash;
	long		 plen = 32;

	snprintf(addr, sizeof(addr), "%s", cidr);
	if ((slash = strchr(addr, '/')) != NULL) {
		*slash = '\0';
		plen = strtol(slash + 1, NULL, 10);
	}
	if (inet_pton(AF_INET, addr, &a) != 1 || plen < 0 || plen > 32) {
		printf("spdlab-init: %s: bad address %s\n", ifname, cidr);
		return -1;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	sin_set(&ifr.ifr_addr, a.s_addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) == -1)
		goto fail;
	sin_set(&ifr.ifr_netmask,
	    plen == 0 ? 0 : htonl(0xffffffffU << (32 - plen)));
	if (ioctl(s, SIOCSIFNETMASK, &ifr) == -1)
		goto fail;
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == -1)
		goto fail;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) == -1)
		goto fail;
	return 0;
fail:
	printf("spdlab-init: %s %s: %s\n", ifname, cidr, strerror(errno));
	return -1;
}

static int
file_put(const char *path, const char *text)
{
	ssize_t	 n;
	int	 fd;

	if ((fd = open(path, O_WRONLY | O_TRUNC)) == -1)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void
probes_setup(void)
{
	if (mount("tracefs", TRACEFS, "tracefs", 0, NULL) == -1 ||
	    access(TRACEFS "/kprobe_events", W_OK) == -1)
		return;
	if (file_put(TRACEFS "/tracing_on", "0") == -1 ||
	    file_put(TRACEFS "/kprobe_events", PROBES) == -1 ||
	    file_put(TRACEFS "/events/spdlab/enable", "1") == -1)
		printf("spdlab-init: kprobes: %s\n", strerror(errno));
	else
		printf("spdlab-init: kprobes on xfrm_policy_alloc, "
		    "xfrm_policy_destroy_rcu\n");
	fflush(stdout);
}

static void
route_default(int s, const char *gw)
{
	struct rtentry	 rt;
	struct in_addr	 a;

	if (inet_pton(AF_INET, gw, &a) != 1) {
		printf("spdlab-init: bad gateway %s\n", gw);
		return;
	}
	memset(&rt, 0, sizeof(rt));
	sin_set(&rt.rt_dst, INADDR_ANY);
	sin_set(&rt.rt_genmask, INADDR_ANY);
	sin_set(&rt.rt_gateway, a.s_addr);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	if (ioctl(s, SIOCADDRT, &rt) == -1)
		printf("spdlab-init: default via %s: %s\n", gw, strerror(errno));
}

/* lo, then eth0 and the protected address from the command line. */
static void
net_setup(void)
{
	char	 addr[64];
	int	 s;

	if ((s = socket(AF_INET, SOCK_DGRAM, 0)) == -1) {
		printf("spdlab-init: socket: %s\n", strerror(errno));
		return;
	}
	if_config(s, "lo", "127.0.0.1/8");
	if (cmdline_get("spdlab.local", addr, sizeof(addr)))
		if_config(s, "lo:1", addr);
	if (cmdline_get("spdlab.addr", addr, sizeof(addr)) &&
	    if_config(s, "eth0", addr) == 0)
		printf("spdlab-init: eth0 %s\n", addr);
	if (cmdline_get("spdlab.gw", addr, sizeof(addr)))
		route_default(s, addr);
	fflush(stdout);	/* before a fork copies the buffer */
	close(s);
}

static int
port_matches(const char *dev)
{
	char	 path[300], name[64];
	ssize_t	 n;
	int	 fd;

	snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", dev);
	if ((fd = open(path, O_RDONLY)) == -1)
		return 0;
	n = read(fd, name, sizeof(name) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	name[n] = '\0';
	name[strcspn(name, "\n")] = '\0';
	return strcmp(name, PORT_NAME) == 0;
}

static int
find_port(char *out, size_t len)
{
	struct dirent	*de;
	struct stat	 st;
	DIR		*d;
	int		 found = 0;

	if ((d = opendir("/sys/class/virtio-ports")) == NULL)
		return 0;
	while (!found && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || !port_matches(de->d_name))
			continue;
		snprintf(out, len, "/dev/%s", de->d_name);
		found = stat(out, &st) == 0 && S_ISCHR(st.st_mode);
	}
	closedir(d);
	return found;
}

static void
run_relay(char *port)
{
	char	*argv[] = { RELAY, port, NULL };
	pid_t	 pid;
	int	 status;

	if ((pid = fork()) == 0) {
		execv(RELAY, argv);
		_exit(127);
	}
	while (pid > 0 && waitpid(-1, &status, 0) != pid)
		;
	printf("spdlab-init: pfkey_relay exited %d, restarting\n",
	    pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	fflush(stdout);
	nap(1000);
}

int
main(void)
{
	struct utsname	 u;
	char		 port[300];
	int		 i;

	mount("proc", "/proc", "proc", 0, NULL);
	mount("sys", "/sys", "sysfs", 0, NULL);
	mount("dev", "/dev", "devtmpfs", 0, NULL);
	uname(&u);
	net_setup();
	probes_setup();
	for (i = 0; i < PORT_TRIES && !find_port(port, sizeof(port)); i++)
		nap(250);
	if (i == PORT_TRIES) {
		printf("spdlab-init: kernel %s, port none\n", u.release);
		fflush(stdout);
		reboot(RB_POWER_OFF);
		return 1;
	}
	printf("spdlab-init: kernel %s %s, port %s\n", u.release, u.machine, port);
	fflush(stdout);
	for (;;)
		run_relay(port);
}
