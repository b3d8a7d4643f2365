#!/usr/bin/env bash
# One popbox fetch run for bench/fetch-rtt.sh: plain POP3 and USER/PASS, as
# the other clients there use, keep mode, into the given Maildir, with a
# fresh journal so every run downloads the whole mailbox.
#   fetch-rtt-client.sh POPBOX HOST PORT USER PASS MAILDIR WORKDIR
set -euo pipefail
bin=$1 host=$2 port=$3 user=$4 pass=$5 maildir=$6 work=$7
tmp="$(mktemp -d "$work/popbox-fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' "$pass" >"$tmp/pw"
target="$maildir"
if [ -n "${POPBOX_DIAG_TMPFS:-}" ]; then
  # Diagnostics only: deliver into a Maildir on tmpfs, to separate the
  # network path from this machine's file-creation cost; copied over after.
  target="$(mktemp -d /dev/shm/popbox-diag.XXXXXX)/Maildir"
fi
cat >"$tmp/fetch.toml" <<EOT
[[account]]
name = "rtt"
server = "$host"
port = $port
tls = "none"
user = "$user"
password_command = "cat $tmp/pw"
auth = "user"
deliver = "maildir:$target"
keep = true
state_dir = "$tmp/state"
EOT
rc=0
if [ -n "${POPBOX_FETCH_LOG:-}" ]; then   # diagnostics: a verbose log of each run, appended
  { echo "# start $(date +%s.%N)"; TIMEFORMAT="# real %R user %U sys %S"; time { "$bin" fetch -c "$tmp/fetch.toml" -v 2>&1 || rc=$?; }; echo "# end $(date +%s.%N) rc=$rc"; } >>"$POPBOX_FETCH_LOG" 2>&1
else
  "$bin" fetch -c "$tmp/fetch.toml" -q || rc=$?
fi
if [ "$target" != "$maildir" ]; then
  cp -a "$target"/new/. "$maildir"/new/ && rm -rf "$(dirname "$target")"
fi
# 0: new mail fetched, 1: nothing new; anything else failed.
[ "$rc" -le 1 ] || { echo "popbox fetch exited $rc" >&2; exit "$rc"; }
