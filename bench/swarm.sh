#!/usr/bin/env bash
# Benchmark: swarm mode on 3 managers, each berthd in its own network namespace (as the e2e
# cluster harness does), on a bridge in a switch namespace this script makes.
#  - time for a REPLICAS-replica service (default 100) to have all its tasks running;
#  - time from SIGKILL of the leader to the first write the survivors accept;
#  - the managers' RSS with those tasks;
#  - Raft commit latency: median of `secret create` on the leader (includes the CLI's start).
# Prints figures; asserts nothing. Traffic stays in the namespaces the script makes.
# Run as root from the repository: bash bench/swarm.sh  (BERTH_BIN=target/debug skips the
# release build; REPLICAS=12 for a quick check).
set -euo pipefail
cd "$(dirname "$0")/.."

REPLICAS=${REPLICAS:-100}
RUNS=${RUNS:-20}
if [ -n "${BERTH_BIN:-}" ]; then
  bin=$(realpath "$BERTH_BIN")
else
  cargo build --release -q -p berthd -p berth-cli -p berth-runtime --bins
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi

work=$(mktemp -d /tmp/berth-swarmbench-XXXXXX)
id=$$
sw="bsb-sw-$id"
prefix="10.232.$((id % 200))"
pids=()
made=()

cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  for i in 0 1 2; do
    # Containers outlive their daemon (stopping them one by one through a 3-manager swarm
    # would take minutes): their pids are recorded in the exec root.
    for f in "$work"/n$i/run/containers/*/init.pid "$work"/n$i/run/containers/*/shim.pid; do
      [ -f "$f" ] && kill -9 "$(cat "$f" 2>/dev/null)" 2>/dev/null || true
    done
  done
  sleep 0.2
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  for ns in "${made[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    for i in 0 1 2; do
      d="$ctl/berth-swarmbench-$id-$i"
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$sw"; made+=("$sw")
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh sleep; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

start_node() {
  local i=$1 ns="bsb-n$i-$id"
  nsenter --net="/run/netns/$ns" unshare --uts sh -c "hostname bench$i-$id && exec \"\$@\"" sh \
    "$bin/berthd" --data-root "$work/n$i/root" --exec-root "$work/n$i/run" \
    --config-file "$work/n$i/daemon.json" --cgroup-parent "/berth-swarmbench-$id-$i" \
    -H "unix://$work/n$i/berth.sock" --log-level warn 2>>"$work/n$i/berthd.log" &
  pids[$i]=$!
  for _ in $(seq 1 200); do [ -S "$work/n$i/berth.sock" ] && break; sleep 0.05; done
}
for i in 0 1 2; do
  ns="bsb-n$i-$id"
  ip netns add "$ns"; made+=("$ns")
  ip -n "$sw" link add "v$i" type veth peer name eth0 netns "$ns"
  ip -n "$sw" link set "v$i" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$prefix.$((i + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
  mkdir -p "$work/n$i"
  echo '{}' >"$work/n$i/daemon.json"
  start_node "$i"
done
b() { local i=$1; shift; "$bin/berth" -H "unix://$work/n$i/berth.sock" "$@"; }
for i in 0 1 2; do b "$i" import -c 'CMD ["sh"]' "$work/rootfs.tar" busybox:latest >/dev/null; done

now_ms() { echo $(($(date +%s%N) / 1000000)); }
t0=$(now_ms)
b 0 swarm init --advertise-addr "$prefix.1" --dispatcher-heartbeat 2s >/dev/null
t1=$(now_ms)
token=$(b 0 swarm join-token -q manager)
b 1 swarm join --token "$token" "$prefix.1:2377" >/dev/null
t2=$(now_ms)
b 2 swarm join --token "$token" "$prefix.1:2377" >/dev/null
echo "swarm init: $((t1 - t0)) ms; manager join: $((t2 - t1)) ms"

running() {
  local n=0 c
  for i in "$@"; do
    c=$(b "$i" ps -q --filter "label=com.docker.swarm.service.name=bench" 2>/dev/null | wc -l)
    n=$((n + c))
  done
  echo "$n"
}
t0=$(now_ms)
b 1 service create --name bench --replicas "$REPLICAS" busybox:latest sleep 100000 >/dev/null
while [ "$(running 0 1 2)" -lt "$REPLICAS" ]; do sleep 0.2; done
t1=$(now_ms)
echo "service of $REPLICAS replicas: all running after $((t1 - t0)) ms (3 nodes)"

for i in 0 1 2; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/${pids[$i]}/status")
  echo "manager $i RSS with $REPLICAS tasks in the swarm: $((rss / 1024)) MiB"
done

times=()
for n in $(seq 1 "$RUNS"); do
  s=$(date +%s%N)
  echo x | b 0 secret create "bench$n" - >/dev/null
  e=$(date +%s%N)
  times+=($(((e - s) / 1000000)))
done
echo "secret create on the leader (one Raft commit + CLI start), median: $(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms"

# The leader (node 0, which made the swarm) dies.
t0=$(now_ms)
kill -9 "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
until echo x | b 1 secret create failover - >/dev/null 2>&1; do sleep 0.05; done
t1=$(now_ms)
echo "leader SIGKILL to the first accepted write: $((t1 - t0)) ms"
