# shellcheck shell=bash
# Daemons as separate hosts for the multi-node benchmarks (bench/swarm.sh,
# bench/overlay-cluster.sh): each berthd in a network namespace of its own, joined by a veth to
# the bridge br0 of a "switch" namespace (as the e2e cluster harness, tests/src/cluster.rs), and
# their cleanup. Sourced. The caller sets `work` (its temporary directory) and `id` (unique per
# run) and declares the arrays `pids` (processes to end, by PID) and `made` (namespaces to
# delete).

# The directory of the berth binaries in `bin`: $BERTH_BIN, else a fresh release build.
nn_bin() {
  if [ -n "${BERTH_BIN:-}" ]; then
    bin=$(realpath "$BERTH_BIN")
  else
    cargo build --release -q -p berthd -p berth-cli -p berth-runtime --bins
    bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
  fi
}

# $work/rootfs.tar: the host's busybox with the applets named, and a passwd for root.
nn_busybox_tar() {
  local applet
  mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
  cp /bin/busybox "$work/rootfs/bin/busybox"
  for applet in "$@"; do ln -s busybox "$work/rootfs/bin/$applet"; done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
  tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
}

# The switch namespace $1 with its bridge br0 up.
nn_switch() {
  ip netns add "$1"
  made+=("$1")
  ip -n "$1" link add br0 type bridge
  ip -n "$1" link set br0 up
}

# Node namespace $2 on switch $1: its veth end $3 on br0, its eth0 with address $4 (a /24).
nn_node() {
  local sw=$1 ns=$2 link=$3 addr=$4
  ip netns add "$ns"
  made+=("$ns")
  ip -n "$sw" link add "$link" type veth peer name eth0 netns "$ns"
  ip -n "$sw" link set "$link" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
}

# berthd in namespace $1 with hostname $2, its files in directory $3 (data and exec roots,
# config, socket berth.sock, log) and its containers under cgroup $4. In the background; its
# PID (berthd's own: nsenter and unshare exec) in `nn_pid`, not yet in `pids`.
nn_berthd() {
  local ns=$1 host=$2 dir=$3 cgroup=$4
  mkdir -p "$dir"
  echo '{}' >"$dir/daemon.json"
  nsenter --net="/run/netns/$ns" unshare --uts sh -c "hostname $host && exec \"\$@\"" sh \
    "$bin/berthd" --data-root "$dir/root" --exec-root "$dir/run" \
    --config-file "$dir/daemon.json" --cgroup-parent "$cgroup" \
    -H "unix://$dir/berth.sock" --log-level warn 2>>"$dir/berthd.log" &
  nn_pid=$!
  disown "$!" # no "Killed" notice when a benchmark kills it
}

# Waits (up to 10 s) for the unix socket $1.
nn_wait_socket() {
  local _
  for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.05; done
  return 0
}

# Cleanup, first step: SIGKILL to every process in `pids`, and waits (up to 5 s each) for
# them to go.
nn_kill_daemons() {
  local p _
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
}

# SIGKILL to the containers and shims berthd recorded in the exec roots given (containers
# outlive their daemon; stopping them one by one through a swarm would take minutes).
nn_kill_berth_containers() {
  local d f
  for d in "$@"; do
    for f in "$d"/containers/*/init.pid "$d"/containers/*/shim.pid; do
      if [ -f "$f" ]; then kill -9 "$(cat "$f" 2>/dev/null)" 2>/dev/null || true; fi
    done
  done
}

# Cleanup, last step: the mounts under $work, the namespaces in `made` (their veths and
# bridge go with them), the cgroups named $1* at the top of every hierarchy, and $work.
nn_teardown() {
  local prefix=$1 ns ctl d
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  for ns in "${made[@]}"; do ip netns del "$ns" 2>/dev/null; done
  for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    for d in "$ctl$prefix"*; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
  done
  rm -rf "$work"
}
