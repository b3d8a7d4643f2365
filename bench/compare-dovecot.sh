#!/usr/bin/env bash
# popbox side by side with Dovecot (Debian's dovecot-pop3d and dovecot-lmtpd,
# a private instance on loopback) on this machine, in one run: the same
# Maildir contents (generated once, copied to each server), the same
# password hashes (one passwd-file, imported into popbox), the same
# certificate, and the same load generator (bench/popload). Every
# measurement alternates between the two servers (Dovecot first in odd
# runs, popbox first in even ones), --runs times; the table at the end
# gives medians, ranges and popbox/Dovecot ratios. Scenarios:
#
#   1  one session RETRs 2,000 x 50 KB, lock-step and 16 pipelined: MB/s,
#      server CPU per message; and a bare loopback TCP copy of the same
#      files (sendfile; read+write; read+write one file per request) as the ceiling
#   2  200 workers loop full sessions on their own mailboxes (20 x ~8 KB):
#      login, STAT, UIDL, RETR all, QUIT: sessions/s, p99, CPU per session
#   3  10,000 idle logged-in sessions: PSS of the server process tree per
#      connection, and how many are still alive after the hold
#   4  100,000-message mailbox: login, STAT, UIDL, QUIT; warm, cold (page
#      cache, dentries and inodes dropped before each session), and without
#      index (the server's index files removed before each session)
#   5  logins/s from 50 workers, plain and implicit TLS, per password scheme
#   6  LMTP delivery (fsync) from 8 connections into 1 and into 100 mailboxes
#
# Needs root (Dovecot's mail user, drop_caches, 10,000+ file descriptors),
# Go, openssl, and Debian's dovecot-core, dovecot-pop3d and dovecot-lmtpd
# (--install installs them with apt-get). Takes about 15 minutes with the
# defaults; docs/benchmarks.md has the method and the latest results.
#
#   bench/compare-dovecot.sh [--runs 3] [--scenarios "1 2 3 4 5 6"] [--work DIR]
#       [--quick] [--idle-n 10000] [--big-n 100000] [--scheme SHA512-CRYPT]
#       [--login-schemes "ARGON2ID SHA512-CRYPT BLF-CRYPT"]
#       [--popbox-config-extra FILE]
#       [--install]
#
#   --quick            small sizes and short durations, to try the script
#   --scheme S         password scheme of the users of scenarios 1-4 and 6:
#                      SHA512-CRYPT (default; Dovecot's default, 5000
#                      rounds), BLF-CRYPT (cost 5) or ARGON2ID (popbox's
#                      default parameters, m=19456 KiB t=2 p=1). One hash
#                      line serves both servers; popbox runs with
#                      [users] upgrade_hashes = false so it keeps the scheme.
#   --login-schemes L  the schemes scenario 5 measures, each on its own users
#   --popbox-config-extra FILE  TOML appended to popbox's configuration
#                      (tables other than [pop3], [tls], [lmtp], [users],
#                      [process])
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$REPO/bench"
WORK=/tmp/popbox-bench
RUNS=3
SCENARIOS="1 2 3 4 5 6"
IDLE_N=10000 BIG_N=100000 BULK_N=2000 CONC=200
S2_DUR=15s S5_DUR=8s S6_DUR=10s LOGIN_USERS=500
SCHEME=SHA512-CRYPT
LOGIN_SCHEMES="ARGON2ID SHA512-CRYPT BLF-CRYPT"
PB_EXTRA="" INSTALL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2;;
    --scenarios) SCENARIOS="$2"; shift 2;;
    --work) WORK="$2"; shift 2;;
    --idle-n) IDLE_N="$2"; shift 2;;
    --big-n) BIG_N="$2"; shift 2;;
    --scheme) SCHEME="$2"; shift 2;;
    --login-schemes) LOGIN_SCHEMES="$2"; shift 2;;
    --popbox-config-extra) PB_EXTRA="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2;;
    --install) INSTALL=1; shift;;
    --quick) IDLE_N=1000 BIG_N=10000 BULK_N=500 S2_DUR=4s S5_DUR=3s S6_DUR=3s LOGIN_USERS=100; shift;;
    -h|--help) awk 'NR>1 && /^#/{sub(/^# ?/,""); print; next} NR>1{exit}' "$0"; exit 0;;
    *) echo "unknown option $1 (--help)" >&2; exit 2;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }
