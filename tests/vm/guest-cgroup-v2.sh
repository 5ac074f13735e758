#!/bin/bash
# PID 1 of the VM that tests/vm/boot.sh starts: checks Berth's containers on a pure cgroup v2
# hierarchy (cgroup2 at /sys/fs/cgroup, no v1 controller mounted anywhere), with the real
# berthd and berth binaries of the workspace. tests/tests/cgroup_v2_vm.rs drives it.
#
#   guest-cgroup-v2.sh WORK   (WORK: the read-write share, /run/work)
#
# Inputs in WORK: vm.env (BIN_DIR=the host's target dir holding berthd, berth, berth-shim),
# busybox.tar (a docker-archive image). Output: WORK/results.txt, one line per fact:
#   INFO key value...    PASS check    FAIL check: why    DONE
# and the logs guest.log (this script's output and trace) and berthd.log. The VM powers off at
# the end.

work=$1
out=$work/results.txt
exec >"$work/guest.log" 2>&1
# The trace, with timestamps, is what to read when a check fails or the run is slow. It has
# its own descriptor so that the checks' `2>&1` captures do not collect it.
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
# check NAME EXPECTED ACTUAL: PASS when equal.
check() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}

berthd_pid=
finish() {
  if [ -n "$berthd_pid" ]; then
    kill "$berthd_pid" 2>/dev/null
    wait "$berthd_pid" 2>/dev/null
  fi
  result DONE
  sync
  /bin/busybox poweroff -f
}

info guest_start_uptime "$(cut -d' ' -f1 /proc/uptime)"
info kernel "$(uname -r)"

# ---- the hierarchy: cgroup2 only, controllers delegated from the root ----
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
echo "+cpu +cpuset +memory +pids +io" >/sys/fs/cgroup/cgroup.subtree_control
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t mqueue mqueue /dev/mqueue
modprobe overlay
ip link set lo up 2>/dev/null

v1=$(awk '$3 == "cgroup"' /proc/mounts | wc -l)
v2=$(awk '$2 == "/sys/fs/cgroup" && $3 == "cgroup2"' /proc/mounts | wc -l)
check hierarchy_is_v2_only "0 1" "$v1 $v2"
check controllers_delegated "cpuset cpu io memory pids" \
  "$(tr ' ' '\n' </sys/fs/cgroup/cgroup.subtree_control | grep -xE 'cpuset|cpu|io|memory|pids' | tr '\n' ' ' | sed 's/ $//')"

# ---- the daemon ----
# shellcheck disable=SC1091
. "$work/vm.env"
berth() { "$BIN_DIR/berth" -H unix:///run/berth.sock "$@"; }
mkdir -p /run/berth
echo '{}' >/run/berth/daemon.json
"$BIN_DIR/berthd" --data-root /run/berth/root --exec-root /run/berth/exec \
  --host unix:///run/berth.sock --config-file /run/berth/daemon.json \
  --bridge none --iptables=false --log-level debug >"$work/berthd.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 600); do
  berth version >/dev/null 2>&1 && break
  sleep 0.1
done
if ! berth version >/dev/null 2>&1; then
  fail daemon_starts "berthd did not answer (see berthd.log)"
  finish
fi
pass daemon_starts
check info_cgroup_version "2 cgroupfs" "$(berth info --format '{{.CgroupVersion}} {{.CgroupDriver}}')"
if ! berth load -q -i "$work/busybox.tar" >/dev/null; then
  fail image_loads "berth load failed"
  finish
fi
pass image_loads

# The cgroup v2 directory of a running container, from its init's /proc/PID/cgroup.
cgroup_of() {
  local pid
  pid=$(berth inspect --format '{{.State.Pid}}' "$1")
  echo "/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$pid/cgroup")"
}

# ---- limits at create, in the cgroup files and in inspect ----
id=$(berth run -d --name lim --network none --memory 64m --memory-swap 128m \
  --memory-reservation 32m --pids-limit 50 --cpus 0.5 --cpu-shares 512 \
  --cpuset-cpus 0 --cpuset-mems 0 --blkio-weight 300 busybox sleep 1000)
