#!/usr/bin/env bash
# Benchmark: the cost of TLS on the API, against the unix socket.
#  - per request on a kept-alive connection (curl sends REQS requests over one connection):
#    what TLS adds once the handshake is done (the promise: under 3 ms);
#  - per command, a connection (and so a handshake) each time, as the CLIs connect:
#    `version` and `run --rm IMAGE true`, with berth and with the docker CLI when installed;
#  - `version` over ssh:// through `system dial-stdio` (a stand-in ssh that runs it locally, so
#    the figure is the relay's cost, not sshd's).
# Prints figures; asserts nothing. Run as root from the repository: bash bench/remote.sh
# (BIN_DIR=target/debug bash bench/remote.sh for a debug build's figures).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}
REQS=${REQS:-200}
if [ -n "${BIN_DIR:-}" ]; then
  bin=$(realpath "$BIN_DIR")
else
  cargo build --release -q -p berthd -p berth-cli -p berth-runtime --bins
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi

work=$(mktemp -d /tmp/berth-bench-remote-XXXXXX)
daemon_pid=""
cgroup_parent="/berth-bench-remote-$$"
cleanup() {
  if [ -n "$daemon_pid" ]; then
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$ctl$cgroup_parent" ] && find "$ctl$cgroup_parent" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  umount -l "$work/run" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A CA, the daemon's certificate (127.0.0.1) and a client's, as docs/remote-access.md makes them.
pki=$work/pki
mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 1 -subj "/CN=bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj "/CN=localhost"
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 -extfile server.ext -out server-cert.pem
  openssl req -newkey rsa:2048 -nodes -keyout key.pem -out client.csr -subj "/CN=client"
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 -extfile client.ext -out cert.pem
) >/dev/null 2>&1

# A busybox image from Debian's busybox-static.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh true; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/root" "$work/run"
echo '{}' >"$work/daemon.json"
"$bin/berthd" --data-root "$work/root" --exec-root "$work/run" --config-file "$work/daemon.json" \
  --bridge none --iptables=false --cgroup-parent "$cgroup_parent" --log-level warn \
  -H "unix://$work/berth.sock" -H "tcp://127.0.0.1:$port" \
  --tlsverify --tlscacert "$pki/ca.pem" --tlscert "$pki/server-cert.pem" --tlskey "$pki/server-key.pem" \
  2>"$work/berthd.log" &
daemon_pid=$!
for _ in $(seq 1 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
unix=(-H "unix://$work/berth.sock")
tls=(-H "tcp://127.0.0.1:$port" --tlsverify --tlscacert "$pki/ca.pem" --tlscert "$pki/cert.pem" --tlskey "$pki/key.pem")
"$bin/berth" "${unix[@]}" import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/busybox:latest >/dev/null

usec() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }
# median_ms CMD...: the median wall time of RUNS runs, in ms (two warm-up runs first).
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
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p" | awk '{printf "%.2f", $1 / 1000}'
}

# Kept-alive connection: curl sends REQS pings over one connection (one handshake), the
# median of RUNS such batches, per request.
urls() { for _ in $(seq 1 "$REQS"); do printf '%s ' "$1"; done; }
# shellcheck disable=SC2046
per_req_unix=$(median_ms curl -sf -o /dev/null --unix-socket "$work/berth.sock" $(urls http://berth/_ping))
# shellcheck disable=SC2046
per_req_tls=$(median_ms curl -sf -o /dev/null --cacert "$pki/ca.pem" --cert "$pki/cert.pem" --key "$pki/key.pem" $(urls "https://127.0.0.1:$port/_ping"))
per_req_tls_cmd() { curl -sf -o /dev/null --cacert "$pki/ca.pem" --cert "$pki/cert.pem" --key "$pki/key.pem" "https://127.0.0.1:$port/_ping"; }
handshake=$(median_ms per_req_tls_cmd)

printf '\n%-52s %10s %10s %10s\n' "median of $RUNS, ms" "unix" "TLS tcp" "added"
row() { printf '%-52s %10s %10s %10s\n' "$1" "$2" "$3" "$(awk "BEGIN{printf \"%.2f\", $3 - $2}")"; }
row "GET /_ping, kept-alive connection, per request" \
  "$(awk "BEGIN{printf \"%.3f\", $per_req_unix / $REQS}")" "$(awk "BEGIN{printf \"%.3f\", $per_req_tls / $REQS}")"
printf '%-52s %10s %10s\n' "curl, one /_ping with its own TLS handshake" "" "$handshake"
row "berth version" "$(median_ms "$bin/berth" "${unix[@]}" version)" "$(median_ms "$bin/berth" "${tls[@]}" version)"
row "berth run --rm IMAGE true" \
  "$(median_ms "$bin/berth" "${unix[@]}" run --rm --network none bench/busybox true)" \
  "$(median_ms "$bin/berth" "${tls[@]}" run --rm --network none bench/busybox true)"
if command -v docker >/dev/null 2>&1; then
  export DOCKER_CONFIG=$work/docker-config
  row "docker version" "$(median_ms docker "${unix[@]}" version)" "$(median_ms docker "${tls[@]}" version)"
  row "docker run --rm IMAGE true" \
    "$(median_ms docker "${unix[@]}" run --rm --network none bench/busybox true)" \
    "$(median_ms docker "${tls[@]}" run --rm --network none bench/busybox true)"
fi

# ssh:// through dial-stdio: a stand-in ssh that runs the remote command here.
mkdir -p "$work/fake-bin"
cat >"$work/fake-bin/ssh" <<EOF
#!/bin/sh
while [ "\$#" -gt 0 ] && [ "\$1" != "--" ]; do shift; done
shift; shift; shift
exec "$bin/berth" "\$@"
EOF
chmod +x "$work/fake-bin/ssh"
ssh_ms=$(PATH="$work/fake-bin:$PATH" median_ms "$bin/berth" -H "ssh://bench@localhost$work/berth.sock" version)
printf '\n%-52s %10s %10s %10s\n' "" "unix" "ssh://" "added"
row "berth version (stand-in ssh, dial-stdio)" "$(median_ms "$bin/berth" "${unix[@]}" version)" "$ssh_ms"
