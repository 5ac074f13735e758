#!/usr/bin/env bash
# Benchmark: swarm mode on 3 managers, each daemon in its own network namespace (as the e2e
# cluster harness does), on a bridge in a switch namespace (bench/lib/netns-nodes.sh). For berthd, then
# (when /usr/sbin/dockerd exists, or DOCKERD=1; DOCKERD=0 skips it) for dockerd 20.10 on the
# same kind of namespaces:
#  - swarm init, manager join;
#  - time for a REPLICAS-replica service (default 100) to have all its tasks running;
#  - each manager's RSS with those tasks; then the service scaled to TASKS (default 1,000):
#    time until all run, and each manager's RSS (VmRSS of the daemon; dockerd's containerd
#    apart) once converged;
#  - Raft commit latency: median of `secret create` on the leader (includes the CLI's start);
#  - time from SIGKILL of the leader to the first write the survivors accept.
# Prints figures; asserts nothing. Traffic stays in the namespaces the script makes.
# Run as root from the repository: bash bench/swarm.sh  (BERTH_BIN=target/debug skips the
# release build; REPLICAS=12 TASKS=30 for a quick check; DOCKERD_TASKS sets dockerd's scale
# separately, 0 skips that step; BERTH=0 runs dockerd alone).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/netns-nodes.sh

REPLICAS=${REPLICAS:-100}
TASKS=${TASKS:-1000}
DOCKERD_TASKS=${DOCKERD_TASKS:-$TASKS}
RUNS=${RUNS:-20}
DOCKERD_BIN=${DOCKERD_BIN:-/usr/sbin/dockerd}
DOCKER20=${DOCKER20:-/usr/bin/docker}
if [ -z "${DOCKERD:-}" ]; then
  if [ -x "$DOCKERD_BIN" ] && [ -x "$DOCKER20" ]; then DOCKERD=1; else DOCKERD=0; fi
fi
nn_bin

work=$(mktemp -d /tmp/berth-swarmbench-XXXXXX)
id=$$
sw="bsb-sw-$id"
pids=()
made=()
# Each dockerd (and so its containerd and shims) runs in a pids cgroup of its own: cleanup
# ends exactly those processes.
cgroot=/sys/fs/cgroup/pids
[ -d "$cgroot" ] || cgroot=/sys/fs/cgroup

