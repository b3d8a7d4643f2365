#!/usr/bin/env bash
# bench/postgres.sh: popbox on its PostgreSQL store, with one and with two
# frontends, against popbox on its Maildir store, on this machine, in one
# run, interleaved, --runs times (medians and ratios at the end):
#
#   sessions    200 workers loop full sessions on their own mailboxes
#               (20 x ~8 KB): login, STAT, UIDL, RETR all, QUIT: sessions/s
#               and p99. With two frontends each gets 100 of the workers.
#   retr        two sessions at once (users bulk1 and bulk2, 1,000 x 50 KB
#               each), 16 RETRs in flight: MB/s summed over both. With one
#               frontend both go to it; with two, one to each.
#   retr1       one session, lock-step: MB/s.
#
# The PostgreSQL server is a private one (initdb into WORK/pg, Unix socket
# only, default durability: fsync and synchronous_commit on), run as the
# system user postgres; the Maildir store fsyncs too. Users have the same
# SHA512-CRYPT hash in both stores (openssl passwd -6), and the PostgreSQL
# store gets the same mail by `popbox import datadir` from the Maildir one.
#
#   bench/postgres.sh [--runs 3] [--work DIR] [--duration 10s]
#
# Needs root (PostgreSQL runs as the user postgres), Go, openssl and
# Debian's postgresql. It prints RESULT lines (also in WORK/results.txt)
# and a table. The machine has 2 cores shared by everything: the two
# frontends and PostgreSQL compete with each other and with the load
# generator, so "two frontends" here measures the cost of sharing one
# database, not the scaling two machines would give.
set -euo pipefail

RUNS=3
WORK=/tmp/popbox-pgbench
DUR=10s
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2;;
    --work) WORK="$2"; shift 2;;
    --duration) DUR="$2"; shift 2;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '[%4ss] %s\n' "$SECONDS" "$*" >&2; }

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "no system user postgres" >&2; exit 1; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -d "$WORK/pg/data" ] && su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$WORK/pg/data' -m fast stop" >/dev/null 2>&1 || true
}
trap cleanup EXIT

mkdir -p "$WORK/bin"
say "build"
(cd "$REPO" && go build -o "$WORK/bin/popbox" ./cmd/popbox && go build -o "$WORK/bin/popload" ./bench/popload)
PB="$WORK/bin/popbox" PL="$WORK/bin/popload"
RES="$WORK/results.txt"
: >"$RES"

say "generate mail"
rm -rf "$WORK/md" "$WORK/pg" "$WORK/fe1" "$WORK/fe2"
mkdir -p "$WORK/md/mail"
"$PL" gen -root "$WORK/md/mail" -users "conc1-conc200" -count 20 -size 8192 -jitter 0.5 -seed 11
"$PL" gen -root "$WORK/md/mail" -users "bulk1,bulk2" -count 1000 -size 50000 -seed 7
chmod 700 "$WORK/md"
HASH="{SHA512-CRYPT}$(openssl passwd -6 -salt popboxbench secret)"
"$PL" users conc1-conc200 bulk1 bulk2 | sed "s|\$|:$HASH|" >"$WORK/users.passwd"

say "private PostgreSQL"
mkdir -p "$WORK/pg/data"
chmod 755 "$WORK" "$WORK/pg"
chown -R postgres: "$WORK/pg"
su postgres -s /bin/sh -c "$PGBIN/initdb -D '$WORK/pg/data' -U postgres -A trust" >"$WORK/pg/initdb.log"
cat >>"$WORK/pg/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$WORK/pg'
port = 5433
max_connections = 200
shared_buffers = 256MB
EOF
su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$WORK/pg/data' -l '$WORK/pg/log' -w start" >/dev/null
su postgres -s /bin/sh -c "$PGBIN/psql -h '$WORK/pg' -p 5433 -d postgres -qc 'CREATE DATABASE popbox'"
DSN="postgres://postgres@/popbox?host=$(printf %s "$WORK/pg" | sed 's|/|%2F|g')&port=5433&sslmode=disable&pool_max_conns=40"

conf() { # NAME DATA POP3PORT [store] -> WORK/NAME.toml
  {
    [ -n "${4:-}" ] && echo "store = \"$4\""
    cat <<EOF
data_dir = "$2"
[pop3]
listen = "127.0.0.1:$3"
listen_tls = ""
max_connections = 2000
max_connections_per_ip = 2000
max_unauthenticated_per_ip = 2000
[lmtp]
socket = ""
[users]
upgrade_hashes = false
[process]
allow_root = true
EOF
  } >"$WORK/$1.toml"
}
conf md "$WORK/md" 13110
conf fe1 "$WORK/fe1" 13111 "$DSN"
conf fe2 "$WORK/fe2" 13112 "$DSN"

say "users and mail into both stores"
"$PB" user import passwd-file "$WORK/users.passwd" -c "$WORK/md.toml" >/dev/null
"$PB" migrate -c "$WORK/fe1.toml" >/dev/null
"$PB" user import passwd-file "$WORK/users.passwd" -c "$WORK/fe1.toml" >/dev/null
"$PB" import datadir --from "$WORK/md" --skip-users -c "$WORK/fe1.toml" >"$WORK/import.log" 2>&1 ||
  { tail "$WORK/import.log" >&2; exit 1; }

