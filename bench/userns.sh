#!/usr/bin/env bash
# Benchmark: what `--userns-remap` adds to `run --rm IMAGE true`. One daemon remapped to a
# throw-away user's range (made here, removed on exit with its /etc/subuid and /etc/subgid
# lines); the same run with `--userns host` (no user namespace, no idmapped layers) is the
# baseline. With and without the default bridge. Figures for an image of 1 and of 20 layers
# (layers are idmapped per container: the cost should not grow much with depth).
# Prints figures; asserts nothing. Run as root from the repository: bash bench/userns.sh
# (BIN_DIR=target/debug bash bench/userns.sh for a debug build's figures).
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
chmod 0711 "$work"
daemon_pid=""
user="brb$$"
base=$((3000000 + ($$ % 1000) * 65536))
cgroup_parent="/berth-bench-$$"
bridge="bun$$"
bridge=${bridge:0:15}
bip="10.233.$(($$ % 200)).1/24"
cleanup() {
  if [ -n "$daemon_pid" ]; then
    "$bin/berth" -H "unix://$work/berth.sock" ps -aq 2>/dev/null | xargs -r "$bin/berth" -H "unix://$work/berth.sock" rm -f >/dev/null 2>&1 || true
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  sed -i "/^$user:/d" /etc/subuid /etc/subgid 2>/dev/null || true
  userdel "$user" 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
  nft delete table inet "berth_$(printf %s "$work/root/$base.$base" | sha256sum | cut -c1-8)" 2>/dev/null || true
  for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$ctl$cgroup_parent" ] && find "$ctl$cgroup_parent" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  umount -l "$work/run" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

useradd -r -M -s /bin/false "$user"
echo "$user:$base:65536" >>/etc/subuid
echo "$user:$base:65536" >>/etc/subgid

# A busybox image from Debian's busybox-static, and one with 19 more small layers on it.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh true sleep echo; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

mkdir -p "$work/root" "$work/run"
echo '{}' >"$work/daemon.json"
"$bin/berthd" --data-root "$work/root" --exec-root "$work/run" --config-file "$work/daemon.json" \
  --userns-remap "$user" --bridge "$bridge" --bip "$bip" --cgroup-parent "$cgroup_parent" \
  -H "unix://$work/berth.sock" --log-level warn 2>"$work/berthd.log" &
daemon_pid=$!
for _ in $(seq 1 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
berth() { "$bin/berth" -H "unix://$work/berth.sock" "$@"; }
berth import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null
berth run --name deep0 bench/busybox true >/dev/null
prev=bench/busybox:latest
for i in $(seq 1 19); do
  berth run --name "deep$i" "$prev" sh -c "echo $i > /layer$i" >/dev/null
  berth commit "deep$i" "bench/deep:$i" >/dev/null
  prev="bench/deep:$i"
done
berth tag "$prev" bench/deep:latest
berth rm -f $(seq -f 'deep%g' 0 19) >/dev/null

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

printf '\n%-44s %10s %10s %10s\n' "run --rm IMAGE true (median of $RUNS)" "host ms" "remap ms" "+ms"
for image in bench/busybox bench/deep; do
  for net in none bridge; do
    h=$(median_ms berth run --rm --userns host --network "$net" "$image" true)
    r=$(median_ms berth run --rm --network "$net" "$image" true)
    printf '%-44s %10s %10s %10s\n' "$image, --network $net" "$h" "$r" \
      "$(awk -v a="$r" -v b="$h" 'BEGIN {printf "%+.1f", a - b}')"
  done
done
echo "(layers on disk stay unshifted: $(find "$work/root/$base.$base" -path '*layers*' -uid "$base" 2>/dev/null | wc -l) files owned by the remapped root in the image store)"
