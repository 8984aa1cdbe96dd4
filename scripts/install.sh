#!/bin/sh
# Builds and installs dma-rs: the sendmail/mailq/newaliases program `dma',
# its local-delivery helper `dma-local', a sample dma.conf, the queue
# directory, the man pages, and the cron file and systemd units that run the
# queue; `--uninstall' takes it all away again.
#
# Run as root for a real install. It never overwrites a file that belongs to
# a package (dpkg -S) unless told to divert it (--divert), and writes what it
# did to a manifest (/var/lib/dma-rs/install-manifest), from which
# --uninstall removes exactly that and puts back what it moved aside.
#
# For staging (packaging), give --destdir; nothing outside DESTDIR is
# touched then, and no manifest is written. See --help.

set -eu
umask 022

prog=${0##*/}
srcdir=$(cd "$(dirname "$0")/.." && pwd)
default_spooldir=/var/spool/dma
statedir=/var/lib/dma-rs
manifest=$statedir/install-manifest
timer=dma-rs-queue.timer

usage() {
	cat <<EOF
usage: $prog [options]
       $prog --uninstall [--force]

Builds dma-rs (cargo build --release --locked) and installs it.

  --prefix DIR       install prefix (default /usr/local): DIR/sbin/dma,
                     DIR/sbin/sendmail, DIR/bin/{mailq,newaliases},
                     DIR/libexec/dma-rs/dma-local, DIR/share/man;
                     with /usr also /usr/lib/sendmail
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
  --divert           a file of an installed package (dpkg -S) in the way is
                     diverted (dpkg-divert --local --rename: it is kept as
                     FILE.distrib, and package upgrades go there too)
                     instead of refusing to install; --uninstall puts it back
  --link-system      make /usr/sbin/sendmail, /usr/lib/sendmail,
                     /usr/bin/mailq and /usr/bin/newaliases run the dma
                     installed here (for a prefix other than /usr), so that
                     cron, mailx and sudo hand their mail to dma-rs
  --uninstall        remove what the manifest ($manifest)
                     lists and put back what was moved aside or diverted;
                     refuses while the queue holds mail
  --force            with --uninstall: go on although the queue holds mail
                     (the queue and its mail are left in place)
  -h, --help         show this help

The binaries are built with DMA_CONF_PATH=SYSCONFDIR/dma.conf and
DMA_LIBEXEC_DIR=PREFIX/libexec/dma-rs; binaries installed with --no-build
must have been built with the same values.

A file that is in the way and belongs to no package is kept as
FILE.pre-dma-rs (and put back by --uninstall). A cron job in /etc/cron.d that
would run the installed dma's queue too (Debian dma's /etc/cron.d/dma once
/usr/sbin/dma is ours) is disabled: renamed to /etc/cron.d/.NAME.disabled-by-dma-rs.
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
divert=no
link_system=no
uninstall=no
force=no

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
	--no-build | --build-only | --no-chown | --divert | --link-system | --uninstall | --force)
		case $1 in
		--no-build) build=no ;;
		--build-only) build_only=yes ;;
		--no-chown) chown=no ;;
		--divert) divert=yes ;;
		--link-system) link_system=yes ;;
		--uninstall) uninstall=yes ;;
		--force) force=yes ;;
		esac
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

# ---- The manifest -----------------------------------------------------------
#
# One record a line, fields separated by one space (paths are checked to
# hold no spaces), in the order the changes were made; --uninstall undoes
# them in the reverse order:
#   dir PATH                 a directory made here (removed if empty)
#   file PATH                a file installed here
#   link PATH                a symbolic link made here
#   conf PATH CKSUM          dma.conf installed here from examples/dma.conf
#                            (removed only if still unchanged)
#   divert PATH              dpkg-divert --local --rename --add PATH
#   moved PATH ASIDE         a file in the way, renamed to ASIDE
#   spool PATH new           the queue, made here
#   spool PATH old OWNER MODE  the queue, there before with that owner and mode
#   started UNIT             a systemd unit started here