start() { # NAME -> pid in $! ; waits for the listening line
  : >"$WORK/$1.log"
  (ulimit -n "$(ulimit -Hn)"; exec "$PB" serve -c "$WORK/$1.toml" --allow-root 2>>"$WORK/$1.log") &
  PIDS+=("$!")
  for _ in $(seq 100); do grep -q "msg=listening" "$WORK/$1.log" && return 0; sleep 0.1; done
  tail "$WORK/$1.log" >&2; exit 1
}
start md; start fe1; start fe2
say "servers up: maildir :13110, postgres frontends :13111 and :13112"

tag() { sed "s/^RESULT /RESULT scn=$1 srv=$2 run=$3 /" | tee -a "$RES"; }
sessions() { # SRV RUN
  case "$1" in
    maildir) "$PL" sessions -addr 127.0.0.1:13110 -c 200 -users conc1-conc200 -duration "$DUR" | tag sessions "$1" "$2";;
    pg1) "$PL" sessions -addr 127.0.0.1:13111 -c 200 -users conc1-conc200 -duration "$DUR" | tag sessions "$1" "$2";;
    pg2)
      "$PL" sessions -addr 127.0.0.1:13111 -c 100 -users conc1-conc100 -duration "$DUR" >"$WORK/a.out" &
      "$PL" sessions -addr 127.0.0.1:13112 -c 100 -users conc101-conc200 -duration "$DUR" >"$WORK/b.out"
      wait "$!"
      # Sum the rates; the worse p99 of the two.
      awk '/^RESULT/{for(i=2;i<=NF;i++){split($i,kv,"=");v[kv[1]]=kv[2]} s+=v["sessions_per_s"]; if(v["p99_ms"]>p)p=v["p99_ms"]; e+=v["errors"]}
           END{printf "RESULT mode=sessions frontends=2 sessions_per_s=%.1f p99_ms=%.2f errors=%d\n", s, p, e}' \
        "$WORK/a.out" "$WORK/b.out" | tag sessions "$1" "$2";;
  esac
}
retr() { # SRV RUN: two sessions at once, pipelined
  local a=13110 b=13110
  case "$1" in pg1) a=13111 b=13111;; pg2) a=13111 b=13112;; esac
  "$PL" throughput -addr "127.0.0.1:$a" -user bulk1 -pipeline 16 >"$WORK/a.out" &
  "$PL" throughput -addr "127.0.0.1:$b" -user bulk2 -pipeline 16 >"$WORK/b.out"
  wait "$!"
  awk '/^RESULT/{for(i=2;i<=NF;i++){split($i,kv,"=");v[kv[1]]=kv[2]} b+=v["bytes"]; if(v["retr_secs"]>t)t=v["retr_secs"]}
       END{printf "RESULT mode=throughput sessions=2 MB_per_s=%.2f\n", b/1e6/t}' "$WORK/a.out" "$WORK/b.out" | tag retr "$1" "$2"
}
retr1() { # SRV RUN: one session, lock-step
  local a=13110
  [ "$1" = maildir ] || a=13111
  "$PL" throughput -addr "127.0.0.1:$a" -user bulk1 -pipeline 1 | tag retr1 "$1" "$2"
}

# Warm-up: the first Open of each mailbox reconciles the freshly copied
# Maildir; neither store should be measured doing that.
say "warm-up"
for p in 13110 13111; do
  "$PL" sessions -addr "127.0.0.1:$p" -c 50 -users conc1-conc200 -duration 3s >/dev/null
  "$PL" throughput -addr "127.0.0.1:$p" -user bulk1 -pipeline 16 >/dev/null
  "$PL" throughput -addr "127.0.0.1:$p" -user bulk2 -pipeline 16 >/dev/null
done

for r in $(seq "$RUNS"); do
  say "run $r of $RUNS"
  order="maildir pg1 pg2"; [ $((r % 2)) = 0 ] && order="pg2 pg1 maildir"
  for s in $order; do sessions "$s" "$r"; sleep 1; done
  for s in $order; do retr "$s" "$r"; done
  for s in maildir pg1; do retr1 "$s" "$r"; done
done

say "table"
awk '
  /^RESULT/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    key = v["scn"] SUBSEP v["srv"]
    if (v["scn"] == "sessions") { add(key "|sessions_per_s", v["sessions_per_s"]); add(key "|p99_ms", v["p99_ms"]) }
    else add(key "|MB_per_s", v["MB_per_s"])
    delete v
  }
  function add(k, x) { n[k]++; val[k, n[k]] = x }
  function median(k,   m, i, j, t, a) {
    m = n[k]; for (i = 1; i <= m; i++) a[i] = val[k, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    print "| scenario | metric | maildir, 1 frontend | postgres, 1 frontend | postgres, 2 frontends | pg1/maildir | pg2/maildir |"
    print "| --- | --- | --- | --- | --- | --- | --- |"
    split("sessions|sessions_per_s sessions|p99_ms retr|MB_per_s retr1|MB_per_s", rows, " ")
    for (r = 1; r <= 4; r++) {
      split(rows[r], p, "|"); s = p[1]; m = p[2]
      md = median(s SUBSEP "maildir|" m); p1 = median(s SUBSEP "pg1|" m)
      p2 = ((s SUBSEP "pg2|" m) in n) ? median(s SUBSEP "pg2|" m) : ""
      printf "| %s | %s | %s | %s | %s | %.2fx | %s |\n", s, m, md, p1, (p2 == "" ? "–" : p2), p1 / md, (p2 == "" ? "–" : sprintf("%.2fx", p2 / md))
    }
  }' "$RES" | tee "$WORK/table.md"