if [ "$INSTALL" = 1 ]; then
  for p in dovecot-core dovecot-pop3d dovecot-lmtpd; do
    dpkg -s "$p" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$p" >/dev/null
  done
fi
has() { case " $SCENARIOS " in *" $1 "*) return 0;; esac; return 1; }

DC_POP3=11110 DC_POP3S=11995 DC_LMTP=11024
PB_POP3=12110 PB_POP3S=12995 PB_LMTP=12024
mkdir -p "$WORK/bin"
WORK="$(cd "$WORK" && pwd)"
REF="$WORK/ref" DC_ROOT="$WORK/dovecot-mail" PB_DATA="$WORK/popbox"
RES="$WORK/results.txt" LOG="$WORK/run.log"
PL="$WORK/bin/popload" PB="$WORK/bin/popbox"

PB_PID=""
cleanup() {
  if [ -n "$PB_PID" ] && kill -0 "$PB_PID" 2>/dev/null; then kill "$PB_PID"; wait "$PB_PID" 2>/dev/null || true; fi
  "$BENCH/dovecot/stop.sh" --instance "$WORK/dovecot" >/dev/null 2>&1 || true
}
trap cleanup EXIT
T0=$(date +%s)
say() { printf '[%4ss] %s  (load %s)\n' "$(( $(date +%s) - T0 ))" "$*" "$(cut -d' ' -f1 /proc/loadavg)"; }

say "build"
(cd "$REPO" && go build -o "$PB" ./cmd/popbox && go build -o "$PL" ./bench/popload)

# ---------------------------------------------------------------- data
# Generated once into $REF (a stamp per data set), then copied to each
# server: both start from the same bytes in new/, as fresh deliveries.
gen() { # NAME ARGS...: popload gen ARGS unless the stamp matches
  local name=$1; shift
  local stamp="$REF/.$name"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$*" ]; then
    say "generate $name: $*"
    "$PL" gen "$@"
    echo "$*" >"$stamp"
  fi
}
mkdir -p "$REF/mail"
USERS_NEEDED=()
if has 1; then gen bulk -dir "$REF/mail/bulk/Maildir" -count "$BULK_N" -size 50000 -seed 7; USERS_NEEDED+=(bulk); fi
if has 2; then gen conc -root "$REF/mail" -users "conc1-conc$CONC" -count 20 -size 8192 -jitter 0.5 -seed 11; USERS_NEEDED+=("conc1-conc$CONC"); fi
if has 3; then gen idle -root "$REF/mail" -users "idle1-idle$IDLE_N" -count 1 -size 2048 -seed 13; USERS_NEEDED+=("idle1-idle$IDLE_N"); fi
if has 4; then
  gen big -dir "$REF/mail/big/Maildir" -count "$BIG_N" -size 2000 -jitter 0.5 -seed 5
  gen empty -dir "$REF/mail/empty/Maildir" -count 0
  USERS_NEEDED+=(big empty)
fi
scheme_prefix() { case "$1" in ARGON2ID) echo la;; SHA512-CRYPT) echo ls;; BLF-CRYPT) echo lb;; *) echo "unknown scheme $1" >&2; exit 2;; esac; }
if has 5; then
  for s in $LOGIN_SCHEMES; do
    p=$(scheme_prefix "$s")
    gen "login-$p" -root "$REF/mail" -users "${p}1-$p$LOGIN_USERS" -count 1 -size 2048 -seed 17
  done
fi
if has 6; then USERS_NEEDED+=(lm1-lm100); fi

say "copy data to both servers"
rm -rf "$DC_ROOT" "$PB_DATA"
mkdir -p "$DC_ROOT" "$PB_DATA/mail"
cp -a "$REF/mail/." "$DC_ROOT/"
cp -a "$REF/mail/." "$PB_DATA/mail/"
chmod 700 "$PB_DATA"

