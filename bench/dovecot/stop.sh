#!/usr/bin/env bash
# Stop the private Dovecot instance started by bench/dovecot/start.sh, by its
# master PID only (adapted from the shared harness's dovecot/stop.sh).
#   bench/dovecot/stop.sh --instance DIR
set -euo pipefail
INSTANCE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --instance) INSTANCE="$2"; shift 2;;
    *) echo "stop.sh: unknown option $1" >&2; exit 2;;
  esac
done
[ -n "$INSTANCE" ] || { echo "stop.sh: --instance required" >&2; exit 2; }
PIDF="$INSTANCE/run/master.pid"
[ -s "$PIDF" ] || { echo "dovecot not running for $INSTANCE"; exit 0; }
PID=$(cat "$PIDF")
if kill -0 "$PID" 2>/dev/null && grep -q dovecot "/proc/$PID/comm" 2>/dev/null; then
  kill -TERM "$PID"
  for _ in $(seq 1 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$PID" 2>/dev/null; then
    echo "dovecot master $PID did not exit on TERM; sending KILL to it and its children" >&2
    CH=$(ps -o pid= --ppid "$PID" || true)
    # shellcheck disable=SC2086
    kill -KILL "$PID" $CH 2>/dev/null || true
  fi
  echo "dovecot stopped (pid $PID)"
else
  echo "dovecot not running (stale pid $PID)"
fi
rm -f "$PIDF"
