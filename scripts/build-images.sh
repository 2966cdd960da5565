#!/usr/bin/env bash
# Builds the menshen and menshen-agent images from binaries already built on
# this host (Containerfile, targets menshen-prebuilt and agent-prebuilt),
# with buildah and without any registry:
#
#   cargo build --release -p menshen -p menshen-agent
#   scripts/build-images.sh [--profile release|debug] [--tag TAG]
#
# Makes localhost/menshen:TAG and localhost/menshen-agent:TAG (TAG: the
# workspace version). The Containerfile's runtime root needs a Debian image;
# where no registry is reachable, one is made here once with debootstrap
# (minbase, bookworm, apt caches and docs removed), kept as a tarball in
# ${CARGO_TARGET_DIR:-target}/images/ and as the image
# localhost/menshen-base:bookworm, and passed as BASE_IMAGE. With
# MENSHEN_BASE_IMAGE=docker.io/library/debian:bookworm-slim (or any
# bookworm image) the base is pulled instead.
#
# Binaries go in without their debug information (objcopy --strip-debug;
# symbols stay, so backtraces name functions): the release profile's line
# tables alone are about 100 MB of menshen's 134. MENSHEN_IMAGE_KEEP_DEBUG=1
# keeps it.
#
# --gateway also makes localhost/menshen-gateway-tools:TAG
# (charts/gateway/images/Containerfile):
# the gateway's peers from Debian's packages (openvpn, obfs4proxy,
# knot-resolver), one image for the chart's OpenVPN, obfs4 bridge and kresd
# containers in tests and demos. Its root is a second debootstrap tree
# (kept as target/images/menshen-gateway-base-bookworm-SUM.tar and the
# image localhost/menshen-gateway-base:bookworm-SUM, SUM naming the list of
# packages it holds, so that a changed list makes a new one), made once.
# --gateway-only makes just that image (no binaries needed).
#
# Environment: MENSHEN_IMAGE_PREFIX (default localhost), MENSHEN_BASE_IMAGE,
# MENSHEN_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# MENSHEN_IMAGE_SOURCE (org.opencontainers.image.source; default the git
# remote `origin`), and what buildah reads (STORAGE_DRIVER,
# CONTAINERS_STORAGE_CONF, ...). Needs: buildah; debootstrap for the local
# base. Run as root (debootstrap, and buildah's chroot isolation here).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac
images=$target/images

profile=release
tag=
gateway=
binaries=1
while [ $# -gt 0 ]; do
    case $1 in
        --profile) profile=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --gateway) gateway=1; shift ;;
        --gateway-only) gateway=1; binaries=; shift ;;
        -h|--help) sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")
tag=${tag:-$version}
prefix=${MENSHEN_IMAGE_PREFIX:-localhost}
bin_dir=$target/$profile
source_url=${MENSHEN_IMAGE_SOURCE:-$(git -C "$root" config --get remote.origin.url 2>/dev/null || true)}

command -v buildah >/dev/null || { echo "missing: buildah (apt-get install buildah)" >&2; exit 1; }
command -v objcopy >/dev/null || { echo "missing: objcopy (apt-get install binutils)" >&2; exit 1; }
for b in ${binaries:+menshen menshen-agent}; do
    [ -x "$bin_dir/$b" ] || {
        echo "missing: $bin_dir/$b (cargo build$([ "$profile" = release ] && echo ' --release') -p menshen -p menshen-agent)" >&2
        exit 1
    }
