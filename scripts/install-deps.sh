#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Berth needs to build, run and test. Safe to run again:
# it only calls apt when something is missing. Needs root.
set -euo pipefail

packages=(
  busybox-static   # test and demo images are assembled from it; nothing is downloaded
  pkg-config
  libc6-dev        # glibc's static libc.a: the container init (--init) is linked statically
  libseccomp-dev   # the container runtime's seccomp filters
  libelf-dev       # libbpf (built by libbpf-sys) for the cgroup v2 device filter (eBPF)
  zlib1g-dev       # libbpf links zlib too
  nftables         # NAT and port publishing (berth-network drives `nft -j`)
  iptables         # accept rules for Berth's bridges when Docker set iptables' FORWARD policy to DROP
  iproute2         # network namespaces in tests
  ca-certificates
  uidmap           # rootless berthd: newuidmap and newgidmap map its user namespace
  slirp4netns      # rootless berthd: the containers' outbound networking
  git              # git build contexts (`berth build <git URL>`, `remote=` a git URL on the daemon)
  openssh-client   # `berth build --ssh id=KEYFILE` starts an ssh-agent; the ssh mount tests use it
)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install a Rust toolchain (https://rustup.rs) and run this again" >&2
  exit 1
fi
