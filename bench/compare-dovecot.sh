#!/usr/bin/env bash
# Side-by-side benchmark of popbox and Dovecot on the same machine, in the
# same run, on byte-identical Maildirs:
#   1. one session RETRs 2,000 x 50 KB, lock-step and 16 pipelined
#      (the shared harness's bench/throughput.sh and popbench);
#   2. STAT+UIDL on a 10,000-message mailbox (bench/statuidl), warm.
# It prints each server's medians and the popbox/Dovecot ratios. It needs
# root (Dovecot's private instance runs mail as a system user), Go, and the
# shared harness (HARNESS, default ../shared/harness beside the repo), whose
# install-deps.sh installs Dovecot.
#
#   bench/compare-dovecot.sh [--runs 3] [--work /tmp/popbox-bench]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
HARNESS="${HARNESS:-$REPO/../shared/harness}"
WORK=/tmp/popbox-bench
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2;;
    --work) WORK="$2"; shift 2;;
    *) echo "usage: $0 [--runs N] [--work DIR]" >&2; exit 2;;
  esac
done
[ -d "$HARNESS" ] || { echo "harness not found at $HARNESS (set HARNESS)" >&2; exit 2; }
DC_PORT=11110 PB_PORT=12110
mkdir -p "$WORK"
cleanup() {
  [ -n "${PB_PID:-}" ] && kill "$PB_PID" 2>/dev/null && wait "$PB_PID" 2>/dev/null
  "$HARNESS/dovecot/stop.sh" --instance "$WORK/dovecot" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "# data"
REF="$WORK/ref"
if [ ! -f "$REF/.done" ]; then
  rm -rf "$REF"
  "$HARNESS/gen-maildir.sh" --dir "$REF/bulk/Maildir" --user bulk --count 2000 --size 50000 --seed 7 --quiet
  "$HARNESS/gen-maildir.sh" --dir "$REF/big/Maildir" --user big --count 10000 --size 2000 --seed 5 --quiet --no-manifest
  touch "$REF/.done"
fi
rm -rf "$WORK/dovecot-mail" "$WORK/popbox"
mkdir -p "$WORK/popbox/mail" "$REF/empty/Maildir/new" "$REF/empty/Maildir/cur" "$REF/empty/Maildir/tmp"
mkdir -p "$WORK/dovecot-mail"
cp -a "$REF/bulk" "$REF/big" "$REF/empty" "$WORK/dovecot-mail/"
cp -a "$REF/bulk" "$REF/big" "$REF/empty" "$WORK/popbox/mail/"

echo "# servers"
"$HARNESS/dovecot/start.sh" --instance "$WORK/dovecot" --mail-root "$WORK/dovecot-mail" \
  --users 1 --extra-users bulk,big,empty --pop3-port "$DC_PORT" --pop3s-port 11995 >/dev/null
DC_PID="$(cat "$WORK/dovecot/run/master.pid")"
(cd "$REPO" && go build -o "$WORK/popbox-bin" ./cmd/popbox && go build -o "$WORK/statuidl" ./bench/statuidl)
for u in bulk big empty; do
  echo secret | "$WORK/popbox-bin" user add "$u" --data "$WORK/popbox" --password-stdin >/dev/null
done
"$WORK/popbox-bin" serve --allow-root --data "$WORK/popbox" --listen "127.0.0.1:$PB_PORT" --listen-tls "" \
  2>"$WORK/popbox.log" &
PB_PID=$!
for _ in $(seq 50); do grep -q 'msg=listening' "$WORK/popbox.log" 2>/dev/null && break; sleep 0.1; done
echo "dovecot pid $DC_PID port $DC_PORT; popbox pid $PB_PID port $PB_PORT"

OUT="$WORK/results.txt"; : >"$OUT"
median_of() { # KEY LABEL SECTION -> value from the MEDIAN line
  awk -v k="$1" -v l="$2" -v s="$3" '
    /^## /{sec=$0} index(sec,s)&&index(sec,"label="l" ")&&/^MEDIAN/ {
      for(i=1;i<=NF;i++){split($i,a,"="); if(a[1]==k){print a[2]}}}' "$OUT" | tail -1
}
echo "# throughput (2000 x 50 KB, one session)"
for label in dovecot popbox dovecot popbox; do
  if [ $label = dovecot ]; then port=$DC_PORT pid=$DC_PID; else port=$PB_PORT pid=$PB_PID; fi
  "$HARNESS/bench/throughput.sh" --port "$port" --server-pid "$pid" --label "$label" \
    --runs "$RUNS" --pipeline "1 16" --results "$OUT" | grep -E '^(#|MEDIAN)'
done
echo "# STAT+UIDL on 10,000 messages (warm)"
"$WORK/statuidl" -addr "127.0.0.1:$DC_PORT" -user big -n 3 >/dev/null   # warm-up: index build
"$WORK/statuidl" -addr "127.0.0.1:$PB_PORT" -user big -n 3 >/dev/null
# The same session on an empty mailbox is the baseline (connect, password
# check, QUIT): the difference is what 10,000 messages cost each server,
# whatever its password hashing (Dovecot's harness users are {PLAIN},
# popbox's argon2id).
: >"$WORK/statuidl.txt"
for r in $(seq "$RUNS"); do
  for s in "dovecot $DC_PORT" "popbox $PB_PORT"; do
    set -- $s
    "$WORK/statuidl" -addr "127.0.0.1:$2" -user big -n 20 -label "$1" | tee -a "$WORK/statuidl.txt"
    "$WORK/statuidl" -addr "127.0.0.1:$2" -user empty -n 20 -label "$1-empty" | tee -a "$WORK/statuidl.txt"
  done
done

echo
echo "# summary (medians; ratio = popbox / dovecot)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
for p in 1 16; do
  for k in MB_per_s server_cpu_ms_per_msg; do
    d=$(median_of "$k" dovecot "pipeline=$p "); b=$(median_of "$k" popbox "pipeline=$p ")
    echo "RETR pipeline=$p $k: dovecot=$d popbox=$b ratio=$(ratio "$b" "$d")"
  done
done
med() { grep "label=$1 " "$WORK/statuidl.txt" | sed -n "s/.* $2=\([0-9.]*\).*/\1/p" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
for k in stat_uidl_ms_p50 session_ms_p50; do
  d=$(med dovecot $k); b=$(med popbox $k)
  echo "10k mailbox $k: dovecot=$d popbox=$b ratio=$(ratio "$b" "$d")"
done
d=$(awk -v a="$(med dovecot session_ms_p50)" -v b="$(med dovecot-empty session_ms_p50)" 'BEGIN{printf "%.2f", a-b}')
b=$(awk -v a="$(med popbox session_ms_p50)" -v b="$(med popbox-empty session_ms_p50)" 'BEGIN{printf "%.2f", a-b}')
echo "10k mailbox session minus empty-mailbox session (ms): dovecot=$d popbox=$b ratio=$(ratio "$b" "$d")"
