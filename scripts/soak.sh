#!/usr/bin/env bash
# The soak (by hand): a sync through injected faults, SIGKILLed at random moments (25 by default) and
# started again each time, then checked (verify, every target blob's digest, no manifest accepted twice).
# REHYDRATE_SOAK_KILLS, REHYDRATE_SOAK_REPOS and REHYDRATE_SOAK_SEED (to replay a run) tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-servers.sh
cargo bench --locked --bench soak