# Appends a record to the manifest (a real install only).
record() {
	if [ -z "$destdir" ]; then
		printf '%s\n' "$*" >>"$manifest"
	fi
}

# Whether PATH was installed here before (a file or a link in the manifest
# of an earlier run), so that a new run may replace it.
ours() {
	[ -f "$manifest" ] && grep -q -x -F -e "file $1" -e "link $1" "$manifest"
}

# Prints the checksum of a file, to tell later whether it changed.
checksum() {
	cksum <"$1" | tr ' ' '-'
}

# Prints what the queue directory DIR holds besides dma-rs's own bookkeeping
# (names that begin with a dot: runner and intake locks, spare envelope
# files, temporary files) and an empty quarantine directory: messages,
# entries set aside, dma's queue files, anything else.
queued() {
	find "$1" -mindepth 1 -maxdepth 1 ! -name '.*' \
		! \( -name corrupt -type d -empty \) -print
}

# ---- Uninstall --------------------------------------------------------------

uninstall() {
	[ "$(id -u)" -eq 0 ] || die "--uninstall needs root"
	[ -f "$manifest" ] || die "no $manifest: nothing was installed by $prog here (or it was uninstalled)"

	# The queue first: with mail in it, change nothing (unless --force).
	busy=
	for q in $(awk '$1 == "spool" { print $2 }' "$manifest"); do
		if [ -d "$q" ] && [ -n "$(queued "$q" | head -n 1)" ]; then
			busy="$busy $q"
		fi
	done
	if [ -n "$busy" ]; then
		if [ "$force" = no ]; then
			die "the queue holds mail ($(echo "$busy" | sed 's/^ //'): $(queued "${busy##* }" | wc -l) entries); deliver it first (dma -q; mailq lists it) or use --force, which leaves the queue and its mail in place; nothing was changed"
		fi
		warn "the queue holds mail ($(echo "$busy" | sed 's/^ //')); --force: it is left in place"
	fi

	if [ -d /run/systemd/system ]; then
		for unit in $(awk '$1 == "started" { print $2 }' "$manifest"); do
			systemctl stop "$unit" || warn "could not stop $unit"
			say "stopped $unit"
		done
	fi

	# The records, last first (tac is not POSIX).
	awk '{ line[NR] = $0 } END { for (i = NR; i > 0; i--) print line[i] }' "$manifest" |
		while read -r kind path a b c; do
			case $kind in
			file | link)
				if [ -L "$path" ] || [ -f "$path" ]; then
					rm -f "$path"
					say "removed $path"
				fi
				;;
			conf)
				if [ -f "$path" ] && [ "$(checksum "$path")" = "$a" ]; then
					rm -f "$path"
					say "removed $path (unchanged since installed)"
				elif [ -e "$path" ]; then
					say "kept $path (changed since installed)"
				fi
				;;
			dir)
				if rmdir "$path" 2>/dev/null; then
					say "removed directory $path"
				elif [ -d "$path" ]; then
					say "kept directory $path (not empty)"
				fi
				;;
			divert)
				if [ -e "$path" ] || [ -L "$path" ]; then
					warn "$path is there again; its diverted original stays $path.distrib"
				else
					dpkg-divert --local --rename --remove "$path" >/dev/null
					say "restored $path (diversion removed)"
				fi
				;;
			moved)
				if [ -e "$path" ] || [ -L "$path" ]; then
					warn "$path is there again; the original stays $a"
				elif [ -e "$a" ] || [ -L "$a" ]; then
					mv "$a" "$path"
					say "restored $path"
				fi
				;;
			spool)
				if [ "$a" = new ] && [ -d "$path" ]; then
					if [ -z "$(queued "$path" | head -n 1)" ]; then
						find "$path" -mindepth 1 -depth -delete
						rmdir "$path"
						say "removed the queue $path"
					else
						say "kept the queue $path (it holds mail)"
					fi
				elif [ "$a" = old ] && [ -d "$path" ]; then
					chown "$b" "$path"
					chmod "00$c" "$path"
					say "restored owner $b and mode $c of $path"
				fi
				;;
			started) ;;
			*) warn "unknown record in $manifest: $kind $path" ;;
			esac
		done

	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	rm -f "$manifest"
	rmdir "$statedir" 2>/dev/null || true
	say "uninstalled; $manifest removed"
	check_sendmail
}

