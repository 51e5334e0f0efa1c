/*
 * spdlab_init: /init of the built kernels' initramfs.  Mounts proc, sysfs
 * and devtmpfs, finds the virtio-serial port named spdlab.pfkey and keeps
 * pfkey_relay running on it.  No port: power off, so QEMU exits.
 *
 * A static C init rather than busybox: the same two binaries on every
 * architecture, cross-built here, with no foreign dpkg architecture on the
 * build machine.
 */
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME	"spdlab.pfkey"
#define PORT_TRIES	40
#define RELAY		"/bin/pfkey_relay"

static void
nap(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
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
