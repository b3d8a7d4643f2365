#!/usr/bin/env bash
# Python poplib with the SASL mechanisms of sasl-poplib.py (PLAIN, LOGIN,
# SCRAM-SHA-256, SCRAM-SHA-256-PLUS, OAUTHBEARER, XOAUTH2 and EXTERNAL,
# written there from the specifications). The trace is poplib's debug
# output: "*cmd* 'line'" and "*resp* b'line'".
# Args and output: see sasl-common.sh.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/sasl-common.sh"
parse_sasl_args "$@"
PY="${PY:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3 )}"
case "$MECH" in
  PLAIN|LOGIN|SCRAM-SHA-256|SCRAM-SHA-256-PLUS|OAUTHBEARER|XOAUTH2|EXTERNAL) ;;
  *) sasl_skip poplib "sasl-poplib.py-does-not-implement-$MECH";;
esac
ARGS=(); [ -n "$CAFILE" ] && ARGS=(--cafile "$CAFILE")
[ -n "$SOURCE" ] && ARGS+=(--source "$SOURCE")
[ -n "$CERT" ] && ARGS+=(--cert "$CERT" --key "$KEY")
rc=0
SASL_SECRET="$SASL_SECRET" timeout "$TIMEOUT" "$PY" "$HERE/sasl-poplib.py" --host "$HOST" --port "$PORT" \
  --tls "$TLS" "${ARGS[@]}" --user "$USER_" --mech "$MECH" --authzid "$AUTHZID" >"$WORK/trace" 2>&1 || rc=$?
sed -e "s/^\*cmd\* '\(.*\)'\$/C: \1/" -e "s/^\*resp\* b'\(.*\)'\$/S: \1/" "$WORK/trace" | grep -v '^\*[a-z]*\* '
COUNT=""
[ $rc = 0 ] && COUNT=$(sed -n 's/^COUNTED \([0-9]*\)$/\1/p' "$WORK/trace")
sasl_finish poplib $rc "$COUNT"
