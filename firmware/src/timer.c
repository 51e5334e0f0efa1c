/*
 * The timer: a virtual clock that advances one second per tick, however
 * long a tick lasts in wall time, and a ring recording what each tick did.
 */
#include <sys/timerfd.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "netkeyd.h"

#ifndef TICKRING
#define TICKRING	16384	/* a fuzz harness makes it small, to wrap */
#endif
#define TICK_CATCHUP	1000	/* most ticks run for one late wakeup */

static struct tickrec	 ring[TICKRING];
static uint64_t		 nrec;
static struct keystat	 prev;		/* counters at the last tick */
static int		 tfd = -1;

int
timer_init(unsigned int tick_ms)
{
	struct itimerspec	 its;

	if (tick_ms == 0)
		return (0);
	if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK |
	    TFD_CLOEXEC)) == -1)
		return (-1);
	memset(&its, 0, sizeof(its));
	its.it_interval.tv_sec = tick_ms / 1000;
	its.it_interval.tv_nsec = (long)(tick_ms % 1000) * 1000000;
	its.it_value = its.it_interval;
	if (timerfd_settime(tfd, 0, &its, NULL) == -1)
		return (-1);
	return (0);
}

int
timer_fd(void)
{
	return (tfd);
}

void
timer_shutdown(void)
{
	if (tfd != -1)
		close(tfd);
	tfd = -1;
}

/* The timerfd fired: run as many ticks as elapsed, within reason. */
void
timer_expire(void)
{
	uint64_t	 n, i;

	if (read(tfd, &n, sizeof(n)) != sizeof(n))
		return;
	if (n > TICK_CATCHUP) {
		log_warnx("%s: %llu ticks late, running %d", __func__,
		    (unsigned long long)n, TICK_CATCHUP);
		n = TICK_CATCHUP;
	}
	for (i = 0; i < n; i++)
		key_timehandler();
}

static uint64_t
esp_drops(const struct keystat *ks)
{
	uint64_t	 n = 0;
	int		 i;

	for (i = 0; i < ESP_DROP_MAX; i++)
		n += ks->esp_drop[i];
	return (n);
}

/*
 * key_timehandler: one tick.  Counts in the record are what happened
 * since the previous record, so work done between ticks (a flush, a
 * delete) lands in the tick that follows it.
 */
void
key_timehandler(void)
{
	struct spd_census	 c;
	struct tickrec		*r;
	uint64_t		 unlinked;
	int			 dir;

	key_now++;
	keystat.ticks++;
	unlinked = keystat.unlinked;
	key_spd_timehandler();
	key_sad_timehandler();
	flow_timehandler();
	/* The timer's own unlinks (flows it idles out too), apart from messages'. */
	keystat.timer_unlinked += keystat.unlinked - unlinked;

	r = &ring[nrec % TICKRING];
	memset(r, 0, sizeof(*r));
	r->tick = key_now;
	r->unlinked = keystat.unlinked - prev.unlinked;
	r->timer_unlinked = keystat.timer_unlinked - prev.timer_unlinked;
	r->freed = keystat.freed - prev.freed;
	r->premature = keystat.premature_frees - prev.premature_frees;
	r->uaf = keystat.use_after_free - prev.use_after_free;
	r->lookups = keystat.lookups - prev.lookups;
	r->walked = keystat.lookup_walked - prev.lookup_walked;
	r->esp_ok = keystat.esp_ok - prev.esp_ok;
	r->esp_drop = esp_drops(&keystat) - esp_drops(&prev);
	key_spd_census(&c);
	for (dir = 0; dir < IPSEC_DIR_MAX; dir++) {
		r->alive[dir] = c.alive[dir];
		r->dead[dir] = c.dead[dir];
	}
	r->allocated = keystat.allocated;
	r->flows = keystat.flows_open;
	nrec++;
	prev = keystat;
}

uint64_t
timer_nrec(void)
{
	return (nrec);
}

/* Record i (0-based since start), or NULL once the ring overwrote it. */
const struct tickrec *
timer_rec(uint64_t i)
{
	if (i >= nrec || nrec - i > TICKRING)
		return (NULL);
	return (&ring[i % TICKRING]);
}
