#!/usr/bin/env bash
# mpop (its SASL mechanisms come from GNU SASL): log in with --auth=mech,
# which makes mpop use that mechanism or fail, and fetch every message
# (--keep=on --only-new=off) into a Maildir, whose files are counted. The
# trace is mpop --debug's "--> " and "<-- " lines.
# Args and output: see sasl-common.sh. TLS: none -> --tls=off; stls ->
# --tls=on --tls-starttls=on; pop3s -> --tls=on --tls-starttls=off, with
# --tls-trust-file (the certificate is for localhost). mpop's configuration
# file is an empty one of mode 0600 (-C), so that ~/.mpoprc plays no part.
#
# OAUTHBEARER and XOAUTH2 are mpop's own (not GNU SASL's); the token comes
# through --passwordeval like a password. mpop 1.4.18 sends OAUTHBEARER's
# initial response on the AUTH line however long it is, although RFC 5034 §4
# forbids an AUTH line over 255 octets (RFC 2449 §4); popbox accepts it, but
# a server holding to that answers "-ERR line too long", and the script then
# exits 77 (SKIP).
#
# EXTERNAL: --cert/--key go to --tls-cert-file/--tls-key-file, and the
# authorization identity is mpop's --user (mpop has no other authzid
# option). Without --user mpop sends no response to the server's empty
# challenge but its next command (STAT, taken as the response), so EXTERNAL
# without --authzid exits 77.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/sasl-common.sh"
parse_sasl_args "$@"
LOGIN_USER="$USER_"
if [ "$MECH" = EXTERNAL ]; then
  [ -z "$AUTHZID" ] && sasl_skip mpop "mpop-without-user-sends-no-EXTERNAL-response"
  LOGIN_USER="$AUTHZID"
elif [ -n "$AUTHZID" ]; then
  sasl_skip mpop "mpop-has-no-authzid-option"
fi
mkdir -p "$WORK/md/new" "$WORK/md/cur" "$WORK/md/tmp"
printf '%s\n' "$SASL_SECRET" >"$WORK/secret"
: >"$WORK/mpoprc"; chmod 600 "$WORK/mpoprc"
OPTS=(-C "$WORK/mpoprc" --debug --host="$HOST" --port="$PORT" --user="$LOGIN_USER"
      --passwordeval="cat $WORK/secret" --auth="$(printf '%s' "$MECH" | tr 'A-Z' 'a-z')"
      --delivery="maildir,$WORK/md" --keep=on --only-new=off --received-header=off
      --uidls-file="$WORK/uidls")
case "$TLS" in
  none) OPTS+=(--tls=off);;
  stls) OPTS+=(--tls=on --tls-starttls=on);;
  pop3s) OPTS+=(--tls=on --tls-starttls=off);;
esac
[ "$TLS" != none ] && OPTS+=(--tls-trust-file="$CAFILE" --tls-host-override=localhost)
[ -n "$CERT" ] && OPTS+=(--tls-cert-file="$CERT" --tls-key-file="$KEY")
[ -n "$SOURCE" ] && OPTS+=(--source-ip="$SOURCE")
rc=0
timeout "$TIMEOUT" mpop "${OPTS[@]}" >"$WORK/trace" 2>&1 || rc=$?
# The RETR data lines are traced too: keep the commands, the status lines
# and mpop's own messages.
tr -d '\r' <"$WORK/trace" | sed -e 's/^--> /C: /' -e 's/^<-- /S: /' -e 's/^-->$/C: /' |
  grep -E '^(C: |S: [-+]|S: SASL|mpop:)'
if [ "$MECH" = OAUTHBEARER ] && grep -q -- '^<-- -ERR line too long' "$WORK/trace" &&
   tr -d '\r' <"$WORK/trace" | grep -q -E '^--> AUTH OAUTHBEARER .{237}'; then
  sasl_skip mpop "mpop-sent-an-AUTH-line-over-255-octets-(RFC-5034-4)"
fi
COUNT=""
[ $rc = 0 ] && COUNT=$(find "$WORK/md/new" "$WORK/md/cur" -type f | wc -l)
sasl_finish mpop $rc "$COUNT"
