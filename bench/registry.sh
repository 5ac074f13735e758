#!/usr/bin/env bash
# Benchmark: push and pull of an image with one 100 MiB layer and of one with 10 x 10 MiB
# layers (random data) to/from a local docker-registry (127.0.0.1, its own config and storage,
# as the e2e tests start it), through berth -> berthd, skopeo (push: docker-archive -> registry;
# pull: registry -> dir: plus unpacking the layers) and dockerd when dockerd is
# installed (its own data root, socket and pidfile; stopped by its PID). Every push goes to an
# empty registry and every pull into an empty store. Prints median wall times of RUNS runs and
# ratios. Not a test: it asserts nothing. Run as root from the repository:
#   bash bench/registry.sh              # release build
#   BUILD=debug bash bench/registry.sh  # the debug build in target/debug
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
BUILD=${BUILD:-release}
if [ "$BUILD" = release ]; then
  cargo build --release -q -p berthd -p berth-cli -p berth-runtime --bins
fi
bin="${CARGO_TARGET_DIR:-$PWD/target}/$BUILD"
registry_bin=/usr/bin/docker-registry
[ -x "$registry_bin" ] || { echo "skipped: $registry_bin is missing (apt package docker-registry)"; exit 0; }

work=$(mktemp -d /tmp/berth-bench-XXXXXX)
pids=()
registry_pid=""
cleanup() {
  for p in "${pids[@]}" $registry_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for d in "$work"/run-*; do [ -d "$d" ] && umount -l "$d" 2>/dev/null || true; done
  for d in "$work"/root-*; do
    nft delete table inet "berth_$(printf %s "$d" | sha256sum | cut -c1-8)" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg="127.0.0.1:$port"

# fresh_registry: (re)starts the registry on an empty storage.
fresh_registry() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work/registry"
  mkdir -p "$work/registry"
  printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$work/registry" "$reg" >"$work/registry.yml"
  "$registry_bin" serve "$work/registry.yml" 2>>"$work/registry.log" &
  registry_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://$reg/v2/" >/dev/null && return; sleep 0.1; done
  echo "registry did not start" >&2; exit 1
}

# start_berthd NAME: a daemon with its own data root; sets $sock.
start_berthd() {
  local name=$1
  rm -rf "$work/root-$name"
  mkdir -p "$work/root-$name" "$work/run-$name"
  echo '{}' >"$work/daemon-$name.json"
  "$bin/berthd" --data-root "$work/root-$name" --exec-root "$work/run-$name" --config-file "$work/daemon-$name.json" \
    -H "unix://$work/$name.sock" --bridge none --log-level warn 2>"$work/berthd-$name.log" &
  pids+=($!)
  berthd_pid=$!
  sock="$work/$name.sock"
  for _ in $(seq 1 200); do [ -S "$sock" ] && break; sleep 0.05; done
}
# (No default bridge: pushes and pulls need none. A daemon's nftables table is named after
# its data root: removed with it.)
stop_berthd() {
  kill "$berthd_pid"
  wait "$berthd_pid" 2>/dev/null || true
  umount -l "$work/run-$1" 2>/dev/null || true
  nft delete table inet "berth_$(printf %s "$work/root-$1" | sha256sum | cut -c1-8)" 2>/dev/null || true
}
berth() { "$bin/berth" -H "unix://$sock" "$@"; }

# The two images as docker-archives of uncompressed layers (random data).
python3 - "$work" <<'PY'
import hashlib, io, json, os, sys, tarfile
work = sys.argv[1]
def layer(name, size):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(name); info.size = size; info.mode = 0o644
        t.addfile(info, io.BytesIO(os.urandom(size)))
    return buf.getvalue()
def archive(name, layers):
    files = {}
    diffs = []
    paths = []
    for data in layers:
        d = hashlib.sha256(data).hexdigest()
        diffs.append("sha256:" + d)
        paths.append(d + "/layer.tar")
        files[d + "/layer.tar"] = data
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diffs},
        "history": [{"created_by": "bench"} for _ in layers]}).encode()
    ch = hashlib.sha256(config).hexdigest()
    files[ch + ".json"] = config
    files["manifest.json"] = json.dumps([{"Config": ch + ".json", "RepoTags": ["bench/%s:latest" % name], "Layers": paths}]).encode()
    with tarfile.open(os.path.join(work, name + ".tar"), "w") as t:
        for n, data in files.items():
            info = tarfile.TarInfo(n); info.size = len(data)
            t.addfile(info, io.BytesIO(data))
archive("one", [layer("data/blob", 100 << 20)])
archive("ten", [layer("data/blob%d" % i, 10 << 20) for i in range(10)])
PY

# median of the arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# timed CMD...: wall seconds of CMD.
timed() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); printf '%.2f' "$(echo "$e - $s" | bc -l)"; }

declare -A result