cleanup() {
  set +e
  nn_kill_daemons
  # berthd's containers by the pids it records; dockerd's containers, containerd and shims
  # are in the cgroups made for them.
  nn_kill_berth_containers "$work"/b*/run
  for _ in 1 2 3; do
    find "$cgroot"/berth-swarmbench-"$id"-* -name cgroup.procs 2>/dev/null |
      xargs -r cat 2>/dev/null | xargs -r kill -9 2>/dev/null
    sleep 0.3
  done
  # containerd's v2 shims listen on /run/containerd/s/<sha256(containerd address/ns/id)>;
  # a killed shim leaves its socket.
  for d in "$work"/d*; do
    [ -d "$d/data/containers" ] || continue
    for c in "$d"/data/containers/*/; do
      c=$(basename "$c")
      h=$(printf '%s' "$d/exec/containerd/containerd.sock/moby/$c" | sha256sum | cut -c1-64)
      rm -f "/run/containerd/s/$h"
    done
  done
  nn_teardown "berth-swarmbench-$id-"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nn_busybox_tar sh sleep

now_ms() { echo $(($(date +%s%N) / 1000000)); }
rss_mib() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
rss_parts() {
  awk '/^(RssAnon|RssFile|VmHWM):/ {printf "%s %d MiB, ", $1, $2 / 1024} /^Threads:/ {printf "threads %d", $2}' \
    "/proc/$1/status" 2>/dev/null || echo "?"
}

# Three node namespaces on the switch bridge, addresses $prefix.1-3, for engine tag $1.
make_nodes() {
  local tag=$1 i
  for i in 0 1 2; do nn_node "$sw" "bsb-$tag$i-$id" "v$tag$i" "$prefix.$((i + 1))"; done
}

start_berth() {
  local i=$1
  nn_berthd "bsb-b$i-$id" "bench$i-$id" "$work/b$i" "/berth-swarmbench-$id-b$i"
  pids[$i]=$nn_pid
  nn_wait_socket "$work/b$i/berth.sock"
}

start_dockerd() {
  local i=$1 dir="$work/d$1" cg="$cgroot/berth-swarmbench-$id-dd$1"
  mkdir -p "$dir/config" "$cg"
  # No iptables rules (the namespace goes with its rules anyway, and berthd's run sets none
  # for tasks without published ports); the default bridge and overlay2 as usual.
  nsenter --net="/run/netns/bsb-d$i-$id" unshare --uts sh -c \
    "echo \$\$ >$cg/cgroup.procs && hostname dbench$i-$id && exec \"\$@\"" sh \
    "$DOCKERD_BIN" --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    --cgroup-parent "/berth-swarmbench-$id-d$i" -H "unix://$dir/docker.sock" \
    --iptables=false --ip6tables=false --log-level warn >>"$dir/dockerd.log" 2>&1 &
  pids[$((i + 3))]=$!
  disown "$!"
}

# The CLI against node $1 of the engine in $engine.
c() {
  local i=$1
  shift
  if [ "$engine" = berth ]; then
    "$bin/berth" -H "unix://$work/b$i/berth.sock" "$@"
  else
    DOCKER_CONFIG="$work/d$i/config" "$DOCKER20" -H "unix://$work/d$i/docker.sock" "$@"
  fi
}
daemon_pid() { if [ "$engine" = berth ]; then echo "${pids[$1]}"; else echo "${pids[$(($1 + 3))]}"; fi; }

running() {
  local n=0 k i
  for i in 0 1 2; do
    k=$(c "$i" ps -q --filter "label=com.docker.swarm.service.name=bench" 2>/dev/null | wc -l)
    n=$((n + k))
  done
  echo "$n"
}
wait_running() {
  local want=$1 limit=$2 t0
  t0=$(now_ms)
  while [ "$(running)" -lt "$want" ]; do
    if [ $(($(now_ms) - t0)) -gt "$limit" ]; then
      echo "(gave up after $((limit / 1000)) s with $(running) of $want running)" >&2
      return 1
    fi
    sleep 0.2
  done
}

declare -A fig
phase() {
  engine=$1
  local tag=${engine:0:1} i t0 t1 t2 token n times rss total
  make_nodes "$tag"
  if [ "$engine" = berth ]; then
    for i in 0 1 2; do start_berth "$i"; done
  else
    for i in 0 1 2; do start_dockerd "$i"; done
    for i in 0 1 2; do
      for _ in $(seq 1 600); do c "$i" version >/dev/null 2>&1 && break; sleep 0.1; done
    done
  fi
  for i in 0 1 2; do c "$i" import -c 'CMD ["sh"]' "$work/rootfs.tar" busybox:latest >/dev/null; done

  t0=$(now_ms)
  c 0 swarm init --advertise-addr "$prefix.1" --dispatcher-heartbeat 2s >/dev/null
  t1=$(now_ms)
  token=$(c 0 swarm join-token -q manager)
  c 1 swarm join --token "$token" "$prefix.1:2377" >/dev/null
  t2=$(now_ms)
  c 2 swarm join --token "$token" "$prefix.1:2377" >/dev/null
  fig[$engine.init]=$((t1 - t0))
  fig[$engine.join]=$((t2 - t1))
  echo "$engine: swarm init: ${fig[$engine.init]} ms; manager join: ${fig[$engine.join]} ms"

  t0=$(now_ms)
  # (dockerd's warning that the image has no registry digest goes to the log.)
  c 1 service create --detach --name bench --replicas "$REPLICAS" busybox:latest sleep 100000 \
    >/dev/null 2>>"$work/cli.log" || { cat "$work/cli.log"; return 1; }
  if wait_running "$REPLICAS" 300000; then
    t1=$(now_ms)
    fig[$engine.replicas]=$((t1 - t0))
  else
    fig[$engine.replicas]="> 300000"
  fi
  rss=""
  for i in 0 1 2; do rss="$rss $(rss_mib "$(daemon_pid "$i")")"; done
  fig[$engine.rss]=$rss
  echo "$engine: service of $REPLICAS replicas: all running after ${fig[$engine.replicas]} ms (3 nodes); manager RSS (MiB):$rss"

  n=$TASKS
  [ "$engine" = dockerd ] && n=$DOCKERD_TASKS
  if [ "$n" -gt 0 ]; then
    t0=$(now_ms)
    c 1 service scale --detach "bench=$n" >/dev/null
    if wait_running "$n" 900000; then
      t1=$(now_ms)
      fig[$engine.scale]=$((t1 - t0))
    else
      fig[$engine.scale]="> 900000"
    fi
    # Converged: the agents' reports are in; let the last writes settle.
    sleep 5
    rss=""
    for i in 0 1 2; do rss="$rss $(rss_mib "$(daemon_pid "$i")")"; done
    fig[$engine.rssN]=$rss
    fig[$engine.n]=$n
    echo "$engine: scaled to $n: all running after ${fig[$engine.scale]} ms; manager RSS (MiB):$rss"
    # What the RSS is made of: heap and stacks (anonymous), code pages (file), and threads.
    for i in 0 1 2; do
      echo "$engine: node $i: $(rss_parts "$(daemon_pid "$i")")"
    done
    if [ "$engine" = dockerd ]; then
      total=""
      for i in 0 1 2; do
        total="$total $(rss_mib "$(cat "$work/d$i/exec/containerd/containerd.pid" 2>/dev/null || echo 0)")"
      done
      echo "dockerd: (its containerd's RSS (MiB):$total)"
    fi
  fi

  times=()
  for n in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N)
    echo x | c 0 secret create "bench$n" - >/dev/null
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000000)))
  done
  fig[$engine.commit]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$engine: secret create on the leader (one Raft commit + CLI start), median: ${fig[$engine.commit]} ms"

  # The leader (node 0, which made the swarm) dies.
  t0=$(now_ms)
  kill -9 "$(daemon_pid 0)"
  fig[$engine.failover]="> 120000"
  while [ $(($(now_ms) - t0)) -lt 120000 ]; do
    if echo x | c 1 secret create failover - >/dev/null 2>&1; then
      t1=$(now_ms)
      fig[$engine.failover]=$((t1 - t0))
      break
    fi
    sleep 0.05
  done
  echo "$engine: leader SIGKILL to the first accepted write: ${fig[$engine.failover]} ms"
}

nn_switch "$sw"
prefix="10.232.$((id % 200))"
[ "${BERTH:-1}" = 1 ] && phase berth
if [ "$DOCKERD" = 1 ]; then
  # Same addresses on fresh namespaces: the berth nodes go first (their veths on br0 too).
  # Its containers go too, so that dockerd's figures are taken on an idle machine.
  for i in 0 1 2; do kill -9 "${pids[$i]:-}" 2>/dev/null || true; done
  nn_kill_berth_containers "$work"/b*/run
  sleep 1
  for i in 0 1 2; do ip netns del "bsb-b$i-$id" 2>/dev/null || true; done
  phase dockerd
fi

echo
printf '%-40s %18s %18s\n' "" "berthd" "dockerd $("$DOCKERD_BIN" --version 2>/dev/null | awk '{print $3}' | tr -d ,)"
row() { printf '%-40s %18s %18s\n' "$1" "${fig[berth.$2]:--}" "${fig[dockerd.$2]:--}"; }
row "swarm init (ms)" init
row "manager join (ms)" join
row "$REPLICAS replicas running (ms)" replicas
row "manager RSS, $REPLICAS tasks (MiB)" rss
row "scale to ${fig[berth.n]:-$TASKS} / ${fig[dockerd.n]:--} running (ms)" scale
row "manager RSS, then (MiB)" rssN
row "secret create, median (ms)" commit
row "leader SIGKILL -> write accepted (ms)" failover
