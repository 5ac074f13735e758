#!/usr/bin/env bash
# Benchmark: networking.
#  - TCP throughput container -> container on a user network (busybox nc), by name;
#  - TCP throughput host -> published port, through 127.0.0.1 (the userland proxy) and through
#    the host's own address (the bridge gateway: nftables DNAT);
#  - what network setup adds to `run --rm IMAGE true`: default bridge and a user network
#    against `--network none`.
# Side by side with dockerd when DOCKER_HOST points at one (its busybox image is imported from
# the same rootfs). Prints figures; asserts nothing. Traffic never leaves this machine.
# Run as root from the repository: bash bench/network.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-10}
MB=${MB:-512}
# BERTH_BIN=target/debug skips the release build (for a quick check of the script).
if [ -n "${BERTH_BIN:-}" ]; then
  bin=$(realpath "$BERTH_BIN")
else
  cargo build --release -q -p berthd -p berth-cli -p berth-runtime --bins
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi

work=$(mktemp -d /tmp/berth-netbench-XXXXXX)
daemon_pid=""
cgroup_parent="/berth-netbench-$$"
bridge="bnb$$"
bridge=${bridge:0:15}
bip="10.231.$(($$ % 200)).1/26"
subnet="10.231.$(($$ % 200)).64/26"
port1=$((20000 + $$ % 20000))
port2=$((port1 + 1))
docker_cli=$(command -v docker || true)
use_docker=""
[ -n "${DOCKER_HOST:-}" ] && [ -n "$docker_cli" ] && use_docker=1

cleanup() {
  if [ -n "$daemon_pid" ]; then
    "$bin/berth" -H "unix://$work/berth.sock" ps -aq 2>/dev/null | xargs -r "$bin/berth" -H "unix://$work/berth.sock" rm -f >/dev/null 2>&1 || true
    "$bin/berth" -H "unix://$work/berth.sock" network prune -f >/dev/null 2>&1 || true
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  ip link del "$bridge" 2>/dev/null || true
  table="berth_$(printf %s "$work/root" | sha256sum | cut -c1-8)"
  nft delete table inet "$table" 2>/dev/null || true
  if [ -n "$use_docker" ]; then
    docker rm -f bnb-srv bnb-pub >/dev/null 2>&1 || true
    docker network rm bnb-net >/dev/null 2>&1 || true
  fi
  for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$ctl$cgroup_parent" ] && find "$ctl$cgroup_parent" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # berthd puts a tmpfs on its exec root (left mounted for the shims of running containers).
  umount -l "$work/run" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh true sleep echo nc dd mkfifo; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

mkdir -p "$work/root" "$work/run"
echo '{}' >"$work/daemon.json"
"$bin/berthd" --data-root "$work/root" --exec-root "$work/run" --config-file "$work/daemon.json" \
  --cgroup-parent "$cgroup_parent" -H "unix://$work/berth.sock" --bridge "$bridge" --bip "$bip" \
  --log-level warn 2>"$work/berthd.log" &
daemon_pid=$!
for _ in $(seq 1 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
berth() { "$bin/berth" -H "unix://$work/berth.sock" "$@"; }
berth import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null
gateway=${bip%/*}

# median_ms CMD...: median wall time of RUNS runs, in milliseconds.
median_ms() {
  local times=() start end
  for _ in $(seq 1 "$RUNS"); do
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s%N)
    times+=($(((end - start) / 1000000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# mbps SECONDS_NS_START SECONDS_NS_END
mbps() { awk -v mb="$MB" -v ns="$(($2 - $1))" 'BEGIN {printf "%.0f MB/s", mb / (ns / 1e9)}'; }

# send_host ADDR PORT: MB megabytes from the host, in 1 MiB writes (python3 when available, so
# the sender is not the bottleneck; else busybox nc).
send_host() {
  if command -v python3 >/dev/null; then
    timeout 60 python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
buf = bytes(1 << 20)
for _ in range(int(sys.argv[3])):
    s.sendall(buf)
s.shutdown(socket.SHUT_WR)
s.recv(1)
' "$1" "$2" "$MB" 2>/dev/null
  else
    dd if=/dev/zero bs=1M count="$MB" 2>/dev/null | timeout 60 busybox nc "$1" "$2"
  fi
}

# throughput CLI WHO NETWORK HOST_ADDRESS: container -> container and host -> published port.
# The servers' stdin is a FIFO held open read-write: busybox nc would close the connection as
# soon as its stdin ends. busybox nc itself (small buffers) bounds the figures on slow hosts, so
# compare berth and docker from the same run rather than with other tools.
throughput() {
  local cli=$1 who=$2 net=$3 start end
  $cli run -d --name bnb-srv --network "$net" bench/busybox sh -c "busybox mkfifo /tmp/f; exec 3<>/tmp/f; while true; do nc -l -p 5001 <&3 >/dev/null; done" >/dev/null
  $cli run -d --name bnb-pub -p "$port1:5001" bench/busybox sh -c "busybox mkfifo /tmp/f; exec 3<>/tmp/f; while true; do nc -l -p 5001 <&3 >/dev/null; done" >/dev/null
  sleep 0.5
  start=$(date +%s%N)
  if $cli run --rm --network "$net" bench/busybox sh -c "dd if=/dev/zero bs=1M count=$MB 2>/dev/null | nc bnb-srv 5001" >/dev/null 2>&1; then
    end=$(date +%s%N)
    echo "$who container -> container (incl. one run): $(mbps "$start" "$end")"
  else
    echo "$who container -> container: failed"
  fi
  local addr label
  for addr in 127.0.0.1 "$4"; do
    label="$addr:published (DNAT)"
    [ "$addr" = 127.0.0.1 ] && label="127.0.0.1:published (proxy)"
    start=$(date +%s%N)
    if send_host "$addr" "$port1"; then
      end=$(date +%s%N)
      echo "$who host -> $label: $(mbps "$start" "$end")"
    else
      echo "$who host -> $label: failed (the engine's ports are not on this host's network namespace?)"
    fi
  done
  $cli rm -f bnb-srv bnb-pub >/dev/null
}

echo "== TCP throughput, $MB MB per transfer"
berth network create --subnet "$subnet" bnb-net >/dev/null
throughput berth "berth " bnb-net "$gateway"
if [ -n "$use_docker" ]; then
  docker import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null
  docker network create bnb-net >/dev/null
  dgw=$(docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}')
  throughput docker "docker" bnb-net "$dgw"
fi

echo "== run --rm true, median of $RUNS (ms)"
none=$(median_ms berth run --rm --network none bench/busybox true)
bridged=$(median_ms berth run --rm bench/busybox true)
user=$(median_ms berth run --rm --network bnb-net bench/busybox true)
echo "berth  none: $none   default bridge: $bridged (+$((bridged - none)))   user network: $user (+$((user - none)))"
if [ -n "$use_docker" ]; then
  none=$(median_ms docker run --rm --network none bench/busybox true)
  bridged=$(median_ms docker run --rm bench/busybox true)
  user=$(median_ms docker run --rm --network bnb-net bench/busybox true)
  echo "docker none: $none   default bridge: $bridged (+$((bridged - none)))   user network: $user (+$((user - none)))"
fi