# ---------------------------------------------------------------- users
hash_of() { # SCHEME -> a {SCHEME}hash line of the password "secret"
  case "$1" in
    ARGON2ID) "$PL" hash -pass secret;;   # popbox's default parameters
    *) doveadm pw -s "$1" -p secret;;     # Dovecot's default parameters
  esac
}
expand() { "$PL" users "$@"; }
PASSWD="$WORK/users.passwd"
DATA_HASH=$(hash_of "$SCHEME")
{
  if [ ${#USERS_NEEDED[@]} -gt 0 ]; then expand "${USERS_NEEDED[@]}" | sed "s|\$|:$DATA_HASH|"; fi
  if has 5; then
    for s in $LOGIN_SCHEMES; do
      p=$(scheme_prefix "$s") h=$(hash_of "$s")
      expand "${p}1-$p$LOGIN_USERS" | sed "s|\$|:$h|"
    done
  fi
} >"$PASSWD"
say "users: $(wc -l <"$PASSWD") in $PASSWD (scenarios 1-4, 6: $SCHEME)"
"$PB" user import passwd-file "$PASSWD" --data "$PB_DATA" >"$WORK/import.log" 2>&1 ||
  { cat "$WORK/import.log" >&2; exit 1; }

# ---------------------------------------------------------------- servers
mkdir -p "$WORK/tls"
if [ ! -s "$WORK/tls/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -sha256 \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1
fi
start_dovecot() {
  "$BENCH/dovecot/stop.sh" --instance "$WORK/dovecot" >/dev/null 2>&1 || true
  DC_PID=$("$BENCH/dovecot/start.sh" --instance "$WORK/dovecot" --mail-root "$DC_ROOT" \
    --passwd-file "$PASSWD" --pop3-port "$DC_POP3" --pop3s-port "$DC_POP3S" --lmtp-port "$DC_LMTP" \
    --cert "$WORK/tls/cert.pem" --key "$WORK/tls/key.pem" --max-sessions $((IDLE_N + 1000)))
}

PB_CONF="$WORK/popbox.toml"
cat >"$PB_CONF" <<EOT
data_dir = "$PB_DATA"
[pop3]
listen = "127.0.0.1:$PB_POP3"
listen_tls = "127.0.0.1:$PB_POP3S"
# One client address opens every connection of the benchmark.
max_connections = $((IDLE_N + 1000))
max_connections_per_ip = $((IDLE_N + 1000))
max_unauthenticated_per_ip = $((IDLE_N + 1000))
[tls]
cert_file = "$WORK/tls/cert.pem"
key_file = "$WORK/tls/key.pem"
[lmtp]
listen = "127.0.0.1:$PB_LMTP"
max_connections = 200
[users]
# Same scheme as Dovecot: keep the imported hashes at login.
upgrade_hashes = false
[process]
allow_root = true
EOT
[ -n "$PB_EXTRA" ] && cat "$PB_EXTRA" >>"$PB_CONF"
start_popbox() {
  if [ -n "$PB_PID" ] && kill -0 "$PB_PID" 2>/dev/null; then kill "$PB_PID"; wait "$PB_PID" 2>/dev/null || true; fi
  (
    ulimit -Hn 200000 2>/dev/null || true
    ulimit -n "$(ulimit -Hn)"
    exec "$PB" serve -c "$PB_CONF" --allow-root 2>>"$WORK/popbox.log"
  ) &
  PB_PID=$!
  # Up once it has logged its last listener (the LMTP socket).
  for _ in $(seq 100); do
    [ "$(grep -c "msg=listening" "$WORK/popbox.log")" -ge "$PB_LISTEN_LINES" ] && break
    sleep 0.1
  done
  kill -0 "$PB_PID" || { tail "$WORK/popbox.log" >&2; exit 1; }
}
restart_servers() { start_dovecot; PB_LISTEN_LINES=$((PB_LISTEN_LINES + 4)); start_popbox; }
: >"$WORK/popbox.log"
: >"$LOG"
PB_LISTEN_LINES=4  # pop3, pop3s, lmtp TCP, lmtp socket
start_dovecot
start_popbox
say "dovecot pid $DC_PID (pop3 $DC_POP3, pop3s $DC_POP3S, lmtp $DC_LMTP); popbox pid $PB_PID (pop3 $PB_POP3, pop3s $PB_POP3S, lmtp $PB_LMTP)"

{
  echo "# popbox vs Dovecot, $(date -u +%FT%TZ)"
  echo "# machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, kernel $(uname -r)"
  rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] && rev="$rev+changes"
  echo "# dovecot $(dovecot --version); popbox $rev ($("$PB" version 2>/dev/null | head -1)); $(go version)"
  echo "# runs=$RUNS scenarios=\"$SCENARIOS\" scheme=$SCHEME login_schemes=\"$LOGIN_SCHEMES\" idle_n=$IDLE_N big_n=$BIG_N bulk_n=$BULK_N"
} | tee "$RES"

# ---------------------------------------------------------------- helpers
# pl SRV SCN RUN SUBCOMMAND ARGS...: popload against SRV (dovecot|popbox),
# tagged, RESULT line appended to $RES. -addr is the plain POP3 port unless
# ARGS give another.
pl() {
  local srv=$1 scn=$2 run=$3 sub=$4; shift 4
  local port pid
  if [ "$srv" = dovecot ]; then port=$DC_POP3 pid=$DC_PID; else port=$PB_POP3 pid=$PB_PID; fi
  "$PL" "$sub" -addr "127.0.0.1:$port" -server-pid "$pid" -tags "scn=$scn srv=$srv run=$run" "$@" 2>>"$LOG" | tee -a "$RES"
}
# order RUN: the two servers, Dovecot first in odd runs.
order() { if [ $(($1 % 2)) = 1 ]; then echo dovecot popbox; else echo popbox dovecot; fi; }
port_of() { # SRV KIND -> port
  case "$1-$2" in
    dovecot-pop3) echo $DC_POP3;; dovecot-pop3s) echo $DC_POP3S;; dovecot-lmtp) echo $DC_LMTP;;
    popbox-pop3) echo $PB_POP3;; popbox-pop3s) echo $PB_POP3S;; popbox-lmtp) echo $PB_LMTP;;
  esac
}
maildir_of() { if [ "$1" = dovecot ]; then echo "$DC_ROOT/$2/Maildir"; else echo "$PB_DATA/mail/$2/Maildir"; fi; }

