#!/usr/bin/env bash
# getmail6 client: SimplePOP3Retriever / SimplePOP3SSLRetriever -> Maildir
# destination, read_all=true, delete=false, no Delivered-To/Received headers; verify.
# From the shared POP3 harness (clients/getmail.sh), paths adjusted.
# Args: see common.sh.  getmail6 has no STLS support for POP3: tls=stls
# exits 77 (SKIP).  --cafile sets ca_certs (+ ssl_cert_hostname=localhost).
# As root, delivery is done as GETMAIL_USER (default nobody; getmail refuses root).
# getmail runs via getmail_nohang.py, which fixes getmail6 6.18's lost-SIGCHLD
# race (random multi-minute hangs after a delivery); GETMAIL_STOCK=1 runs plain getmail.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
parse_client_args "$@"
if [ "$TLS" = stls ]; then SKIP_REASON="getmail6-has-no-POP3-STLS"; finish getmail skip; fi
mk_maildir "$OUT"
GMD="$WORK/getmail"; mkdir -p "$GMD"
# getmail refuses to deliver into a Maildir as root: deliver as GETMAIL_USER (nobody)
DUSER=""
if [ "$(id -u)" = 0 ]; then
  DUSER="${GETMAIL_USER:-nobody}"
  chmod o+x "$WORK"; chown -R "$DUSER" "$OUT"
fi
TYPE=SimplePOP3Retriever; [ "$TLS" = pop3s ] && TYPE=SimplePOP3SSLRetriever
{
  echo "[retriever]"
  echo "type = $TYPE"
  echo "server = $HOST"
  echo "port = $PORT"
  echo "username = $USER_"
  echo "password = $PASS"
  if [ "$TLS" = pop3s ] && [ -n "$CAFILE" ]; then
    echo "ca_certs = $CAFILE"
    echo "ssl_cert_hostname = localhost"
  fi
  echo "[destination]"
  echo "type = Maildir"
  echo "path = $OUT/"
  [ -n "$DUSER" ] && echo "user = $DUSER"
  echo "[options]"
  echo "read_all = true"
  echo "delete = false"
  echo "delivered_to = false"
  echo "received = false"
  echo "verbose = 1"
  echo "message_log_syslog = false"
} >"$GMD/getmailrc"
chmod 600 "$GMD/getmailrc"
rc=0
GETMAIL=(/usr/bin/python3 "$HARNESS/getmail_nohang.py")
[ "${GETMAIL_STOCK:-0}" = 1 ] && GETMAIL=(getmail)
timeout "$TIMEOUT" "${GETMAIL[@]}" --getmaildir "$GMD" --rcfile getmailrc >"$WORK/log" 2>&1 || rc=$?
tail -n 2 "$WORK/log" >&2
finish getmail $rc
