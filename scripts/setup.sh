#!/usr/bin/env bash
# Installs what building and testing statekit needs on a fresh Debian machine, and nothing
# that is already there: clang/libclang (RocksDB's C++ build and bindgen), liburing and
# pkg-config (RocksDB's parallel reads of a scan's levels, async_io), strace (the test that
# checks what checkpoint storage fsyncs).
set -euo pipefail

need_apt=()
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
pkg-config --exists liburing 2>/dev/null || need_apt+=(liburing-dev)
command -v strace >/dev/null 2>&1 || need_apt+=(strace)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian (about a minute; once per machine)" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
