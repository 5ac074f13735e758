#!/usr/bin/env bash
# Benchmark: `docker build` (legacy API, DOCKER_BUILDKIT=0) against berthd, on the issue's shape: a
# Dockerfile FROM busybox with 11 instructions and a 50 MiB context of 200 files, timed cold,
# fully cached, and after changing the last COPY's file; and a multi-stage build of three
# independent stages (each sleeping SLEEP seconds) against the time of one.
# Where Debian's dockerd (/usr/bin/dockerd) is installed, the same runs go against it too,
# with its legacy builder and with its BuildKit (/usr/bin/docker, DOCKER_BUILDKIT=1), and the
# ratios are printed. Not a test: it asserts nothing.
# Run as root from the repository: bash bench/build.sh   (PROFILE=debug to skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SLEEP=${SLEEP:-2}
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p berthd -p berth-cli
else
  cargo build -q -p berthd -p berth-cli
fi
bin="$PWD/target/$PROFILE"
cli=${DOCKER_CLI:-/usr/local/bin/docker}
[ -x "$cli" ] || cli=$(command -v docker)

work=$(mktemp -d /tmp/berth-build-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  umount -l "$work/run" 2>/dev/null || true
  umount -l "$work/docker-run" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A busybox image archive from the host's busybox-static.
busybox_archive() {
  local dir="$work/bb" diff cfg
  mkdir -p "$dir/rootfs/bin" "$dir/rootfs/etc" "$dir/rootfs/tmp" "$dir/archive"
  cp /bin/busybox "$dir/rootfs/bin/busybox"
  for a in sh echo cat true sleep mkdir ls env; do ln -sf busybox "$dir/rootfs/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$dir/rootfs/etc/passwd"
  printf 'root:x:0:\n' >"$dir/rootfs/etc/group"
  tar -C "$dir/rootfs" -cf "$dir/layer.tar" .
  diff=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"bench"}]}' "$diff" >"$dir/config.json"
  cfg=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
  mkdir -p "$dir/archive/$diff"
  mv "$dir/layer.tar" "$dir/archive/$diff/layer.tar"
  mv "$dir/config.json" "$dir/archive/$cfg.json"
  printf '[{"Config":"%s.json","RepoTags":["busybox:latest"],"Layers":["%s/layer.tar"]}]' "$cfg" "$diff" >"$dir/archive/manifest.json"
  tar -C "$dir/archive" -cf "$work/busybox.tar" .
}

# The context: 200 files of 256 KiB (50 MiB) in two directories and a last small file.
make_context() {
  local ctx="$work/ctx"
  mkdir -p "$ctx/d1" "$ctx/d2"
  for i in $(seq 1 150); do head -c 262144 /dev/urandom >"$ctx/d1/f$i"; done
  for i in $(seq 1 49); do head -c 262144 /dev/urandom >"$ctx/d2/f$i"; done
  echo last >"$ctx/last.txt"
  cat >"$ctx/Dockerfile" <<'EOF'
FROM busybox
ENV A=1
WORKDIR /app
COPY d1 /app/d1
RUN echo hi > /hi
LABEL bench=yes
EXPOSE 80
USER root
COPY d2 /app/d2
ENV B=2
COPY last.txt /app/
CMD ["sh"]
EOF
  mkdir -p "$work/ms"
  cat >"$work/ms/Dockerfile" <<EOF
FROM busybox AS a
RUN sleep $SLEEP && echo a > /a
FROM busybox AS b
RUN sleep $SLEEP && echo b > /b
FROM busybox AS c
RUN sleep $SLEEP && echo c > /c
FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
COPY --from=c /c /c
EOF
}

ms() { echo $(($(date +%s%N) / 1000000)); }

