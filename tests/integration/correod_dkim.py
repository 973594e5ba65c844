"""correod DKIM: `correod dkim-keygen` makes a key and prints its DNS record;
messages signed by localserver/dkim (through tests/tools/dkimsign) verify
with an independent verifier (python3-dkim, dkimpy) given that record, and
stop verifying once a signed header or the body is changed.

argv: [script, correod_exe, source_root]
"""
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correod_fixture import Correod  # noqa: E402

import dkim  # noqa: E402  (Debian: python3-dkim)

NAME = "correod_dkim"
passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what)


def find_dkimsign(exe):
    cands = []
    if os.environ.get("CORREO_BUILDDIR"):
        cands.append(os.path.join(os.environ["CORREO_BUILDDIR"], "tests", "tools", "dkimsign"))
    cands.append(os.path.join(os.path.dirname(os.path.abspath(exe)), "..", "tests", "tools",
                              "dkimsign"))
    for c in cands:
        if os.access(c, os.X_OK):
            return os.path.abspath(c)
    raise RuntimeError("tests/tools/dkimsign not built (looked in %s)" % ", ".join(cands))


def txt_strings(record):
    """The character-strings of a zone-file TXT record, in order."""
    inside = record[record.index("(") + 1:record.rindex(")")]
    return re.findall(r'"([^"]*)"', inside)


# (name, message) -- every message with CRLF line ends.
MESSAGES = [
    ("plain",
     b"From: Alice <alice@example.test>\r\nTo: bob@example.org\r\n"
     b"Subject: plain\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
     b"Message-ID: <plain@example.test>\r\n\r\nHello Bob.\r\n"),
    ("folded headers",
     b"From: Alice\r\n <alice@example.test>\r\n"
     b"To: bob@example.org,\r\n\tcarol@example.org,\r\n   dave@example.org\r\n"
     b"Subject: a subject that goes on\r\n and on over\r\n\tthree lines\r\n"
     b"Content-Type: text/plain;\r\n charset=us-ascii;\r\n format=flowed\r\n"
     b"\r\nbody\r\n"),
    ("trailing blank lines",
     b"From: alice@example.test\r\nTo: bob@example.org\r\nSubject: blanks\r\n"
     b"\r\nline one\r\n\r\nline three\r\n\r\n\r\n\r\n   \r\n\r\n"),
    ("8-bit body",
     b"From: =?utf-8?q?Jos=C3=A9?= <jose@example.test>\r\nTo: bob@example.org\r\n"
     b"Subject: 8bit\r\nMIME-Version: 1.0\r\n"
     b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
     b"\r\nCaf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e \xe2\x82\xac 100\r\n"
     b"\xf0\x9f\x93\xa7 and Latin-1 \xe9\xe8 bytes\r\n"),
    ("odd whitespace",
     b"From:alice@example.test\r\nTo:   bob@example.org   \r\n"
     b"SUBJECT:\t\tTabs  and   spaces \t \r\ncc: \r\n"
     b"X-Unsigned: \t anything\r\n"
     b"\r\n  leading spaces\r\n\ttabs\tinside\t\r\nend with spaces   \r\n \t \r\n"),
    ("repeated and unusual headers",
     b"Received: from a by b\r\nTo: one@example.org\r\nFrom: alice@example.test\r\n"
     b"To: two@example.org\r\nReply-To: r@example.test\r\nIn-Reply-To: <x@y>\r\n"
     b"References: <w@y>\r\n <x@y>\r\nX-Mailer: test\r\n\r\nbody\r\n"),
    ("empty body",
     b"From: alice@example.test\r\nTo: bob@example.org\r\nSubject: empty\r\n\r\n"),
    ("multipart",
     b"From: alice@example.test\r\nTo: bob@example.org\r\nSubject: parts\r\n"
     b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
     b"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\ntext part\r\n"
     b"--b1\r\nContent-Type: application/octet-stream\r\n"
     b"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b1--\r\n"),
]


