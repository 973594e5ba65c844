#!/usr/bin/python3
"""bench-imap.py: open a large IMAP folder in correo, mutt and neomutt.

usage: bench-imap.py [--counts 10000,100000] [--runs 3] [--correo PATH]
                     [--imaptool PATH] [--only correo,mutt,neomutt,floor]

A benchmark, not a test: never run by meson or CI, it never fails on slow
figures; it prints them.

What it does, for each folder size N:
  * starts a private Dovecot (tests/integration/dovecot_fixture.py: its own
    config, loopback ports, a self-signed certificate) and writes N
    generated messages into a folder "BenchN" as Maildir files;
  * warms Dovecot once (a python imaplib session SELECTs the folder and
    fetches every header), so that no client pays for Dovecot building its
    own index and cache;
  * floor: a bare pipelined fetch with python's ssl module over IMAPS: one
    connection, LOGIN, SELECT, one UID FETCH 1:* (UID FLAGS RFC822.SIZE
    INTERNALDATE BODY.PEEK[HEADER.FIELDS (the fields correo asks for)]),
    reading until the tagged OK -- what the server needs to hand the index
    its data, with no parsing on the client;
  * correo: `correo -F RC -l -f imaps://alice@127.0.0.1:PORT/BenchN` (the
    real binary: connect, TLS with the certificate pinned, login, SELECT
    (QRESYNC when the cache has a folder record), headers from the server
    or the header cache, the index printed to stdout, LOGOUT);
  * mutt and neomutt: `CLIENT -n -F RC -f URL -e 'push <quit>'` in a
    pseudo-terminal (120x40, TERM=xterm-256color), HOME a private temporary
    directory; RC sets imap_user/imap_pass, certificate_file (the server's
    certificate, so nothing is asked), header_cache (a directory of the
    temporary HOME), imap_condstore and imap_qresync on (their fastest
    resynchronisation), quit=yes; the pushed <quit> is read once the
    index is up, so the time is spawn to exit: connect, open, index drawn,
    quit.  correo's -l time is the same span (spawn to exit).
  * each client: cold (empty header cache), warm (the cache the cold run
    filled), and reopen after 10 new messages (10 are APPENDed with
    imaplib between a warm open and the measured one; new ones each run);
    the median of --runs.

Prints a table per N and the ratios the targets of issue 7 are stated in:
correo cold / floor, correo cold vs mutt cold, mutt warm / correo reopen.
"""
import argparse
import imaplib
import os
import pty
import select
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
from dovecot_fixture import Dovecot, available  # noqa: E402

FIELDS = "DATE FROM TO CC SUBJECT MESSAGE-ID IN-REPLY-TO REFERENCES LIST-ID X-LABEL"


def message(i, tag="m"):
    return ("From: Sender %d <sender%d@example.org>\r\nTo: alice@example.org\r\n"
            "Subject: Benchmark message %d about topic %d\r\n"
            "Date: Mon, 2 Nov 2026 %02d:%02d:00 +0100\r\n"
            "Message-ID: <%s%d@bench.example.org>\r\n%s"
            "\r\nBody of message %d.\r\n"
            % (i, i % 997, i, i % 53, (i // 60) % 24, i % 60, tag, i,
               "References: <m%d@bench.example.org>\r\n" % (i - 1) if i % 3 else "", i)).encode()


def fill(d, folder, n):
    path = os.path.join(d.maildir("alice"), "." + folder)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    for i in range(n):
        with open(os.path.join(path, "cur", "%d.M%d.bench:2,%s"
                               % (1700000000 + i, i, "S" if i % 4 else "")), "wb") as f:
            f.write(message(i))
    for dirpath, _, files in os.walk(path):
        os.chown(dirpath, d.mail_uid, d.mail_gid)
        for fn in files:
            os.chown(os.path.join(dirpath, fn), d.mail_uid, d.mail_gid)


def imap_session(d):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", d.port("imaps"), ssl_context=ctx)
    m.login("alice", "secret")
    return m


def warm_server(d, folder):
    m = imap_session(d)
    m.select(folder, readonly=True)
    m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (%s)])"
          % FIELDS)
    m.logout()


_new = [0]


def append_new(d, folder, k=10):
    m = imap_session(d)
    for _ in range(k):
        _new[0] += 1
        m.append(folder, None, None, message(10_000_000 + _new[0], tag="new"))
    m.logout()


