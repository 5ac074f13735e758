#!/usr/bin/env bash
# Boots a throw-away VM whose root filesystem is this host's own `/`, shared read-only over
# virtio 9p, and runs one script in it as PID 1 (e.g. tests/vm/guest-cgroup-v2.sh, which checks
# Berth on a pure cgroup v2 hierarchy). The end-to-end test tests/tests/cgroup_v2_vm.rs drives it.
# In the guest only /run is a fresh tmpfs (and /dev, /proc, /sys are its own): everything else,
# /tmp included, is the host's, read-only, so a checkout or target dir anywhere is visible.
#
#   tests/vm/boot.sh WORK_DIR GUEST_SCRIPT
#
# WORK_DIR/share is shared read-write with the guest at /run/work (inputs in, results out;
# the guest script is copied there and run as /run/work/guest.sh);
# the initramfs and the serial console log (WORK_DIR/console.log) are written to WORK_DIR.
# The script ends by exec'ing qemu, so its pid is the VM's: kill it to stop the VM.
#
# Environment:
#   BERTH_VM_KERNEL  the kernel image (default: the newest /boot/vmlinuz-* whose modules
#                    include 9p; Debian's linux-image-amd64 has them, the -cloud flavour not)
#   BERTH_VM_ACCEL   kvm or tcg (default: kvm when /dev/kvm is usable and the CPU shows
#                    hardware virtualization (vmx/svm), tcg otherwise)
#   BERTH_VM_MEMORY  guest memory in MiB (default 1536)
set -euo pipefail

die() {
  echo "boot.sh: $*" >&2
  exit 2
}

[ $# -eq 2 ] || die "usage: boot.sh WORK_DIR GUEST_SCRIPT"
work=$(realpath "$1")
guest_script=$(realpath "$2")
[ -d "$work/share" ] || die "$work/share is missing"
[ -f "$guest_script" ] || die "guest script $guest_script is missing"

qemu=$(command -v qemu-system-x86_64) \
  || die "qemu-system-x86_64 not found: install qemu-system-x86 (scripts/install-test-peers.sh)"
busybox=/bin/busybox
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' \
  || die "$busybox is not a static busybox: install busybox-static"
command -v cpio >/dev/null || die "cpio not found: install cpio"

# The kernel: one whose modules directory is on this host (the guest loads 9p from the
# initramfs and everything else from /lib/modules over the shared root).
kernel=${BERTH_VM_KERNEL:-}
if [ -z "$kernel" ]; then
  for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -rV); do
    v=${k#/boot/vmlinuz-}
    if [ -e "/lib/modules/$v/kernel/fs/9p/9p.ko" ]; then
      kernel=$k
      break
    fi
  done
fi
[ -n "$kernel" ] && [ -r "$kernel" ] \
  || die "no kernel with 9p modules in /boot: install linux-image-amd64 (scripts/install-test-peers.sh)"
kver=${kernel#*/vmlinuz-}
moddir=/lib/modules/$kver
[ -d "$moddir" ] || die "$kernel has no modules directory $moddir"

# The initramfs: a static busybox, the modules 9p over virtio needs (with their dependencies,
# in load order), and an init that mounts the host's root and switches to it.
initrd_dir=$work/initramfs
rm -rf "$initrd_dir"
mkdir -p "$initrd_dir"/{bin,dev,proc,sys,newroot,modules}
cp "$busybox" "$initrd_dir/bin/busybox"
: >"$initrd_dir/modules/order"
for m in virtio_pci 9pnet_virtio 9p; do
  deps=$(modprobe -S "$kver" --show-depends "$m" 2>&1) || die "modprobe --show-depends $m: $deps"
  while read -r kind path _; do
    [ "$kind" = insmod ] || continue # "builtin NAME": nothing to load
    name=$(basename "$path")
    grep -qx "$name" "$initrd_dir/modules/order" && continue
    case "$path" in
      *.ko) cp "$path" "$initrd_dir/modules/$name" ;;
      *.ko.xz) xz -dc "$path" >"$initrd_dir/modules/${name%.xz}"; name=${name%.xz} ;;
      *.ko.zst) zstd -qdc "$path" >"$initrd_dir/modules/${name%.zst}"; name=${name%.zst} ;;
      *) die "unknown module format: $path" ;;
    esac
    echo "$name" >>"$initrd_dir/modules/order"
  done <<<"$deps"
