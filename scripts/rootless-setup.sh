#!/usr/bin/env bash
# Prepares an ordinary user for a rootless berthd (docs/rootless.md). Run as root:
#   scripts/rootless-setup.sh USER [PATH-TO-BERTHD]
# - checks for newuidmap/newgidmap (package uidmap) and slirp4netns, and says what to install;
# - gives USER 65536 subordinate uids and gids (/etc/subuid, /etc/subgid) when it has none,
#   after the highest range in use (from 100000 up), with usermod;
# - installs the systemd user unit as ~USER/.config/systemd/user/berthd.service and enables
#   lingering, so that the daemon runs without a login session.
# Safe to run again: nothing is added twice.
set -euo pipefail

user=${1:?usage: $0 USER [PATH-TO-BERTHD]}
berthd=${2:-$(command -v berthd || true)}
here=$(cd "$(dirname "$0")" && pwd)

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
id "$user" >/dev/null 2>&1 || { echo "no such user: $user" >&2; exit 1; }
missing=()
for prog in newuidmap newgidmap slirp4netns; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("$prog")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]} (apt-get install uidmap slirp4netns)" >&2
  exit 1
fi

uid=$(id -u "$user")
# The first free id after every range in the file, at least 100000.
next_free() {
  awk -F: 'NF >= 3 { end = $2 + $3; if (end > max) max = end } END { print (max > 100000 ? max : 100000) }' "$1" 2>/dev/null || echo 100000
}
has_range() {
  awk -F: -v u="$user" -v id="$uid" '($1 == u || $1 == id) && $3 > 0 { found = 1 } END { exit !found }' "$1" 2>/dev/null
}
if has_range /etc/subuid; then
  echo "$user already has subordinate uids: $(grep -E "^($user|$uid):" /etc/subuid | head -1)"
else
  start=$(next_free /etc/subuid)
  usermod --add-subuids "$start-$((start + 65535))" "$user"
  echo "gave $user subordinate uids $start-$((start + 65535))"
fi
if has_range /etc/subgid; then
  echo "$user already has subordinate gids: $(grep -E "^($user|$uid):" /etc/subgid | head -1)"
else
  start=$(next_free /etc/subgid)
  usermod --add-subgids "$start-$((start + 65535))" "$user"
  echo "gave $user subordinate gids $start-$((start + 65535))"
fi

if [ -z "$berthd" ]; then
  echo "berthd not found: pass its path as the second argument to install the systemd unit" >&2
  exit 0
fi
home=$(getent passwd "$user" | cut -d: -f6)
unit_dir="$home/.config/systemd/user"
install -d -o "$user" -g "$(id -g "$user")" "$home/.config" "$home/.config/systemd" "$unit_dir"
sed "s|BERTHD|$berthd|" "$here/berthd-rootless.service" >"$unit_dir/berthd.service"
chown "$user:$(id -g "$user")" "$unit_dir/berthd.service"
echo "installed $unit_dir/berthd.service"
if command -v loginctl >/dev/null 2>&1; then
  loginctl enable-linger "$user" && echo "enabled lingering for $user"
fi
cat <<MSG
As $user:
  systemctl --user daemon-reload
  systemctl --user enable --now berthd
  berth info          # finds \$XDG_RUNTIME_DIR/berth.sock by itself
MSG