# --- berth ---
start_berthd pusher
berth load -i "$work/one.tar" >/dev/null
berth load -i "$work/ten.tar" >/dev/null
berth tag bench/one:latest "$reg/bench/one:latest"
berth tag bench/ten:latest "$reg/bench/ten:latest"
for image in one ten; do
  sock="$work/pusher.sock"
  times=()
  for _ in $(seq 1 "$RUNS"); do
    fresh_registry
    # A fresh store remembers no compressed digests: every push compresses.
    rm -f "$work/root-pusher/distribution/blobs.json"
    times+=("$(timed berth push "$reg/bench/$image:latest")")
  done
  result[berth-push-$image]=$(median "${times[@]}")
  times=()
  for _ in $(seq 1 "$RUNS"); do
    start_berthd puller
    times+=("$(timed berth pull "$reg/bench/$image:latest")")
    stop_berthd puller
  done
  result[berth-pull-$image]=$(median "${times[@]}")
  # A second push of the same image: every layer exists (no compression).
  sock="$work/pusher.sock"
  result[berth-repush-$image]=$(timed berth push "$reg/bench/$image:latest")
done
sock="$work/pusher.sock"

# --- skopeo ---
if command -v skopeo >/dev/null; then
  for image in one ten; do
    times=()
    for _ in $(seq 1 "$RUNS"); do
      fresh_registry
      times+=("$(timed skopeo copy -q --dest-tls-verify=false "docker-archive:$work/$image.tar" "docker://$reg/bench/$image:latest")")
    done
    result[skopeo-push-$image]=$(median "${times[@]}")
    # The pulls read what berth pushed last (the registry has it now).
    berth push "$reg/bench/$image:latest" >/dev/null
    times=()
    for _ in $(seq 1 "$RUNS"); do
      rm -rf "$work/skopeo-dir" "$work/skopeo-root"
      mkdir -p "$work/skopeo-root"
      pull_unpack() {
        skopeo copy -q --src-tls-verify=false "docker://$reg/bench/$image:latest" "dir:$work/skopeo-dir"
        for f in "$work"/skopeo-dir/*; do
          case $(basename "$f") in manifest.json|version) ;; *) tar -xzf "$f" -C "$work/skopeo-root" 2>/dev/null || true ;; esac
        done
      }
      times+=("$(timed pull_unpack)")
    done
    result[skopeo-pull-$image]=$(median "${times[@]}")
  done
fi

# --- dockerd ---
# Debian's docker.io puts dockerd in /usr/sbin, off a non-root PATH.
dockerd_bin=$(command -v dockerd || { [ -x /usr/sbin/dockerd ] && echo /usr/sbin/dockerd; } || true)
if [ -n "$dockerd_bin" ]; then
  mkdir -p "$work/docker-root" "$work/docker-exec"
  "$dockerd_bin" --data-root "$work/docker-root" --exec-root "$work/docker-exec" -H "unix://$work/docker.sock" \
    --pidfile "$work/docker.pid" --bridge none --iptables=false 2>"$work/dockerd.log" &
  pids+=($!)
  for _ in $(seq 1 200); do [ -S "$work/docker.sock" ] && break; sleep 0.1; done
  docker() { DOCKER_HOST="unix://$work/docker.sock" /usr/local/bin/docker "$@"; }
  for image in one ten; do
    docker load -i "$work/$image.tar" >/dev/null
    docker tag "bench/$image:latest" "$reg/bench/$image:latest"
    times=()
    for _ in $(seq 1 "$RUNS"); do
      fresh_registry
      times+=("$(timed docker push "$reg/bench/$image:latest")")
    done
    result[dockerd-push-$image]=$(median "${times[@]}")
    times=()
    for _ in $(seq 1 "$RUNS"); do
      docker rmi -f "$reg/bench/$image:latest" "bench/$image:latest" >/dev/null 2>&1 || true
      times+=("$(timed docker pull "$reg/bench/$image:latest")")
    done
    result[dockerd-pull-$image]=$(median "${times[@]}")
  done
else
  echo "(dockerd not installed: no dockerd figures)"
fi

echo
echo "registry push/pull, median of $RUNS runs ($BUILD build), seconds"
printf '%-28s %10s %10s %10s %10s\n' "" berth skopeo dockerd "berth re-push"
for op in push pull; do
  for image in one ten; do
    label="$op $([ $image = one ] && echo '1 x 100 MiB' || echo '10 x 10 MiB')"
    printf '%-28s %10s %10s %10s %10s\n' "$label" "${result[berth-$op-$image]:--}" "${result[skopeo-$op-$image]:--}" \
      "${result[dockerd-$op-$image]:--}" "$([ $op = push ] && echo "${result[berth-repush-$image]}" || echo -)"
  done
done
echo
for peer in skopeo dockerd; do
  for op in push pull; do
    for image in one ten; do
      b=${result[berth-$op-$image]:-}; p=${result[$peer-$op-$image]:-}
      if [ -n "$b" ] && [ -n "$p" ]; then
        printf '%s %s vs %s: berth is %.2fx as fast\n' "$op" "$image" "$peer" "$(echo "$p / $b" | bc -l)"
      fi
    done
  done
done
