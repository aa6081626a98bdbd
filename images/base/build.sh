#!/usr/bin/env bash
# ochopod-base: a Debian root filesystem from debootstrap (--variant=minbase, every package of
# images/base/packages installed by --include, on the host: no network is assumed inside a
# `docker build`), imported with `docker import`. Cached: the tag is a hash of the package list
# and of this script, and an image with that tag is never rebuilt.
#
#   images/base/build.sh <workdir>      prints the image name (ochopod-base:<tag>) on stdout
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: build.sh <workdir>}
suite=${OCHOPOD_BASE_SUITE:-bookworm}
mirror=${OCHOPOD_BASE_MIRROR:-http://deb.debian.org/debian}
tag=$(cat "$here/packages" "$here/build.sh" <(echo "$suite $mirror") | sha256sum | cut -c1-12)
image=ochopod-base:$tag

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base: $image is cached (package list unchanged)" >&2
  docker tag "$image" ochopod-base:latest
  echo "$image"
  exit 0
fi

SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
packages=$(grep -v '^\s*\(#\|$\)' "$here/packages" | paste -sd, -)
rootfs=$work/base-rootfs
echo "base: debootstrap $suite (minbase) with $packages" >&2
$SUDO rm -rf "$rootfs"
mkdir -p "$work"
start=$(date +%s)
# debootstrap's own log is long: keep it in a file, show its tail if it fails.
if ! $SUDO debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
    > "$work/debootstrap.log" 2>&1; then
  tail -n 40 "$work/debootstrap.log" >&2
  [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 40 "$rootfs/debootstrap/debootstrap.log" >&2
  echo "base: debootstrap failed (log: $work/debootstrap.log)" >&2
  exit 1
fi
# What an image does not need: downloaded packages, package lists, docs, man pages, locales.
$SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/debootstrap
# nginx's Debian site (port 80) would clash with the examples' own server blocks.
$SUDO rm -f "$rootfs"/etc/nginx/sites-enabled/default
echo "base: debootstrap took $(( $(date +%s) - start )) s; importing" >&2
$SUDO tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  --message "ochopod-base $suite: $packages" - "$image" >/dev/null
docker tag "$image" ochopod-base:latest
$SUDO rm -rf "$rootfs"
echo "base: built $image in $(( $(date +%s) - start )) s" >&2
echo "$image"