def floor(d, folder):
    """Seconds for LOGIN, SELECT and one pipelined UID FETCH of every header."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t0 = time.monotonic()
    raw = socket.create_connection(("127.0.0.1", d.port("imaps")))
    s = ctx.wrap_socket(raw)
    s.sendall(b"a LOGIN alice secret\r\nb SELECT " + folder.encode() +
              b"\r\nc UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE "
              b"BODY.PEEK[HEADER.FIELDS (" + FIELDS.encode() + b")])\r\n")
    buf = b""
    total = 0
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise RuntimeError("floor: connection closed")
        total += len(chunk)
        buf = (buf + chunk)[-4096:]
        if b"\r\nc OK" in buf or buf.startswith(b"c OK"):
            break
    elapsed = time.monotonic() - t0
    s.sendall(b"d LOGOUT\r\n")
    s.close()
    return elapsed, total


def run_correo(correo, rc, url, home):
    t0 = time.monotonic()
    p = subprocess.run([correo, "-F", rc, "-l", "-f", url], capture_output=True, timeout=600,
                       env=dict(os.environ, HOME=home, TZ="UTC"))
    elapsed = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError("correo: %s" % p.stderr.decode()[-300:])
    return elapsed, len(p.stdout.splitlines()) - 1


def run_pty(argv, home, timeout=600):
    """Spawn argv in a pty, drain it, return seconds until it exits."""
    env = dict(os.environ, HOME=home, TERM="xterm-256color", LANG="C.UTF-8", COLUMNS="120",
               LINES="40")
    t0 = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(argv[0], argv, env)
    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    out = bytearray()
    deadline = t0 + timeout
    while True:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise RuntimeError("%s: timed out; screen tail %r" % (argv[0], bytes(out[-300:])))
        try:
            b = os.read(fd, 65536)
        except OSError:
            b = b""
        if not b:
            break
        out += b
        if len(out) > 1 << 20:
            del out[:-4096]
    _, status = os.waitpid(pid, 0)
    elapsed = time.monotonic() - t0
    os.close(fd)
    if status != 0:
        raise RuntimeError("%s exited %d: %r" % (argv[0], status, bytes(out[-300:])))
    return elapsed


def mutt_rc(path, d, hc):
    with open(path, "w") as f:
        f.write("set imap_user=alice\nset imap_pass=secret\n"
                "set certificate_file=%s\nset header_cache=%s\n"
                "set imap_condstore=yes\nset imap_qresync=yes\n"
                "set quit=yes\nset sleep_time=0\nset move=no\nset mail_check_stats=no\n"
                "set imap_check_subscribed=no\nset sort=date\n"
                "set ssl_starttls=no\nset timeout=600\n" % (d.cert, hc))


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def bench(n, args, tmp):
    folder = "Bench%d" % n
    res = {}
    with Dovecot(os.path.join(tmp, "dc%d" % n)) as d:
        fill(d, folder, n)
        warm_server(d, folder)
        url = "imaps://alice@127.0.0.1:%d/%s" % (d.port("imaps"), folder)
        if "floor" in args.only:
            fl = [floor(d, folder) for _ in range(args.runs)]
            res["floor"] = {"cold": median([x[0] for x in fl])}
            print("floor: %.3f s, %d bytes" % (res["floor"]["cold"], fl[0][1]), flush=True)
        for client in ("correo", "mutt", "neomutt"):
            if client not in args.only:
                continue
            cells = {"cold": [], "warm": [], "reopen": []}
            for r in range(args.runs):
                home = tempfile.mkdtemp(prefix="home-", dir=tmp)
                hc = os.path.join(home, "hcache")
                os.makedirs(hc)
                os.makedirs(os.path.join(home, "Mail"))   # mutt asks to create it otherwise
                rc = os.path.join(home, "rc")
                if client == "correo":
                    with open(rc, "w") as f:
                        f.write("set imap_pass=secret\nset tls_fingerprint=%s\n"
                                "set header_cache=%s\n" % (d.fingerprint, hc))

                    def once():
                        t, rows = run_correo(args.correo, rc, url, home)
                        return t
                else:
                    mutt_rc(rc, d, hc + "/")
                    argv = [client, "-n", "-F", rc, "-f", url, "-e", "push <quit>"]

                    def once():
                        return run_pty(argv, home)
                cells["cold"].append(once())
                cells["warm"].append(once())
                append_new(d, folder)
                cells["reopen"].append(once())
                shutil.rmtree(home, ignore_errors=True)
            res[client] = {k: median(v) for k, v in cells.items()}
            print("%-8s cold %.3f s  warm %.3f s  reopen+10 %.3f s" % (
                client, res[client]["cold"], res[client]["warm"], res[client]["reopen"]),
                flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="10000,100000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--correo", default=os.path.join(SRCDIR, "build", "mua", "correo"))
    ap.add_argument("--only", default="floor,correo,mutt,neomutt")
    args = ap.parse_args()
    args.only = args.only.split(",")
    if not available():
        sys.exit("dovecot is not installed")
    tmp = tempfile.mkdtemp(prefix="bench-imap-")
    os.chmod(tmp, 0o755)
    try:
        for n in [int(x) for x in args.counts.split(",")]:
            print("== %d messages ==" % n, flush=True)
            r = bench(n, args, tmp)
            c, m = r.get("correo"), r.get("mutt")
            if c and "floor" in r:
                print("correo cold / floor: %.2fx" % (c["cold"] / r["floor"]["cold"]))
            if c and m:
                print("mutt cold / correo cold: %.2fx" % (m["cold"] / c["cold"]))
                print("mutt warm / correo reopen+10: %.2fx" % (m["warm"] / c["reopen"]))
            if c and r.get("neomutt"):
                print("neomutt warm / correo reopen+10: %.2fx"
                      % (r["neomutt"]["warm"] / c["reopen"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
