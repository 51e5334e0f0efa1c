#!/bin/sh
# check-fresh.sh: the set-up steps on a fresh Debian 12, in a debootstrap minbase chroot.
#   the committed files are copied in (git ls-files), then inside the chroot:
#   scripts/deps.sh with every group, every firmware flavour (plain, ASan, static, fuzz,
#   relay, spd-diff), the qemu kind's kernel and initramfs, and the venv.
# A step that only works on a machine set up by hand fails here, named.
# The chroot lives in .cache/fresh/root.<pid> and is removed afterwards, also on failure and
# Ctrl-C; mounts are undone first.  Kept between runs, to save downloads only:
#   .cache/fresh/minbase.tgz (debootstrap --make-tarball) and .cache/fresh/apt (.deb files).
#   FRESH_NOCACHE=1 uses neither.
set -eu
cd "$(dirname "$0")/.."
REPO=$(pwd)
TEST_GROUPS="base prometheus fuzz chromium docker qemu"
ALL_GROUPS="$TEST_GROUPS kernel ssh fresh bench"
CACHE=$REPO/.cache/fresh
R=$CACHE/root.$$
STEP="start"
T0=$(date +%s)

say() { echo "check-fresh: $*"; }

# First URI of a Debian source serving SUITE, from one-line and deb822 files.
apt_uri() {
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v s="$1" '$1 == "deb" { sub(/\[[^]]*\] */, "")
		    if ($3 == s) { print $2; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v s="$1" 'BEGIN { RS = ""; FS = "\n" } {
		    uri = ""; hit = 0; off = 0
		    for (i = 1; i <= NF; i++) {
			if ($i ~ /^URIs:/) { split($i, w, /[ \t]+/); uri = w[2] }
			if ($i ~ /^Suites:/ && (" " $i " ") ~ (" " s " ")) hit = 1
			if ($i ~ /^Enabled: *no/) off = 1
		    }
		    if (hit && !off && uri != "") { print uri; exit } }' "$f"
	done
}

# Mount points at or under $1, deepest first.
mounts_under() {
	awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo |
	    sort -r
}

# Processes whose root is the chroot (a daemon a postinst left running).
chroot_pids() {
	for d in /proc/[0-9]*; do
		[ "$(readlink "$d/root" 2>/dev/null)" = "$1" ] && echo "${d#/proc/}"
	done
	return 0
}

remove_root() {
	dir=$1
	[ -d "$dir" ] || return 0
	for pid in $(chroot_pids "$dir"); do kill -9 "$pid" 2>/dev/null || true; done
	for m in $(mounts_under "$dir"); do umount "$m" 2>/dev/null || umount -l "$m"; done
	if [ -n "$(mounts_under "$dir")" ]; then
		say "still mounted under $dir, not removing it:" >&2
		mounts_under "$dir" >&2
		return 1
	fi
	rm -rf --one-file-system "$dir"
}

cleanup() {
	rc=$?
	trap - EXIT INT TERM HUP
	remove_root "$R" || rc=1
	if [ "$rc" -eq 0 ]; then
		say "PASS in $(($(date +%s) - T0)) s"
	else
		say "FAILED at step: $STEP (exit $rc)" >&2
	fi
	exit "$rc"
}

# step NAME CMD...: run on the host, print the step and its time.
step() {
	STEP=$1
	shift
	say "== $STEP"
	t=$(date +%s)
	"$@"
	say "   $STEP: $(($(date +%s) - t)) s"
}

# inside NAME CMD: a step inside the chroot, in the repository's copy, with a clean environment;
# pip trusts the system's CAs (ca-certificates), as apt and curl do.
inside() {
	step "$1" env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
	    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
	    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	    chroot "$R" /bin/sh -c "cd /srv/spdlab && $2" </dev/null
	for pid in $(chroot_pids "$R"); do kill -9 "$pid" 2>/dev/null || true; done
}

