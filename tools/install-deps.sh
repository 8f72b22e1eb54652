#!/usr/bin/env bash
# Installs every package ringcast needs to build, test and benchmark, from Debian's archive
# and npm. Idempotent: packages already present are skipped, and apt-get update runs only
# when something is missing. Usage: tools/install-deps.sh [--quiet]
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
	build-essential pkg-config make
	liburing-dev node-llhttp libdeflate-dev android-libboringssl-dev libjemalloc-dev
	libcriterion-dev libhiredis-dev redis-server libcjson-dev
	clang libclang-rt-14-dev
	python3 python3-websockets python3-wsproto python3-jwt python3-cryptography openssl
	gnuplot-nox
	golang-go golang-github-gorilla-websocket-dev
	iproute2 procps
	chromium
	python3-matplotlib
	python3-redis haproxy
)

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

# Node may come from Debian or from NodeSource (whose nodejs ships npm and conflicts with
# Debian's npm): only ask apt for it when the commands are absent.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node 'ws' (integration tests, the perf peer) and 'jsonwebtoken' (auth tests), installed into
# tests/node_modules.
if [ ! -d tests/node_modules/ws ] || [ ! -d tests/node_modules/jsonwebtoken ]; then
	echo "install-deps: npm install (ws, jsonwebtoken)"
	(cd tests && npm install --no-audit --no-fund --silent >/dev/null)
fi
exit 0