# Warns when /usr/sbin/sendmail does not run the dma installed here ($1;
# after an uninstall: when it runs nothing).
check_sendmail() {
	sm=/usr/sbin/sendmail
	if [ ! -e "$sm" ]; then
		warn "there is no $sm now: cron, mailx and sudo can not send mail"
		return
	fi
	[ "$#" -gt 0 ] || return 0
	if [ "$(readlink -f "$sm")" != "$(readlink -f "$1")" ]; then
		warn "$sm runs $(readlink -f "$sm"), not $1: cron, mailx and sudo keep handing their mail to it; run again with --link-system (and --divert if it belongs to a package) to make it run dma-rs"
	fi
}

if [ "$uninstall" = yes ]; then
	[ -z "$destdir" ] || die "--uninstall acts on the installed system; not with --destdir"
	uninstall
	exit 0
fi
[ "$force" = no ] || die "--force goes with --uninstall"

# An installation path: absolute, without a trailing slash, and made of
# characters that are safe in dma.conf, a crontab, a systemd unit, sed and
# the manifest.
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
	if [ "$divert" = yes ] || [ "$link_system" = yes ]; then
		die "--divert and --link-system act on the installed system; not with --destdir"
	fi
fi
if [ -n "$bindir_from" ]; then
	bindir_from=$(absolute "$bindir_from")
fi

sbindir=$prefix/sbin
bindir=$prefix/bin
libexecdir=$prefix/libexec/dma-rs
mandir=$prefix/share/man
conf=$sysconfdir/dma.conf
crondir=/etc/cron.d
cronfile=$crondir/dma-rs
unitdir=/lib/systemd/system
wantsdir=/etc/systemd/system/timers.target.wants

# Without owners, dma would be set-group-id root (every user's mail sent
# with group root) and the queue root's: only a staging install may skip them.
if [ "$chown" = no ] && [ "$build_only" = no ] && [ -z "$destdir" ]; then
	die "--no-chown is for a staging install below --destdir DIR; installed into the system, dma would be set-group-id root"
fi

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
if [ -z "$destdir" ] && [ "$build_only" = no ]; then
	[ "$(id -u)" -eq 0 ] || die "installing into the system needs root; for staging use --destdir DIR"
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

# ---- What goes where ----------------------------------------------------------
#
# lay_out names every file and link of the installation. It runs twice:
# with pass=plan it only lists the destinations (in $planned), so that every
# one can be checked before anything changes; with pass=install it installs.

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

# make_dir DIR: creates DIR below DESTDIR with its missing parents (mode 755
# by the umask), each recorded; an existing directory is left as it is.
make_dir() {
	if [ ! -d "$destdir$1" ]; then
		make_dir "$(dirname "$1")"
		mkdir "$destdir$1"
		record "dir $1"
	fi
}

# The packages that own the planned paths, one "PATH<tab>PACKAGES" a line
# (one dpkg-query for all: each call reads the whole file database).
owners=
find_owners() {
	if [ -n "$destdir" ] || ! command -v dpkg-query >/dev/null 2>&1; then
		return
	fi
	# shellcheck disable=SC2086 # the planned paths hold no spaces
	owners=$(dpkg-query -S $planned 2>/dev/null |
		sed -n -e '/^diversion by /d' -e '/^local diversion /d' \
			-e 's/^\(.*\): \(\/.*\)$/\2	\1/p' || true)
}