done
mkdir -p "$images"

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# A local Debian base, made once: debootstrap (minbase, bookworm) with
# INCLUDE, without package caches, lists, documentation or logs, kept as a
# tarball in $images and committed as IMAGE.
local_base() { # IMAGE TARBALL INCLUDE
    local image=$1 tarball=$2 include=$3
    image_exists "$image" && return 0
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || { echo "missing: debootstrap (apt-get install debootstrap)" >&2; exit 1; }
        local dir
        dir=$(mktemp -d "$images/base-rootfs.XXXXXX")
        trap 'rm -rf "$dir"' EXIT
        echo "making $image with debootstrap (once; kept in $tarball)" >&2
        debootstrap --variant=minbase --include="$include" bookworm "$dir" \
            "${MENSHEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$images/debootstrap.log" 2>&1 || {
            tail -n 20 "$images/debootstrap.log" >&2
            exit 1
        }
        rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/var/log/* \
            "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
            "$dir"/usr/share/locale/* "$dir"/var/cache/debconf/*-old
        tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$dir"
        trap - EXIT
    fi
    local ctr
    ctr=$(buildah from scratch)
    buildah add --quiet "$ctr" "$tarball" / >/dev/null
    buildah config --cmd /bin/bash --label org.opencontainers.image.title="${image##*/}" \
        --label org.opencontainers.image.description="Debian bookworm minbase with $include, made with debootstrap" "$ctr"
    buildah commit --quiet --rm "$ctr" "$image" >/dev/null
}

# The base the runtime images' roots are assembled from.
base=${MENSHEN_BASE_IMAGE:-}
pull=(--pull)
if [ -n "$binaries" ] && [ -z "$base" ]; then
    base=localhost/menshen-base:bookworm
    pull=(--pull=never)
    local_base "$base" "$images/menshen-base-bookworm.tar" ca-certificates
fi

# build_image IMAGE CONTAINERFILE CTX BUD_ARGS...: builds IMAGE from the
# context folder CTX (removed then), and removes the image IMAGE named
# before once nothing names it.
build_image() {
    local image=$1 containerfile=$2 ctx=$3
    shift 3
    local previous
    previous=$(buildah images --noheading --format '{{.ID}}' "$image" 2>/dev/null || true)
    buildah bud --quiet --isolation "${BUILDAH_ISOLATION:-chroot}" "$@" \
        --build-arg VERSION="$version" \
        --build-arg SOURCE="$source_url" \
        -f "$containerfile" -t "$image" "$ctx" >/dev/null
    rm -rf "$ctx"
    if [ -n "$previous" ] && [ -z "$(buildah images --noheading --format '{{.Name}}' --filter "id=$previous" 2>/dev/null | grep -v '<none>')" ]; then
        buildah rmi "$previous" >/dev/null 2>&1 || true
    fi
    echo "$image"
}

# One context folder per image, holding just its binary.
build() { # NAME TARGET
    local name=$1 target=$2 ctx=$images/context-$1
    rm -rf "$ctx"
    mkdir -p "$ctx"
    if [ "${MENSHEN_IMAGE_KEEP_DEBUG:-}" = 1 ]; then
        cp "$bin_dir/$name" "$ctx/$name"
    else
        objcopy --strip-debug "$bin_dir/$name" "$ctx/$name"
    fi
    build_image "$prefix/$name:$tag" "$root/Containerfile" "$ctx" "${pull[@]}" \
        --target "$target" --build-arg BASE_IMAGE="$base"
}
built=()
if [ -n "$binaries" ]; then
    build menshen menshen-prebuilt
    build menshen-agent agent-prebuilt
    built+=(menshen menshen-agent)
fi

# The gateway's peers from Debian's packages, on a base of their own.
if [ -n "$gateway" ]; then
    # libcap2-bin: setcap, for the file capabilities the Containerfile sets.
    gateway_packages=openvpn,obfs4proxy,knot-resolver,iproute2,ca-certificates,libcap2-bin
    sum=$(printf '%s' "$gateway_packages" | sha256sum | cut -c1-8)
    gateway_base=localhost/menshen-gateway-base:bookworm-$sum
    local_base "$gateway_base" "$images/menshen-gateway-base-bookworm-$sum.tar" "$gateway_packages"
    ctx=$images/context-gateway
    rm -rf "$ctx" && mkdir -p "$ctx"
    build_image "$prefix/menshen-gateway-tools:$tag" "$root/charts/gateway/images/Containerfile" "$ctx" \
        --pull=never --build-arg BASE_IMAGE="$gateway_base"
    built+=(menshen-gateway-tools)
fi
for n in "${built[@]}"; do buildah images --format "{{.Name}}:{{.Tag}} {{.Size}}" "$prefix/$n:$tag" >&2; done
