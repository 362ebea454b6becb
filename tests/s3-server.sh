#!/usr/bin/env bash
# A real S3-protocol server on loopback for the remote backend's tests: moto's server from PyPI.
#
#   eval "$(tests/s3-server.sh start [PORT])"   # installs moto if needed, starts it, prints env
#   cargo test --release -p statekit-tests --features remote --test conformance_remote_s3
#   tests/s3-server.sh stop
#
# `start` prints shell `export` lines: STATEKIT_S3_ENDPOINT (what the S3 tests read; unset, they
# are skipped with a notice), STATEKIT_S3_BUCKET, and dummy AWS credentials and region (moto
# accepts any). Everything listens on 127.0.0.1 only.
set -euo pipefail

STATE_DIR="${STATEKIT_S3_STATE_DIR:-${TMPDIR:-/tmp}/statekit-s3-server}"
PID_FILE="$STATE_DIR/pid"
LOG_FILE="$STATE_DIR/server.log"
BUCKET="${STATEKIT_S3_BUCKET:-statekit-test}"

log() { echo "s3-server: $*" >&2; }

start() {
    local port="${1:-9321}"
    mkdir -p "$STATE_DIR"
    if [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
        log "already running (pid $(cat "$PID_FILE")); stop it first"
        exit 1
    fi
    if ! command -v moto_server >/dev/null 2>&1; then
        log "installing moto[server] from PyPI"
        python3 -m pip install --quiet 'moto[server]>=5,<6' >&2
    fi
    moto_server -H 127.0.0.1 -p "$port" >"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
    local endpoint="http://127.0.0.1:$port"
    # Wait until it answers, then create the bucket (path-style PUT).
    for _ in $(seq 1 100); do
        if python3 - "$endpoint" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/", timeout=1)
PY
        then
            break
        fi
        if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
            log "moto_server exited; see $LOG_FILE"
            cat "$LOG_FILE" >&2
            exit 1
        fi
        sleep 0.2
    done
    python3 - "$endpoint" "$BUCKET" <<'PY'
import sys, urllib.request
req = urllib.request.Request(f"{sys.argv[1]}/{sys.argv[2]}", method="PUT")
urllib.request.urlopen(req, timeout=5)
PY
    log "moto_server pid $(cat "$PID_FILE") on $endpoint, bucket $BUCKET"
    cat <<ENV
export STATEKIT_S3_ENDPOINT=$endpoint
export STATEKIT_S3_BUCKET=$BUCKET
export AWS_ACCESS_KEY_ID=statekit-test
export AWS_SECRET_ACCESS_KEY=statekit-test
export AWS_REGION=us-east-1
ENV
}

stop() {
    if [[ -f "$PID_FILE" ]]; then
        local pid
        pid="$(cat "$PID_FILE")"
        if kill "$pid" 2>/dev/null; then
            log "stopped pid $pid"
        fi
        rm -f "$PID_FILE"
    else
        log "not running"
    fi
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop ;;
    *) echo "usage: $0 start [PORT] | stop" >&2; exit 2 ;;
esac
