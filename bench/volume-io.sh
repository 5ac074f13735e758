#!/usr/bin/env bash
# Benchmark: sequential write and read throughput (dd, SIZE_MB MiB in 1 MiB blocks) inside a
# volume (-v NAME:/vol), in the container's overlay writable layer, and on the host (a directory
# on the same filesystem as the data root), printed side by side. Writes end with an fsync
# (conv=fsync); reads come from the page cache right after the write (no cache drop: other work
# on the machine would pay for it). With DOCKER_HOST pointing at a dockerd, the same container
# runs there too. Prints figures; asserts nothing. Run as root from the repository:
#   bash bench/volume-io.sh            (PROFILE=debug to skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${SIZE_MB:-256}
RUNS=${RUNS:-3}
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p berthd -p berth-cli -p berth-runtime --bins
else
  cargo build -q -p berthd -p berth-cli -p berth-runtime --bins
fi
bin="${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE"

work=$(mktemp -d /tmp/berth-bench-XXXXXX)
daemon_pid=""
cgroup_parent="/berth-bench-$$"
docker_ctr=""
cleanup() {
  if [ -n "$daemon_pid" ]; then
    "$bin/berth" -H "unix://$work/berth.sock" rm -f -v volbench >/dev/null 2>&1 || true
    "$bin/berth" -H "unix://$work/berth.sock" volume rm benchvol >/dev/null 2>&1 || true
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if [ -n "$docker_ctr" ]; then
    docker rm -f -v "$docker_ctr" >/dev/null 2>&1 || true
    docker volume rm berth-benchvol >/dev/null 2>&1 || true
  fi
  for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$ctl$cgroup_parent" ] && find "$ctl$cgroup_parent" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # berthd puts a tmpfs on its exec root (left mounted for the shims of running containers).
  umount -l "$work/run" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A busybox image from Debian's busybox-static.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/work"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh true sleep dd rm sync; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

mkdir -p "$work/root" "$work/run" "$work/host"
echo '{}' >"$work/daemon.json"
"$bin/berthd" --data-root "$work/root" --exec-root "$work/run" --config-file "$work/daemon.json" \
  --cgroup-parent "$cgroup_parent" -H "unix://$work/berth.sock" --log-level warn 2>"$work/berthd.log" &
daemon_pid=$!
for _ in $(seq 1 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
berth() { "$bin/berth" -H "unix://$work/berth.sock" "$@"; }
berth import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null

# timed DD-ARGS: a shell line that runs dd and prints its wall time in seconds, measured with
# /proc/uptime inside the container itself (busybox dd prints no rate; 10 ms resolution).
timed() {
  echo "read a _ </proc/uptime; dd $1 2>/dev/null; read b _ </proc/uptime; echo \$a \$b"
}

# mbps "START END": MB/s for SIZE_MB.
mbps() {
  awk -v mb="$SIZE_MB" '{ secs = $2 - $1; if (secs > 0) printf "%.0f", mb / secs; else print "inf" }' <<<"$1"
}

# best RUNNER DIR: best write and read MB/s over RUNS runs; RUNNER runs a shell command line.
best() {
  local runner=$1 dir=$2 w r bw=0 br=0
  for _ in $(seq 1 "$RUNS"); do
    w=$(mbps "$($runner "$(timed "if=/dev/zero of=$dir/bench.dat bs=1M count=$SIZE_MB conv=fsync")")")
    r=$(mbps "$($runner "$(timed "if=$dir/bench.dat of=/dev/null bs=1M")")")
    $runner "rm -f $dir/bench.dat" >/dev/null
    [ "$w" = inf ] || [ "$w" -gt "$bw" ] && bw=$w
    [ "$r" = inf ] || [ "$r" -gt "$br" ] && br=$r
  done
  echo "$bw $br"
}

# The host runs busybox's dd too, so that only the filesystem differs.
mkdir -p "$work/hostbin"
ln -s /bin/busybox "$work/hostbin/dd"
host_run() { PATH="$work/hostbin:$PATH" sh -c "$1"; }
berth_run() { berth exec volbench sh -c "$1"; }

berth volume create benchvol >/dev/null
berth run -d --name volbench -v benchvol:/vol bench/busybox:latest sleep 3600 >/dev/null

printf 'sequential dd, %s MiB, best of %s (MB/s)\n\n' "$SIZE_MB" "$RUNS"
printf '%-28s %10s %10s\n' "where" "write" "read"
read -r w r < <(best host_run "$work/host")
printf '%-28s %10s %10s\n' "host ($work)" "$w" "$r"
read -r w r < <(best berth_run /vol)
printf '%-28s %10s %10s\n' "berth: volume" "$w" "$r"
read -r w r < <(best berth_run /work)
printf '%-28s %10s %10s\n' "berth: overlay rw layer" "$w" "$r"

if [ -n "${DOCKER_HOST:-}" ] && command -v docker >/dev/null; then
  docker import -c 'CMD ["sh"]' "$work/rootfs.tar" berth-bench/busybox:latest >/dev/null
  docker_ctr=$(docker run -d -v berth-benchvol:/vol berth-bench/busybox:latest sleep 3600)
  docker_run() { docker exec "$docker_ctr" sh -c "$1"; }
  read -r w r < <(best docker_run /vol)
  printf '%-28s %10s %10s\n' "dockerd: volume" "$w" "$r"
  read -r w r < <(best docker_run /work)
  printf '%-28s %10s %10s\n' "dockerd: overlay rw layer" "$w" "$r"
  docker rmi berth-bench/busybox:latest >/dev/null 2>&1 || true
fi
