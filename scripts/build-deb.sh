#!/bin/sh
# Builds the Debian package of dma-rs:
#   ${CARGO_TARGET_DIR:-target}/debian/dma-rs_VERSION-REVISION_ARCH.deb
#
# Run it as yourself (it uses fakeroot for the owners in the package) or as
# root. It needs cargo, dpkg-dev (dpkg-shlibdeps), binutils (strip), and
# fakeroot when not run as root. See --help.
#
# The files and their layout come from scripts/install.sh (--destdir, with
# Debian's paths: --prefix /usr), so that the package and install.sh install
# the same thing; this script adds what makes it a Debian package (see
# contrib/debian/): the control data and maintainer scripts, the copyright
# and changelog, and two changes to the layout, each explained below.
#
# Why not cargo-deb or debhelper: cargo-deb takes minutes to build on CI's
# two cores before it builds anything of ours, and would keep a second
# description of the layout in Cargo.toml; debhelper wants a source package
# and offline vendoring of every crate. dpkg-deb is in every Debian.

set -eu
umask 022

prog=${0##*/}
srcdir=$(cd "$(dirname "$0")/.." && pwd)

usage() {
	cat <<EOF
usage: $prog [--no-build]

Builds dma-rs for Debian's paths (/usr/sbin/dma, /usr/libexec/dma-rs,
/etc/dma/dma.conf) in its own cargo target directory, and packs it into
\${CARGO_TARGET_DIR:-target}/debian/dma-rs_VERSION-REVISION_ARCH.deb
(the last line it prints is that path).

  --no-build   package the binaries built before (DIR/debian/cargo/release)
  -h, --help   show this help

Environment: DEB_REVISION (default 1), DEBFULLNAME and DEBEMAIL (the
Maintainer field), SOURCE_DATE_EPOCH (default: the time of the last git
commit; the dates inside the package).
EOF
}

die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

build=yes
for arg in "$@"; do
	case $arg in
	--no-build) build=no ;;
	-h | --help) usage && exit 0 ;;
	*) printf '%s: unknown option: %s (try --help)\n' "$prog" "$arg" >&2 && exit 2 ;;
	esac
done

