#!/usr/bin/env bash
# mpop client: all messages (--only-new=off --keep=on), delivery maildir,
# no Received header, verify.
# From the shared POP3 harness (clients/mpop.sh), unchanged.
# Args: see common.sh.  tls: none -> --tls=off; pop3s -> --tls=on
# --tls-starttls=off; stls -> --tls=on --tls-starttls=on.  --cafile ->
# --tls-trust-file (+ --tls-host-override=localhost), else --tls-certcheck=off.
# MPOP_AUTH (default: "user" without TLS, "on" = best method with TLS) sets --auth;
# mpop refuses to send a password over an unencrypted link with --auth=on.
# MPOP_OPTS adds options (e.g. --pipelining=off).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
parse_client_args "$@"
mk_maildir "$OUT"
umask 077
printf '%s\n' "$PASS" >"$WORK/pw"
: >"$WORK/mpoprc"; chmod 600 "$WORK/mpoprc"
OPTS=(-C "$WORK/mpoprc" --host="$HOST" --port="$PORT" --user="$USER_" --passwordeval="cat $WORK/pw"
      --delivery="maildir,$OUT" --keep=on --only-new=off --received-header=off
      --uidls-file="$WORK/uidls" --half-quiet)
case "$TLS" in
  none) OPTS+=(--tls=off --auth="${MPOP_AUTH:-user}");;
  pop3s) OPTS+=(--tls=on --tls-starttls=off --auth="${MPOP_AUTH:-on}");;
  stls) OPTS+=(--tls=on --tls-starttls=on --auth="${MPOP_AUTH:-on}");;
esac
if [ "$TLS" != none ]; then
  if [ -n "$CAFILE" ]; then OPTS+=(--tls-trust-file="$CAFILE" --tls-host-override=localhost)
  else OPTS+=(--tls-certcheck=off); fi
fi
# shellcheck disable=SC2206
OPTS+=(${MPOP_OPTS:-})
rc=0
timeout "$TIMEOUT" mpop "${OPTS[@]}" >"$WORK/log" 2>&1 || rc=$?
tail -n 2 "$WORK/log" >&2
finish mpop $rc
