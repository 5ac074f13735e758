#!/usr/bin/env bash
# Benchmark: Compose. A 10-service project (one network, one named volume) brought up with
# `up -d` and down with `down -v`, and `up -d` on the unchanged project, with:
#  - berth compose -> berthd;
#  - docker compose (v2, the docker CLI plugin) -> berthd, when installed;
#  - docker-compose (v1, Debian's package) -> berthd, when installed (scripts/install-test-peers.sh);
#  - docker-compose v1 and docker compose v2 -> dockerd: one the bench starts from
#    /usr/sbin/dockerd (Debian's 20.10) on its own socket, data root and exec root, with no
#    default bridge, no iptables rules and the vfs driver (nothing outside its directory
#    changes), stopped at the end; or the one DOCKER_HOST selects when set.
# Targets (issue 17): `up -d` of 10 services under 1 s and at least 3x faster than docker-compose
# v1 against the same daemon; unchanged `up -d` under 0.1 s.
# Prints figures; asserts nothing. Run as root from the repository: bash bench/compose.sh
# (BIN_DIR=/path/to/build bash bench/compose.sh for another build, e.g. target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
SERVICES=${SERVICES:-10}
if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
else
  cargo build --release -q -p berthd -p berth-cli -p berth-runtime --bins
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi

work=$(mktemp -d /tmp/berth-bench-compose-XXXXXX)
daemon_pid=""
cgroup_parent="/berth-bench-$$"
bridge="bco$$"
bridge=${bridge:0:15}
bip="10.233.$(($$ % 200)).1/24"
sock="unix://$work/berth.sock"
dockerd_pid=""
stop_dockerd() {
  if [ -n "$dockerd_pid" ]; then
    DOCKER_HOST="unix://$work/dkd/docker.sock" docker ps -aq 2>/dev/null \
      | xargs -r env DOCKER_HOST="unix://$work/dkd/docker.sock" docker rm -f >/dev/null 2>&1 || true
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    dockerd_pid=""
    # Its containerd ends with it; whatever it left mounted below its directory goes.
    grep -o " $work/dkd[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  fi
}
cleanup() {
  stop_dockerd
  if [ -n "$daemon_pid" ]; then
    "$bin/berth" -H "$sock" ps -aq 2>/dev/null | xargs -r "$bin/berth" -H "$sock" rm -f >/dev/null 2>&1 || true
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  ip link del "$bridge" 2>/dev/null || true
  nft delete table inet "berth_$(printf %s "$work/root" | sha256sum | cut -c1-8)" 2>/dev/null || true
  for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$ctl$cgroup_parent" ] && find "$ctl$cgroup_parent" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  umount -l "$work/run" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A busybox image from Debian's busybox-static.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh true sleep echo; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

mkdir -p "$work/root" "$work/run"
echo '{}' >"$work/daemon.json"
"$bin/berthd" --data-root "$work/root" --exec-root "$work/run" --config-file "$work/daemon.json" \
  --bridge "$bridge" --bip "$bip" --cgroup-parent "$cgroup_parent" -H "$sock" --log-level warn 2>"$work/berthd.log" &
daemon_pid=$!
for _ in $(seq 1 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
"$bin/berth" -H "$sock" import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null

# The project: SERVICES services sleeping (stopped at once: sleep as pid 1 gets SIGKILL after
# a 1 s grace period, so `down` measures the engine rather than a timeout).
proj="$work/proj"
mkdir -p "$proj"
{
  echo "services:"
  for i in $(seq 1 "$SERVICES"); do
    echo "  s$i:"
    echo "    image: bench/busybox"
    echo "    command: [\"sleep\", \"600\"]"
    echo "    init: true"
    if [ "$i" = 1 ]; then echo "    volumes: [\"data:/data\"]"; fi
    if [ "$i" -gt 1 ]; then echo "    depends_on: [s1]"; fi
  done
  echo "volumes:"
  echo "  data: {}"
} >"$proj/compose.yaml"

usec() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }
# time_ms CMD...: wall time of one run, in milliseconds.
time_ms() {
  local start end
  start=$(usec)
  "$@" >/dev/null 2>"$work/last.err" || { echo "failed: $*" >&2; cat "$work/last.err" >&2; }
  end=$(usec)
  awk "BEGIN{printf \"%.1f\", ($end - $start) / 1000}"
}
median() { sort -n | sed -n "$(((RUNS + 1) / 2))p"; }

# measure LABEL CMD...: median of RUNS cycles of up -d, unchanged up -d, down -v.
measure() {
  local label=$1
  shift
  local ups=() again=() downs=()
  for _ in $(seq 1 "$RUNS"); do
    ups+=("$(time_ms "$@" up -d)")
    again+=("$(time_ms "$@" up -d)")
    downs+=("$(time_ms "$@" down -v -t 1)")
  done
  printf '%-44s %10s %12s %10s\n' "$label" \
    "$(printf '%s\n' "${ups[@]}" | median)" \
    "$(printf '%s\n' "${again[@]}" | median)" \
    "$(printf '%s\n' "${downs[@]}" | median)"
}

printf '\n%s services, median of %s (ms)\n' "$SERVICES" "$RUNS"
printf '%-44s %10s %12s %10s\n' "" "up -d" "up -d again" "down -v"
measure "berth compose -> berthd" "$bin/berth" -H "$sock" compose -p bench -f "$proj/compose.yaml"
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  measure "docker compose v2 -> berthd" env DOCKER_HOST="$sock" docker compose -p bench -f "$proj/compose.yaml"
else
  echo "(docker compose v2 plugin not installed: skipped)"
fi
if command -v docker-compose >/dev/null 2>&1; then
  measure "docker-compose $(docker-compose version --short 2>/dev/null) -> berthd" \
    env DOCKER_HOST="$sock" docker-compose -p bench -f "$proj/compose.yaml"
else
  echo "(docker-compose v1 not installed: skipped; scripts/install-test-peers.sh installs it)"
fi
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
if [ -z "${DOCKER_HOST:-}" ] && [ -x "$DOCKERD" ] && command -v docker >/dev/null 2>&1; then
  mkdir -p "$work/dkd"
  "$DOCKERD" --data-root "$work/dkd/data" --exec-root "$work/dkd/exec" \
    --pidfile "$work/dkd/dockerd.pid" -H "unix://$work/dkd/docker.sock" \
    --bridge none --iptables=false --ip6tables=false --storage-driver vfs \
    >"$work/dkd/dockerd.log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST="unix://$work/dkd/docker.sock"
  for _ in $(seq 1 600); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
fi
if command -v docker >/dev/null 2>&1 && docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  echo "(dockerd $(docker version --format '{{.Server.Version}}'))"
  docker image inspect bench/busybox >/dev/null 2>&1 || docker import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null
  if command -v docker-compose >/dev/null 2>&1; then
    measure "docker-compose v1 -> dockerd" docker-compose -p bench -f "$proj/compose.yaml"
  fi
  if docker compose version >/dev/null 2>&1; then
    measure "docker compose v2 -> dockerd" docker compose -p bench -f "$proj/compose.yaml"
  fi
  docker rmi bench/busybox >/dev/null 2>&1 || true
  stop_dockerd
else
  echo "(no running Docker engine: dockerd figures skipped; DOCKER_HOST selects one)"
fi
