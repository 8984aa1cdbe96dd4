#!/bin/sh
# Builds and installs dma-rs: the sendmail/mailq/newaliases program `dma',
# its local-delivery helper `dma-local', a sample dma.conf, the queue
# directory, and the cron file and systemd units that run the queue.
#
# Run as root for a real install. For staging (packaging), give --destdir;
# nothing outside DESTDIR is touched then. See --help.

set -eu
umask 022

prog=${0##*/}
srcdir=$(cd "$(dirname "$0")/.." && pwd)
default_spooldir=/var/spool/dma

usage() {
	cat <<EOF
usage: $prog [options]

Builds dma-rs (cargo build --release --locked) and installs it.

  --prefix DIR       install prefix (default /usr/local): DIR/sbin/dma,
                     DIR/sbin/sendmail, DIR/bin/{mailq,newaliases},
                     DIR/libexec/dma-rs/dma-local
  --destdir DIR      stage everything below DIR (like make DESTDIR=);
                     the system itself is not touched
  --sysconfdir DIR   directory of dma.conf (default /etc/dma)
  --spooldir DIR     queue directory (default $default_spooldir)
  --build-only       only build (as yourself), with the paths the other
                     options give; then run this again as root with --no-build
  --no-build         do not build; install binaries already built in
                     \${CARGO_TARGET_DIR:-target}/release
  --bindir-from DIR  install the binaries dma and dma-local found in DIR
                     (already built; implies --no-build)
  --no-chown         do not set owners and groups (root:mail), for an
                     unprivileged staging install; modes are still set
  -h, --help         show this help

The binaries are built with DMA_CONF_PATH=SYSCONFDIR/dma.conf and
DMA_LIBEXEC_DIR=PREFIX/libexec/dma-rs; binaries installed with --no-build
must have been built with the same values.
EOF
}

die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

warn() {
	printf '%s: warning: %s\n' "$prog" "$*" >&2
}

say() {
	printf '%s\n' "$*"
}

prefix=/usr/local
destdir=
sysconfdir=/etc/dma
spooldir=$default_spooldir
build=yes
build_only=no
chown=yes
bindir_from=

# Takes the value of an option given as `--opt VALUE' (two arguments).
need_value() {
	[ "$#" -ge 2 ] || die "option $1 needs a value (try --help)"
}

while [ "$#" -gt 0 ]; do
	case $1 in
	--prefix | --destdir | --sysconfdir | --spooldir | --bindir-from)
		need_value "$@"
		opt=$1 val=$2
		shift 2
		;;
	--prefix=* | --destdir=* | --sysconfdir=* | --spooldir=* | --bindir-from=*)
		opt=${1%%=*} val=${1#*=}
		shift
		;;
	--no-build)
		build=no
		shift
		continue
		;;
	--build-only)
		build_only=yes
		shift
		continue
		;;
	--no-chown)
		chown=no
		shift
		continue
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		printf '%s: unknown option: %s\n' "$prog" "$1" >&2
		usage >&2
		exit 2
		;;
	esac
	case $opt in
	--prefix) prefix=$val ;;
	--destdir) destdir=$val ;;
	--sysconfdir) sysconfdir=$val ;;
	--spooldir) spooldir=$val ;;
	--bindir-from)
		bindir_from=$val
		build=no
		;;
	esac
done

