#!/usr/bin/env bash
# fetchmail client: fetch all (--all --keep), deliver through a tiny MDA
# (deliver-maildir.sh) into a Maildir, verify.
# From the shared POP3 harness (clients/fetchmail.sh); the MDA path is quoted.
# Args: see common.sh.  Options used: --invisible (no Received: header),
# --norewrite, --sslproto '' for tls=none (else fetchmail would upgrade via STLS
# opportunistically), --sslproto tls1.2+ for stls (STLS mandatory), --ssl for pop3s,
# --sslcertfile CAFILE --sslcertck when --cafile is given, else --nosslcertck.
# FETCHMAIL_OPTS adds options (e.g. "--auth password" to force USER/PASS,
# "--uidl", "--limit 100000").
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
parse_client_args "$@"
mk_maildir "$OUT"
export FETCHMAILHOME="$WORK/fmhome"; mkdir -p "$FETCHMAILHOME"; chmod 700 "$FETCHMAILHOME"
RC="$WORK/fetchmailrc"; umask 077
printf 'poll "%s" protocol POP3 port %s\n  user "%s" there with password "%s" is "root" here\n' \
  "$HOST" "$PORT" "$USER_" "$PASS" >"$RC"
chmod 600 "$RC"
OPTS=(--nosyslog --nodetach --all --keep --invisible --norewrite
      --mda "bash '$HARNESS/deliver-maildir.sh' '$OUT'" -f "$RC" --pidfile "$WORK/fetchmail.pid")
case "$TLS" in
  none) OPTS+=(--sslproto '');;
  stls) OPTS+=(--sslproto tls1.2+);;
  pop3s) OPTS+=(--ssl --sslproto tls1.2+);;
esac
if [ "$TLS" != none ]; then
  if [ -n "$CAFILE" ]; then OPTS+=(--sslcertck --sslcertfile "$CAFILE" --sslcommonname localhost)
  else OPTS+=(--nosslcertck); fi
fi
# shellcheck disable=SC2206
OPTS+=(${FETCHMAIL_OPTS:-})
rc=0
timeout "$TIMEOUT" fetchmail "${OPTS[@]}" >"$WORK/log" 2>&1 || rc=$?
# fetchmail exit 0 = mail delivered, 1 = no mail (ok for an empty mailbox)
if [ $rc = 1 ] && [ -z "$(ls -A "$OUT/new")" ]; then rc=0; fi
grep -v -E 'Running as root is discouraged' "$WORK/log" | tail -n 3 >&2
finish fetchmail $rc