# ---------------------------------------------------------------- 1
if has 1; then
  say "scenario 1: RETR $BULK_N x 50 KB in one session"
  for s in dovecot popbox; do "$PL" throughput -addr "127.0.0.1:$(port_of $s pop3)" -user bulk >/dev/null; done  # first open
  # A pass takes well under a second: three interleaved samples per run.
  for r in $(seq "$RUNS"); do
    for k in 1 2 3; do
      for s in $(order "$r"); do
        pl "$s" s1-lockstep "$r.$k" throughput -user bulk -pipeline 1
        pl "$s" s1-pipe16 "$r.$k" throughput -user bulk -pipeline 16
      done
      for m in sendfile copy lockstep; do
        "$PL" rawcopy -dir "$REF/mail/bulk/Maildir" -mode "$m" -tags "scn=s1-raw srv=raw-$m run=$r.$k" | tee -a "$RES"
      done
    done
  done
fi

# ---------------------------------------------------------------- 2
if has 2; then
  say "scenario 2: $CONC concurrent full sessions, $S2_DUR x $RUNS"
  for r in $(seq "$RUNS"); do
    for s in $(order "$r"); do
      w=false; [ "$r" = 1 ] && w=true
      pl "$s" s2-sessions "$r" sessions -c "$CONC" -users "conc1-conc$CONC" -duration "$S2_DUR" -warmup=$w
      sleep 2
    done
  done
fi

