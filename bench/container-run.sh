#!/usr/bin/env bash
# Benchmark: container start-up and footprint.
#  - `run --rm IMAGE true` end to end: berth -> berthd, docker CLI -> berthd, and docker -> dockerd
#    and podman when installed (DOCKER_HOST selects the dockerd to compare with);
#  - create+start of N containers, sequential and 8 in parallel;
#  - `ps -a` with M containers;
#  - resident memory of one shim, and of berthd with 0 and N containers running.
# Prints figures; asserts nothing. Run as root from the repository: bash bench/container-run.sh
# (BIN_DIR=/path/to/other/build bash bench/container-run.sh for another build's figures).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}
N=${N:-100}
M=${M:-1000}
# BIN_DIR: binaries built elsewhere (say, of an earlier commit, for before/after figures);
# otherwise this checkout's release build.
if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
else
  cargo build --release -q -p berthd -p berth-cli -p berth-runtime --bins
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi

work=$(mktemp -d /tmp/berth-bench-XXXXXX)
daemon_pid=""
cgroup_parent="/berth-bench-$$"
# Its own default bridge (removed on exit with the daemon's nftables table), as Docker's
# containers also start on a bridge.
bridge="bcr$$"
bridge=${bridge:0:15}
bip="10.232.$(($$ % 200)).1/24"
cleanup() {
  if [ -n "$daemon_pid" ]; then
    "$bin/berth" -H "unix://$work/berth.sock" ps -aq 2>/dev/null | xargs -r "$bin/berth" -H "unix://$work/berth.sock" rm -f >/dev/null 2>&1 || true
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  ip link del "$bridge" 2>/dev/null || true
  nft delete table inet "berth_$(printf %s "$work/root" | sha256sum | cut -c1-8)" 2>/dev/null || true
  for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$ctl$cgroup_parent" ] && find "$ctl$cgroup_parent" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # berthd puts a tmpfs on its exec root (left mounted for the shims of running containers).
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
  --bridge "$bridge" --bip "$bip" --cgroup-parent "$cgroup_parent" -H "unix://$work/berth.sock" --log-level warn 2>"$work/berthd.log" &
daemon_pid=$!
for _ in $(seq 1 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
berth() { "$bin/berth" -H "unix://$work/berth.sock" "$@"; }
berth import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# pss_kb PID: proportional set size (shared pages divided among their users), from smaps_rollup.
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# dirty_kb PID: private dirty pages (heap, stack, written data): what each more shim costs; the
# rest (code, libc) is clean file pages shared by all shims.
dirty_kb() { awk '/^Private_Dirty:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
shim_pid_of() { cat "$work/run/containers/$(berth inspect -f '{{.Id}}' "$1")/shim.pid" 2>/dev/null || echo ""; }
# shim_mem NAME: "RSS PSS PRIVATE" (kB) of the shim of container NAME.
shim_mem() {
  local pid
  pid=$(shim_pid_of "$1")
  if [ -z "$pid" ]; then echo "? ? ?"; else echo "$(rss_kb "$pid") $(pss_kb "$pid") $(dirty_kb "$pid")"; fi
}

# usec: bash's own clock in microseconds (no `date` process around what is measured).
usec() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }
# median_ms CMD...: median wall time of RUNS runs (after 2 unmeasured ones, so that both
# engines run warm), in milliseconds with one decimal.
median_ms() {
  local times=() start end
  "$@" >/dev/null 2>&1 || true
  "$@" >/dev/null 2>&1 || true
  for _ in $(seq 1 "$RUNS"); do
    start=$(usec)
    "$@" >/dev/null 2>&1
    end=$(usec)
    times+=($((end - start)))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p" | awk '{printf "%.1f", $1 / 1000}'
}

printf '\n%-46s %10s\n' "run --rm IMAGE true (median of $RUNS)" "ms"
# Both engines twice: without networking, and on their default bridge (netns, veth, addresses).
have_dockerd=0
if command -v docker >/dev/null 2>&1 && docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  have_dockerd=1
  docker image inspect bench/busybox >/dev/null 2>&1 || docker import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null
fi
berth_ms=0
for net in none bridge; do
  ms=$(median_ms berth run --rm --network "$net" bench/busybox true)
  [ "$net" = bridge ] && berth_ms=$ms
  printf '%-46s %10s\n' "berth -> berthd, --network $net" "$ms"
  if command -v docker >/dev/null 2>&1; then
    ms=$(median_ms env DOCKER_HOST="unix://$work/berth.sock" docker run --rm --network "$net" bench/busybox true)
    printf '%-46s %10s\n' "docker CLI -> berthd, --network $net" "$ms"
  fi
  if [ "$have_dockerd" = 1 ]; then
    b=$(median_ms berth run --rm --network "$net" bench/busybox true)
    ms=$(median_ms docker run --rm --network "$net" bench/busybox true)
    printf '%-46s %10s   (berth again: %s ms, %.1fx)\n' "docker -> dockerd $(docker version --format '{{.Server.Version}}'), --network $net" "$ms" "$b" "$(awk "BEGIN{print $ms/($b>0?$b:1)}")"
  fi
done
if [ "$have_dockerd" = 1 ]; then
  docker rmi bench/busybox >/dev/null 2>&1 || true
else
  echo "(no running Docker engine: dockerd figures skipped; DOCKER_HOST selects one)"
fi
if command -v podman >/dev/null 2>&1; then
  podman import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null 2>&1 || true
  ms=$(median_ms podman run --rm --network none bench/busybox true)
  printf '%-46s %10s   (%.1fx berth)\n' "podman" "$ms" "$(awk "BEGIN{print $ms/($berth_ms>0?$berth_ms:1)}")"
  podman rmi bench/busybox >/dev/null 2>&1 || true
else
  echo "(podman not installed: podman figures skipped)"
fi

daemon_idle=$(rss_kb "$daemon_pid")
# One idle shim on its own (no other shim shares its pages), json-file logs and with a tty.
berth run -d --name mem-log bench/busybox sleep 600 >/dev/null
sleep 0.5
read -r log_rss log_pss log_priv <<<"$(shim_mem mem-log)"
# An exec runs through the shim (a helper creates it, the shim pumps its output): once idle
# again, the shim gives back what the exec touched.
berth exec mem-log sh -c 'echo exec' >/dev/null
sleep 0.5
read -r exec_rss exec_pss exec_priv <<<"$(shim_mem mem-log)"
berth rm -f mem-log >/dev/null
berth run -d -t --name mem-tty bench/busybox sleep 600 >/dev/null
sleep 0.5
read -r tty_rss tty_pss tty_priv <<<"$(shim_mem mem-tty)"
berth rm -f mem-tty >/dev/null
start=$(usec)
for i in $(seq 1 "$N"); do berth run -d --name "seq$i" bench/busybox sleep 600 >/dev/null; done
end=$(usec)
printf '\n%-46s %10s ms (%s ms each)\n' "create+start $N containers, sequential" "$(((end - start) / 1000))" "$(((end - start) / 1000 / N))"
# Measured while the containers run: a shim exits with its container.
read -r many_rss many_pss many_priv <<<"$(shim_mem seq1)"
daemon_busy=$(rss_kb "$daemon_pid")
berth rm -f $(berth ps -aq) >/dev/null
start=$(usec)
seq 1 "$N" | xargs -P 8 -I{} "$bin/berth" -H "unix://$work/berth.sock" run -d --name "par{}" bench/busybox sleep 600 >/dev/null
end=$(usec)
printf '%-46s %10s ms\n' "create+start $N containers, 8 in parallel" "$(((end - start) / 1000))"
berth rm -f $(berth ps -aq) >/dev/null

printf '\n%-46s %10s kB\n' "berthd RSS, no containers" "$daemon_idle"
printf '%-46s %10s kB\n' "berthd RSS, $N containers running" "$daemon_busy"
printf '\n%-46s %8s %8s %8s\n' "shim memory (kB), container running sleep" "RSS" "PSS" "dirty"
printf '%-46s %8s %8s %8s\n' "one shim alone, json-file log" "$log_rss" "$log_pss" "$log_priv"
printf '%-46s %8s %8s %8s\n' "one shim alone, after an exec" "$exec_rss" "$exec_pss" "$exec_priv"
printf '%-46s %8s %8s %8s\n' "one shim alone, tty" "$tty_rss" "$tty_pss" "$tty_priv"
printf '%-46s %8s %8s %8s\n' "one shim of $N running" "$many_rss" "$many_pss" "$many_priv"

# ps with M containers (created, not started: ps cost is about records, not processes).
seq 1 "$M" | xargs -P 8 -I{} "$bin/berth" -H "unix://$work/berth.sock" create --name "ps{}" bench/busybox true >/dev/null
RUNS=5
printf '%-46s %10s ms\n' "ps -a with $M containers (median of 5)" "$(median_ms berth ps -a)"
