/*
 * Logging: one line per event, to a file or stderr.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netkeyd.h"

static FILE	*logfp;
static int	 logverbose;

static void	 vlog(const char *, const char *, va_list)
		    __attribute__((__format__ (printf, 2, 0)));

void
log_init(const char *path, int verbose)
{
	logverbose = verbose;
	if (path == NULL) {
		logfp = stderr;
		return;
	}
	if ((logfp = fopen(path, "a")) == NULL) {
		logfp = stderr;
		log_warnx("%s: %s: %s", __func__, path, strerror(errno));
		return;
	}
	setvbuf(logfp, NULL, _IOLBF, 0);
}

static void
vlog(const char *level, const char *fmt, va_list ap)
{
	struct timespec	 ts;
	FILE		*fp = logfp != NULL ? logfp : stderr;

	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(fp, "%lld.%03ld tick=%llu %s: ", (long long)ts.tv_sec,
	    ts.tv_nsec / 1000000, (unsigned long long)key_now, level);
	vfprintf(fp, fmt, ap);
	fputc('\n', fp);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog("info", fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog("warn", fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	if (!logverbose)
		return;
	va_start(ap, fmt);
	vlog("debug", fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog("fatal", fmt, ap);
	va_end(ap);
	exit(1);
}