case ${CARGO_TARGET_DIR:-} in
'') target=$srcdir/target ;;
/*) target=$CARGO_TARGET_DIR ;;
*) target=$(pwd)/$CARGO_TARGET_DIR ;;
esac
out=$target/debian
# A cargo target directory of its own: the paths compiled in differ from
# those of a plain `cargo build' (DMA_LIBEXEC_DIR=/usr/libexec/dma-rs).
cargo_dir=$out/cargo
bins=$out/bin
work=$out/work
# dpkg-shlibdeps looks for the package's files in debian/PACKAGE.
stage=$work/debian/dma-rs

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$srcdir/Cargo.toml" | head -n 1)
[ -n "$version" ] || die "no version in $srcdir/Cargo.toml"
debversion=$version-${DEB_REVISION:-1}
arch=$(dpkg --print-architecture)
deb=$out/dma-rs_${debversion}_$arch.deb

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$srcdir" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

# ---- Build (as the user who runs this) --------------------------------------

if [ "$build" = yes ]; then
	for tool in cargo strip dpkg-shlibdeps; do
		command -v "$tool" >/dev/null 2>&1 ||
			die "$tool not found (cargo: rustup; strip: binutils; dpkg-shlibdeps: dpkg-dev)"
	done
	CARGO_TARGET_DIR=$cargo_dir "$srcdir/scripts/install.sh" --build-only --prefix /usr --sysconfdir /etc/dma
	# The binaries stripped, as dh_strip does.
	mkdir -p "$bins"
	for b in dma dma-local; do
		strip --strip-unneeded --remove-section=.comment --remove-section=.note \
			-o "$bins/$b" "$cargo_dir/release/$b"
	done
	# The crates compiled into them, for the copyright file.
	(cd "$srcdir" && cargo tree --locked --offline -e normal,no-proc-macro --prefix none \
		-f '{p}: {l}' --target "$(rustc -vV | sed -n 's/^host: //p')") >"$out/crates.tree" ||
		die "cargo tree could not list the crates"
	sed -e 's/ (\*)$//' -e 's/ ([^)]*):/:/' -e 's/ v\([0-9]\)/ \1/' "$out/crates.tree" |
		grep -v '^dma-rs ' | LC_ALL=C sort -u >"$out/crates"
fi
for b in dma dma-local; do
	[ -x "$bins/$b" ] || die "$bins/$b is missing; build first (drop --no-build)"
done
[ -s "$out/crates" ] || die "$out/crates is missing; build first (drop --no-build)"

# ---- Package (as root, or as root in fakeroot's eyes) -----------------------

# Owners (root:mail) must be in the archive: as root they are set for real
# below $out; otherwise fakeroot records them for dpkg-deb.
if [ "$(id -u)" -ne 0 ]; then
	command -v fakeroot >/dev/null 2>&1 ||
		die "fakeroot not found: install it (apt-get install fakeroot) or run as root"
	exec fakeroot -- "$0" --no-build
fi

rm -rf "$work"
mkdir -p "$stage"
"$srcdir/scripts/install.sh" --destdir "$stage" --prefix /usr --sysconfdir /etc/dma \
	--no-build --bindir-from "$bins" >/dev/null

# The two changes to install.sh's layout:
# - the queue is made by the postinst, not shipped: dpkg would remove a
#   shipped directory with the package, and Debian's dma ships the same one;
rm -r "${stage:?}/var"
# - the cron file is /etc/cron.d/dma: dpkg hands Debian dma's cron file,
#   a conffile, over to this package (Replaces), so that it no longer runs
#   the queue a second time once dma-rs is /usr/sbin/dma.
mv "$stage/etc/cron.d/dma-rs" "$stage/etc/cron.d/dma"
# - an auth.conf (a template), as Debian's dma ships one: a conffile of
#   this package, dpkg no longer deletes the administrator's passwords in
#   it when the removed dma is purged.
install -m 640 "$srcdir/contrib/debian/auth.conf" "$stage/etc/dma/auth.conf"
chown root:mail "$stage/etc/dma/auth.conf"

doc=$stage/usr/share/doc/dma-rs
mkdir -p "$doc" "$stage/usr/share/lintian/overrides"
sed 's/^/ /' "$out/crates" >"$work/crates"
sed -e '/^@CRATES@$/{' -e "r $work/crates" -e 'd' -e '}' "$srcdir/contrib/debian/copyright" >"$doc/copyright"
maintainer="${DEBFULLNAME:-dma-rs maintainers} <${DEBEMAIL:-maintainers@users.noreply.r-seed-c46a60e8.example}>"
commit=$(git -C "$srcdir" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
	printf 'dma-rs (%s) unstable; urgency=medium\n\n' "$debversion"
	printf '  * Built from the dma-rs source tree (git commit %s) by\n' "$commit"
	printf '    scripts/build-deb.sh.\n\n'
	printf ' -- %s  %s\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9 -n >"$doc/changelog.Debian.gz"
cp "$srcdir/contrib/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/dma-rs"
chmod 644 "$doc/copyright" "$doc/changelog.Debian.gz" "$stage/usr/share/lintian/overrides/dma-rs"

mkdir "$stage/DEBIAN"
for script in preinst postinst prerm postrm; do
	sed -e '/^@AUTH_CONF@$/{' -e "r $srcdir/contrib/debian/auth.conf" -e 'd' -e '}' \
		"$srcdir/contrib/debian/$script" >"$stage/DEBIAN/$script"
	chmod 755 "$stage/DEBIAN/$script"
done
cp "$srcdir/contrib/debian/conffiles" "$stage/DEBIAN/conffiles"
while read -r f; do
	[ -f "$stage$f" ] || die "conffile $f is not in the package"
done <"$stage/DEBIAN/conffiles"
# Checksums of every file but the conffiles (dpkg records those itself).
(cd "$stage" && find . -type f ! -path './DEBIAN/*' | sed 's|^\.||' |
	grep -v -x -F -f DEBIAN/conffiles | sed 's|^/||' | LC_ALL=C sort | xargs md5sum) >"$stage/DEBIAN/md5sums"

printf 'Source: dma-rs\n\nPackage: dma-rs\nArchitecture: any\n' >"$work/debian/control"
depends=$(cd "$work" && dpkg-shlibdeps -O -e"$stage/usr/sbin/dma" -e"$stage/usr/libexec/dma-rs/dma-local" |
	sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies"
# Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up,
# and one for every other entry.
size=$(cd "$stage" && find . ! -path './DEBIAN*' -printf '%y %s\n' |
	awk '{ n += ($1 == "f") ? int(($2 + 1023) / 1024) : 1 } END { print n }')
sed -e "s|@VERSION@|$debversion|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
	-e "s|@SIZE@|$size|" -e "s|@DEPENDS@|$depends|" \
	"$srcdir/contrib/debian/control" >"$stage/DEBIAN/control"
chmod 644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

rm -f "$out"/dma-rs_*.deb
dpkg-deb --build "$stage" "$deb" >/dev/null
echo "$deb"