done

cat >"$initrd_dir/init" <<INIT
#!/bin/busybox sh
bb=/bin/busybox
fail() { echo "initramfs: \$*"; \$bb poweroff -f; }
\$bb mount -t proc proc /proc
\$bb mount -t devtmpfs dev /dev
for m in \$(\$bb cat /modules/order); do
  \$bb insmod /modules/\$m || fail "insmod \$m"
done
opts=trans=virtio,version=9p2000.L,msize=524288
\$bb mount -t 9p -o \$opts,ro,cache=loose hostroot /newroot || fail "mount the host's root"
\$bb mount -t tmpfs -o mode=755 run /newroot/run || fail "tmpfs /run"
\$bb mkdir -p /newroot/run/work
\$bb mount -t 9p -o \$opts work /newroot/run/work || fail "mount the work share"
\$bb mount --move /dev /newroot/dev
\$bb mount --move /proc /newroot/proc
\$bb mount -t sysfs sys /newroot/sys
exec \$bb switch_root /newroot /bin/bash /run/work/guest.sh /run/work
INIT
chmod 755 "$initrd_dir/init"
cp "$guest_script" "$work/share/guest.sh"
(cd "$initrd_dir" && find . | cpio --quiet -o -H newc -R 0:0) >"$work/initramfs.cpio"

# Boot the uncompressed kernel through its PVH entry point when it has one: decompressing a
# bzImage under TCG takes ~20 s, the PVH boot skips that and the real-mode setup.
boot_kernel=$kernel
if ! file -L "$kernel" | grep -q ELF; then
  for magic in $'\xfd7zXZ\x00' $'\x28\xb5\x2f\xfd' $'\x1f\x8b\x08'; do
    off=$(LC_ALL=C grep -abo "$magic" "$kernel" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$off" ] || continue
    case "$magic" in
      $'\xfd7zXZ\x00') unpack=(xz -dc) ;;
      $'\x28\xb5\x2f\xfd') unpack=(zstd -qdc) ;;
      *) unpack=(gzip -dc) ;;
    esac
    # The payload is followed by more of the bzImage: the decompressors complain about it.
    # The ELF note 0x12 (XEN_ELFNOTE_PHYS32_ENTRY) is the PVH entry point.
    tail -c +$((off + 1)) "$kernel" | "${unpack[@]}" >"$work/vmlinux" 2>/dev/null || true
    if file "$work/vmlinux" | grep -q ELF && readelf -n "$work/vmlinux" 2>/dev/null | grep -q "(0x00000012)"; then
      boot_kernel=$work/vmlinux
      break
    fi
  done
fi

accel=${BERTH_VM_ACCEL:-}
if [ -z "$accel" ]; then
  # /dev/kvm alone is not enough: a nested hypervisor without vmx/svm (e.g. PVM) exposes
  # /dev/kvm but cannot run a stock kernel, which then hangs silently.
  if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
    accel=kvm
  else
    accel=tcg
  fi
fi
case "$accel" in
  kvm) accel_args=(-accel kvm -cpu host) ;;
  tcg) accel_args=(-accel tcg,thread=multi -cpu max) ;;
  *) die "BERTH_VM_ACCEL must be kvm or tcg, not $accel" ;;
esac
echo "boot.sh: kernel $kernel (booting $boot_kernel), accel $accel" >&2

exec "$qemu" ${BERTH_VM_EXTRA:-} -nodefaults -no-user-config -no-reboot \
  "${accel_args[@]}" -smp 2 -m "${BERTH_VM_MEMORY:-1536}" \
  -display none -monitor none -serial "file:$work/console.log" \
  -kernel "$boot_kernel" -initrd "$work/initramfs.cpio" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
  -virtfs "local,path=$work/share,mount_tag=work,security_model=passthrough"
