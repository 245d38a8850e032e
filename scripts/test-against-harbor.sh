#!/usr/bin/env bash
# Runs the Harbor suites against a real Harbor instead of the emulator: an operator's check of the tool
# against a staging Harbor before a migration, and the project's check against Harbor itself.
#   REHYDRATE_TEST_HARBOR_PASSWORD=... scripts/test-against-harbor.sh https://harbor.staging.example.com
# The account (REHYDRATE_TEST_HARBOR_USERNAME, default admin) must be a Harbor administrator: the tests
# make projects and robots of their own (named rehydrate-test-...) and remove them at the end. The
# password comes from the environment only. Plain-HTTP Harbors (on 127.0.0.1) work as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:?usage: scripts/test-against-harbor.sh HARBOR_URL (password in REHYDRATE_TEST_HARBOR_PASSWORD)}
: "${REHYDRATE_TEST_HARBOR_PASSWORD:?set REHYDRATE_TEST_HARBOR_PASSWORD to the password of a Harbor administrator}"
export REHYDRATE_TEST_HARBOR_URL=$url
bash scripts/install-servers.sh
suites=(sync_harbor harbor_policies plan secrets catch_up disaster_recovery harbor_restarts)
cargo test --locked $(printf -- '--test %s ' "${suites[@]}") "${@:2}"
