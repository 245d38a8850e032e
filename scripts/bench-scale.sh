#!/usr/bin/env bash
# The benchmarks at scale (by hand): `scale` (the default: 10,000 and 300,000 repositories synced into
# the real registry, beside the catalog path) or `plan` (rehydrate plan beside rehydrate scan), e.g.
# `scripts/bench-scale.sh plan`. Both use the same cached trees. 300,000 repositories are about 30
# files and folders each, source and target: tens of GiB in 4 KiB blocks. As root, the trees go on a
# sparse ext4 image with inline data (link files live in their inodes); otherwise in target/bench-data,
# which needs the space.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-servers.sh
if [ "$(id -u)" = 0 ] && [ -z "${REHYDRATE_BENCH_DIR:-}" ]; then
  image=target/bench-scale.img
  mount_point=target/bench-scale
  mkdir -p "$mount_point"
  if ! mountpoint -q "$mount_point"; then
    if [ ! -f "$image" ]; then
      truncate -s 60G "$image"
      mkfs.ext4 -q -F -O inline_data -I 256 -i 2048 "$image"
    fi
    mount -o loop "$image" "$mount_point"
  fi
  export REHYDRATE_BENCH_DIR="$PWD/$mount_point"
fi
cargo bench --locked --bench "${1:-scale}"
