#!/usr/bin/env python3
"""Log in to a POP3 server with one SASL mechanism through Python's poplib.

sasl-poplib.py --host H --port P --tls none|stls|pop3s [--cafile F] --user U
               --mech PLAIN|LOGIN|SCRAM-SHA-256|SCRAM-SHA-256-PLUS|
                      OAUTHBEARER|XOAUTH2|EXTERNAL [--authzid Z]
               [--cert F --key F] [--source LOCAL-ADDRESS]
The password, or the bearer token, is read from the environment variable
SASL_SECRET.

poplib has no SASL support, so the AUTH exchange (RFC 5034) is driven with
poplib's own command primitives, and the mechanisms are written here from
their specifications, independently of the server's code: PLAIN (RFC 4616)
and SCRAM (RFC 5802, RFC 7677) send an initial response, LOGIN
(draft-murchison-sasl-login-00) answers the server's two challenges. SCRAM
checks the server's signature (v=), so a server that does not know the
password fails here even if it says +OK. SCRAM-SHA-256-PLUS binds to the
TLS channel with tls-server-end-point (RFC 5929 §4): the hash of the server's
certificate. Python's ssl module offers no keying-material exporter, so
tls-exporter (RFC 9266) is out of reach here.

OAUTHBEARER (RFC 7628) sends a GS2 header naming the user, "n,a=USER,", and
"auth=Bearer TOKEN"; XOAUTH2 (Google's) sends "user=USER" and the same
auth. A refused token is answered with a challenge, the JSON error report
of RFC 7628 §3.2.2, to which the client sends the dummy response (%x01 for
OAUTHBEARER, an empty line for XOAUTH2) and then gets -ERR. EXTERNAL
(RFC 4422 Appendix A) presents the TLS client certificate given by --cert
and --key and sends the authorization identity, "=" (empty) if none.

An initial response goes on the AUTH line only if that line stays within
255 octets (RFC 5034 §4, RFC 2449 §4); otherwise it answers the server's
empty challenge.

After the login: STAT and UIDL, whose counts must agree, then QUIT. poplib's
debug trace (set_debuglevel(2)) is printed; sasl-poplib.sh rewrites it.
Exit status: 0 logged in and counted, 1 refused or failed.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import poplib
import socket
import ssl
import sys


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def plain(user, password, authzid):
    msg = "%s\0%s\0%s" % (authzid or "", user, password)
    return msg.encode("utf-8"), [], None


class SCRAM:
    """The client side of SCRAM-SHA-256 without channel binding (gs2 "n")."""

    def __init__(self, user, password, authzid, cbind=None):
        """cbind: (type, data) to bind to the channel (-PLUS), or None."""
        if not password.isascii():
            raise SystemExit("SCRAM here needs an ASCII password (no SASLprep)")
        self.password = password.encode("ascii")
        self.nonce = b64(os.urandom(24))
        flag, self.cbdata = ("p=" + cbind[0], cbind[1]) if cbind else ("n", b"")
        self.gs2 = "%s,%s," % (flag, ("a=" + self.escape(authzid)) if authzid else "")
        self.first_bare = "n=%s,r=%s" % (self.escape(user), self.nonce)
        self.server_signature = None

    @staticmethod
    def escape(name):
        return name.replace("=", "=3D").replace(",", "=2C")

    def first(self) -> bytes:
        return (self.gs2 + self.first_bare).encode("utf-8")

    def final(self, server_first: bytes) -> bytes:
        sf = server_first.decode("utf-8")
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        if not attrs.get("r", "").startswith(self.nonce) or len(attrs["r"]) <= len(self.nonce):
            raise SystemExit("SCRAM: server nonce %r does not extend ours" % attrs.get("r"))
        iterations = int(attrs["i"])
        if iterations < 4096:
            raise SystemExit("SCRAM: %d iterations, RFC 7677 wants at least 4096" % iterations)
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs["s"]), iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = "c=%s,r=%s" % (b64(self.gs2.encode("utf-8") + self.cbdata), attrs["r"])
        auth_message = ",".join((self.first_bare, sf, without_proof)).encode("utf-8")
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.server_signature = hmac.digest(server_key, auth_message, "sha256")
        return ("%s,p=%s" % (without_proof, b64(proof))).encode("utf-8")

    def verify(self, server_final: bytes):
        sf = server_final.decode("utf-8")
        if sf.startswith("e="):
            raise SystemExit("SCRAM: server error %s" % sf)
        if not sf.startswith("v=") or not hmac.compare_digest(
                base64.b64decode(sf[2:]), self.server_signature):
            raise SystemExit("SCRAM: wrong server signature %r" % sf)
        print("SCRAM: server signature verified")


def server_end_point(p):
    """tls-server-end-point (RFC 5929 §4.1): the hash of the server's
    certificate with its signature's hash function, SHA-256 for MD5 and
    SHA-1. The signature algorithm is found by its OID in the DER (ssl
    does not parse it); anything not SHA-384 or SHA-512 is taken as SHA-256,
    which is right for popbox's self-signed ECDSA-SHA256 certificate."""
    der = p.sock.getpeercert(binary_form=True)
    oids = {
        "sha384": (bytes.fromhex("06082a8648ce3d040303"), bytes.fromhex("06092a864886f70d01010c")),
        "sha512": (bytes.fromhex("06082a8648ce3d040304"), bytes.fromhex("06092a864886f70d01010d")),
    }
    for name, ids in oids.items():
        if any(i in der for i in ids):
            return hashlib.new(name, der).digest()
    return hashlib.sha256(der).digest()