# measure NAME HOST CLI BUILDKIT: prints cold / cached / last-COPY medians in ms.
measure() {
  local name=$1 host=$2 client=$3 buildkit=$4 cold=() cached=() last=() t
  for i in $(seq 1 "$RUNS"); do
    echo "last $i" >"$work/ctx/last.txt"
    t=$(ms); DOCKER_HOST=$host DOCKER_BUILDKIT=$buildkit "$client" build --no-cache -q -t bench:1 "$work/ctx" >/dev/null; cold+=($(($(ms) - t)))
    t=$(ms); DOCKER_HOST=$host DOCKER_BUILDKIT=$buildkit "$client" build -q -t bench:1 "$work/ctx" >/dev/null; cached+=($(($(ms) - t)))
    echo "changed $i" >"$work/ctx/last.txt"
    t=$(ms); DOCKER_HOST=$host DOCKER_BUILDKIT=$buildkit "$client" build -q -t bench:1 "$work/ctx" >/dev/null; last+=($(($(ms) - t)))
  done
  local mc mk ml
  mc=$(printf '%s\n' "${cold[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
  mk=$(printf '%s\n' "${cached[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
  ml=$(printf '%s\n' "${last[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
  t=$(ms); DOCKER_HOST=$host DOCKER_BUILDKIT=$buildkit "$client" build --no-cache -q "$work/ms" >/dev/null; local mst=$(($(ms) - t))
  printf '%-22s %10s %10s %10s %14s\n' "$name" "$mc" "$mk" "$ml" "$mst"
  echo "$name $mc $mk $ml $mst" >>"$work/results"
}

busybox_archive
make_context

mkdir -p "$work/root" "$work/run"
echo '{}' >"$work/daemon.json"
"$bin/berthd" --data-root "$work/root" --exec-root "$work/run" --config-file "$work/daemon.json" \
  -H "unix://$work/berth.sock" --log-level warn 2>"$work/berthd.log" &
pids+=($!)
for _ in $(seq 1 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
DOCKER_HOST="unix://$work/berth.sock" "$cli" load -q -i "$work/busybox.tar" >/dev/null

printf '\n%-22s %10s %10s %10s %14s\n' "engine (ms, median)" "cold" "cached" "last-COPY" "3 stages"
measure "berthd legacy API" "unix://$work/berth.sock" "$cli" 0

if [ -x /usr/bin/dockerd ]; then
  mkdir -p "$work/docker-root" "$work/docker-run"
  /usr/bin/dockerd --data-root "$work/docker-root" --exec-root "$work/docker-run" \
    -H "unix://$work/docker.sock" --pidfile "$work/docker.pid" --bridge none --iptables=false \
    >"$work/dockerd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 400); do [ -S "$work/docker.sock" ] && break; sleep 0.05; done
  DOCKER_HOST="unix://$work/docker.sock" /usr/bin/docker load -q -i "$work/busybox.tar" >/dev/null
  measure "dockerd legacy" "unix://$work/docker.sock" /usr/bin/docker 0
  measure "dockerd BuildKit" "unix://$work/docker.sock" /usr/bin/docker 1
  awk 'NR==1{for(i=2;i<=5;i++)b[i]=$0; split($0,x," "); for(i=1;i<=4;i++) base[i]=x[i+3]}
       {n=split($0,x," "); printf "%-22s", x[1]" "x[2]; for(i=n-3;i<=n;i++) printf " %10.2f", x[i]/base[i-n+4]; print ""}' \
    <(sed -n 1p "$work/results"; sed -n '1,$p' "$work/results") | tail -n +2 | sed 's/^/ratio to berthd: /'
else
  echo
  echo "no /usr/bin/dockerd here: compare with the issue's figures on the same shape"
  echo "(BuildKit cold 1100, cached 110-300, last-COPY 130-170; legacy cold 4500, cached 460-590, last-COPY 450-720)"
  read -r _ _ _ c k l s <"$work/results"
  awk -v c="$c" -v k="$k" -v l="$l" -v s="$s" -v sl="$SLEEP" 'BEGIN{
    printf "BuildKit/berthd ratios: cold %.2f, cached %.2f-%.2f, last-COPY %.2f-%.2f\n", 1100/c, 110/k, 300/k, 130/l, 170/l;
    printf "three independent stages of %ds each: %.2f s (longest alone: %d s)\n", sl, s/1000, sl }'
fi
