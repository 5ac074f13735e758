#!/bin/bash
# PID 1 of the VM that tests/vm/boot.sh starts: checks a rootless berthd's use of a delegated
# cgroup v2 subtree (issue 18), on a pure cgroup2 hierarchy, with the real berthd and berth
# binaries of the workspace. tests/tests/cgroup_v2_vm.rs (rootless_cgroup_v2_in_a_vm) drives it.
#
#   guest-rootless-cgroup-v2.sh WORK   (WORK: the read-write share, /run/work)
#
# A throw-away user (in bind-mounted copies of /etc/passwd, /etc/group, /etc/subuid and
# /etc/subgid: the guest's / is the host's, read-only) starts berthd in three cgroups:
#   - delegated as systemd's Delegate=yes does (the directory and its cgroup.procs,
#     cgroup.subtree_control and cgroup.threads chowned to the user), all controllers:
#     limits apply in the containers' cgroups under it, pause freezes them;
#   - delegated with only memory and pids: those apply, the others are discarded with
#     dockerd's warnings;
#   - not delegated (root's): the daemon starts without cgroups, with the warnings.
# newuidmap, newgidmap and slirp4netns are the host's. Output as guest-cgroup-v2.sh:
# WORK/results.txt (INFO/PASS/FAIL lines, DONE), guest.log, berthd-*.log.

work=$1
out=$work/results.txt
exec >"$work/guest.log" 2>&1
exec 9>>"$work/guest.log"
BASH_XTRACEFD=9
PS4='+ ${EPOCHREALTIME} '
set -x
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/run/home TMPDIR=/run/tmp
mkdir -p "$HOME" "$TMPDIR"
: >"$out"

result() { echo "$*" >>"$out"; }
info() { result "INFO $*"; }
pass() { result "PASS $1"; }
fail() { result "FAIL $1: $2"; }
check() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}
# contains NAME NEEDLE TEXT: PASS when TEXT contains NEEDLE.
contains() {
  case "$3" in
    *"$2"*) pass "$1" ;;
    *) fail "$1" "no '$2' in '$3'" ;;
  esac
}

daemon_pid=
stop_daemon() {
  if [ -n "$daemon_pid" ]; then
    kill "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
    daemon_pid=
  fi
}
finish() {
  stop_daemon
  result DONE
  sync
  /bin/busybox poweroff -f
}

info guest_start_uptime "$(cut -d' ' -f1 /proc/uptime)"
info kernel "$(uname -r)"

mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
echo "+cpu +cpuset +memory +pids +io" >/sys/fs/cgroup/cgroup.subtree_control
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t mqueue mqueue /dev/mqueue
modprobe overlay
modprobe tun
# udev would make it 0666 (slirp4netns opens it as the user).
chmod 666 /dev/net/tun
ip link set lo up 2>/dev/null

# shellcheck disable=SC1091
. "$work/vm.env"
for p in newuidmap newgidmap slirp4netns setpriv; do
  if ! command -v "$p" >/dev/null; then
    fail tools "$p is missing (the host's: apt-get install uidmap slirp4netns)"
    finish
  fi
done

# ---- the user ----
user=berthrl
uid=61234
mkdir -p /run/etc
for f in passwd group subuid subgid; do
  cp "/etc/$f" "/run/etc/$f" 2>/dev/null || : >"/run/etc/$f"
done
echo "$user:x:$uid:$uid::/run/rl/home:/bin/sh" >>/run/etc/passwd
echo "$user:x:$uid:" >>/run/etc/group
echo "$user:300000:65536" >>/run/etc/subuid
echo "$user:300000:65536" >>/run/etc/subgid
for f in passwd group subuid subgid; do
  mount --bind "/run/etc/$f" "/etc/$f"
done
mkdir -p /run/rl
chmod 755 /run/rl
cp "$work/busybox.tar" /run/rl/busybox.tar
chmod 644 /run/rl/busybox.tar

