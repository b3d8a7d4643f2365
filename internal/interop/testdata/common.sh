# Shared argument parsing and verification for the client scripts (sourced).
# From the project's shared POP3 harness (clients/common.sh); changes: flat
# testdata/ layout, work dirs under $TMPDIR.
#
# Every client script accepts (env var in brackets, default after '='):
#   --host H        [POP3_HOST=127.0.0.1]
#   --port P        [POP3_PORT=11110 for none/stls, 11995 for pop3s]
#   --user U        [POP3_USER=test]
#   --pass PW       [POP3_PASS=secret]
#   --tls MODE      [POP3_TLS=none]   none | pop3s (implicit TLS) | stls (STLS upgrade, required)
#   --cafile F      [POP3_CAFILE=]    verify the server cert against F (e.g. the
#                                     Dovecot instance's ssl/cert.pem); empty = no verification
#   --expect SRC    [EXPECT=]         manifest file or Maildir holding what the mailbox
#                                     should contain; empty = fetch only, no verification
#   --out DIR       [OUT_DIR=mktemp]  where fetched messages go (kept only with --keep-out)
#   --keep-out                        do not delete the output/work dir
#   --timeout S     [CLIENT_TIMEOUT=120] kill the client after S seconds
# Exit status: 0 PASS, 1 FAIL, 77 SKIP (client cannot do the requested TLS mode), 2 usage.
# The last line printed is "PASS|FAIL|SKIP client=NAME tls=MODE ... ".

HARNESS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PY:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3 )}"

parse_client_args() {
  HOST="${POP3_HOST:-127.0.0.1}"
  PORT="${POP3_PORT:-}"
  USER_="${POP3_USER:-test}"
  PASS="${POP3_PASS:-secret}"
  TLS="${POP3_TLS:-none}"
  CAFILE="${POP3_CAFILE:-}"
  EXPECT="${EXPECT:-}"
  OUT="${OUT_DIR:-}"
  KEEP_OUT=0
  TIMEOUT="${CLIENT_TIMEOUT:-120}"
  while [ $# -gt 0 ]; do
    case "$1" in
      --host) HOST="$2"; shift 2;;
      --port) PORT="$2"; shift 2;;
      --user) USER_="$2"; shift 2;;
      --pass) PASS="$2"; shift 2;;
      --tls) TLS="$2"; shift 2;;
      --cafile) CAFILE="$2"; shift 2;;
      --expect) EXPECT="$2"; shift 2;;
      --out) OUT="$2"; shift 2;;
      --keep-out) KEEP_OUT=1; shift;;
      --timeout) TIMEOUT="$2"; shift 2;;
      -h|--help) sed -n '5,17p' "$HARNESS/common.sh"; exit 0;;
      *) echo "unknown option: $1" >&2; exit 2;;
    esac
  done
  case "$TLS" in none|pop3s|stls) ;; *) echo "bad --tls $TLS" >&2; exit 2;; esac
  if [ -z "$PORT" ]; then
    if [ "$TLS" = pop3s ]; then PORT=11995; else PORT=11110; fi
  fi
  if [ -n "$CAFILE" ]; then CAFILE="$(cd "$(dirname "$CAFILE")" && pwd)/$(basename "$CAFILE")"; fi
  if [ -n "$EXPECT" ]; then
    # prefer the manifest written by gen_maildir.py next to a Maildir: the
    # server may be renaming files in the Maildir while we read it.
    if [ -d "$EXPECT" ] && [ -f "${EXPECT%/}.manifest" ]; then EXPECT="${EXPECT%/}.manifest"; fi
  fi
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/pop3h-client.XXXXXX")"
  if [ -z "$OUT" ]; then OUT="$WORK/out"; fi
  mkdir -p "$OUT"
  if [ "$KEEP_OUT" = 0 ]; then trap 'rm -rf "$WORK"' EXIT; else trap 'echo "kept: work=$WORK out=$OUT" >&2' EXIT; fi
  T0=$(date +%s.%N)
}

mk_maildir() { mkdir -p "$1/new" "$1/cur" "$1/tmp"; }

# finish NAME RC|skip : verify OUT against EXPECT, print the verdict line, exit.
finish() {
  local name="$1" rc="$2" verdict detail el
  el=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
  if [ "$rc" = skip ]; then   # only the scripts themselves skip; a client's own
                               # exit 77 (e.g. mpop EX_NOPERM = auth failure) is a FAIL
    echo "SKIP client=$name tls=$TLS server=$HOST:$PORT reason=${SKIP_REASON:-unsupported}"
    exit 77
  fi
  if [ "$rc" != 0 ]; then
    echo "FAIL client=$name tls=$TLS server=$HOST:$PORT client-exit=$rc time=${el}s"
    exit 1
  fi
  if [ -z "$EXPECT" ]; then
    local n; n=$(find "$OUT" -type f ! -name '.*' | wc -l)
    echo "PASS client=$name tls=$TLS server=$HOST:$PORT fetched=$n (not verified: no --expect) time=${el}s"
    exit 0
  fi
  verdict=0
  detail=$("$PY" "$HARNESS/maildigest.py" compare "$EXPECT" "$OUT" ${STRIP_ARGS:-}) || verdict=$?
  echo "$detail" | sed -n '2,$p' >&2
  if [ $verdict = 0 ]; then
    echo "PASS client=$name tls=$TLS server=$HOST:$PORT $(echo "$detail" | head -1) time=${el}s"
    exit 0
  fi
  echo "FAIL client=$name tls=$TLS server=$HOST:$PORT $(echo "$detail" | head -1) time=${el}s"
  exit 1
}
