#!/usr/bin/env bash
# S3 at scale on a real server (by hand, not in CI): installs Garage 2.5.0 if it is missing (about 30
# minutes of building on 2 cores, once), then runs `cargo bench --bench s3_scale`, which loads synthetic
# layouts of 20,000 and 100,000 repositories into it once (kept in target/bench-data/garage: about 2
# million keys, a few GB of metadata) and measures the registry's enumeration path, `rehydrate scan` and
# `rehydrate sync` side by side. Settings: REHYDRATE_BENCH_GARAGE_SIZES, REHYDRATE_BENCH_GARAGE_PEER_MAX,
# REHYDRATE_BENCH_LATENCY_MS (see benches/s3_scale.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-servers.sh
export PATH="$HOME/.cargo/bin:$PATH"
if [ -z "${REHYDRATE_BENCH_GARAGE:-}" ] && ! command -v garage >/dev/null; then
  echo "installing Garage 2.5.0 (cargo install garage --locked: about 30 minutes on 2 cores) ..."
  cargo install garage --version 2.5.0 --locked
fi
cargo bench --locked --bench s3_scale
