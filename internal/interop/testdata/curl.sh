#!/usr/bin/env bash
# curl pop3:// / pop3s:// client: LIST via one request, then RETR 1..n with URL
# globbing (one curl process, connection re-used), verify.
# From the shared POP3 harness (clients/curl.sh), unchanged.
# Args: see common.sh.  TLS: pop3s -> pop3s://, stls -> pop3:// --ssl-reqd.
# curl authenticates with SASL (AUTH PLAIN) when the server offers it, else USER/PASS;
# CURL_LOGIN_OPTIONS (e.g. "AUTH=+APOP" or "AUTH=PLAIN") is passed as --login-options.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
parse_client_args "$@"
SCHEME=pop3; TLSOPT=()
case "$TLS" in
  pop3s) SCHEME=pop3s;;
  stls) TLSOPT=(--ssl-reqd);;
esac
if [ -n "$CAFILE" ]; then TLSOPT+=(--cacert "$CAFILE"); else TLSOPT+=(-k); fi
[ -n "${CURL_LOGIN_OPTIONS:-}" ] && TLSOPT+=(--login-options "$CURL_LOGIN_OPTIONS")
BASE="$SCHEME://$HOST:$PORT"
CFG="$WORK/curl.cfg"; umask 077
printf 'user = "%s:%s"\n' "$USER_" "$PASS" >"$CFG"   # keep the password off the command line
rc=0
timeout "$TIMEOUT" curl -sS -K "$CFG" "${TLSOPT[@]}" "$BASE/" >"$WORK/list" 2>"$WORK/err" || rc=$?
if [ $rc = 0 ]; then
  N=$(grep -c -E '^[0-9]+ [0-9]+' "$WORK/list" || true)
  echo "LIST: $N messages" >&2
  if [ "$N" -gt 0 ]; then
    timeout "$TIMEOUT" curl -sS -K "$CFG" "${TLSOPT[@]}" "$BASE/[1-$N]" -o "$OUT/#1.eml" 2>>"$WORK/err" || rc=$?
  fi
fi
[ -s "$WORK/err" ] && head -5 "$WORK/err" >&2
finish curl $rc