cg=$(cgroup_of lim)
check cgroup_path "/sys/fs/cgroup/berth/$id" "$cg"
check memory_max 67108864 "$(cat "$cg/memory.max")"
# v2 limits swap alone: --memory-swap (memory + swap) minus --memory.
check memory_swap_max 67108864 "$(cat "$cg/memory.swap.max")"
check memory_low 33554432 "$(cat "$cg/memory.low")"
check pids_max 50 "$(cat "$cg/pids.max")"
check cpu_max_from_cpus "50000 100000" "$(cat "$cg/cpu.max")"
# runc's shares → weight: 1 + (512 - 2) * 9999 / 262142.
check cpu_weight 20 "$(cat "$cg/cpu.weight")"
check cpuset_cpus 0 "$(cat "$cg/cpuset.cpus")"
check cpuset_mems 0 "$(cat "$cg/cpuset.mems")"
if [ -e "$cg/io.bfq.weight" ]; then
  check io_weight "default 300" "$(head -1 "$cg/io.bfq.weight")"
else
  # 10..1000 onto 1..10000: 1 + (300 - 10) * 9999 / 990 = 2930.
  check io_weight "default 2930" "$(head -1 "$cg/io.weight")"
fi
check inspect_resources "67108864 134217728 33554432 50 500000000 512 0 0 300" \
  "$(berth inspect --format '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.MemoryReservation}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.CpusetCpus}} {{.HostConfig.CpusetMems}} {{.HostConfig.BlkioWeight}}' lim)"

# ---- cgroup namespace: private by default on v2, as Docker's ----
check cgroupns_mode_private private "$(berth inspect --format '{{.HostConfig.CgroupnsMode}}' lim)"
check cgroupns_private_root "0::/" "$(berth exec lim cat /proc/self/cgroup)"
check cgroupns_private_sees_own_limit 67108864 "$(berth exec lim cat /sys/fs/cgroup/memory.max)"
hid=$(berth run -d --name hostns --network none --cgroupns host busybox sleep 1000)
check cgroupns_host "0::/berth/$hid" "$(berth exec hostns cat /proc/self/cgroup)"
berth rm -f hostns >/dev/null

# ---- --oom-kill-disable: v2 cannot disable the OOM killer; Docker warns and discards it ----
warning=$(berth create --name nooom --network none --memory 32m --oom-kill-disable busybox true 2>&1 >/dev/null)
check oom_kill_disable_warns "WARNING: Your kernel does not support OomKillDisable. OomKillDisable discarded." "$warning"
check oom_kill_disable_discarded null "$(berth inspect --format '{{json .HostConfig.OomKillDisable}}' nooom)"
berth rm nooom >/dev/null

# ---- period/quota ----
berth run -d --name quota --network none --cpu-period 50000 --cpu-quota 20000 busybox sleep 1000 >/dev/null
check cpu_max_from_period_quota "20000 50000" "$(cat "$(cgroup_of quota)/cpu.max")"
berth rm -f quota >/dev/null

# ---- update changes the live cgroup ----
if berth update --memory 96m --pids-limit 60 --cpus 0.25 --cpu-shares 1024 lim >/dev/null; then
  check update_memory_max 100663296 "$(cat "$cg/memory.max")"
  # The swap limit stays 128m (memory + swap): 32m of swap.
  check update_memory_swap_max 33554432 "$(cat "$cg/memory.swap.max")"
  check update_pids_max 60 "$(cat "$cg/pids.max")"
  check update_cpu_max "25000 100000" "$(cat "$cg/cpu.max")"
  check update_cpu_weight 39 "$(cat "$cg/cpu.weight")"
  check update_inspect "100663296 60 250000000 1024" \
    "$(berth inspect --format '{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}' lim)"
else
  fail update "berth update failed"
fi

# ---- stats ----
stats=$(berth stats --no-stream --format '{{.MemUsage}}|{{.PIDs}}' lim)
usage=${stats%% / *}
limit=${stats#* / }
limit=${limit%%|*}
check stats_memory_limit 96MiB "$limit"
case "$usage" in
  0B | "") fail stats_memory_usage "no usage in '$stats'" ;;
  *B) pass stats_memory_usage ;;
  *) fail stats_memory_usage "unexpected '$stats'" ;;
esac
check stats_pids 1 "${stats##*|}"

