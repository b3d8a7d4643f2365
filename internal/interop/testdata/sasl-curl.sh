#!/usr/bin/env bash
# curl: log in with --login-options AUTH=MECH (curl then uses that mechanism
# or fails; it never falls back to USER/PASS) and LIST the mailbox. --authzid
# is passed as --sasl-authzid. The trace is curl -v's "> " and "< " lines.
# Args and output: see sasl-common.sh.
#
# curl does SCRAM-SHA-1/-256 only when built with libgsasl (curl >= 7.76,
# "gsasl" in the Features line of curl --version); Debian's curl is not, and
# then a SCRAM mechanism exits 77 (SKIP) instead of letting curl fail with
# "No known authentication mechanisms supported".
#
# OAUTHBEARER and XOAUTH2: the token goes in as --oauth2-bearer, the user as
# "user:" (no password). curl lets --oauth2-bearer override AUTH=: it sends
# OAUTHBEARER whenever the server offers it (curl issue #10259, fixed by
# curl PR #12790 in January 2024; Debian 12's curl 7.88 has the bug), so for
# XOAUTH2 a trace showing AUTH OAUTHBEARER exits 77 (SKIP).
#
# EXTERNAL: --cert/--key are the client certificate; curl's EXTERNAL
# message is its user name, so --authzid is passed as the user ("name:").
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/sasl-common.sh"
parse_sasl_args "$@"
case "$MECH" in
  SCRAM-*)
    if ! curl --version | grep -i '^Features:' | grep -qiw gsasl; then
      sasl_skip curl "curl-built-without-libgsasl-has-no-SCRAM"
    fi;;
esac
SCHEME=pop3; OPTS=(--login-options "AUTH=$MECH")
case "$TLS" in
  pop3s) SCHEME=pop3s;;
  stls) OPTS+=(--ssl-reqd);;
esac
[ -n "$CAFILE" ] && OPTS+=(--cacert "$CAFILE")
[ -n "$SOURCE" ] && OPTS+=(--interface "$SOURCE")
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"; }
# The password or token goes in a config file, off the command line.
{
  case "$MECH" in
    OAUTHBEARER|XOAUTH2)
      echo "user = $(quote "$USER_:")"
      echo "oauth2-bearer = $(quote "$SASL_SECRET")";;
    EXTERNAL)
      [ -n "$AUTHZID" ] && echo "user = $(quote "$AUTHZID:")";;
    *)
      echo "user = $(quote "$USER_:$SASL_SECRET")"
      [ -n "$AUTHZID" ] && echo "sasl-authzid = $(quote "$AUTHZID")";;
  esac
  if [ -n "$CERT" ]; then
    echo "cert = $(quote "$CERT")"
    echo "key = $(quote "$KEY")"
  fi
} >"$WORK/curl.cfg"
rc=0
timeout "$TIMEOUT" curl -sS -v -K "$WORK/curl.cfg" "${OPTS[@]}" "$SCHEME://$HOST:$PORT/" \
  >"$WORK/list" 2>"$WORK/trace" || rc=$?
# -v also shows TLS handshake records ("} [5 bytes data]"); the "* " lines
# are curl's own notes, kept for the failure report.
tr -d '\r' <"$WORK/trace" | sed -e 's/^> /C: /' -e 's/^< /S: /' | grep -v -E '^([{}] \[|\* *TLSv)'
if [ "$MECH" = XOAUTH2 ] && grep -q '^> AUTH OAUTHBEARER' "$WORK/trace"; then
  sasl_skip curl "curl-sent-AUTH-OAUTHBEARER-for-AUTH=XOAUTH2-(curl-issue-10259)"
fi
COUNT=""
[ $rc = 0 ] && COUNT=$(grep -c -E '^[0-9]+ [0-9]+' "$WORK/list")
sasl_finish curl $rc "$COUNT"
