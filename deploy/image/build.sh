#!/usr/bin/env bash
# Build hsmsvc's OCI image with no container registry: a Debian rootfs by debootstrap from the
# apt mirror this machine already uses, the server wheel and its dependencies in a venv inside
# it, packed as an OCI layout (and an oci-archive tar) by umoci.
#
#   deploy/image/build.sh OUTDIR          # as root; needs debootstrap, umoci, python3 (3.11, as bookworm's)
#
# OUTDIR gets oci/ (an OCI image layout holding localhost/hsmsvc:VERSION) and hsmsvc-oci.tar (the
# same as an oci-archive: `podman load -i OUTDIR/hsmsvc-oci.tar`). Environment: SUITE (bookworm),
# MIRROR (read from /etc/apt/sources.list* when unset), PYTHON (python3: builds the wheels), IMAGE
# (localhost/hsmsvc:VERSION).
set -euo pipefail

out=${1:?usage: build.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
suite=${SUITE:-bookworm}
python=${PYTHON:-python3}
uid=10001

die() { echo "build.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "debootstrap and chroot need root"
for tool in debootstrap umoci chroot; do
  command -v "$tool" >/dev/null || die "$tool missing (apt-get install -y debootstrap umoci)"
done

# The first mirror the apt sources list for $suite (not its -security or -updates suites): both
# the one-line form (sources.list) and deb822 (*.sources). Never a host name written here.
mirror_from_apt() {
  awk -v suite="$suite" '
    /^[[:space:]]*#/ { next }
    $1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                  if ($(i + 1) == suite) { print $i; exit } next }
    /^URIs:/   { uris = $2 }
    /^Suites:/ { for (j = 2; j <= NF; j++) if ($j == suite && uris != "") { print uris; exit } }
    /^[[:space:]]*$/ { uris = "" }
  ' "${files[@]}"
}
files=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && files+=("$f")
done
mirror=${MIRROR:-$( [ ${#files[@]} -gt 0 ] && mirror_from_apt)}
[ -n "$mirror" ] || die "no apt source for $suite in /etc/apt/sources.list*; set MIRROR"

"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$python is not Python 3.11 (bookworm's python3): its wheels would not fit the image"
version=$("$python" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' \
  "$repo/pyproject.toml")
ref=${IMAGE:-localhost/hsmsvc:$version}

work=$(mktemp -d "${TMPDIR:-/tmp}/hsmsvc-image.XXXXXX")
rootfs=$work/rootfs
cleanup() {
  umount "$rootfs/proc" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start=$(date +%s)
phase() { echo "== [$(($(date +%s) - start)) s] $*"; }
phase "wheels (the server and its dependencies, built here by $python)"
"$python" -m pip wheel --quiet --wheel-dir "$work/wheels" "$repo"

phase "debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

phase "venv /opt/hsmsvc"
mkdir -p "$rootfs/tmp/wheels" && cp "$work"/wheels/*.whl "$rootfs/tmp/wheels/"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" /usr/bin/python3 -m venv /opt/hsmsvc
chroot "$rootfs" /opt/hsmsvc/bin/pip install --quiet --no-index --no-cache-dir \
  --find-links /tmp/wheels hsmsvc
chroot "$rootfs" /opt/hsmsvc/bin/pip uninstall --quiet --yes pip setuptools
chroot "$rootfs" /opt/hsmsvc/bin/hsmsvc selfcheck >/dev/null
umount "$rootfs/proc"

phase "user hsmsvc ($uid), directories, trimming"
chroot "$rootfs" groupadd --gid "$uid" hsmsvc
chroot "$rootfs" useradd --no-create-home --uid "$uid" --gid "$uid" --home-dir /var/lib/hsmsvc \
  --shell /usr/sbin/nologin hsmsvc
install -d -o "$uid" -g "$uid" -m 0750 "$rootfs/var/lib/hsmsvc"
install -d -m 0755 "$rootfs/etc/hsmsvc"
rm -rf "$rootfs/tmp/wheels" "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*
find "$rootfs/opt/hsmsvc" -name __pycache__ -prune -exec rm -rf {} +

phase "OCI image $ref"
rm -rf "$out/oci" "$out/hsmsvc-oci.tar"
mkdir -p "$out"
umoci init --layout "$out/oci"
umoci new --image "$out/oci:$ref"
umoci insert --image "$out/oci:$ref" "$rootfs" /
umoci config --image "$out/oci:$ref" \
  --author "hsmsvc" --config.user "$uid:$uid" --config.workingdir /var/lib/hsmsvc \
  --config.env PATH=/opt/hsmsvc/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.env PYTHONDONTWRITEBYTECODE=1 \
  --config.entrypoint /opt/hsmsvc/bin/hsmsvc \
  --config.cmd serve --config.cmd --config --config.cmd /etc/hsmsvc/hsmsvc.toml \
  --config.exposedports 8443/tcp --config.exposedports 9464/tcp \
  --config.stopsignal SIGTERM \
  --config.label org.opencontainers.image.title=hsmsvc \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.base.name=debian:$suite"
umoci gc --layout "$out/oci"
tar -C "$out/oci" -cf "$out/hsmsvc-oci.tar" .
end=$(date +%s)
echo "built $ref in $((end - start)) s; $(du -sh "$out/hsmsvc-oci.tar" | cut -f1) archive," \
  "$(du -sh --apparent-size "$rootfs" | cut -f1) unpacked"