# ---------------------------------------------------------------- 3
if has 3; then
  say "scenario 3: $IDLE_N idle sessions"
  # popbox holds one descriptor per logged-in session (the connection; the
  # session locks share one file); one process needs IDLE_N + about 80.
  nofile=$(awk '/Max open files/{print $4}' "/proc/$PB_PID/limits")
  if [ "$nofile" != unlimited ] && [ "$nofile" -lt $((IDLE_N + 100)) ]; then
    say "  note: popbox's RLIMIT_NOFILE is $nofile (not raisable here): it will refuse sessions past about $((nofile - 80))"
  fi
  for r in $(seq "$RUNS"); do
    # Fresh servers, so that the memory before is a server's own, not what
    # earlier load left in its heap or caches.
    restart_servers
    sleep 2
    for s in $(order "$r"); do
      pl "$s" s3-idle "$r" idle -n "$IDLE_N" -users "idle1-idle$IDLE_N" -c 50 -hold 5s
      # Dovecot's pop3 processes take a while to exit.
      for _ in $(seq 60); do [ "$(pgrep -c -P "$DC_PID" || true)" -lt 50 ] && break; sleep 1; done
      sleep 2
    done
  done
fi

# ---------------------------------------------------------------- 4
if has 4; then
  say "scenario 4: login, STAT, UIDL, QUIT on $BIG_N messages"
  for s in dovecot popbox; do  # first open: both servers index the new mail
    t=$(date +%s.%N)
    "$PL" statuidl -addr "127.0.0.1:$(port_of $s pop3)" -user big -n 1 >/dev/null
    say "  first open on $s: $(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
  done
  noindex() { # SRV -> shell command removing the server's index of big
    local d; d=$(maildir_of "$1" big)
    if [ "$1" = dovecot ]; then echo "rm -f $d/dovecot.index $d/dovecot.index.log $d/dovecot.index.log.2 $d/dovecot.index.cache"
    else echo "rm -f $d/popbox-index"; fi
  }
  for r in $(seq "$RUNS"); do
    for s in $(order "$r"); do
      "$PL" statuidl -addr "127.0.0.1:$(port_of "$s" pop3)" -user big -n 1 >/dev/null  # rewarm
      pl "$s" s4-warm "$r" statuidl -user big -n 10
      pl "$s" s4-empty "$r" statuidl -user empty -n 10
      pl "$s" s4-cold "$r" statuidl -user big -n 3 -cold
      pl "$s" s4-noindex "$r" statuidl -user big -n 3 -before "$(noindex "$s")"
    done
  done
fi

# ---------------------------------------------------------------- 5
if has 5; then
  say "scenario 5: logins/s, 50 workers, $S5_DUR each"
  for sch in $LOGIN_SCHEMES; do
    p=$(scheme_prefix "$sch")
    for tls in none pop3s; do
      kind=pop3; [ $tls = pop3s ] && kind=pop3s
      for r in $(seq "$RUNS"); do
        for s in $(order "$r"); do
          w=false; [ "$r" = 1 ] && [ $tls = none ] && w=true
          pl "$s" "s5-$sch-$tls" "$r" login -addr "127.0.0.1:$(port_of "$s" $kind)" -tls $tls -c 50 \
            -users "${p}1-$p$LOGIN_USERS" -duration "$S5_DUR" -warmup=$w
          sleep 1
        done
      done
    done
  done
fi

# ---------------------------------------------------------------- 6
if has 6; then
  say "scenario 6: LMTP delivery, 8 connections, $S6_DUR each"
  for v in "1mbox lm1" "100mbox lm1-lm100"; do
    set -- $v
    for r in $(seq "$RUNS"); do
      for s in $(order "$r"); do
        pl "$s" "s6-$1" "$r" lmtp -addr "127.0.0.1:$(port_of "$s" lmtp)" -c 8 -users "$2" -duration "$S6_DUR" -size 4000
      done
    done
  done
  for s in dovecot popbox; do
    n=0
    for i in $(seq 100); do
      d=$(maildir_of $s "lm$i")
      [ -d "$d" ] && n=$((n + $(find "$d/new" "$d/cur" -type f | wc -l)))
    done
    say "  $s: $n messages in lm1..lm100 after the LMTP runs"
  done
fi

say "done; results in $RES, errors and warnings in $LOG"
echo
"$PL" table -results "$RES" | tee "$WORK/table.md"
