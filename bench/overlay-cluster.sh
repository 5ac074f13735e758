#!/usr/bin/env bash
# Benchmark: overlay networks and the routing mesh across nodes. Three berthd (a manager and two
# workers), each in its own network namespace on a bridge in a switch namespace this script
# makes (bench/lib/netns-nodes.sh, shared with bench/swarm.sh). Printed:
#  - TCP throughput task -> task across 2 nodes over an overlay (tasks pinned with
#    node.hostname) vs between 2 containers on a plain bridge network on one node;
#  - connection rate through the routing mesh (client in the switch namespace) to a node with
#    the service's one task and to nodes without a task;
#  - time from SIGKILL of one of 2 tasks behind a published port to the last failed connection
#    through the mesh (the task out of rotation).
# Throughput is measured by bench/netbench.py (the host's python3, run with nsenter in each
# task's network namespace, 1 MiB writes): busybox nc in the task bounds it far lower.
# Asserts nothing. Run as root from the repository: bash bench/overlay-cluster.sh
# (BERTH_BIN=target/debug skips the release build; MB, RUNS, SECS).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/netns-nodes.sh

MB=${MB:-1024}
RUNS=${RUNS:-3}
SECS=${SECS:-5}
nn_bin
cli=${DOCKER_CLI:-/usr/local/bin/docker}
[ -x "$cli" ] || cli=$(command -v docker)
tool=$PWD/bench/netbench.py
# The interpreter itself (a pyenv shim would fork it, and the PID recorded would not be its).
py=$(python3 -c 'import sys; print(sys.executable)')

work=$(mktemp -d /tmp/berth-ovcbench-XXXXXX)
id=$$
sw="boc-sw-$id"
prefix="10.234.$((id % 200))"
pids=()
made=()

