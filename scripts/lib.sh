# SPDX-License-Identifier: Apache-2.0
# Shared by scripts/run and scripts/test (sourced, not run): the Debian packages
# tinycri needs, and an out-of-tree autotools build.

# Repository root: the parent of this file's directory.
TINYCRI_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Everything the build, the unit tests and the conformance suite need on Debian 12.
# configure.ac names the -dev packages it checks for; later features append here.
TINYCRI_DEBS=(
    build-essential autoconf automake libtool pkg-config
    libevent-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
    libinih-dev libjansson-dev libcmocka-dev
    libarchive-dev libcurl4-openssl-dev libssl-dev zlib1g-dev libwslay-dev
    crun runc containernetworking-plugins iproute2 iptables util-linux
)

# The Go CRI client (conformance/goclient, built by build_goclient): grpc-go and
# the protobuf-1.3 code generator that still has plugins=grpc, all from Debian.
TINYCRI_GO_DEBS=(
    golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-3-dev protoc-gen-go-1-3
    golang-google-protobuf-dev
)

# What the unit tests and the conformance suite need on top (scripts/test).
TINYCRI_TEST_DEBS=(
    python3-grpcio python3-grpc-tools python3-pytest python3-protobuf python3-hpack
    iputils-ping docker-registry busybox-static zstd openssl
    python3-cryptography python3-jwt python3-bcrypt clang-format
    clang-14 libclang-rt-14-dev
    man-db systemd
    "${TINYCRI_GO_DEBS[@]}"
    python3-websocket
)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# need_debs PKG...: install the packages that are not installed yet.
need_debs() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages (run as root, or install them): ${missing[*]}"
    log "installing ${missing[*]}"
    if [ -z "${TINYCRI_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        TINYCRI_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Regenerate configure & co. when missing or older than their inputs.
autoreconf_if_needed() {
    local repo=$TINYCRI_REPO f
    if [ -e "$repo/config.status" ]; then
        die "$repo is configured in-tree; out-of-tree builds need 'make distclean' there first"
    fi
    local stale=
    [ -x "$repo/configure" ] && [ -e "$repo/Makefile.in" ] || stale=1
    for f in configure.ac Makefile.am; do
        [ "$repo/$f" -nt "$repo/configure" ] && stale=1
        [ "$repo/$f" -nt "$repo/Makefile.in" ] && stale=1
    done
    if [ -n "$stale" ]; then
        log "autoreconf -fi"
        (cd "$repo" && autoreconf -fi)
    fi
}

# build_tree [--reuse] DIR CONFIGURE_ARGS...: configure the repo out of tree in DIR
# (again when the arguments changed) and make it. --reuse keeps whatever
# configuration DIR already has.
build_tree() {
    local reuse=
    if [ "${1:-}" = --reuse ]; then reuse=1; shift; fi
    local dir=$1; shift
    autoreconf_if_needed
    mkdir -p "$dir"
    local want
    want=$(printf '%s\n' "$@")
    if [ ! -e "$dir/Makefile" ] || { [ -z "$reuse" ] && [ "$want" != "$(cat "$dir/.configure-args" 2>/dev/null)" ]; }; then
        log "configure $* (in $dir)"
        (cd "$dir" && "$TINYCRI_REPO/configure" -q "$@")
        printf '%s' "$want" >"$dir/.configure-args"
    fi
    log "make (in $dir)"
    make -C "$dir" -j"$(nproc)"
}

# build_goclient DIR: build DIR/tinycri-goclient, the conformance suite's grpc-go
# client (conformance/goclient/*.go), offline with Debian's Go packages. The stubs
# are generated from proto/api.proto into DIR/goclient-gopath at every build (never
# committed); Go's build cache is DIR/go-cache, so rebuilds take seconds.
build_goclient() {
    mkdir -p "$1"
    local dir
    dir=$(cd "$1" && pwd)
    local gopath=$dir/goclient-gopath
    local pkg=$gopath/src/tinycri
    rm -rf "$pkg"
    mkdir -p "$pkg/cri" "$pkg/goclient"
    cp "$TINYCRI_REPO/proto/api.proto" "$pkg/cri/"
    cp "$TINYCRI_REPO"/conformance/goclient/*.go "$pkg/goclient/"
    log "go build tinycri-goclient (in $dir)"
    # protoc-gen-go 1.3 (protoc-gen-go-1-3) is the one with plugins=grpc; the
    # package comes out as runtime_v1 (the client imports it as runtimeapi).
    (cd "$pkg/cri" && protoc -I. --go_out=plugins=grpc,paths=source_relative,Mapi.proto=tinycri/cri:. \
        api.proto) || die "protoc --go_out failed (needs protoc-gen-go-1-3: ${TINYCRI_GO_DEBS[*]})"
    (cd "$pkg/goclient" && env GO111MODULE=off GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
        GOPATH="$gopath:/usr/share/gocode" GOCACHE="$dir/go-cache" \
        go build -o "$dir/tinycri-goclient" .) || die "go build of tinycri-goclient failed"
}
