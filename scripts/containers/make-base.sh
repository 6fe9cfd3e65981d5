#!/usr/bin/env bash
# Make a container base image without a registry: Debian bookworm (debootstrap minbase) with
# Python 3.11 and its venv module, imported into podman as IMAGE (default
# localhost/tickstream-base:bookworm). The Dockerfile takes it as BASE_IMAGE; the local redis and
# haproxy images (scripts/containers/*.Containerfile) start from it too.
#
#   scripts/containers/make-base.sh [IMAGE] [WORKDIR]
#
# Does nothing when IMAGE exists (remove it with `podman rmi IMAGE` to make it again). The
# certificate authorities this machine adds to Debian's (/usr/local/share/ca-certificates) are
# copied in, so builds inside the image reach package indexes the way this machine does.
# Needs root, debootstrap, podman and a Debian mirror (DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR;
# default deb.debian.org).
set -euo pipefail
image=${1:-localhost/tickstream-base:bookworm}
work=${2:-${TMPDIR:-/tmp}/tickstream-base}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

if podman image exists "$image"; then
  echo "make-base: $image exists"
  exit 0
fi
rootfs="$work/rootfs"
rm -rf "$rootfs"
mkdir -p "$work"
echo "make-base: debootstrap bookworm into $rootfs (a minute or two)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; echo "make-base: debootstrap failed" >&2; exit 1; }
shopt -s nullglob
extra=(/usr/local/share/ca-certificates/*.crt)
if [ ${#extra[@]} -gt 0 ]; then
  cp "${extra[@]}" "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
printf "deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n" \
  "$mirror" "$mirror" "$security" >"$rootfs/etc/apt/sources.list"
version=$(chroot "$rootfs" python3 --version)
tar --numeric-owner -C "$rootfs" -c . \
  | podman import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$image" >/dev/null
rm -rf "$rootfs"
echo "make-base: $image imported ($version)"
