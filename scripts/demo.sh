#!/usr/bin/env bash
# The main job end to end on a local sample: builds rehydrate, writes a sample registry storage layout
# (2,000 repositories, exactly as the registry's filesystem driver lays them out), scans it, syncs every
# tag into a real registry (Debian's docker-registry, started here on a free loopback port), verifies
# the target, and syncs again to show that a re-run sends nothing. Needs only the Rust toolchain;
# installs anything else it uses.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-servers.sh
cargo build --release --locked --quiet --bins
bin=target/release

work=${DEMO_DIR:-$(mktemp -d -t rehydrate-demo.XXXXXX)}
mkdir -p "$work"
echo "== writing a sample registry storage layout under $work/storage"
"$bin/rehydrate-synth" "$work/storage" --repositories 2000 --tags 3 --truth "$work/truth.jsonl"

echo "== rehydrate scan $work/storage"
"$bin/rehydrate" scan "$work/storage" --output "$work/inventory.jsonl"
head -n 3 "$work/inventory.jsonl"
if diff <(sort "$work/truth.jsonl") <(sort "$work/inventory.jsonl") >/dev/null; then
    echo "the inventory matches the layout's truth: $(wc -l < "$work/inventory.jsonl") tags"
else
    echo "the inventory DIFFERS from the layout's truth" >&2
    exit 1
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/target"
cat > "$work/target.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/target}}
http: {addr: 127.0.0.1:$port}
YAML
echo "== starting the target registry on 127.0.0.1:$port"
docker-registry serve "$work/target.yml" > "$work/target.log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import socket, sys, time
for _ in range(300):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("the target registry did not start")
PY

target="http://127.0.0.1:$port"
echo "== rehydrate sync $work/storage $target"
"$bin/rehydrate" sync "$work/storage" "$target" --plain-http
echo "== rehydrate verify $work/storage $target"
"$bin/rehydrate" verify "$work/storage" "$target" --plain-http
echo "== rehydrate sync again: nothing left to send"
"$bin/rehydrate" sync "$work/storage" "$target" --plain-http
