"""A private SMTP server for tests: a self-signed certificate made with the
openssl command, tests/integration/smtp_server.py (aiosmtpd) on a loopback
port chosen by the kernel, and the messages it received.

    with SmtpFixture(srcdir, tmp) as smtp:
        smtp.port, smtp.fingerprint, smtp.messages()
"""
import base64
import json
import os
import subprocess


class SmtpFixture:
    def __init__(self, srcdir, tmp, extra=()):
        self.srcdir, self.tmp, self.extra = srcdir, tmp, list(extra)
        self.outdir = os.path.join(tmp, "received")
        self.cert = os.path.join(tmp, "cert.pem")
        self.key = os.path.join(tmp, "key.pem")
        self.proc = None

    def __enter__(self):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert], check=True, capture_output=True)
        out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in",
                              self.cert], check=True, capture_output=True, text=True).stdout
        self.fingerprint = out.strip().split("=", 1)[1]
        os.makedirs(self.outdir, exist_ok=True)
        python = os.environ.get("PYTHON", "/usr/bin/python3")
        self.proc = subprocess.Popen(
            [python, os.path.join(self.srcdir, "tests/integration/smtp_server.py"),
             "--mode", "starttls", "--cert", self.cert, "--key", self.key,
             "--outdir", self.outdir, "--stdin-eof-exits"] + self.extra,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError("smtp_server.py did not start: %r" % line)
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def messages(self):
        """(record, data bytes) of each message received, in order."""
        out = []
        names = sorted((f for f in os.listdir(self.outdir) if f.endswith(".json")),
                       key=lambda n: int(n[4:-5]))
        for name in names:
            rec = json.load(open(os.path.join(self.outdir, name)))
            out.append((rec, base64.b64decode(rec["data"])))
        return out

    def events(self):
        path = os.path.join(self.outdir, "events.log")
        return open(path).read() if os.path.exists(path) else ""