# Prints the packages that own PATH (dpkg -S), or nothing.
pkg_owner() {
	printf '%s\n' "$owners" | awk -F '\t' -v p="$1" '$1 == p { print $2; exit }'
}

# take DEST KIND: makes room for DEST (the path on the installed system),
# a file or a link (KIND). A file of a package is diverted (the plan checked
# that --divert was given; also when the package's file is missing, since
# an upgrade would bring it back); anything else there, not installed here
# before, is moved aside to DEST.pre-dma-rs.
take() {
	p=$destdir$1
	if [ -d "$p" ] && [ ! -L "$p" ]; then
		die "$p is a directory"
	fi
	if [ -n "$destdir" ]; then
		# Staging: files are replaced; a file where a link goes is kept.
		if [ "$2" = link ] && [ -e "$p" ] && [ ! -L "$p" ]; then
			mv -f "$p" "$p.pre-dma-rs"
			say "moved the existing $p to $p.pre-dma-rs"
		fi
		return 0
	fi
	if ours "$1"; then
		return 0
	fi
	pkgs=$(pkg_owner "$1")
	if [ -n "$pkgs" ]; then
		dpkg-divert --local --rename --add "$1" >/dev/null
		record "divert $1"
		say "diverted $1 of package $pkgs to $1.distrib"
	elif [ -e "$p" ] || [ -L "$p" ]; then
		if [ -e "$p.pre-dma-rs" ] || [ -L "$p.pre-dma-rs" ]; then
			die "$p is in the way, and $p.pre-dma-rs exists already; move one of them away"
		fi
		mv -f "$p" "$p.pre-dma-rs"
		record "moved $1 $1.pre-dma-rs"
		say "moved the existing $p to $p.pre-dma-rs"
	fi
}

# In the plan pass, lists DEST and succeeds (the caller then returns).
planning() {
	[ "$pass" = plan ] || return 1
	planned="$planned $1"
}

# Makes room for DEST (KIND file or link) and its directory.
claim() {
	make_dir "$(dirname "$1")"
	take "$1" "$2"
}

# put_file SRC DEST MODE [root:mail]: copies SRC to DESTDIR/DEST through
# a temporary file in the same directory and a rename, so that a running
# program is never overwritten and DEST is never missing or half-written.
put_file() {
	planning "$2" && return
	claim "$2" file
	dest=$destdir$2
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
	record "file $2"
}

