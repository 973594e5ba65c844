#!/usr/bin/python3
"""bench-pop3.py: download 10k messages by POP3 with correo, fetchmail and getmail6.

usage: bench-pop3.py [--count 10000] [--seed 42] [--runs 3] [--getmail-runs 1]
                     [--correo PATH] [--only correo,correo-fsync,fetchmail,getmail]

A benchmark, not a test: never run by meson or CI, it prints figures and
fails only when correo did not download every message (a peer that
delivers fewer is reported with its count).

What it does:
  * installs fetchmail and getmail6 (Debian) with apt-get when they are
    missing (root only; a /usr/sbin/policy-rc.d that exits 101 is put in
    place for the install when there is none, and removed afterwards);
  * generates --count messages with tests/tools/gen-corpus.py (--folders 0)
    and puts them into the INBOX of a private Dovecot
    (tests/integration/dovecot_fixture.py) on loopback; one unmeasured
    download warms Dovecot's index and the page cache;
  * runs each client --runs times, in turn, on the same server, each run
    from nothing (an empty Maildir, no state or UID file), in keep mode
    (nothing is deleted on the server, so every run downloads everything),
    plain POP3 on loopback for all (no TLS: fetchmail is told --sslproto ''
    and correo tls=none), and times it from spawn to exit:
      correo         `correo -F RC fetch` into a Maildir: durable batches
                     (one syncfs() for the files, one fsync of new/, one of
                     the state file per batch of up to 128 messages)
      correo-fsync   the same with an fsync of each file in a row instead of
                     the syncfs() (CORREO_FETCH_SYNC=fsync)
      fetchmail      `fetchmail -f RC` with `bsmtp FILE` (one BSMTP file, as
                     the issue measured), keep, fetchall
      getmail        `getmail --rcfile RC --getmaildir DIR` with a Maildir
                     destination, read_all, delete=false
  * before each run, reads every file of the server (messages and Dovecot's
    indexes) so that the page cache is equally warm for every client;
  * checks the count each client delivered, prints the best time of each
    and its ratio to fetchmail (fetchmail's seconds / the client's).

Durability, as the programs document it or as their code does:
  correo     every message fsync'ed and linked, new/ fsync'ed, its UIDL
             recorded and fsync'ed before any DELE (design rule 1).
  fetchmail  hands each message to the BSMTP file / MDA / SMTP listener and
             considers it delivered when that returns; with bsmtp it
             appends to a file without fsync; a DELE may follow before the
             data reaches the disk.
  getmail6   Maildir destination: writes tmp/, fsyncs the file, links into
             new/; no fsync of the directory; its oldmail state file is
             written at the end of the run.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
from dovecot_fixture import Dovecot  # noqa: E402

POLICY_RC = "/usr/sbin/policy-rc.d"
PYTHON = "/usr/bin/python3"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def apt_install(pkgs):
    if os.geteuid() != 0:
        sys.exit("bench-pop3: missing %s and not root: install them with apt-get"
                 % " ".join(pkgs))
    created = False
    if not os.path.exists(POLICY_RC):
        with open(POLICY_RC, "w") as f:
            f.write("#!/bin/sh\n# No service starts while the benchmark installs.\nexit 101\n")
        os.chmod(POLICY_RC, 0o755)
        created = True
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + pkgs
        log("bench-pop3: %s" % " ".join(cmd))
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True)
    finally:
        if created:
            os.unlink(POLICY_RC)


def maildir(path):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    return path


def count_maildir(path):
    return sum(len(os.listdir(os.path.join(path, s))) for s in ("cur", "new"))


class Clients:
    def __init__(self, work, correo, port):
        self.work, self.correo, self.port = work, correo, port

    def fresh(self, name):
        # A new directory per run, nothing deleted until the end: ext4 skips
        # recently freed inodes when it allocates, so deleting 10k files
        # just before a run makes every file creation of the run slow.
        self.serial = getattr(self, "serial", 0) + 1
        d = os.path.join(self.work, "%s.%d" % (name, self.serial))
        os.makedirs(d)
        return d

    def correo_cmd(self, fsync=False):
        d = self.fresh("correo")
        box = maildir(os.path.join(d, "Mail"))
        rc = os.path.join(d, "correorc")
        with open(rc, "w") as f:
            f.write("set folder=%s\nset spoolfile=%s\n" % (box, box))
            f.write("account bench pop://alice@127.0.0.1:%d/ pass=secret tls=none\n" % self.port)
        env = dict(os.environ, HOME=d, XDG_STATE_HOME=os.path.join(d, "state"),
                   CORREO_DATADIR_OVERRIDE=SRCDIR)
        if fsync:
            env["CORREO_FETCH_SYNC"] = "fsync"
        return [self.correo, "-F", rc, "fetch"], env, lambda: count_maildir(box)

    def fetchmail_cmd(self):
        d = self.fresh("fetchmail")
        out = os.path.join(d, "out.bsmtp")
        rc = os.path.join(d, "fetchmailrc")
        with open(rc, "w") as f:
            f.write("set no bouncemail\n"
                    "poll 127.0.0.1 service %d protocol POP3 auth password\n"
                    "  user \"alice\" there with password \"secret\" is \"root\" here\n"
                    "  options keep fetchall sslproto ''\n"
                    "  bsmtp \"%s\"\n" % (self.port, out))
        os.chmod(rc, 0o600)
        env = dict(os.environ, HOME=d, FETCHMAILHOME=d)

        def count():
            n = 0
            with open(out, "rb") as f:
                for line in f:
                    if line.rstrip(b"\r\n") == b"DATA":
                        n += 1
            return n
        return (["fetchmail", "-f", rc, "--nosyslog", "--idfile", os.path.join(d, "ids"),
                 "--pidfile", os.path.join(d, "pid")], env, count)

    def getmail_cmd(self):
        d = self.fresh("getmail")
        box = maildir(os.path.join(d, "Mail"))
        gdir = os.path.join(d, "getmail")
        os.makedirs(gdir)
        rc = os.path.join(gdir, "getmailrc")
        with open(rc, "w") as f:
            f.write("[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\n"
                    "port = %d\nusername = alice\npassword = secret\n\n"
                    "[destination]\ntype = Maildir\npath = %s/\n\n"
                    "[options]\nread_all = true\ndelete = false\nverbose = 0\n"
                    "message_log_syslog = false\n"
                    % (self.port, box))
        env = dict(os.environ, HOME=d)
        cmd = ["getmail", "--rcfile", rc, "--getmaildir", gdir]
        if os.geteuid() == 0:
            # getmail refuses to deliver as root: run it as nobody
            import pwd
            pw = pwd.getpwnam("nobody")
            for dirpath, dirnames, filenames in os.walk(d):
                os.chown(dirpath, pw.pw_uid, pw.pw_gid)
                for fn in filenames:
                    os.chown(os.path.join(dirpath, fn), pw.pw_uid, pw.pw_gid)
            cmd = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                   "--clear-groups"] + cmd
        return cmd, env, lambda: count_maildir(box)


def warm(paths):
    """Read every file under paths: this VM's kernel pages out file pages
    left idle for about 30 s (DAMON reclaim), so without this the server's
    files would be on disk or in memory depending on what ran before."""
    for top in paths:
        for dirpath, dirnames, filenames in os.walk(top):
            for fn in filenames:
                path = os.path.join(dirpath, fn)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue        # Dovecot's sockets and FIFOs
                try:
                    with open(path, "rb") as f:
                        while f.read(1 << 20):
                            pass
                except OSError:
                    pass


def timed(cmd, env):
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True)
    dt = time.monotonic() - t0
    return dt, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--correo", default=os.path.join(SRCDIR, "build", "mua", "correo"))
    ap.add_argument("--only", default="correo,correo-fsync,fetchmail,getmail")
    ap.add_argument("--getmail-runs", type=int, default=1,
                    help="getmail takes minutes: run it this many times (default 1)")
    args = ap.parse_args()
    which = args.only.split(",")

    missing = [p for p, prog in (("fetchmail", "fetchmail"), ("getmail6", "getmail"))
               if (prog in which) and shutil.which(prog) is None]
    if missing:
        apt_install(missing)

    with tempfile.TemporaryDirectory(prefix="correo-bench-pop3-") as tmp:
        os.chmod(tmp, 0o755)
        corpus = os.path.join(tmp, "corpus")
        log("bench-pop3: generating %d messages" % args.count)
        subprocess.run([PYTHON, os.path.join(SRCDIR, "tests", "tools", "gen-corpus.py"), corpus,
                        "--count", str(args.count), "--seed", str(args.seed), "--folders", "0"],
                       check=True)
        with Dovecot(tmp, users={"alice": "secret"}) as d:
            md = d.maildir("alice")
            total = 0
            for sub in ("cur", "new"):
                for name in os.listdir(os.path.join(corpus, sub)):
                    dst = os.path.join(md, "cur", name)
                    shutil.copyfile(os.path.join(corpus, sub, name), dst)
                    os.chown(dst, d.mail_uid, d.mail_gid)
                    total += 1
            size = sum(os.path.getsize(os.path.join(md, "cur", n))
                       for n in os.listdir(os.path.join(md, "cur")))
            log("bench-pop3: %d messages, %.1f MB on the server" % (total, size / 1e6))
            work = os.path.join(tmp, "work")
            os.makedirs(work)
            cl = Clients(work, args.correo, d.port("pop3"))
            makers = {
                "correo": lambda: cl.correo_cmd(False),
                "correo-fsync": lambda: cl.correo_cmd(True),
                "fetchmail": cl.fetchmail_cmd,
                "getmail": cl.getmail_cmd,
            }
            # warm Dovecot's index and the page cache
            cmd, env, count = makers["correo"]()
            dt, r = timed(cmd, env)
            log("bench-pop3: warm-up %.2f s (%d messages)" % (dt, count()))
            best, got = {}, {}
            bad = False
            for run in range(args.runs):
                for name in which:
                    if name == "getmail" and run >= args.getmail_runs:
                        continue
                    cmd, env, count = makers[name]()
                    subprocess.run(["sync"])
                    warm([os.path.join(d.root, "mail")])
                    dt, r = timed(cmd, env)
                    n = count()
                    log("bench-pop3: run %d %-14s %7.2f s  %d messages  exit %d  load %.1f"
                        % (run + 1, name, dt, n, r.returncode, os.getloadavg()[0]))
                    if n != total:
                        log("bench-pop3: %s delivered %d of %d: %s" % (
                            name, n, total, r.stderr.decode("utf-8", "replace")[-600:]))
                        if name.startswith("correo"):
                            bad = True
                    if dt < best.get(name, float("inf")):
                        best[name], got[name] = dt, n
            print()
            print("%d messages (%.1f MB), best of %d runs, POP3 on loopback from Dovecot %s"
                  % (total, size / 1e6, args.runs,
                     subprocess.run(["dovecot", "--version"], capture_output=True,
                                    text=True).stdout.strip()))
            print("%-14s %9s %10s %12s %14s" % ("client", "seconds", "delivered", "msgs/s",
                                                 "vs fetchmail"))
            for name in which:
                if name not in best:
                    continue
                ratio = ("%.2fx" % (best["fetchmail"] / best[name])
                         if "fetchmail" in best else "-")
                print("%-14s %9.2f %10d %12.0f %14s" % (name, best[name], got[name],
                                                        got[name] / best[name], ratio))
            if bad:
                sys.exit(1)


if __name__ == "__main__":
    main()