# An installation path: absolute, without a trailing slash, and made of
# characters that are safe in dma.conf, a crontab, a systemd unit and sed.
check_path() {
	case $2 in
	/*) ;;
	*) die "$1 must be an absolute path: $2" ;;
	esac
	case $2 in
	*[!A-Za-z0-9._/+-]*) die "$1 contains characters this script does not handle: $2" ;;
	esac
}

# Strips trailing slashes; `/' becomes the empty string (a prefix of `/').
strip_slash() {
	s=$1
	while [ "${s%/}" != "$s" ]; do s=${s%/}; done
	printf '%s' "$s"
}

# Makes a path given on the command line absolute, relative to the caller's
# working directory.
absolute() {
	case $1 in
	/*) printf '%s' "$1" ;;
	*) printf '%s/%s' "$(pwd)" "$1" ;;
	esac
}

check_path --prefix "$prefix"
check_path --sysconfdir "$sysconfdir"
check_path --spooldir "$spooldir"
prefix=$(strip_slash "$prefix")
sysconfdir=$(strip_slash "$sysconfdir")
spooldir=$(strip_slash "$spooldir")
[ -n "$sysconfdir" ] || die "--sysconfdir may not be /"
[ -n "$spooldir" ] || die "--spooldir may not be /"
if [ -n "$destdir" ]; then
	destdir=$(strip_slash "$(absolute "$destdir")")
fi
if [ -n "$bindir_from" ]; then
	bindir_from=$(absolute "$bindir_from")
fi

sbindir=$prefix/sbin
bindir=$prefix/bin
libexecdir=$prefix/libexec/dma-rs
conf=$sysconfdir/dma.conf
crondir=/etc/cron.d
unitdir=/lib/systemd/system

if [ "$chown" = yes ] && [ "$build_only" = no ]; then
	[ "$(id -u)" -eq 0 ] ||
		die "setting owners (root:mail) needs root; for an unprivileged staging install use --destdir DIR --no-chown"
	if command -v getent >/dev/null 2>&1; then
		getent group mail >/dev/null || die "there is no group \`mail'; create it first (groupadd -r mail)"
	else
		grep -q '^mail:' /etc/group || die "there is no group \`mail'; create it first"
	fi
	if ! id mail >/dev/null 2>&1; then
		warn "there is no user \`mail': dma started by root (cron, systemd) will then keep running as root"
	fi
fi

# ---- Build ------------------------------------------------------------------

# The binaries: --bindir-from, else cargo's release directory.
if [ -n "$bindir_from" ]; then
	bins=$bindir_from
else
	target=$(absolute "${CARGO_TARGET_DIR:-$srcdir/target}")
	bins=$target/release
fi

if [ "$build" = yes ]; then
	if ! command -v cargo >/dev/null 2>&1; then
		die "cargo not found; build as yourself first (DMA_CONF_PATH=$conf DMA_LIBEXEC_DIR=$libexecdir cargo build --release --locked), then run $prog --no-build"
	fi
	say "build: DMA_CONF_PATH=$conf DMA_LIBEXEC_DIR=$libexecdir cargo build --release --locked"
	if [ -z "$bindir_from" ]; then
		CARGO_TARGET_DIR=$target
		export CARGO_TARGET_DIR
	fi
	(
		cd "$srcdir"
		DMA_CONF_PATH=$conf DMA_LIBEXEC_DIR=$libexecdir cargo build --release --locked
	)
fi

if [ "$build_only" = yes ]; then
	say "built in $bins; now install as root: $0 --no-build (with the same --prefix and --sysconfdir)"
	exit 0
fi

for b in dma dma-local; do
	if [ ! -f "$bins/$b" ] || [ ! -x "$bins/$b" ]; then
		die "$bins/$b is missing; build first (or drop --no-build, or use --bindir-from DIR)"
	fi
done

# The paths are compiled in; a binary built for other paths would look for
# its configuration or its helper in the wrong place. A heuristic: the path
# strings must appear in the binary.
compiled_in() {
	LC_ALL=C grep -a -F -q -e "$2" "$1"
}
for b in dma dma-local; do
	compiled_in "$bins/$b" "$conf" ||
		warn "$bins/$b does not seem to be built with DMA_CONF_PATH=$conf; it will read another dma.conf"
done
compiled_in "$bins/dma" "$libexecdir" ||
	warn "$bins/dma does not seem to be built with DMA_LIBEXEC_DIR=$libexecdir; it will not find dma-local"

# ---- Install ----------------------------------------------------------------

# A temporary file to remove if the script stops half-way.
tmp=
trap 'if [ -n "$tmp" ]; then rm -f "$tmp"; fi' EXIT
trap 'exit 1' HUP INT TERM

if [ "$chown" = yes ]; then
	owner=root:mail
else
	owner="(owner not set)"
fi

# Sets root:mail (unless --no-chown), then the mode: chown clears the set-id
# bits, so it comes first.
set_owner_mode() {
	if [ "$chown" = yes ]; then
		chown root:mail "$2"
	fi
	chmod "$1" "$2"
}

# install_dir DIR: creates DIR below DESTDIR, with its parents (mode 755 by
# the umask); an existing directory is left as it is.
install_dir() {
	mkdir -p "$destdir$1"
}

# install_file SRC DEST MODE [root:mail]: copies SRC to DESTDIR/DEST through
# a temporary file in the same directory and a rename, so that a running
# program is never overwritten and DEST is never missing or half-written.
install_file() {
	dest=$destdir$2
	[ ! -d "$dest" ] || die "$dest is a directory"
	tmp=$(dirname "$dest")/.${dest##*/}.tmp.$$
	cp "$1" "$tmp"
	if [ "${4:-}" = root:mail ]; then
		set_owner_mode "$3" "$tmp"
		say "installed $dest (mode $3, $owner)"
	else
		chmod "$3" "$tmp"
		say "installed $dest (mode $3)"
	fi
	mv -f "$tmp" "$dest"
	tmp=
}