def main():
    exe = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="correod-dkim-")
    try:
        run(exe, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d passed, %d failed" % (NAME, passed, failed))
    return 1 if failed else 0


def run(exe, tmp):
    signer = find_dkimsign(exe)
    with Correod(exe, tmp, start=False) as d:
        key = os.path.join(d.dir, "dkim.key")

        # keygen: key file, record, config lines
        r = d.cmd("dkim-keygen", "-c", d.conf, check=False)
        check(r.returncode == 0, "dkim-keygen exit %d: %s" % (r.returncode, r.stderr))
        check(os.path.isfile(key), "dkim-keygen wrote no %s" % key)
        mode = stat.S_IMODE(os.stat(key).st_mode) if os.path.exists(key) else None
        check(mode == 0o600, "key mode %r, want 0600" % mode)
        with open(key, "rb") as f:
            pem = f.read()
        check(pem.startswith(b"-----BEGIN PRIVATE KEY-----\n"), "key is not PEM PKCS#8")
        lines = [ln for ln in r.stdout.splitlines() if " IN TXT " in ln]
        check(len(lines) == 1, "one TXT record line expected in: " + r.stdout)
        record = lines[0]
        check(record.startswith("correod._domainkey.example.test. IN TXT ( "),
              "record owner: " + record)
        strings = txt_strings(record)
        check(all(len(s) <= 255 for s in strings), "a TXT string over 255 bytes")
        txt = "".join(strings).encode()
        check(txt.startswith(b"v=DKIM1; k=rsa; p=MII"), "record data: %r" % txt[:40])
        for want in ("dkim_domain   example.test", "dkim_selector correod",
                     "dkim_key      " + key):
            check(want in r.stdout, "config line %r not printed" % want)

        # A second run does not touch the key.
        r2 = d.cmd("dkim-keygen", "-c", d.conf, check=False)
        check(r2.returncode == 1 and "already exists" in r2.stderr,
              "second keygen: %d %s" % (r2.returncode, r2.stderr))
        with open(key, "rb") as f:
            check(f.read() == pem, "second keygen changed the key")

        # --selector/--domain/--key without a config
        other = os.path.join(tmp, "other.key")
        r3 = subprocess.run([d.exe, "dkim-keygen", "--selector", "s2", "--domain",
                             "mail.example.org", "--key", other],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, CORREOD_CONF=os.path.join(tmp, "none")))
        check(r3.returncode == 0 and os.path.isfile(other)
              and "s2._domainkey.mail.example.org. IN TXT" in r3.stdout,
              "keygen with options: %d %s" % (r3.returncode, r3.stderr))

        def dns(name, timeout=5):
            if name.rstrip(b".") == b"correod._domainkey.example.test":
                return txt
            return None

        def sign(msg):
            p = subprocess.run([signer, "example.test", "correod", key], input=msg,
                               capture_output=True, timeout=60)
            if p.returncode != 0:
                raise RuntimeError("dkimsign: " + p.stderr.decode(errors="replace"))
            return p.stdout

        def verify(msg):
            try:
                return dkim.verify(msg, dnsfunc=dns)
            except dkim.DKIMException as ex:
                print("  dkim: %s" % ex)
                return False

        for name, msg in MESSAGES:
            signed = sign(msg)
            hdr_end = signed.index(msg)
            hdr = signed[:hdr_end]
            check(hdr.startswith(b"DKIM-Signature: ") and hdr.endswith(b"\r\n"),
                  "%s: signature header form" % name)
            check(all(len(ln) <= 78 for ln in hdr[:-2].split(b"\r\n")),
                  "%s: a signature line over 78 characters" % name)
            check(verify(signed), "%s: does not verify" % name)

            # Relaxed canonicalization: whitespace changes are fine.
            loose = signed + b"\r\n\r\n"
            check(verify(loose), "%s: extra blank lines at the end break it" % name)
            unsigned = signed.replace(b"\r\n\r\n", b"\r\nX-Added: later\r\n\r\n", 1)
            check(verify(unsigned), "%s: an unsigned header field breaks it" % name)

            # Changes that must break it.
            body_at = signed.index(b"\r\n\r\n") + 4
            tampered_body = signed[:body_at] + b"Injected line.\r\n" + signed[body_at:]
            check(not verify(tampered_body), "%s: a changed body still verifies" % name)
            tampered_subject = re.sub(rb"(?im)^(subject:[^\r]*)", rb"\1!", signed, count=1)
            if tampered_subject != signed:
                check(not verify(tampered_subject),
                      "%s: a changed Subject still verifies" % name)
            extra_from = signed[:hdr_end] + b"From: mallory@evil.example\r\n" + signed[hdr_end:]
            check(not verify(extra_from), "%s: an added From still verifies" % name)
            tampered_to = re.sub(rb"(?im)^(to\s*:[^\r]*)", rb"\1, eve@evil.example", signed,
                                 count=1)
            if tampered_to != signed:
                check(not verify(tampered_to), "%s: a changed To still verifies" % name)

        # No From: refused.
        p = subprocess.run([signer, "example.test", "correod", key],
                           input=b"To: bob@example.org\r\n\r\nbody\r\n",
                           capture_output=True, timeout=60)
        check(p.returncode == 1 and b"From" in p.stderr,
              "a message without From: %d %r" % (p.returncode, p.stderr))


if __name__ == "__main__":
    sys.exit(main())
