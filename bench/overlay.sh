#!/usr/bin/env bash
# Benchmark: overlay networks on one berthd (a one-manager swarm), printed:
#  - TCP throughput task -> task over an overlay (VXLAN netns, veths) vs over a local bridge
#    network (busybox nc, MB megabytes, best of RUNS);
#  - time from `docker service create -p` to the published port answering (routing mesh);
#  - connection rate through the routing mesh to 2 tasks (sequential connections for 5 s).
# Then bench/overlay-cluster.sh (CLUSTER=0 skips it): the same across 3 nodes in network
# namespaces, with a faster sender than busybox nc, and a task going out of rotation.
# Not a test: it asserts nothing. Run as root from the repository: bash bench/overlay.sh
# (BERTH_BIN=target/debug skips the release build).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
MB=${MB:-256}
if [ -n "${BERTH_BIN:-}" ]; then
  bin=$(realpath "$BERTH_BIN")
else
  cargo build --release -q -p berthd -p berth-cli -p berth-runtime --bins
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi
cli=${DOCKER_CLI:-/usr/local/bin/docker}
[ -x "$cli" ] || cli=$(command -v docker)

work=$(mktemp -d /tmp/berth-ovbench-XXXXXX)
daemon_pid=""
cgroup_parent="/berth-ovbench-$$"
bridge="bob$$"
bridge=${bridge:0:15}
bip="10.232.$(($$ % 200)).1/26"
port=$((20000 + $$ % 10000))
dport=$((4800 + $$ % 100))

cleanup() {
  if [ -n "$daemon_pid" ]; then
    d swarm leave --force >/dev/null 2>&1 || true
    d ps -aq 2>/dev/null | xargs -r "$cli" -H "unix://$work/berth.sock" rm -f >/dev/null 2>&1 || true
    d network prune -f >/dev/null 2>&1 || true
    sleep 2
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  ip link del "$bridge" 2>/dev/null || true
  table="berth_$(printf %s "$work/root" | sha256sum | cut -c1-8)"
  nft delete table inet "$table" 2>/dev/null || true
  for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$ctl$cgroup_parent" ] && find "$ctl$cgroup_parent" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  umount -l "$work/run" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/www"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh true sleep echo nc dd mkfifo httpd hostname; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

mkdir -p "$work/root" "$work/run"
echo '{}' >"$work/daemon.json"
"$bin/berthd" --data-root "$work/root" --exec-root "$work/run" --config-file "$work/daemon.json" \
  --cgroup-parent "$cgroup_parent" -H "unix://$work/berth.sock" --bridge "$bridge" --bip "$bip" \
  --log-level warn 2>"$work/berthd.log" &
daemon_pid=$!
for _ in $(seq 1 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
d() { "$cli" -H "unix://$work/berth.sock" "$@"; }
"$bin/berth" -H "unix://$work/berth.sock" import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null
d swarm init --advertise-addr 127.0.0.1 --data-path-port "$dport" \
  --default-addr-pool "10.233.$(($$ % 200)).0/24" --default-addr-pool-mask-length 26 >/dev/null
d network create -d overlay bench-ov >/dev/null
d network create bench-br >/dev/null

sink='busybox mkfifo /tmp/f; exec 3<>/tmp/f; while true; do nc -l -p 5001 <&3 >/dev/null; done'
task_of() { d ps -q --filter "label=com.docker.swarm.service.name=$1" | head -1; }

# Overlay: two services, the sender execs into its task.
d service create --detach --name sink --network bench-ov bench/busybox sh -c "$sink" >/dev/null
d service create --detach --name src --network bench-ov bench/busybox sleep 100000 >/dev/null
until [ -n "$(task_of sink)" ] && [ -n "$(task_of src)" ]; do sleep 0.5; done
sleep 3
best_ov=0
for _ in $(seq 1 "$RUNS"); do
  start=$(date +%s%N)
  d exec "$(task_of src)" sh -c "dd if=/dev/zero bs=1M count=$MB 2>/dev/null | nc tasks.sink 5001" || true
  end=$(date +%s%N)
  r=$((MB * 1000000000 / (end - start)))
  [ "$r" -gt "$best_ov" ] && best_ov=$r
done
# Bridge: the same over a local user network.
d run -d --name bsink --network bench-br bench/busybox sh -c "$sink" >/dev/null
best_br=0
for _ in $(seq 1 "$RUNS"); do
  start=$(date +%s%N)
  d run --rm --network bench-br bench/busybox sh -c "dd if=/dev/zero bs=1M count=$MB 2>/dev/null | nc bsink 5001" || true
  end=$(date +%s%N)
  r=$((MB * 1000000000 / (end - start)))
  [ "$r" -gt "$best_br" ] && best_br=$r
done
echo "throughput task->task, overlay: ${best_ov} MB/s; bridge: ${best_br} MB/s ($((best_ov * 100 / (best_br > 0 ? best_br : 1)))% of the bridge)"

# Routing mesh: time to answer after create, then the connection rate.
get() { printf 'GET / HTTP/1.0\r\n\r\n' | timeout 2 busybox nc 127.0.0.1 "$port" 2>/dev/null | tail -1; }
start=$(date +%s%N)
d service create --detach --name web --replicas 2 -p "$port:80" bench/busybox \
  sh -c 'hostname > /www/index.html; exec httpd -f -p 80 -h /www' >/dev/null
until [ -n "$(get)" ]; do sleep 0.05; done
end=$(date +%s%N)
echo "published port answers $(((end - start) / 1000000)) ms after service create"
# Sequential HTTP/1.0 requests for 5 s from one client (python3, so that no process is
# started per connection).
rate=$(python3 - "$port" <<'PY'
import socket, sys, time
port, n, end = int(sys.argv[1]), 0, time.time() + 5
while time.time() < end:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while s.recv(65536):
            pass
    n += 1
print(n // 5)
PY
)
echo "routing mesh: $rate connections/s (sequential requests, one client)"

# Across nodes (3 berthd in network namespaces): bench/overlay-cluster.sh.
trap - EXIT
cleanup
[ "${CLUSTER:-1}" = 1 ] && BERTH_BIN="$bin" bash bench/overlay-cluster.sh