# install_rewritten SRC DEST: a text file with the binary path of the
# default prefix replaced by ours.
install_rewritten() {
	dest=$destdir$2
	[ ! -d "$dest" ] || die "$dest is a directory"
	tmp=$(dirname "$dest")/.${dest##*/}.tmp.$$
	sed "s|/usr/local/sbin/dma|$sbindir/dma|g" "$1" >"$tmp"
	chmod 644 "$tmp"
	mv -f "$tmp" "$dest"
	tmp=
	if grep -q -F "$sbindir/dma" "$dest"; then
		say "installed $dest (mode 644, runs $sbindir/dma)"
	else
		say "installed $dest (mode 644)"
	fi
}

# install_link TARGET LINK: LINK -> TARGET. Another program's file in the
# way is kept as LINK.pre-dma-rs.
install_link() {
	link=$destdir$2
	if [ -L "$link" ]; then
		old=$(readlink "$link")
		if [ "$old" = "$1" ]; then
			say "kept $link -> $1"
			return
		fi
		rm -f "$link"
		say "replaced symlink $link (was -> $old)"
	elif [ -d "$link" ]; then
		die "$link is a directory"
	elif [ -e "$link" ]; then
		mv -f "$link" "$link.pre-dma-rs"
		say "moved the existing $link to $link.pre-dma-rs"
	fi
	ln -s "$1" "$link"
	say "linked $link -> $1"
}

if [ -n "$destdir" ]; then
	say "staging below $destdir"
	mkdir -p "$destdir"
fi

install_dir "$sbindir"
install_dir "$bindir"
install_dir "$libexecdir"
install_dir "$sysconfdir"
install_dir "$crondir"
install_dir "$unitdir"

# dma: set-group-id mail, so that it can write the queue.
install_file "$bins/dma" "$sbindir/dma" 2755 root:mail
# dma-local: set-user-id root, runnable only by group mail (that is, dma).
install_file "$bins/dma-local" "$libexecdir/dma-local" 4750 root:mail

install_link dma "$sbindir/sendmail"
install_link ../sbin/dma "$bindir/mailq"
install_link ../sbin/dma "$bindir/newaliases"

# dma.conf: never overwrite an administrator's configuration. SPOOLDIR is
# not compiled in, so a spool other than the default must be named in it.
tab=$(printf '\t')
cr=$(printf '\r')
if [ -e "$destdir$conf" ] || [ -L "$destdir$conf" ]; then
	say "kept the existing $destdir$conf (not overwritten)"
	configured=$(sed -e 's/#.*//' -e "s/$cr\$//" "$destdir$conf" |
		sed -n "s/^SPOOLDIR[ $tab]//p" | tail -n 1)
	configured=${configured:-$default_spooldir}
	if [ "$configured" != "$spooldir" ]; then
		warn "$destdir$conf uses SPOOLDIR $configured, not $spooldir: set \`SPOOLDIR $spooldir' in it"
	fi
else
	dest=$destdir$conf
	tmp=$(dirname "$dest")/.dma.conf.tmp.$$
	cp "$srcdir/examples/dma.conf" "$tmp"
	if [ "$spooldir" != "$default_spooldir" ]; then
		printf '\n# Set by %s --spooldir.\nSPOOLDIR %s\n' "$prog" "$spooldir" >>"$tmp"
	fi
	chmod 644 "$tmp"
	mv -f "$tmp" "$dest"
	tmp=
	say "installed $dest (mode 644, from examples/dma.conf)"
fi

# The queue: mode 2770 root:mail; what is in it is left alone.
mkdir -p "$destdir$spooldir"
set_owner_mode 2770 "$destdir$spooldir"
say "spool directory $destdir$spooldir (mode 2770, $owner)"
for f in "$destdir$spooldir"/[QM]*; do
	if [ -f "$f" ]; then
		warn "$destdir$spooldir holds queue files of the C dma (such as ${f##*/}), which dma-rs does not read: flush them with the old dma first"
		break
	fi
done

# Queue runs every 5 minutes: cron, or the systemd timer.
install_rewritten "$srcdir/contrib/dma-rs.cron" "$crondir/dma-rs"
install_rewritten "$srcdir/contrib/dma-rs-queue.service" "$unitdir/dma-rs-queue.service"
install_rewritten "$srcdir/contrib/dma-rs-queue.timer" "$unitdir/dma-rs-queue.timer"

say ""
say "done. Check the configuration with: $bindir/mailq (it prints the queue)"
say "Queue runs ($sbindir/dma -q5m every 5 minutes) come from $crondir/dma-rs"
say "where cron runs; with systemd you may use the timer instead (and remove"
say "the cron file): systemctl daemon-reload && systemctl enable --now dma-rs-queue.timer"