# ---- pause / unpause: the v2 freezer ----
if berth pause lim >/dev/null; then
  check pause_cgroup_freeze 1 "$(cat "$cg/cgroup.freeze")"
  check pause_frozen "frozen 1" "$(grep '^frozen ' "$cg/cgroup.events")"
  check pause_state "true paused" "$(berth inspect --format '{{.State.Paused}} {{.State.Status}}' lim)"
  berth unpause lim >/dev/null
  check unpause_cgroup_freeze 0 "$(cat "$cg/cgroup.freeze")"
  check unpause_frozen "frozen 0" "$(grep '^frozen ' "$cg/cgroup.events")"
  check unpause_state "false running" "$(berth inspect --format '{{.State.Paused}} {{.State.Status}}' lim)"
  check unpause_exec_runs ok "$(berth exec lim echo ok)"
else
  fail pause "berth pause failed"
fi

# ---- devices: the eBPF device program libcontainer attaches on v2 ----
check device_null_writable ok "$(berth exec lim sh -c 'echo x >/dev/null && echo ok')"
check device_urandom_readable 4 "$(berth exec lim sh -c 'head -c 4 /dev/urandom | wc -c')"
# mknod is allowed ("c *:* m"), using a node outside Docker's list is not. /dev/kmsg (c 1:11)
# can be written without any capability, so only the device rule can refuse it.
check device_mknod_allowed ok "$(berth exec lim sh -c 'mknod /tmp/kmsg c 1 11 && echo ok')"
denied=$(berth exec lim sh -c 'echo berth >/tmp/kmsg && echo opened' 2>&1)
case "$denied" in
  *"Operation not permitted"*) pass device_default_deny ;;
  *) fail device_default_deny "writing a c 1:11 node gave '$denied'" ;;
esac
# The same node with a rule that allows it: only the device filter decided above.
check device_cgroup_rule_allows ok \
  "$(berth run --rm --network none --device-cgroup-rule 'c 1:11 w' busybox sh -c 'mknod /tmp/kmsg c 1 11 && echo berth-rule-test >/tmp/kmsg && echo ok' 2>&1)"
check device_flag_allows ok \
  "$(berth run --rm --network none --device /dev/kmsg busybox sh -c 'echo berth-device-test >/dev/kmsg && echo ok' 2>&1)"

# ---- a fork bomb is held by pids.max ----
# The container's init forks only twice, before the bomb starts: the sleep, which keeps the
# container up (`wait`), and a second shell that runs the bomb. A shell that fails to fork exits,
# so had init run the bomb itself, a slow VM could let the bomb's children take the last pids
# before init's own second fork and end the container.
berth run -d --name bomb --network none --pids-limit 30 busybox \
  sh -c 'sleep 1000 & sh -c "b() { b | b & }; b"; wait' >/dev/null
bcg=$(cgroup_of bomb)
# An ended container has no cgroup: say so rather than check the hierarchy's root.
[ "$bcg" != /sys/fs/cgroup ] ||
  fail pids_limit_holds_fork_bomb "the container is not running: $(berth inspect --format '{{.State.Status}} {{.State.ExitCode}}' bomb) $(berth logs bomb 2>&1 | tail -3)"
for _ in $(seq 100); do
  grep -q '^max [1-9]' "$bcg/pids.events" && break
  sleep 0.1
done
current=$(cat "$bcg/pids.current")
if grep -q '^max [1-9]' "$bcg/pids.events" && [ "$current" -le 30 ]; then
  pass pids_limit_holds_fork_bomb
else
  fail pids_limit_holds_fork_bomb "pids.current $current, $(tr '\n' ' ' <"$bcg/pids.events")"
fi
berth rm -f bomb >/dev/null
if [ -d "$bcg" ]; then fail bomb_cgroup_removed "$bcg is still there"; else pass bomb_cgroup_removed; fi

# ---- OOM: exit 137, State.OOMKilled, an oom event ----
since=$(date +%s)
berth run --name oom --network none --memory 32m --memory-swap 32m busybox \
  sh -c 'x=0123456789; while true; do x=$x$x; done' >/dev/null 2>&1
check oom_exit_code 137 "$?"
check oom_state "true 137" "$(berth inspect --format '{{.State.OOMKilled}} {{.State.ExitCode}}' oom)"
check oom_event oom "$(berth events --since "$since" --until "$(($(date +%s) + 1))" \
  --filter container=oom --filter event=oom --format '{{.Action}}' | head -1)"
berth rm oom >/dev/null

# ---- the cgroup goes with the container ----
berth rm -f lim >/dev/null
if [ -d "$cg" ]; then fail cgroup_removed "$cg is still there"; else pass cgroup_removed; fi
check no_cgroups_left "" "$(find /sys/fs/cgroup/berth -mindepth 1 -type d 2>/dev/null)"

finish
