#!/usr/bin/env python3
"""Digest / compare message sets for the POP3 harness.

From the shared POP3 harness (tools/maildigest.py), unchanged.

A "message set" is compared as a multiset of sha256 digests of the
*normalised* message bytes:  CRLF -> LF, and a final LF appended if the
message does not end with one (a POP3 server must add CRLF before the
terminating "." in that case, so clients always see a trailing newline).

Sources understood (auto-detected):
  * a manifest file written by gen_maildir.py (or by `maildigest.py manifest`)
  * a Maildir (new/ + cur/; tmp/ and server metadata files are ignored)
  * a plain directory of *.eml / *.msg files (one message per file)
  * an mbox file ("From " separated, >From unquoting NOT applied)

Usage:
  maildigest.py manifest SRC [-o OUT]         print/write manifest of SRC
  maildigest.py compare EXPECTED ACTUAL [--strip-header NAME ...]
        exit 0 if the multisets match, 1 otherwise; prints a summary line
        "MATCH count=N bytes=B" or "MISMATCH ..." plus details.
"""
import argparse
import hashlib
import os
import sys


def normalise(data: bytes) -> bytes:
    data = data.replace(b"\r\n", b"\n")
    if not data.endswith(b"\n"):
        data += b"\n"
    return data


def crlf_size(data: bytes) -> int:
    """Octet count of the message as sent on the wire (every line CRLF)."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def strip_headers(data: bytes, names) -> bytes:
    """Remove (possibly folded) header fields named in `names` (lower-case)."""
    if not names:
        return data
    nl = b"\n"
    head, sep, body = data.partition(b"\n\n")
    if not sep:
        return data
    out, skip = [], False
    for line in head.split(nl):
        if line[:1] in (b" ", b"\t"):
            if not skip:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower().decode("latin-1")
        skip = name in names
        if not skip:
            out.append(line)
    return nl.join(out) + sep + body


def digest(data: bytes, strip=()):
    n = strip_headers(normalise(data), strip)
    return hashlib.sha256(n).hexdigest(), len(n)


def iter_maildir(path):
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.startswith("."):
                continue
            p = os.path.join(d, name)
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    yield name, f.read()


def iter_dir(path):
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        if os.path.isfile(p) and not name.startswith("."):
            with open(p, "rb") as f:
                yield name, f.read()


def iter_mbox(path):
    with open(path, "rb") as f:
        data = f.read()
    msgs, cur = [], None
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From ") and (cur is None or cur.endswith(b"\n\n") or cur == b""):
            if cur is not None:
                msgs.append(cur[:-1] if cur.endswith(b"\n\n") else cur)
            cur = b""
            continue
        if cur is None:
            cur = b""
        cur += line
    if cur is not None:
        msgs.append(cur[:-1] if cur.endswith(b"\n\n") else cur)
    for i, m in enumerate(msgs):
        yield "mbox#%d" % (i + 1), m


def is_manifest(path):
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        first = f.readline()
    return first.startswith(b"# pop3-harness manifest")


def load(path, strip=()):
    """Return list of (sha256, normbytes, wiresize, name)."""
    entries = []
    if is_manifest(path):
        if strip:
            raise SystemExit("--strip-header cannot be applied to a manifest; pass the Maildir")
        with open(path) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                sha, nb, ws, _size, name = line.rstrip("\n").split("\t")
                entries.append((sha, int(nb), int(ws), name))
        return entries
    if os.path.isdir(path):
        it = iter_maildir(path) if os.path.isdir(os.path.join(path, "cur")) or \
            os.path.isdir(os.path.join(path, "new")) else iter_dir(path)
    elif os.path.isfile(path):
        it = iter_mbox(path)
    else:
        raise SystemExit("no such source: %s" % path)
    for name, data in it:
        sha, nb = digest(data, strip)
        entries.append((sha, nb, crlf_size(data), name))
    return entries


def write_manifest(entries, out, raw_sizes=None):
    out.write("# pop3-harness manifest v1: sha256(normalised)\tnorm_bytes\twire_octets\tfile_bytes\tname\n")
    for i, (sha, nb, ws, name) in enumerate(entries):
        size = raw_sizes[i] if raw_sizes else -1
        out.write("%s\t%d\t%d\t%d\t%s\n" % (sha, nb, ws, size, name))


def compare(expected, actual):
    from collections import Counter
    ce = Counter(e[0] for e in expected)
    ca = Counter(a[0] for a in actual)
    eb = sum(e[1] for e in expected)
    ab = sum(a[1] for a in actual)
    missing = ce - ca
    extra = ca - ce
    ok = not missing and not extra
    return ok, len(expected), len(actual), eb, ab, missing, extra


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("manifest")
    m.add_argument("src")
    m.add_argument("-o", "--out")
    c = sub.add_parser("compare")
    c.add_argument("expected")
    c.add_argument("actual")
    c.add_argument("--strip-header", action="append", default=[],
                   help="header (case-insensitive) to drop before hashing: from ACTUAL, and from "
                        "EXPECTED too unless EXPECTED is a manifest (clients such as fetchers add "
                        "Received: lines above the ones the message already has)")
    c.add_argument("--label", default="")
    a = ap.parse_args()
    if a.cmd == "manifest":
        entries = load(a.src)
        if a.out:
            with open(a.out, "w") as f:
                write_manifest(entries, f)
        else:
            write_manifest(entries, sys.stdout)
        return 0
    strip = tuple(h.lower() for h in a.strip_header)
    exp = load(a.expected, strip if strip and not is_manifest(a.expected) else ())
    act = load(a.actual, strip)
    ok, ne, na, eb, ab, missing, extra = compare(exp, act)
    lbl = (a.label + ": ") if a.label else ""
    if ok:
        print("%sMATCH count=%d bytes=%d" % (lbl, na, ab))
        return 0
    print("%sMISMATCH expected count=%d bytes=%d, got count=%d bytes=%d, missing=%d extra=%d"
          % (lbl, ne, eb, na, ab, sum(missing.values()), sum(extra.values())))
    names = {}
    for e in exp:
        names.setdefault(e[0], e[3])
    for sha in list(missing)[:5]:
        print("  missing: %s (%s)" % (sha[:16], names.get(sha, "?")))
    anames = {}
    for e in act:
        anames.setdefault(e[0], e[3])
    for sha in list(extra)[:5]:
        print("  unexpected: %s (%s)" % (sha[:16], anames.get(sha, "?")))
    return 1


if __name__ == "__main__":
    sys.exit(main())
