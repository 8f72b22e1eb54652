#!/usr/bin/env bash
# Builds the gorilla/websocket peer offline from Debian's packages (golang-go and
# golang-github-gorilla-websocket-dev) into BUILD/perf/gorilla-echo, outside git.
# Usage: perf/peers/build-gorilla.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$PWD/$BUILD" ;; esac
out="$BUILD/perf/gorilla-echo"
src=perf/peers/gorilla-echo/main.go
if [ -x "$out" ] && [ "$out" -nt "$src" ]; then exit 0; fi
mkdir -p "$BUILD/perf" "$BUILD/perf/gocache"
# GOPATH mode against Debian's source tree: no module proxy, no network.
GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="$BUILD/perf/gocache" \
	GOPROXY=off go build -o "$out" "$src"
