#!/usr/bin/env bash
# popbox fetch beside mpop, fetchmail and getmail6 over a 50 ms round-trip
# link, against the same Dovecot, in one run: the shared harness's
# bench/fetch-rtt.sh (network namespaces with a delay line) with popbox fetch
# as its custom client. Needs root and the harness (HARNESS, default
# ../shared/harness beside the repo). Extra arguments go to the harness
# script, e.g. --count-for fetchmail=300,getmail=300 --runs 3.
#
#   bench/fetch-rtt.sh [harness options]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
HARNESS="${HARNESS:-$REPO/../shared/harness}"
[ -d "$HARNESS" ] || { echo "harness not found at $HARNESS (set HARNESS)" >&2; exit 2; }
BIN="$(mktemp -d /tmp/popbox-rtt.XXXXXX)/popbox"
(cd "$REPO" && go build -o "$BIN" ./cmd/popbox)
exec "$HARNESS/bench/fetch-rtt.sh" --client-name popbox \
  --client-cmd "$REPO/bench/fetch-rtt-client.sh $BIN {host} {port} {user} {pass} {maildir} {workdir}" "$@"