def sasl_name(name):
    """RFC 5801 §4: "," and "=" in a GS2 authzid are escaped."""
    return name.replace("=", "=3D").replace(",", "=2C")


def oauth_error(dummy):
    """The answer to an OAuth error report (RFC 7628 §3.2.2): print it and
    return the dummy response; the server then sends -ERR."""
    def answer(challenge):
        report = json.loads(challenge)
        print("OAUTH-ERROR %s" % json.dumps(report, sort_keys=True))
        if report.get("status") in (None, "success"):
            raise SystemExit("OAuth error report without an error status: %r" % report)
        return dummy
    return answer


def authenticate(p, mech, user, password, authzid):
    """Run AUTH mech; return the final +OK line or raise poplib.error_proto."""
    ir = None   # the initial response, if the mechanism starts with one
    answers = []
    optional = 0  # answers at the end the server may not ask for
    if mech == "PLAIN":
        ir = plain(user, password, authzid)[0]
    elif mech == "LOGIN":
        if authzid:
            raise SystemExit("LOGIN has no authorization identity")
        answers = [user.encode("utf-8"), password.encode("utf-8")]
    elif mech in ("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"):
        cbind = None
        if mech.endswith("-PLUS"):
            if not isinstance(p.sock, ssl.SSLSocket):
                raise SystemExit("%s needs TLS" % mech)
            cbind = ("tls-server-end-point", server_end_point(p))
        scram = SCRAM(user, password, authzid, cbind)
        ir = scram.first()
        answers = [scram.final, scram.verify]
    elif mech == "OAUTHBEARER":
        # RFC 7628 §3.1: gs2-header kvsep *kvpair kvsep. The authzid is the
        # user; host and port are optional and left out.
        ir = ("n,a=%s,\x01auth=Bearer %s\x01\x01" % (sasl_name(authzid or user), password)).encode("utf-8")
        answers, optional = [oauth_error(b"\x01")], 1
    elif mech == "XOAUTH2":
        ir = ("user=%s\x01auth=Bearer %s\x01\x01" % (authzid or user, password)).encode("utf-8")
        answers, optional = [oauth_error(b"")], 1
    elif mech == "EXTERNAL":
        if not isinstance(p.sock, ssl.SSLSocket):
            raise SystemExit("EXTERNAL needs TLS")
        ir = authzid.encode("utf-8")
    else:
        raise SystemExit("mechanism %s not implemented here" % mech)
    cmd = "AUTH " + mech
    if ir is not None:
        # RFC 5034 §4: "=" is an empty initial response; one that would make
        # the line longer than 255 octets with CRLF goes after an empty
        # challenge instead.
        arg = b64(ir) or "="
        if len(cmd) + 1 + len(arg) + 2 <= 255:
            cmd += " " + arg
        else:
            answers.insert(0, ir)
            print("INITIAL-RESPONSE too long for the AUTH line: sent after the empty challenge")
    resp = p._shortcmd(cmd)
    # RFC 5034 §4: "+ base64" is a challenge, "+OK" the end.
    while not resp.startswith(b"+OK"):
        if not (resp == b"+" or resp.startswith(b"+ ")) or not answers:
            raise poplib.error_proto("unexpected reply %r" % resp)
        challenge = base64.b64decode(resp[1:].strip(), validate=True)
        answer = answers.pop(0)
        if callable(answer):
            answer = answer(challenge) or b""
        resp = p._shortcmd(b64(answer))
    if len(answers) > optional:
        raise SystemExit("server said +OK before the exchange was complete (%d steps left)" % len(answers))
    return resp


def with_source(cls, source):
    """cls connecting from the local address source (poplib has no option)."""
    class Sourced(cls):
        def _create_socket(self, timeout):
            sock = socket.create_connection((self.host, self.port), timeout, (source, 0))
            if isinstance(self, poplib.POP3_SSL):
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
            return sock
    return Sourced


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", choices=["none", "pop3s", "stls"], default="none")
    ap.add_argument("--cafile")
    ap.add_argument("--user", required=True)
    ap.add_argument("--mech", required=True)
    ap.add_argument("--authzid", default="")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--source")
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()
    password = os.environ["SASL_SECRET"]

    ctx = None
    if a.tls != "none":
        ctx = ssl.create_default_context(cafile=a.cafile)
        ctx.check_hostname = False  # the certificate names localhost
        if a.cert:
            ctx.load_cert_chain(a.cert, a.key)
    cls = poplib.POP3_SSL if a.tls == "pop3s" else poplib.POP3
    if a.source:
        cls = with_source(cls, a.source)
    if a.tls == "pop3s":
        p = cls(a.host, a.port, timeout=a.timeout, context=ctx)
    else:
        p = cls(a.host, a.port, timeout=a.timeout)
    p.set_debuglevel(2)
    if a.tls == "stls":
        p.stls(context=ctx)  # sends CAPA first and checks for STLS
    caps = p.capa()
    if a.mech not in caps.get("SASL", []):
        print("ERROR: CAPA SASL %s lacks %s" % (caps.get("SASL"), a.mech))
        return 1
    authenticate(p, a.mech, a.user, password, a.authzid)
    count, _ = p.stat()
    _, uidls, _ = p.uidl()
    if len(uidls) != count:
        print("ERROR: STAT counts %d messages, UIDL lists %d" % (count, len(uidls)))
        return 1
    p.quit()
    print("COUNTED %d" % count)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (poplib.error_proto, OSError, ssl.SSLError) as e:
        print("ERROR: %s: %s" % (type(e).__name__, e))
        sys.exit(1)
