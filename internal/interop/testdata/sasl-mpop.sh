#!/usr/bin/env bash
# mpop (its SASL mechanisms come from GNU SASL): log in with --auth=mech,
# which makes mpop use that mechanism or fail, and fetch every message
# (--keep=on --only-new=off) into a Maildir, whose files are counted. The
# trace is mpop --debug's "--> " and "<-- " lines.
# Args and output: see sasl-common.sh. TLS: none -> --tls=off; stls ->
# --tls=on --tls-starttls=on; pop3s -> --tls=on --tls-starttls=off, with
# --tls-trust-file (the certificate is for localhost). mpop's configuration
# file is an empty one of mode 0600 (-C), so that ~/.mpoprc plays no part.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/sasl-common.sh"
parse_sasl_args "$@"
[ -n "$AUTHZID" ] && sasl_skip mpop "mpop-has-no-authzid-option"
mkdir -p "$WORK/md/new" "$WORK/md/cur" "$WORK/md/tmp"
printf '%s\n' "$SASL_SECRET" >"$WORK/secret"
: >"$WORK/mpoprc"; chmod 600 "$WORK/mpoprc"
OPTS=(-C "$WORK/mpoprc" --debug --host="$HOST" --port="$PORT" --user="$USER_"
      --passwordeval="cat $WORK/secret" --auth="$(printf '%s' "$MECH" | tr 'A-Z' 'a-z')"
      --delivery="maildir,$WORK/md" --keep=on --only-new=off --received-header=off
      --uidls-file="$WORK/uidls")
case "$TLS" in
  none) OPTS+=(--tls=off);;
  stls) OPTS+=(--tls=on --tls-starttls=on);;
  pop3s) OPTS+=(--tls=on --tls-starttls=off);;
esac
[ "$TLS" != none ] && OPTS+=(--tls-trust-file="$CAFILE" --tls-host-override=localhost)
[ -n "$SOURCE" ] && OPTS+=(--source-ip="$SOURCE")
rc=0
timeout "$TIMEOUT" mpop "${OPTS[@]}" >"$WORK/trace" 2>&1 || rc=$?
# The RETR data lines are traced too: keep the commands, the status lines
# and mpop's own messages.
tr -d '\r' <"$WORK/trace" | sed -e 's/^--> /C: /' -e 's/^<-- /S: /' -e 's/^-->$/C: /' |
  grep -E '^(C: |S: [-+]|S: SASL|mpop:)'
COUNT=""
[ $rc = 0 ] && COUNT=$(find "$WORK/md/new" "$WORK/md/cur" -type f | wc -l)
sasl_finish mpop $rc "$COUNT"