as_user() {
  setpriv --reuid "$uid" --regid "$uid" --clear-groups \
    env -i HOME=/run/rl/home XDG_RUNTIME_DIR=/run/rl/run PATH="$PATH" "$@"
}
rlberth() { as_user "$BIN_DIR/berth" -H unix:///run/rl/run/berth.sock "$@"; }

# start_daemon CGROUP LOG: the user's berthd, started in CGROUP (as a login would put it).
# Fresh directories each time: the previous daemon's containers went with its namespaces.
start_daemon() {
  rm -rf /run/rl/home /run/rl/run
  mkdir -p /run/rl/home /run/rl/run
  chown "$uid:$uid" /run/rl/home /run/rl/run
  chmod 700 /run/rl/run
  sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$1" \
    setpriv --reuid "$uid" --regid "$uid" --clear-groups \
    env -i HOME=/run/rl/home XDG_RUNTIME_DIR=/run/rl/run PATH="$PATH" \
    "$BIN_DIR/berthd" --log-level debug >"$work/$2" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 900); do
    rlberth version >/dev/null 2>&1 && return 0
    kill -0 "$daemon_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# delegate DIR: a cgroup the user may manage, as systemd's Delegate=yes makes it.
delegate() {
  mkdir "$1"
  chown "$uid:$uid" "$1" "$1/cgroup.procs" "$1/cgroup.subtree_control" "$1/cgroup.threads"
}

# ---- 1. a delegated cgroup with every controller ----
cg=/sys/fs/cgroup/rl-full
delegate "$cg"
if ! start_daemon "$cg" berthd-delegated.log; then
  fail rl_daemon_starts "the rootless berthd did not answer (see berthd-delegated.log)"
  finish
fi
pass rl_daemon_starts
check rl_daemon_in_leaf "" "$(cat "$cg/cgroup.procs")"
contains rl_daemon_leaf_procs "$daemon_pid" "$(cat "$cg/berthd/cgroup.procs")"
check rl_controllers_enabled "cpuset cpu io memory pids" "$(cat "$cg/cgroup.subtree_control")"
check rl_info_cgroup "2 cgroupfs" "$(rlberth info --format '{{.CgroupVersion}} {{.CgroupDriver}}')"
contains rl_info_rootless name=rootless "$(rlberth info --format '{{json .SecurityOptions}}')"
check rl_info_limits "true true true" \
  "$(rlberth info --format '{{.MemoryLimit}} {{.PidsLimit}} {{.CpuCfsQuota}}')"
check rl_info_no_warnings "[]" "$(rlberth info --format '{{json .Warnings}}')"
if ! rlberth load -q -i /run/rl/busybox.tar >/dev/null; then
  fail rl_image_loads "berth load failed"
  finish
fi
pass rl_image_loads
runout=$(rlberth run -d --name lim --network none --memory 64m --pids-limit 40 --cpus 0.5 \
  busybox sleep 600 2>&1)
check rl_run_no_warning "" "$(echo "$runout" | grep -i warning)"
id=$(rlberth inspect --format '{{.Id}}' lim)
ccg=$cg/berth/$id
if [ -d "$ccg" ]; then pass rl_container_cgroup; else fail rl_container_cgroup "no $ccg"; fi
check rl_memory_max 67108864 "$(cat "$ccg/memory.max")"
check rl_pids_max 40 "$(cat "$ccg/pids.max")"
check rl_cpu_max "50000 100000" "$(cat "$ccg/cpu.max")"
check rl_inspect_limits "67108864 40 500000000" \
  "$(rlberth inspect --format '{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}' lim)"
check rl_container_sees_limit 67108864 "$(rlberth exec lim cat /sys/fs/cgroup/memory.max)"
contains rl_stats_limit "/ 64MiB" "$(rlberth stats --no-stream --format '{{.MemUsage}}' lim)"
# --pids-limit holds: forks beyond 40 processes fail in the container (pids.events counts them).
rlberth exec lim sh -c 'for i in $(seq 60); do sleep 30 & done' >/dev/null 2>&1
cur=$(cat "$ccg/pids.current")
hits=$(sed -n 's/^max //p' "$ccg/pids.events")
if [ "$cur" -le 40 ] && [ "${hits:-0}" -gt 0 ]; then pass rl_pids_limit_holds; else
  fail rl_pids_limit_holds "pids.current $cur, pids.events max ${hits:-none}"
fi
if rlberth pause lim >/dev/null; then
  check rl_pause_freeze 1 "$(cat "$ccg/cgroup.freeze")"
  check rl_pause_state "true paused" "$(rlberth inspect --format '{{.State.Paused}} {{.State.Status}}' lim)"
  rlberth unpause lim >/dev/null
  check rl_unpause_freeze 0 "$(cat "$ccg/cgroup.freeze")"
  check rl_unpause_state running "$(rlberth inspect --format '{{.State.Status}}' lim)"
else
  fail rl_pause_freeze "berth pause failed"
fi
rlberth update --memory 128m --memory-swap 256m --pids-limit 60 lim >/dev/null
check rl_update_limits "134217728 60" "$(cat "$ccg/memory.max") $(cat "$ccg/pids.max")"
# The docker CLI (the host's, when installed) against the rootless daemon.
if [ -x /usr/local/bin/docker ]; then
  check rl_docker_cli_memory 33554432 "$(as_user env DOCKER_HOST=unix:///run/rl/run/berth.sock \
    DOCKER_CONFIG=/run/rl/home/.docker /usr/local/bin/docker run --rm --network none \
    --memory 32m busybox cat /sys/fs/cgroup/memory.max 2>&1)"
fi
rlberth rm -f lim >/dev/null
if [ -d "$ccg" ]; then fail rl_cgroup_removed "$ccg is still there"; else pass rl_cgroup_removed; fi
stop_daemon

# ---- 2. a delegated cgroup with memory and pids only ----
mkdir /sys/fs/cgroup/rl-part
echo "+memory +pids" >/sys/fs/cgroup/rl-part/cgroup.subtree_control
cg=/sys/fs/cgroup/rl-part/user
delegate "$cg"
if ! start_daemon "$cg" berthd-partial.log; then
  fail rl_partial_daemon_starts "the rootless berthd did not answer (see berthd-partial.log)"
  finish
fi
pass rl_partial_daemon_starts
check rl_partial_info "true true false" \
  "$(rlberth info --format '{{.MemoryLimit}} {{.PidsLimit}} {{.CpuCfsQuota}}')"
contains rl_partial_info_warning "No cpu cfs quota support" "$(rlberth info --format '{{json .Warnings}}')"
rlberth load -q -i /run/rl/busybox.tar >/dev/null
runout=$(rlberth run -d --name part --network none --memory 64m --cpus 0.5 busybox sleep 600 2>&1)
contains rl_partial_cpus_warning "CPUs discarded" "$runout"
check rl_partial_no_memory_warning "" "$(echo "$runout" | grep -i 'memory limit')"
id=$(rlberth inspect --format '{{.Id}}' part)
check rl_partial_memory_max 67108864 "$(cat "$cg/berth/$id/memory.max" 2>&1)"
check rl_partial_inspect "67108864 0" \
  "$(rlberth inspect --format '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}' part)"
rlberth rm -f part >/dev/null
stop_daemon

# ---- 3. no delegation: a cgroup of root's ----
cg=/sys/fs/cgroup/rl-none
mkdir "$cg"
if ! start_daemon "$cg" berthd-undelegated.log; then
  fail rl_undelegated_daemon_starts "the rootless berthd did not answer (see berthd-undelegated.log)"
  finish
fi
pass rl_undelegated_daemon_starts
check rl_undelegated_info "2 none" "$(rlberth info --format '{{.CgroupVersion}} {{.CgroupDriver}}')"
contains rl_undelegated_info_warning "without cgroups" "$(rlberth info --format '{{json .Warnings}}')"
rlberth load -q -i /run/rl/busybox.tar >/dev/null
runout=$(rlberth run --rm --network none --memory 64m busybox echo ran 2>&1)
contains rl_undelegated_memory_warning "Limitation discarded" "$runout"
contains rl_undelegated_runs ran "$runout"
check rl_undelegated_nothing_made "" "$(find "$cg" -mindepth 1 -type d)"
stop_daemon

finish
