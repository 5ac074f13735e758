#!/usr/bin/env bash
# Benchmark: Berth's registry (`berth registry serve`) beside Debian's docker-registry
# (CNCF distribution 2.8) when installed, same machine, same run:
#  - push and pull (skopeo) of one 100 MiB layer and of an image of 1,000 small blobs;
#  - 50 concurrent pulls of the same 10 MiB image;
#  - manifest GET latency (p50/p99) under 50 keep-alive clients;
#  - server RSS idle and after the load; GC time with 10,000 unreferenced blobs (offline).
# Prints figures; asserts nothing. Run from the repository: bash bench/registry-server.sh
# (BIN_DIR=target/debug for a debug build's figures; default: this checkout's release build).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
else
  cargo build --release -q -p berth-cli --bins
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi
command -v skopeo >/dev/null || { echo "skopeo is needed (scripts/install-test-peers.sh)"; exit 1; }
py="python3 bench/registry-server.py"
work=$(mktemp -d /tmp/berth-regbench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
wait_up() { for _ in $(seq 100); do curl -fs "http://$1/v2/" >/dev/null && return; sleep 0.1; done; echo "no registry on $1"; exit 1; }
timed() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

echo "== images"
$py small-image x "$work/big" 1 $((100 << 20))
$py small-image x "$work/many" 1000 4096
$py small-image x "$work/mid" 1 $((10 << 20))

run_one() { # name host pid
  local name=$1 host=$2 pid=$3 s
  echo "== $name"
  echo "idle RSS: $(rss "$pid")"
  s=$(timed skopeo copy --dest-tls-verify=false "oci:$work/big:1" "docker://$host/bench/big:1")
  echo "push 100 MiB layer: ${s}s ($(printf "%.0f" "$(echo "100 / $s" | bc -l)") MiB/s)"
  s=$(timed skopeo copy --src-tls-verify=false "docker://$host/bench/big:1" "oci:$work/out-$name-big:1")
  echo "pull 100 MiB layer: ${s}s ($(printf "%.0f" "$(echo "100 / $s" | bc -l)") MiB/s)"
  s=$(timed skopeo copy --dest-tls-verify=false "oci:$work/many:1" "docker://$host/bench/many:1")
  echo "push 1,000 small blobs: ${s}s"
  s=$(timed skopeo copy --src-tls-verify=false "docker://$host/bench/many:1" "oci:$work/out-$name-many:1")
  echo "pull 1,000 small blobs: ${s}s"
  skopeo copy -q --dest-tls-verify=false "oci:$work/mid:1" "docker://$host/bench/mid:1" >/dev/null
  $py pulls "$host" bench/mid 1 50
  $py manifest-p99 "$host" bench/mid 1 50 200
  echo "RSS after load: $(rss "$pid")"
  $py blobs "$host" bench/gc 10000
}

port=$(free_port)
RUST_LOG=warn "$bin/berth" registry serve --addr "127.0.0.1:$port" --root "$work/berth" 2>"$work/berth.log" &
berth_pid=$!; pids+=("$berth_pid")
wait_up "127.0.0.1:$port"
sleep 1
run_one berth "127.0.0.1:$port" "$berth_pid"
kill "$berth_pid"; wait "$berth_pid" 2>/dev/null || true
s=$(timed "$bin/berth" registry gc --grace 0 --root "$work/berth")
echo "gc (offline, 10,000 unreferenced blobs + images): ${s}s"

if [ -x /usr/bin/docker-registry ]; then
  port=$(free_port)
  cat >"$work/dist.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/dist
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  /usr/bin/docker-registry serve "$work/dist.yml" 2>"$work/dist.log" &
  dist_pid=$!; pids+=("$dist_pid")
  wait_up "127.0.0.1:$port"
  sleep 1
  run_one docker-registry "127.0.0.1:$port" "$dist_pid"
  kill "$dist_pid"; wait "$dist_pid" 2>/dev/null || true
  s=$(timed /usr/bin/docker-registry garbage-collect --delete-untagged "$work/dist.yml")
  echo "gc (offline, docker-registry garbage-collect): ${s}s"
else
  echo "== docker-registry not installed: no comparison"
fi