cleanup() {
  set +e
  nn_kill_daemons
  nn_kill_berth_containers "$work"/n*/run
  sleep 0.3
  nn_teardown "berth-ovcbench-$id-"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/rootfs/www"
nn_busybox_tar sh sleep mkdir hostname httpd

nn_switch "$sw"
# The client's address (connections through the mesh come from the switch namespace).
ip -n "$sw" addr add "$prefix.100/24" dev br0
for i in 0 1 2; do
  nn_node "$sw" "boc-n$i-$id" "v$i" "$prefix.$((i + 1))"
  nn_berthd "boc-n$i-$id" "ovc$i-$id" "$work/n$i" "/berth-ovcbench-$id-$i"
  pids+=("$nn_pid")
done
for i in 0 1 2; do nn_wait_socket "$work/n$i/berth.sock"; done
d() {
  local i=$1
  shift
  DOCKER_CONFIG="$work/config" "$cli" -H "unix://$work/n$i/berth.sock" "$@"
}
for i in 0 1 2; do
  "$bin/berth" -H "unix://$work/n$i/berth.sock" import -c 'CMD ["sh"]' "$work/rootfs.tar" busybox:latest >/dev/null
done
d 0 swarm init --advertise-addr "$prefix.1" >/dev/null
token=$(d 0 swarm join-token -q worker)
for i in 1 2; do d "$i" swarm join --token "$token" "$prefix.1:2377" >/dev/null; done
d 0 network create -d overlay bench-ov >/dev/null

# A running task of service $1: "CONTAINER NODE-INDEX OVERLAY-ADDRESS".
task() {
  local t cid addr node i
  t=$(d 0 service ps -q --filter desired-state=running "$1" 2>/dev/null | head -1)
  [ -n "$t" ] || return 1
  # (The address last: empty for a task not on bench-ov.)
  read -r cid node addr < <(d 0 inspect --type task -f \
    '{{.Status.ContainerStatus.ContainerID}} {{.NodeID}} {{range .NetworksAttachments}}{{if eq .Network.Spec.Name "bench-ov"}}{{index .Addresses 0}}{{end}}{{end}}' \
    "$t" 2>/dev/null) || return 1
  [ "$(d 0 inspect --type task -f '{{.Status.State}}' "$t")" = running ] || return 1
  for i in 0 1 2; do
    [ "$(d "$i" info -f '{{.Swarm.NodeID}}')" = "$node" ] && break
  done
  echo "$cid $i ${addr%/*}"
}
pid_of() { d "$1" inspect -f '{{.State.Pid}}' "$2"; }
in_ns() {
  local p=$1
  shift
  nsenter --net="/proc/$p/ns/net" "$@"
}
best() { sort -n | tail -1; }

# Throughput: overlay across nodes 0 -> 1.
d 0 service create --detach --name sink --network bench-ov --constraint "node.hostname==ovc1-$id" \
  busybox:latest sleep 100000 >/dev/null
d 0 service create --detach --name src --network bench-ov --constraint "node.hostname==ovc0-$id" \
  busybox:latest sleep 100000 >/dev/null
until task sink >/dev/null && task src >/dev/null; do sleep 0.3; done
read -r sink_c sink_n sink_ip < <(task sink)
read -r src_c src_n _ < <(task src)
sink_pid=$(pid_of "$sink_n" "$sink_c")
src_pid=$(pid_of "$src_n" "$src_c")
nsenter --net="/proc/$sink_pid/ns/net" "$py" "$tool" recv 5001 &
pids+=($!)
disown "$!"
until in_ns "$src_pid" "$py" "$tool" send "$sink_ip" 5001 1 >/dev/null 2>&1; do sleep 0.2; done
ov=$(for _ in $(seq 1 "$RUNS"); do in_ns "$src_pid" "$py" "$tool" send "$sink_ip" 5001 "$MB"; done | best)
echo "overlay, task on node $src_n -> task on node $sink_n ($sink_ip): $ov MiB/s (best of $RUNS x $MB MiB)"

# The same between two containers on one bridge network on node 0.
d 0 network create bench-br >/dev/null
for n in bra brb; do d 0 run -d --name "$n" --network bench-br busybox:latest sleep 100000 >/dev/null; done
bra_pid=$(pid_of 0 bra)
brb_pid=$(pid_of 0 brb)
brb_ip=$(d 0 inspect -f '{{(index .NetworkSettings.Networks "bench-br").IPAddress}}' brb)
nsenter --net="/proc/$brb_pid/ns/net" "$py" "$tool" recv 5001 &
pids+=($!)
disown "$!"
until in_ns "$bra_pid" "$py" "$tool" send "$brb_ip" 5001 1 >/dev/null 2>&1; do sleep 0.2; done
br=$(for _ in $(seq 1 "$RUNS"); do in_ns "$bra_pid" "$py" "$tool" send "$brb_ip" 5001 "$MB"; done | best)
echo "bridge, container -> container on node 0: $br MiB/s; overlay across nodes: $((ov * 100 / (br > 0 ? br : 1)))% of it"

# The routing mesh: one task on node 1; the client connects to each node.
port=$((30000 + id % 10000))
web='mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www'
d 0 service create --detach --name web -p "$port:80" --constraint "node.hostname==ovc1-$id" \
  busybox:latest sh -c "$web" >/dev/null
for i in 0 1 2; do
  until nsenter --net="/run/netns/$sw" "$py" "$tool" rate "$prefix.$((i + 1))" "$port" 1 >/dev/null 2>&1; do
    sleep 0.2
  done
done
for i in 1 0 2; do
  r=$(nsenter --net="/run/netns/$sw" "$py" "$tool" rate "$prefix.$((i + 1))" "$port" "$SECS")
  if [ "$i" = 1 ]; then where="node 1 (runs the task)"; else where="node $i (no task: via the ingress overlay)"; fi
  echo "routing mesh, sequential connections to $where: $r/s"
done

# Out of rotation: 2 tasks on the workers behind a published port; one is killed.
port2=$((port + 1))
# (A replacement only after 30 s: what is measured is the removal, not the newcomer joining.)
d 0 service create --detach --name web2 --replicas 2 -p "$port2:80" --constraint node.role==worker \
  --restart-delay 30s \
  busybox:latest sh -c "$web" >/dev/null
until [ "$(d 0 service ps -q --filter desired-state=running web2 | wc -l)" = 2 ] &&
  nsenter --net="/run/netns/$sw" "$py" "$tool" rate "$prefix.1" "$port2" 1 >/dev/null 2>&1; do
  sleep 0.3
done
sleep 2
read -r victim_c victim_n _ < <(task web2)
victim_pid=$(pid_of "$victim_n" "$victim_c")
nsenter --net="/run/netns/$sw" "$py" "$tool" watch "$prefix.1" "$port2" 17 >"$work/watch" &
watcher=$!
sleep 2
killed=$(($(date +%s%N) / 1000000))
kill -9 "$victim_pid"
wait "$watcher" || true
last=$(cat "$work/watch")
if [ "$last" -gt "$killed" ]; then out=$((last - killed)); else out=0; fi
echo "a task killed (node $victim_n): last failed connection through the mesh $out ms after the kill"
