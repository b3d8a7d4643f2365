#!/usr/bin/env bash
# From the shared POP3 harness (tools/deliver-maildir.sh). Minimal MDA: deliver the message on stdin into Maildir $1 (tmp/ then rename to new/).
set -euo pipefail
D="$1"; mkdir -p "$D/tmp" "$D/new" "$D/cur"
n="$(date +%s.%N).P$$.R$RANDOM.harness"
cat >"$D/tmp/$n"
mv "$D/tmp/$n" "$D/new/$n"
