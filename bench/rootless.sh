#!/usr/bin/env bash
# Benchmark: `run --rm IMAGE true` on a rootless berthd (a throw-away user's, made here with its
# /etc/subuid and /etc/subgid ranges, all removed on exit) against the same on a root daemon,
# with --network none and with the default bridge. Prints figures; asserts nothing. Needs root,
# uidmap and slirp4netns. Run from the repository: bash bench/rootless.sh
# (BIN_DIR=target/debug bash bench/rootless.sh for a debug build's figures).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}
if [ -n "${BIN_DIR:-}" ]; then
  bin=$(cd "$BIN_DIR" && pwd)
else
  cargo build --release -q -p berthd -p berth-cli -p berth-runtime --bins
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi

work=$(mktemp -d /tmp/berth-bench-XXXXXX)
chmod 0755 "$work"
user="brr$$"
user=${user:0:30}
base=$((700000000 + ($$ % 1000) * 65536))
root_pid=""
rootless_pid=""
bridge="brr$$"
bridge=${bridge:0:15}
bip="10.234.$(($$ % 200)).1/24"
cgroup_parent="/berth-bench-$$"
cleanup() {
  if [ -n "$rootless_pid" ]; then
    kill "$rootless_pid" 2>/dev/null || true
    wait "$rootless_pid" 2>/dev/null || true
  fi
  if [ -n "$root_pid" ]; then
    "$bin/berth" -H "unix://$work/root.sock" ps -aq 2>/dev/null | xargs -r "$bin/berth" -H "unix://$work/root.sock" rm -f >/dev/null 2>&1 || true
    kill "$root_pid" 2>/dev/null || true
    wait "$root_pid" 2>/dev/null || true
  fi
  ip link del "$bridge" 2>/dev/null || true
  nft delete table inet "berth_$(printf %s "$work/root" | sha256sum | cut -c1-8)" 2>/dev/null || true
  for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$ctl$cgroup_parent" ] && find "$ctl$cgroup_parent" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  umount -l "$work/run" 2>/dev/null || true
  if id "$user" >/dev/null 2>&1; then
    user_uid=$(id -u "$user")
    # Processes of the user's ids only, by pid.
    for pid in $(ps -eo pid=,uid= | awk -v u="$user_uid" -v b="$base" '$2 == u || ($2 >= b && $2 < b + 65536) {print $1}'); do
      kill -9 "$pid" 2>/dev/null || true
    done
  fi
  sed -i "/^$user:/d" /etc/subuid /etc/subgid 2>/dev/null || true
  userdel "$user" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

useradd -r -M -s /bin/sh "$user"
echo "$user:$base:65536" >>/etc/subuid
echo "$user:$base:65536" >>/etc/subgid
uid=$(id -u "$user")
mkdir -p "$work/home" "$work/xdg-run"
chown "$uid:$uid" "$work/home" "$work/xdg-run"
chmod 0700 "$work/xdg-run"

# A busybox image from Debian's busybox-static.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh true sleep echo; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
chmod 0644 "$work/rootfs.tar"

as_user() {
  setpriv --reuid "$user" --regid "$user" --init-groups env -i HOME="$work/home" \
    XDG_RUNTIME_DIR="$work/xdg-run" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "$@"
}

# The root daemon.
mkdir -p "$work/root" "$work/run"
echo '{}' >"$work/daemon.json"
"$bin/berthd" --data-root "$work/root" --exec-root "$work/run" --config-file "$work/daemon.json" \
  --bridge "$bridge" --bip "$bip" --cgroup-parent "$cgroup_parent" \
  -H "unix://$work/root.sock" --log-level warn 2>"$work/root.log" &
root_pid=$!
# The rootless daemon: the user's, on $XDG_RUNTIME_DIR/berth.sock.
as_user "$bin/berthd" --log-level warn 2>"$work/rootless.log" &
rootless_pid=$!
for _ in $(seq 1 400); do
  [ -S "$work/root.sock" ] && [ -S "$work/xdg-run/berth.sock" ] && break
  sleep 0.05
done
root_berth() { "$bin/berth" -H "unix://$work/root.sock" "$@"; }
user_berth() { as_user "$bin/berth" "$@"; }
root_berth import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null
user_berth import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null

usec() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }
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

printf '\n%-44s %10s %12s %10s\n' "run --rm IMAGE true (median of $RUNS)" "root ms" "rootless ms" "+ms"
for net in none bridge; do
  r=$(median_ms root_berth run --rm --network "$net" bench/busybox true)
  u=$(median_ms user_berth run --rm --network "$net" bench/busybox true)
  printf '%-44s %10s %12s %10s\n' "bench/busybox, --network $net" "$r" "$u" \
    "$(awk -v a="$u" -v b="$r" 'BEGIN {printf "%+.1f", a - b}')"
done
echo "(the rootless figures include setpriv starting berth as the user: $(median_ms as_user true) ms)"