debootstrap_root() {
	mkdir -p "$CACHE"
	if [ -n "${FRESH_NOCACHE:-}" ]; then
		debootstrap --variant=minbase bookworm "$R" "$MIRROR" >"$CACHE/debootstrap.log"
		return
	fi
	if [ ! -s "$CACHE/minbase.tgz" ]; then
		debootstrap --variant=minbase --make-tarball="$CACHE/minbase.tgz.tmp" \
		    bookworm "$R" "$MIRROR" >"$CACHE/debootstrap.log"
		mv "$CACHE/minbase.tgz.tmp" "$CACHE/minbase.tgz"
		rm -rf --one-file-system "$R"
	fi
	debootstrap --variant=minbase --unpack-tarball="$CACHE/minbase.tgz" \
	    bookworm "$R" "$MIRROR" >"$CACHE/debootstrap.log"
}

# A fresh machine's apt sources, no daemons started by postinsts, the host's resolver.
prepare_root() {
	cat >"$R/etc/apt/sources.list" <<-EOF
	deb $MIRROR bookworm main
	deb $MIRROR bookworm-updates main
	deb $SECURITY bookworm-security main
	EOF
	printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
	chmod 755 "$R/usr/sbin/policy-rc.d"
	cp -L /etc/resolv.conf "$R/etc/resolv.conf"
	# what the host trusts (a TLS proxy's CA): added when deps.sh installs ca-certificates
	mkdir -p "$R/usr/local/share/ca-certificates"
	cp -L /etc/ssl/certs/ca-certificates.crt "$R/usr/local/share/ca-certificates/host.crt"
	mount -t proc proc "$R/proc"
	mount -t sysfs sys "$R/sys"
	mount --rbind /dev "$R/dev"  # with /dev/pts for apt's log
	mount --make-rslave "$R/dev"  # so that unmounting it leaves the host's /dev alone
	[ -n "${FRESH_NOCACHE:-}" ] && return
	mkdir -p "$CACHE/apt"
	mount --bind "$CACHE/apt" "$R/var/cache/apt/archives"
}

# The committed files as they are in the worktree: no .venv, .cache or build output.
copy_repo() {
	mkdir -p "$R/srv/spdlab"
	git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$R/srv/spdlab"
}

# Leftovers of a run killed with -9: its chroot, processes and mounts.
remove_stale() {
	for d in "$CACHE"/root.*; do
		[ -d "$d" ] || continue
		kill -0 "${d##*.}" 2>/dev/null && continue
		say "removing $d, left by an earlier run"
		remove_root "$d"
	done
}

[ "$(id -u)" -eq 0 ] || { say "needs root (debootstrap, chroot, mount)" >&2; exit 2; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
MIRROR=${FRESH_MIRROR:-$(apt_uri bookworm | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(apt_uri bookworm-security | head -1)
SECURITY=${SECURITY:-http://security.debian.org/debian-security}
say "mirror $MIRROR, security $SECURITY, chroot $R"
step "host: deps.sh fresh (debootstrap)" scripts/deps.sh fresh
step "remove chroots left by runs killed with -9" remove_stale
step "debootstrap --variant=minbase bookworm" debootstrap_root
step "prepare the chroot (sources, policy-rc.d, mounts)" prepare_root
step "copy the repository (git ls-files)" copy_repo
# in the order a user meets them: make demo's groups, make test's, then every group
inside "deps.sh base (make demo)" "sh scripts/deps.sh base"
inside "deps.sh $TEST_GROUPS (make test)" "sh scripts/deps.sh $TEST_GROUPS"
inside "deps.sh $ALL_GROUPS (make setup)" "sh scripts/deps.sh $ALL_GROUPS"
inside "firmware: make -C firmware all" "make -s -C firmware all"
inside "firmware: make -C firmware asan" "make -s -C firmware asan"
inside "firmware: make -C firmware static" "make -s -C firmware static"
inside "firmware: make -C firmware fuzz" "make -s -C firmware fuzz"
inside "firmware: make -C firmware relay" "make -s -C firmware relay"
inside "firmware: make -C firmware spd-diff" "make -s -C firmware spd-diff"
inside "qemu kind: scripts/qemu-kernel.sh" "sh scripts/qemu-kernel.sh"
inside "make venv" "make venv"
inside "the venv runs: spdlab validate labs/demo.yaml" ".venv/bin/spdlab validate labs/demo.yaml"
say "chroot: $(du -sxm "$R" | cut -f1) MB, of which .deb files $(du -sm "$R/var/cache/apt/archives" | cut -f1) MB"
STEP="done"
