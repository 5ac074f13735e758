#!/bin/sh
# Cargo runs every rustc of a workspace member through this script
# (`build.rustc-workspace-wrapper` in .cargo/config.toml): `$1` is rustc, the rest its arguments.
#
# It links the `berth-shim` executable statically (glibc `crt-static`) and at a fixed address.
# Cargo has no per-binary rustflags, and `crt-static` must be given to the rustc that links,
# not as a linker argument: std picks its libc linkage from it. Dependencies are compiled as
# usual and shared with the other binaries (the flags only change the final link of one crate).
# Why static: one shim runs per container, and without the dynamic loader, shared-library
# mappings and their relocations, each idle shim holds far fewer pages (docs/architecture.md,
# "Shim footprint").
is_shim=
is_bin=
prev=
for arg in "$@"; do
  case "$prev=$arg" in
    --crate-name=berth_shim) is_shim=1 ;;
    --crate-type=bin) is_bin=1 ;;
  esac
  prev=$arg
done
if [ -n "$is_shim" ] && [ -n "$is_bin" ]; then
  exec "$@" -C target-feature=+crt-static -C relocation-model=static
fi
exec "$@"
