#!/usr/bin/env bash
# The main job end to end on a local demo: the real registry writes a sample layout (images of every
# shape pushed through its API), rehydrate scans it, plans the sync, syncs every tag into a Harbor (the emulator of
# Harbor's control plane from the test support code, in front of a second real registry with token
# auth), verifies the target, and syncs again to show that a re-run sends nothing. Needs only the Rust
# toolchain; installs anything else it uses.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-servers.sh --registry-only
cargo build --release --locked --quiet --bins --example demo_servers
bin=target/release

work=${DEMO_DIR:-$(mktemp -d -t rehydrate-demo.XXXXXX)}
mkdir -p "$work"
echo "== starting the demo servers (a source registry writing the sample, then the Harbor emulator)"
coproc SERVERS { "$bin/examples/demo_servers" "$work"; }
trap 'exec {SERVERS[1]}>&- 2>/dev/null || true; wait 2>/dev/null || true' EXIT
read -r source_line <&"${SERVERS[0]}"
read -r target_line <&"${SERVERS[0]}"
source=${source_line#SOURCE=}
target=${target_line#TARGET=}
echo "sample layout: $source"
echo "Harbor: $target"

# The emulator's demo administrator; real runs take credentials the same way (or from docker login).
export REHYDRATE_TARGET_USERNAME=admin
export REHYDRATE_TARGET_PASSWORD=Harbor12345-emulated

echo "== rehydrate scan $source"
"$bin/rehydrate" scan "$source" --untagged
echo "== rehydrate plan $source $target: what the sync would put in each project, before it runs"
"$bin/rehydrate" plan "$source" "$target" --plain-http
echo "== rehydrate sync $source $target"
"$bin/rehydrate" sync "$source" "$target" --plain-http
echo "== rehydrate verify $source $target"
"$bin/rehydrate" verify "$source" "$target" --plain-http
echo "== rehydrate sync again: nothing left to send"
"$bin/rehydrate" sync "$source" "$target" --plain-http
