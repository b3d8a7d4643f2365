#!/usr/bin/env bash
# Start the private Dovecot instance of bench/compare-dovecot.sh on 127.0.0.1
# (no systemd, /etc/dovecot untouched). Adapted from the shared harness's
# dovecot/start.sh.
#
#   bench/dovecot/start.sh --instance DIR --mail-root DIR --passwd-file FILE
#       [--pop3-port 11110] [--pop3s-port 11995] [--lmtp-port 11024]
#       [--cert PEM --key PEM] [--max-sessions 11000]
#       [--login-mode performance|secure] [--mail-user popbench]
#
# The mail of user U is MAIL_ROOT/U/Maildir. Dovecot refuses to run mail as
# uid 0, so MAIL_ROOT is chown -R'ed to the system user --mail-user, created
# if missing. Without --cert/--key an ECDSA P-256 certificate for localhost
# is made in the instance directory. Prints the master PID on success.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INSTANCE="" MAIL_ROOT="" PASSWD_FILE="" CERT="" KEY=""
POP3_PORT=11110 POP3S_PORT=11995 LMTP_PORT=11024 MAX_SESSIONS=11000
LOGIN_MODE=performance MAIL_USER=popbench
while [ $# -gt 0 ]; do
  case "$1" in
    --instance) INSTANCE="$2"; shift 2;;
    --mail-root) MAIL_ROOT="$2"; shift 2;;
    --passwd-file) PASSWD_FILE="$2"; shift 2;;
    --pop3-port) POP3_PORT="$2"; shift 2;;
    --pop3s-port) POP3S_PORT="$2"; shift 2;;
    --lmtp-port) LMTP_PORT="$2"; shift 2;;
    --cert) CERT="$2"; shift 2;;
    --key) KEY="$2"; shift 2;;
    --max-sessions) MAX_SESSIONS="$2"; shift 2;;
    --login-mode) LOGIN_MODE="$2"; shift 2;;
    --mail-user) MAIL_USER="$2"; shift 2;;
    -h|--help) awk 'NR>1 && /^#/{sub(/^# ?/,""); print; next} NR>1{exit}' "$0"; exit 0;;
    *) echo "start.sh: unknown option $1" >&2; exit 2;;
  esac
done
[ -n "$INSTANCE" ] && [ -n "$MAIL_ROOT" ] && [ -n "$PASSWD_FILE" ] ||
  { echo "start.sh: --instance, --mail-root and --passwd-file are required" >&2; exit 2; }
command -v dovecot >/dev/null ||
  { echo "dovecot is not installed: apt-get install dovecot-core dovecot-pop3d dovecot-lmtpd" >&2; exit 1; }
[ -x /usr/lib/dovecot/lmtp ] ||
  { echo "dovecot-lmtpd is not installed: apt-get install dovecot-lmtpd" >&2; exit 1; }
if [ -s "$INSTANCE/run/master.pid" ] && kill -0 "$(cat "$INSTANCE/run/master.pid")" 2>/dev/null; then
  echo "dovecot already running for $INSTANCE (pid $(cat "$INSTANCE/run/master.pid")); run stop.sh first" >&2
  exit 1
fi
case "$LOGIN_MODE" in
  performance) SC=0; MIN_AVAIL=2; CL=$MAX_SESSIONS;;
  secure)      SC=1; MIN_AVAIL=0; CL=1;;
  *) echo "bad --login-mode $LOGIN_MODE" >&2; exit 2;;
esac
if ! id -u "$MAIL_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$MAIL_USER"
fi
MAIL_UID=$(id -u "$MAIL_USER"); MAIL_GID=$(id -g "$MAIL_USER")
mkdir -p "$INSTANCE"/{run,state,log,ssl} "$MAIL_ROOT"
chown -R "$MAIL_USER:" "$MAIL_ROOT"
INSTANCE="$(cd "$INSTANCE" && pwd)"; MAIL_ROOT="$(cd "$MAIL_ROOT" && pwd)"
PASSWD_FILE="$(cd "$(dirname "$PASSWD_FILE")" && pwd)/$(basename "$PASSWD_FILE")"
if [ -z "$CERT" ]; then
  CERT="$INSTANCE/ssl/cert.pem" KEY="$INSTANCE/ssl/key.pem"
  if [ ! -s "$CERT" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -sha256 \
      -keyout "$KEY" -out "$CERT" -subj "/CN=localhost" \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1
  fi
fi
chmod 644 "$PASSWD_FILE"
sed -e "s#@INSTANCE@#$INSTANCE#g" -e "s#@INSTANCE_TAG@#$(basename "$INSTANCE")#g" \
    -e "s#@MAIL_ROOT@#$MAIL_ROOT#g" -e "s#@PASSWD_FILE@#$PASSWD_FILE#g" \
    -e "s#@CERT@#$CERT#g" -e "s#@KEY@#$KEY#g" \
    -e "s#@POP3_PORT@#$POP3_PORT#g" -e "s#@POP3S_PORT@#$POP3S_PORT#g" -e "s#@LMTP_PORT@#$LMTP_PORT#g" \
    -e "s#@MAIL_UID@#$MAIL_UID#g" -e "s#@MAIL_GID@#$MAIL_GID#g" -e "s#@MAX_SESSIONS@#$MAX_SESSIONS#g" \
    -e "s#@LOGIN_SERVICE_COUNT@#$SC#g" -e "s#@LOGIN_MIN_AVAIL@#$MIN_AVAIL#g" \
    -e "s#@LOGIN_CLIENT_LIMIT@#$CL#g" -e "s#@ANVIL_CLIENT_LIMIT@#$((MAX_SESSIONS * 2 + 100))#g" \
    "$HERE/dovecot.conf" >"$INSTANCE/dovecot.conf"
doveconf -c "$INSTANCE/dovecot.conf" -n >/dev/null
# Enough descriptors for thousands of sessions (root may raise the hard limit).
ulimit -Hn 200000 2>/dev/null || true
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
dovecot -c "$INSTANCE/dovecot.conf"
for _ in $(seq 1 100); do
  if [ -s "$INSTANCE/run/master.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$POP3_PORT") 2>/dev/null \
     && (exec 3<>"/dev/tcp/127.0.0.1/$POP3S_PORT") 2>/dev/null \
     && (exec 3<>"/dev/tcp/127.0.0.1/$LMTP_PORT") 2>/dev/null; then
    cat "$INSTANCE/run/master.pid"
    exit 0
  fi
  sleep 0.1
done
echo "dovecot did not come up; see $INSTANCE/log/dovecot.log" >&2
tail -20 "$INSTANCE/log/dovecot.log" >&2 || true
exit 1
