#!/usr/bin/env bash
# Installs the real servers the tests, the demo and the benchmarks run against, where they are missing.
# Debian packages only (the machine reaches Debian's archive); idempotent and quiet when all is there.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing_packages=()
command -v docker-registry >/dev/null 2>&1 || missing_packages+=(docker-registry)

if [ "${#missing_packages[@]}" -gt 0 ]; then
    echo "installing: ${missing_packages[*]}" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing_packages[@]}" >/dev/null
fi
# The Debian package enables a system service on its default port; the tests start their own instances
# on free ports, so the packaged one is not needed (and may not even run without systemd).
