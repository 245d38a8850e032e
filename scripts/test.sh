#!/usr/bin/env bash
# Runs every test: installs the real servers the tests use (scripts/install-servers.sh), then cargo test.
# Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-servers.sh
cargo test --locked "$@"
