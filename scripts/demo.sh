#!/usr/bin/env bash
# The main job end to end on a local sample: builds rehydrate, writes a sample registry storage layout
# (5,000 repositories, exactly as the registry's filesystem driver lays them out), and scans it into an
# inventory. Needs only the Rust toolchain; installs anything else it uses.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-servers.sh
cargo build --release --locked --quiet --bins
bin=target/release

work=${DEMO_DIR:-$(mktemp -d -t rehydrate-demo.XXXXXX)}
echo "== writing a sample registry storage layout under $work/storage"
"$bin/rehydrate-synth" "$work/storage" --repositories 5000 --tags 3 --truth "$work/truth.jsonl"

echo "== rehydrate scan $work/storage"
"$bin/rehydrate" scan "$work/storage" --output "$work/inventory.jsonl"

echo "== the first records of $work/inventory.jsonl"
head -n 5 "$work/inventory.jsonl"

echo "== checking the inventory against the generator's truth"
if diff <(sort "$work/truth.jsonl") <(sort "$work/inventory.jsonl") >/dev/null; then
    echo "inventory matches the truth: $(wc -l < "$work/inventory.jsonl") tags"
else
    echo "inventory DIFFERS from the truth" >&2
    exit 1
fi
