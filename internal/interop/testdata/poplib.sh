#!/usr/bin/env bash
# Python poplib client (poplib_fetch.py): RETR every message, verify.
# From the shared POP3 harness (clients/poplib.sh), unchanged.
# Args: see common.sh (--host --port --user --pass --tls --cafile --expect --out ...)
# Extra: POPLIB_STRICT=1 makes protocol consistency-check failures fatal (default 1).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
parse_client_args "$@"
STRICT=()
[ "${POPLIB_STRICT:-1}" = 1 ] && STRICT=(--strict)
CA=(); [ -n "$CAFILE" ] && CA=(--cafile "$CAFILE")
EXP=(); [ -n "$EXPECT" ] && EXP=(--expect "$EXPECT")
rc=0
timeout "$TIMEOUT" "$PY" "$HERE/poplib_fetch.py" --host "$HOST" --port "$PORT" --user "$USER_" \
  --pass "$PASS" --tls "$TLS" "${CA[@]}" "${EXP[@]}" "${STRICT[@]}" --out "$OUT" >"$WORK/log" 2>&1 || rc=$?
grep -E '^(CHECK|CAPA|ERROR|  msg)' "$WORK/log" >&2
[ $rc != 0 ] && grep -v -E '^(CHECK|CAPA)' "$WORK/log" | tail -n 3 >&2
finish poplib $rc
