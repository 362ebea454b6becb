#!/usr/bin/env bash
# The statekit test suite, from a fresh machine: installs the build prerequisites, starts a
# real S3-protocol server on loopback for the remote backend's tests, runs every test of
# every crate with every backend feature, and stops the server.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
# One build cache outside the checkout, shared with scripts/statekit and CI: RocksDB's C++
# build takes over ten minutes on two cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/statekit/target}"

if [ -f tests/s3-server.sh ]; then
  bash tests/s3-server.sh stop >/dev/null 2>&1 || true
  eval "$(bash tests/s3-server.sh start)"
  trap 'bash tests/s3-server.sh stop >/dev/null 2>&1 || true' EXIT
fi

cargo test --release --workspace --all-features "$@"
