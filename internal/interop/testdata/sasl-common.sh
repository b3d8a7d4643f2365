# Shared argument parsing and output for the SASL client scripts (sourced by
# sasl-curl.sh, sasl-mpop.sh and sasl-poplib.sh; TestSASLClients runs them).
#
# Every sasl-*.sh script accepts:
#   --host H --port P   the server
#   --tls MODE          none | stls (STLS upgrade, required) | pop3s (implicit TLS)
#   --cafile F          verify the server certificate against F (required for TLS)
#   --user U            the authentication identity
#   --mech M            the SASL mechanism, as in AUTH (PLAIN, LOGIN, SCRAM-SHA-256, ...)
#   --authzid Z         an authorization identity, for the mechanisms that carry one
#   --cert F --key F    present this TLS client certificate and key (PEM), for
#                       EXTERNAL
#   --source A          connect from local address A (e.g. 127.0.0.12)
#   --timeout S         kill the client after S seconds (default 45)
# and reads the password (or, for OAUTHBEARER and XOAUTH2, the bearer token)
# from the environment variable SASL_SECRET, to keep it off command lines;
# EXTERNAL has none (SASL_SECRET set but empty).
#
# The client logs in with that mechanism and nothing else, then at least
# counts the messages. The script prints:
#   - the client's own protocol trace, rewritten as "C: line" for what the
#     client sent and "S: line" for what the server answered;
#   - on success, "COUNT n": the number of messages the client saw;
#   - last, "PASS|FAIL|SKIP client=NAME mech=M tls=MODE ...".
# Exit status: 0 PASS, 1 FAIL (the client failed: login refused or anything
# else), 77 SKIP (this client cannot do the mechanism), 2 usage.
# A client's own exit 77 (mpop's EX_NOPERM for a refused login) is a FAIL.

parse_sasl_args() {
  HOST=127.0.0.1 PORT="" TLS=none CAFILE="" USER_="" MECH="" AUTHZID="" SOURCE="" TIMEOUT=45
  CERT="" KEY=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --host) HOST="$2"; shift 2;;
      --port) PORT="$2"; shift 2;;
      --tls) TLS="$2"; shift 2;;
      --cafile) CAFILE="$2"; shift 2;;
      --user) USER_="$2"; shift 2;;
      --mech) MECH="$2"; shift 2;;
      --authzid) AUTHZID="$2"; shift 2;;
      --cert) CERT="$2"; shift 2;;
      --key) KEY="$2"; shift 2;;
      --source) SOURCE="$2"; shift 2;;
      --timeout) TIMEOUT="$2"; shift 2;;
      *) echo "unknown option: $1" >&2; exit 2;;
    esac
  done
  case "$TLS" in none|pop3s|stls) ;; *) echo "bad --tls $TLS" >&2; exit 2;; esac
  if [ -z "$PORT" ] || [ -z "$USER_" ] || [ -z "$MECH" ] || [ -z "${SASL_SECRET+set}" ]; then
    echo "usage: --port, --user, --mech and SASL_SECRET are required" >&2; exit 2
  fi
  if [ "$TLS" != none ] && [ -z "$CAFILE" ]; then
    echo "usage: --tls $TLS needs --cafile" >&2; exit 2
  fi
  if [ -z "$CERT" ] && [ -n "$KEY" ] || [ -n "$CERT" ] && { [ -z "$KEY" ] || [ "$TLS" = none ]; }; then
    echo "usage: --cert and --key go together, and need TLS" >&2; exit 2
  fi
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/sasl-client.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  umask 077
}

# sasl_skip NAME REASON: this client cannot do the mechanism.
sasl_skip() {
  echo "SKIP client=$1 mech=$MECH tls=$TLS reason=$2"
  exit 77
}

# sasl_finish NAME RC COUNT: print the verdict line and exit.
sasl_finish() {
  local name="$1" rc="$2" count="$3"
  if [ "$rc" = 0 ] && [ -n "$count" ]; then
    echo "COUNT $count"
    echo "PASS client=$name mech=$MECH tls=$TLS user=$USER_ count=$count"
    exit 0
  fi
  echo "FAIL client=$name mech=$MECH tls=$TLS user=$USER_ client-exit=$rc count=${count:-?}"
  exit 1
}