# put_rewritten SRC DEST: a text file with the binary path of the default
# prefix replaced by ours.
put_rewritten() {
	planning "$2" && return
	claim "$2" file
	dest=$destdir$2
	tmp=$(dirname "$dest")/.${dest##*/}.tmp.$$
	sed "s|/usr/local/sbin/dma|$sbindir/dma|g" "$1" >"$tmp"
	chmod 644 "$tmp"
	mv -f "$tmp" "$dest"
	tmp=
	record "file $2"
	if grep -q -F "$sbindir/dma" "$dest"; then
		say "installed $dest (mode 644, runs $sbindir/dma)"
	else
		say "installed $dest (mode 644)"
	fi
}

# put_gzip SRC DEST: SRC compressed (gzip -9n: no name or time stamp inside,
# the same bytes from the same source), mode 644.
put_gzip() {
	planning "$2" && return
	claim "$2" file
	dest=$destdir$2
	tmp=$(dirname "$dest")/.${dest##*/}.tmp.$$
	gzip -9 -n -c "$1" >"$tmp"
	chmod 644 "$tmp"
	mv -f "$tmp" "$dest"
	tmp=
	record "file $2"
	say "installed $dest (mode 644)"
}

# put_link TARGET LINK: LINK -> TARGET.
put_link() {
	planning "$2" && return
	claim "$2" link
	link=$destdir$2
	if [ -L "$link" ] && [ "$(readlink "$link")" = "$1" ]; then
		record "link $2"
		say "kept $link -> $1"
		return
	fi
	rm -f "$link"
	ln -s "$1" "$link"
	record "link $2"
	say "linked $link -> $1"
}

# Prints the page a man page source includes when it is only a `.so' stub
# (comments aside), as `manN/NAME.N'; fails for a page of its own.
so_target() {
	awk '/^\.\\"/ || /^[ \t]*$/ { next }
		{ n++; line = $0 }
		END {
			if (n == 1 && line ~ /^\.so man[1-9][a-z]*\/[^ \/]+$/) { sub(/^\.so /, "", line); print line }
			else exit 1
		}' "$1"
}

# put_man SRC: a man page from man/, compressed into its section's
# directory; a `.so' stub becomes a symbolic link to the page it includes,
# as Debian's dh_installman makes it.
put_man() {
	name=${1##*/}
	sec=${name##*.}
	case $sec in
	[1-8]) ;;
	*) die "$1: not a man page of section 1 to 8" ;;
	esac
	dir=$mandir/man$sec
	if so=$(so_target "$1"); then
		tsec=${so%%/*}
		tsec=${tsec#man}
		if [ "$tsec" = "$sec" ]; then
			put_link "${so##*/}.gz" "$dir/$name.gz"
		else
			put_link "../man$tsec/${so##*/}.gz" "$dir/$name.gz"
		fi
	else
		put_gzip "$1" "$dir/$name.gz"
	fi
}

lay_out() {
	# dma: set-group-id mail, so that it can write the queue.
	put_file "$bins/dma" "$sbindir/dma" 2755 root:mail
	# dma-local: set-user-id root, runnable only by group mail (that is, dma).
	put_file "$bins/dma-local" "$libexecdir/dma-local" 4750 root:mail

	put_link dma "$sbindir/sendmail"
	put_link ../sbin/dma "$bindir/mailq"
	put_link ../sbin/dma "$bindir/newaliases"
	if [ "$prefix" = /usr ]; then
		# Where Debian's MTAs put it too, for old programs.
		put_link ../sbin/dma /usr/lib/sendmail
	elif [ "$link_system" = yes ]; then
		put_link "$sbindir/dma" /usr/sbin/sendmail
		put_link "$sbindir/dma" /usr/lib/sendmail
		put_link "$sbindir/dma" /usr/bin/mailq
		put_link "$sbindir/dma" /usr/bin/newaliases
	fi

	for page in "$srcdir"/man/*.[1-8]; do
		if [ -f "$page" ]; then
			put_man "$page"
		fi
	done

	# Queue runs every 5 minutes: the systemd timer where systemd runs,
	# else the cron job (which does nothing where systemd runs).
	put_rewritten "$srcdir/contrib/dma-rs.cron" "$cronfile"
	put_rewritten "$srcdir/contrib/dma-rs-queue.service" "$unitdir/dma-rs-queue.service"
	put_rewritten "$srcdir/contrib/dma-rs-queue.timer" "$unitdir/$timer"
	# Enabled as `systemctl enable' would do it (WantedBy=timers.target),
	# which also works where systemd is installed but not running.
	if [ -z "$destdir" ] && [ -d /etc/systemd/system ]; then
		put_link "$unitdir/$timer" "$wantsdir/$timer"
	fi
}

# ---- Plan -------------------------------------------------------------------

if [ -n "$destdir" ]; then
	say "staging below $destdir"
	mkdir -p "$destdir"
fi

pass=plan
planned=
lay_out
find_owners
if [ -z "$destdir" ]; then
	refused=
	for p in $planned; do
		if ! ours "$p" && [ -n "$(pkg_owner "$p")" ]; then
			refused="$refused
  $p (package $(pkg_owner "$p"))"
		fi
	done
	if [ -n "$refused" ] && [ "$divert" = no ]; then
		die "these files belong to installed packages:$refused
Nothing was changed. Run again with --divert to divert them (dpkg-divert --local --rename: kept as FILE.distrib, put back by --uninstall), or choose another --prefix."
	fi
fi

# ---- Install ----------------------------------------------------------------

if [ -z "$destdir" ]; then
	mkdir -p "$statedir"
fi
pass=install
lay_out

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
	make_dir "$sysconfdir"
	dest=$destdir$conf
	tmp=$(dirname "$dest")/.dma.conf.tmp.$$
	cp "$srcdir/examples/dma.conf" "$tmp"
	if [ "$spooldir" != "$default_spooldir" ]; then
		printf '\n# Set by %s --spooldir.\nSPOOLDIR %s\n' "$prog" "$spooldir" >>"$tmp"
	fi
	chmod 644 "$tmp"
	mv -f "$tmp" "$dest"
	tmp=
	record "conf $conf $(checksum "$dest")"
	say "installed $dest (mode 644, from examples/dma.conf)"
fi

# The queue: mode 2770 root:mail; what is in it is left alone.
if [ -d "$destdir$spooldir" ]; then
	record "spool $spooldir old $(stat -c '%u:%g %a' "$destdir$spooldir")"
else
	make_dir "$(dirname "$spooldir")"
	mkdir "$destdir$spooldir"
	record "spool $spooldir new"
fi
set_owner_mode 2770 "$destdir$spooldir"
say "spool directory $destdir$spooldir (mode 2770, $owner)"
for f in "$destdir$spooldir"/[QM]*; do
	if [ -f "$f" ]; then
		warn "$destdir$spooldir holds queue files of the C dma (such as ${f##*/}), which dma-rs does not read: flush them with the old dma first"
		break
	fi
done

if [ -n "$destdir" ]; then
	say ""
	say "staged below $destdir"
	exit 0
fi

# Another queue-run cron job that would now run our dma as well (Debian
# dma's /etc/cron.d/dma runs /usr/sbin/dma -q every 5 minutes): disabled by
# a rename to a name cron ignores (a leading dot), put back by --uninstall.
dma_real=$(readlink -f "$sbindir/dma")
for job in "$crondir"/*; do
	if [ ! -f "$job" ] || [ "$job" = "$cronfile" ]; then
		continue
	fi
	name=${job##*/}
	case $name in
	*[!A-Za-z0-9_-]*) continue ;; # ignored by cron already
	esac
	for cmd in $(sed -e 's/#.*//' "$job" | grep -o -E '/[^[:space:];&|()]*/(dma|sendmail)[[:space:]]+-q' |
		sed -E 's/[[:space:]]+-q$//' | sort -u); do
		if [ "$(readlink -f "$cmd" 2>/dev/null)" = "$dma_real" ]; then
			aside=$crondir/.$name.disabled-by-dma-rs
			mv -f "$job" "$aside"
			record "moved $job $aside"
			say "disabled $job (it runs $cmd -q, which is dma-rs now): moved to $aside"
			break
		fi
	done
done

if [ -d /run/systemd/system ] && [ -d /etc/systemd/system ]; then
	systemctl daemon-reload
	if systemctl start "$timer"; then
		record "started $timer"
		say "started $timer"
	else
		warn "could not start $timer: the queue is not run every 5 minutes"
	fi
fi

# The manifest without repeated records (a second run adds its own).
awk '!seen[$0]++' "$manifest" >"$manifest.tmp"
mv -f "$manifest.tmp" "$manifest"

say ""
say "done. Check the configuration with: $bindir/mailq (it prints the queue)"
if [ -d /run/systemd/system ]; then
	say "Queue runs ($sbindir/dma -q5m every 5 minutes): $timer"
else
	say "Queue runs ($sbindir/dma -q5m every 5 minutes): $cronfile"
fi
say "What was installed is listed in $manifest; $prog --uninstall removes it."
check_sendmail "$sbindir/dma"
