#!/usr/bin/env bash
# Benchmark: load and save of an image with one 100 MB layer, compressible and incompressible,
# through berth (and the docker CLI) against berthd, and through docker/podman against their own
# engines when those are installed and running. Prints median wall times of RUNS runs and ratios.
# Not a test: it asserts nothing. Run as root from the repository: bash bench/image-load-save.sh
# (DOCKER_HOST=unix:///path/docker.sock to compare with a dockerd on another socket).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
SIZE_MB=${SIZE_MB:-100}
cargo build --release -q -p berthd -p berth-cli
bin="$PWD/target/release"

work=$(mktemp -d /tmp/berth-bench-XXXXXX)
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  # berthd puts a tmpfs on its exec root (left mounted for the shims of running containers).
  umount -l "$work/run" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# make_archive NAME SOURCE: a docker-archive with one layer holding SIZE_MB of SOURCE's bytes.
make_archive() {
  local name=$1 source=$2 dir="$work/$1"
  mkdir -p "$dir/rootfs/data"
  head -c "$((SIZE_MB * 1024 * 1024))" "$source" >"$dir/rootfs/data/blob"
  tar -C "$dir/rootfs" -cf "$dir/layer.tar" .
  local diff config_hex
  diff=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"bench"}]}' "$diff" >"$dir/config.json"
  config_hex=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
  mkdir -p "$dir/archive/$diff"
  mv "$dir/layer.tar" "$dir/archive/$diff/layer.tar"
  mv "$dir/config.json" "$dir/archive/$config_hex.json"
  printf '[{"Config":"%s.json","RepoTags":["bench/%s:latest"],"Layers":["%s/layer.tar"]}]' "$config_hex" "$name" "$diff" >"$dir/archive/manifest.json"
  tar -C "$dir/archive" -cf "$work/$name.tar" .
  rm -rf "$dir"
}

# median_ms CMD...: runs CMD RUNS times, prints the median wall time in milliseconds.
median_ms() {
  local times=() start end
  for _ in $(seq 1 "$RUNS"); do
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s%N)
    times+=($(((end - start) / 1000000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p"
}

echo "building test archives (${SIZE_MB} MB layer each)..."
make_archive compressible /dev/zero
# `yes` dies of SIGPIPE when head has enough, which pipefail would count as a failure.
{ yes "berth benchmark line of compressible text" || true; } | head -c "$((SIZE_MB * 1024 * 1024))" >"$work/text.src"
make_archive text "$work/text.src"
rm -f "$work/text.src"
make_archive random /dev/urandom

mkdir -p "$work/root" "$work/run"
echo '{}' >"$work/daemon.json"
"$bin/berthd" --data-root "$work/root" --exec-root "$work/run" --config-file "$work/daemon.json" \
  --bridge none --iptables=false -H "unix://$work/berth.sock" --log-level warn 2>"$work/berthd.log" &
daemon_pid=$!
for _ in $(seq 1 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
berth() { "$bin/berth" -H "unix://$work/berth.sock" "$@"; }

# A Docker engine to compare with: wherever the caller's DOCKER_HOST (or docker's default) points.
docker_engine=""
if command -v docker >/dev/null 2>&1 && docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  docker_engine=yes
  echo "comparing with Docker $(docker version --format '{{.Server.Version}}') at ${DOCKER_HOST:-its default socket}"
fi
podman_engine=""
command -v podman >/dev/null 2>&1 && podman_engine=yes

printf '\n%-14s %-34s %10s %10s\n' "layer" "command" "median ms" "MB/s"
report() { # label, command label, ms
  local mbps="-"
  [ "$3" -gt 0 ] && mbps=$((SIZE_MB * 1000 / $3))
  printf '%-14s %-34s %10s %10s\n' "$1" "$2" "$3" "$mbps"
}
for kind in compressible text random; do
  archive="$work/$kind.tar"
  ref="bench/$kind:latest"
  load_once() { berth rmi -f "$ref" >/dev/null 2>&1 || true; berth load -q -i "$archive"; }
  ms=$(median_ms load_once); report "$kind" "berth load" "$ms"; berth_load=$ms
  ms=$(median_ms berth save -o "$work/out.tar" "$ref"); report "$kind" "berth save" "$ms"; berth_save=$ms
  if command -v docker >/dev/null 2>&1; then
    dload() { berth rmi -f "$ref" >/dev/null 2>&1 || true; DOCKER_HOST="unix://$work/berth.sock" docker load -q -i "$archive"; }
    ms=$(median_ms dload); report "$kind" "docker CLI -> berthd load" "$ms"
  fi
  if [ -n "$docker_engine" ]; then
    dl() { docker rmi -f "$ref" >/dev/null 2>&1 || true; docker load -q -i "$archive"; }
    ms=$(median_ms dl); report "$kind" "docker -> dockerd load" "$ms"
    echo "  ratio dockerd/berthd load: $(awk "BEGIN{printf \"%.1f\", $ms/($berth_load>0?$berth_load:1)}")x"
    ms=$(median_ms docker save -o "$work/out.tar" "$ref"); report "$kind" "docker -> dockerd save" "$ms"
    echo "  ratio dockerd/berthd save: $(awk "BEGIN{printf \"%.1f\", $ms/($berth_save>0?$berth_save:1)}")x"
    docker rmi -f "$ref" >/dev/null 2>&1 || true
  fi
  if [ -n "$podman_engine" ]; then
    pl() { podman rmi -f "$ref" >/dev/null 2>&1 || true; podman load -q -i "$archive"; }
    ms=$(median_ms pl); report "$kind" "podman load" "$ms"
    echo "  ratio podman/berth load: $(awk "BEGIN{printf \"%.1f\", $ms/($berth_load>0?$berth_load:1)}")x"
    ms=$(median_ms podman save -o "$work/out.tar" "$ref"); report "$kind" "podman save" "$ms"
    echo "  ratio podman/berth save: $(awk "BEGIN{printf \"%.1f\", $ms/($berth_save>0?$berth_save:1)}")x"
    podman rmi -f "$ref" >/dev/null 2>&1 || true
  fi
  rm -f "$work/out.tar"
done
[ -n "$docker_engine" ] || echo "(no running Docker engine: dockerd figures skipped)"
[ -n "$podman_engine" ] || echo "(podman not installed: podman figures skipped)"
