#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, build Berth, start berthd on its
# default socket, make a busybox image from Debian's busybox-static and run containers from it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --bins
export PATH="$PWD/target/release:$PATH"

sock=/run/berth/berth.sock
if ! berth -H "unix://$sock" version >/dev/null 2>&1; then
  mkdir -p /var/log
  echo "starting berthd (log: /var/log/berthd.log)"
  nohup berthd >>/var/log/berthd.log 2>&1 &
  for _ in $(seq 1 100); do
    [ -S "$sock" ] && berth version >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

# A busybox image: a root filesystem with busybox and its applets, imported as an image.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/root"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ -e "$work/rootfs/bin/$applet" ] || ln -s busybox "$work/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
echo 'root:x:0:' >"$work/rootfs/etc/group"
tar -C "$work/rootfs" -c . | berth import -c 'CMD ["sh"]' -c 'ENV PATH=/bin' - busybox:latest

berth save -o "$work/busybox.tar" busybox:latest
berth load -i "$work/busybox.tar"
berth images

# The main job: a container.
berth run --rm busybox sh -c 'echo "hello from container $(hostname), pid $$, as $(id -un)"'
berth run -d --name berth-demo --memory 64m --pids-limit 50 busybox sleep 300 >/dev/null
berth exec berth-demo ps
berth ps
berth rm -f berth-demo >/dev/null

# A published port, a user network with DNS by name, and a volume that outlives its containers.
berth network create berth-demo-net >/dev/null
berth volume create berth-demo-data >/dev/null
berth run -d --name berth-demo-web --network berth-demo-net -p 127.0.0.1:18080:80 \
  -v berth-demo-data:/www busybox sh -c 'echo "served by $(hostname)" > /www/index.html; httpd -f -h /www' >/dev/null
for _ in $(seq 1 50); do
  busybox wget -qO- http://127.0.0.1:18080/ 2>/dev/null && break
  sleep 0.1
done
berth run --rm --network berth-demo-net busybox wget -qO- http://berth-demo-web/
berth rm -f berth-demo-web >/dev/null
berth run --rm -v berth-demo-data:/data busybox cat /data/index.html
berth volume rm berth-demo-data >/dev/null
berth network rm berth-demo-net >/dev/null
