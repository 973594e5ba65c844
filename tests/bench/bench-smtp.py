#!/usr/bin/python3
"""bench-smtp.py: SMTP delivery into Maildir, correod beside Postfix.

usage: bench-smtp.py [--count 2000] [--seed 42] [--runs 3] [--conns 1,20]
                     [--only postfix,correod] [--correod PATH] [--keep]
                     [--postfix-opt NAME=VALUE] [--correod-opt LINE]

A benchmark, not a test: it is never run by meson or CI and never fails on
slow figures.  It prints them.

What it does:
  * installs postfix with apt-get when /usr/sbin/postfix is missing (root
    only; debconf "No configuration", DEBIAN_FRONTEND=noninteractive, and a
    /usr/sbin/policy-rc.d that exits 101 put in place for the install when
    there is none, removed afterwards, so the system's postfix service is
    never started);
  * runs a PRIVATE Postfix: main.cf and master.cf generated in a temporary
    directory (queue, data directory, mailboxes and log all in it), the
    smtpd on a free port of 127.0.0.1, the domain bench.test delivered by
    virtual(8) into TMP/vmail/load/Maildir/ as the user nobody; it is
    started and stopped with `postfix -c DIR start|stop`.  /etc/postfix is
    never written, and `postconf -c DIR -n` is checked to show exactly the
    generated settings (so no system main.cf is read);
  * runs correod: `correod init DIR --domain bench.test --listen 127.0.0.1
    --port-offset N`, `correod user add load`, `correod run -f -c CONF`;
  * for each run, server and connection count, starts the server afresh
    (empty Maildir, no process left from the run before), sends --count
    messages to load@bench.test with tests/integration/smtp_load.py (raw
    SMTP on asyncio, EHLO once per connection, MAIL/RCPT/DATA pipelined
    when offered; 2-50 KB messages, some with attachments, generated from
    --seed), and measures
      rate   messages / (time the last message appeared in the Maildir's
             new/ - time the first MAIL was written); arrivals in new/ are
             watched with inotify, so Postfix's queue-then-deliver is
             counted to the end;
      peak   the sum over every process of the server (the tree under
             Postfix's master, or under correod's supervisor, sampled every
             100 ms) of its VmHWM: each process's peak resident set, shared
             library pages counted once per process;
      PSS    the largest sum of Pss (shared pages divided among the
             processes sharing them) over the same tree at one sample;
    then checks the Maildir: every message that got a 250 is there once,
    byte for byte after the server's trace headers (SHA-256);
  * prints the best of --runs for each cell and the correod/Postfix ratios
    (progress and each process's share go to stderr, the table to stdout).

Durability of the two, as configured here: Postfix fsyncs the queue file
before its 250 and, later, the Maildir file before linking it into new/,
but never a directory; correod writes the Maildir file, fsyncs it, links
it into new/ and fsyncs new/ before its 250 (design rule 1).
"""
import argparse
import os
import pwd
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(SRCDIR, "tests/integration"))
import smtp_load  # noqa: E402

SERVERS = ("postfix", "correod")
POLICY_RC = "/usr/sbin/policy-rc.d"
DOMAIN = "bench.test"
USER = "load"
RCPT = USER + "@" + DOMAIN
SENDER = "sender@client.test"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- setup

def apt_install(pkgs, debconf=()):
    if os.geteuid() != 0:
        sys.exit("bench-smtp: missing %s and not root: install them with apt-get"
                 % " ".join(pkgs))
    created = False
    if not os.path.exists(POLICY_RC):
        with open(POLICY_RC, "w") as f:
            f.write("#!/bin/sh\n# No service starts while the benchmark installs.\nexit 101\n")
        os.chmod(POLICY_RC, 0o755)
        created = True
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if debconf:
            subprocess.run(["debconf-set-selections"], input="".join(d + "\n" for d in debconf),
                           text=True, env=env, check=True)
        cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + list(pkgs)
        log("bench-smtp: %s" % " ".join(cmd))
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True)
    finally:
        if created:
            os.unlink(POLICY_RC)


def ensure_postfix():
    if not os.path.exists("/usr/sbin/postfix"):
        apt_install(["postfix"], ["postfix postfix/main_mailer_type select No configuration"])


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(5)
            return s.recv(4).startswith(b"220")
    except OSError:
        return False


def make_maildir(root, uid, gid):
    """An empty Maildir (tmp, new, cur), so new/ can be watched from the start."""
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(root, sub), mode=0o700, exist_ok=True)
    for sub in ("", "tmp", "new", "cur"):
        os.chown(os.path.join(root, sub), uid, gid)


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise BenchError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# ---------------------------------------------------------- process tree

def proc_children():
    """ppid -> [pid] for every process now."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(root):
    kids = proc_children()
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def pss_kb(pid):
    """Proportional set size: shared pages divided among the processes sharing them."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def vm_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class NewDirWatch:
    """Counts the files that appear in a Maildir's new/ (created, linked or
    renamed in), with inotify; fileno() is readable when some did."""

    IN_CREATE = 0x100
    IN_MOVED_TO = 0x80

    def __init__(self, newdir):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self.libc.inotify_add_watch(self.fd, os.fsencode(newdir),
                                       self.IN_CREATE | self.IN_MOVED_TO) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, "inotify_add_watch %s" % newdir)
        self.count = 0

    def fileno(self):
        return self.fd

    def drain(self):
        """Read the events waiting; True if the count changed."""
        changed = False
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return changed
            pos = 0
            while pos + 16 <= len(buf):
                _wd, _mask, _cookie, length = struct.unpack_from("iIII", buf, pos)
                name = buf[pos + 16:pos + 16 + length].rstrip(b"\0")
                pos += 16 + length
                if name and not name.startswith(b"."):
                    self.count += 1
                    changed = True

    def close(self):
        os.close(self.fd)


class Sampler(threading.Thread):
    """The arrival of each file in new/ (with inotify, so the client's process
    does not spend its time listing a growing directory), and every 100 ms
    VmHWM of every process under root_pid()."""

    def __init__(self, newdir, root_pid):
        super().__init__(daemon=True)
        self.watch = NewDirWatch(newdir)
        self.root_pid = root_pid
        self.stop_ev = threading.Event()
        self.changes = []           # (monotonic time, count)
        self.hwm = {}               # pid -> (max VmHWM kB, comm)
        self.pss_peak = 0           # largest sum of Pss over the tree at one sample
        self.error = None

    def sample_mem(self):
        root = self.root_pid()
        if not root:
            return
        pss = 0
        for pid in tree(root):
            pss += pss_kb(pid)
            try:
                with open("/proc/%d/comm" % pid) as f:
                    comm = f.read().strip()
            except OSError:
                continue
            kb = vm_hwm_kb(pid)
            if kb is None:
                continue
            old = self.hwm.get(pid)
            # A process that ran another program since the last sample (a
            # child of Postfix's master between fork and exec) starts over:
            # its memory before exec was the parent's, shared.
            if old is None or old[1] != comm or kb > old[0]:
                self.hwm[pid] = (kb, comm)
        self.pss_peak = max(self.pss_peak, pss)

    def run(self):
        try:
            last_mem = 0.0
            while not self.stop_ev.is_set():
                ready, _, _ = select.select([self.watch], [], [], 0.1)
                now = time.monotonic()
                if ready and self.watch.drain():
                    self.changes.append((now, self.watch.count))
                if now - last_mem >= 0.1:
                    self.sample_mem()
                    last_mem = now
            self.sample_mem()
        except Exception as ex:     # noqa: BLE001  reported by the caller
            self.error = ex

    def stop(self):
        self.stop_ev.set()
        self.join()
        self.watch.close()
        if self.error:
            raise BenchError("sampler: %r" % self.error)

    def time_reached(self, n):
        for t, c in self.changes:
            if c >= n:
                return t
        return None

    def peak_kb(self):
        return sum(kb for kb, _ in self.hwm.values())

    def breakdown(self):
        """"name xN M.M MB" for each process name, biggest share first."""
        by = {}
        for kb, comm in self.hwm.values():
            n, tot = by.get(comm, (0, 0))
            by[comm] = (n + 1, tot + kb)
        return ", ".join("%s x%d %.1f MB" % (c, n, kb / 1024.0)
                         for c, (n, kb) in sorted(by.items(), key=lambda i: -i[1][1]))


# --------------------------------------------------------------- Postfix

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    name = "postfix"

    def __init__(self, work, extra):
        self.top = os.path.join(work, "postfix")
        self.confdir = os.path.join(self.top, "etc")
        self.spool = os.path.join(self.top, "spool")
        self.data = os.path.join(self.top, "data")
        self.vmail = os.path.join(self.top, "vmail")
        self.logfile = os.path.join(self.top, "postfix.log")
        self.extra = extra
        self.port = None
        self.nobody = pwd.getpwnam("nobody")
        self.postfix_pw = pwd.getpwnam("postfix")

    @property
    def maildir(self):
        return os.path.join(self.vmail, USER, "Maildir")

    def settings(self):
        s = {
            "compatibility_level": "3.6",
            "config_directory": self.confdir,
            "queue_directory": self.spool,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": self.logfile,
            "maillog_file_prefixes": self.top,
            "myhostname": "mx.bench.test",
            "mydomain": "bench.test",
            "myorigin": "$myhostname",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            # bench.test is a virtual mailbox domain, so it must not be
            # listed here too; mail for the host name itself goes nowhere.
            "mydestination": "",
            "relay_domains": "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtpd_peername_lookup": "no",
            "smtputf8_enable": "no",
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_base": self.vmail,
            "virtual_mailbox_maps": "inline:{ %s=%s/Maildir/ }" % (RCPT, USER),
            "virtual_uid_maps": "static:%d" % self.nobody.pw_uid,
            "virtual_gid_maps": "static:%d" % self.nobody.pw_gid,
        }
        for kv in self.extra:
            k, _, v = kv.partition("=")
            s[k.strip()] = v.strip()
        return s

    def setup(self):
        for d in (self.confdir, self.spool, self.data, self.vmail):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.top, 0o755)
        os.chmod(self.spool, 0o755)
        os.chown(self.data, self.postfix_pw.pw_uid, self.postfix_pw.pw_gid)
        os.chmod(self.data, 0o700)
        os.chown(self.vmail, self.nobody.pw_uid, self.nobody.pw_gid)
        self.port = free_port()
        settings = self.settings()
        with open(os.path.join(self.confdir, "main.cf"), "w") as f:
            f.write("# Private instance for tests/bench/bench-smtp.py\n")
            for k, v in settings.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.confdir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        # postconf -c DIR -n shows what the instance reads: it must be what
        # was just written and nothing else.
        out = subprocess.run(["postconf", "-c", self.confdir, "-n"], capture_output=True,
                             text=True, check=True).stdout
        got = {}
        for line in out.splitlines():
            k, _, v = line.partition(" =")
            got[k.strip()] = v.strip()
        want = {k: v for k, v in settings.items()}
        # postconf -n omits parameters set to their default value.
        unexpected = {k: v for k, v in got.items() if k not in want or want[k] != v}
        if unexpected:
            raise BenchError("postconf -c %s -n shows settings not written by this script: %r"
                             % (self.confdir, unexpected))
        if subprocess.run(["postconf", "-c", self.confdir, "-h", "queue_directory"],
                          capture_output=True, text=True).stdout.strip() != self.spool:
            raise BenchError("postconf -c %s does not read the private main.cf" % self.confdir)

    def version(self):
        r = subprocess.run(["postconf", "-c", self.confdir, "-h", "mail_version"],
                           capture_output=True, text=True)
        return "Postfix " + r.stdout.strip()

    def postfix(self, *args, check=True):
        r = subprocess.run(["postfix", "-c", self.confdir] + list(args), capture_output=True,
                           text=True, timeout=120)
        if check and r.returncode != 0:
            raise BenchError("postfix -c %s %s failed (%d): %s%s"
                             % (self.confdir, " ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def master_pid(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def start(self):
        # A fresh Maildir for every measurement.
        home = os.path.join(self.vmail, USER)
        shutil.rmtree(home, ignore_errors=True)
        os.mkdir(home, 0o700)
        os.chown(home, self.nobody.pw_uid, self.nobody.pw_gid)
        make_maildir(self.maildir, self.nobody.pw_uid, self.nobody.pw_gid)
        self.postfix("start")
        wait_until(lambda: self.master_pid() and accepts(self.port), 30,
                   "the private postfix to accept on port %d" % self.port)

    def stop(self):
        pid = self.master_pid()
        if pid is None:
            return
        self.postfix("stop", check=False)
        try:
            wait_until(lambda: not pid_alive(pid), 30, "postfix master %d to exit" % pid)
        except BenchError:
            self.postfix("abort", check=False)
            wait_until(lambda: not pid_alive(pid), 10, "postfix master %d to abort" % pid)

    def root_pid(self):
        return self.master_pid()

    def log_tail(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""


# --------------------------------------------------------------- correod

class Correod:
    name = "correod"

    def __init__(self, work, exe, extra):
        self.exe = exe
        self.top = os.path.join(work, "correod")
        self.dir = os.path.join(self.top, "inst")
        self.conf = os.path.join(self.dir, "correod.conf")
        self.logfile = os.path.join(self.top, "correod.log")
        self.extra = extra
        self.proc = None
        self.port = None

    @property
    def maildir(self):
        return os.path.join(self.dir, "mail", DOMAIN, USER)

    def cmd(self, *args, input=None):
        r = subprocess.run([self.exe] + list(args), input=input, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise BenchError("correod %s failed (%d): %s%s"
                             % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def setup(self):
        os.makedirs(self.top, exist_ok=True)
        for _ in range(200):
            offset = free_port() - 25
            if offset > 1000 and all(port_free(p + offset) for p in (25, 465, 587)):
                break
        else:
            raise BenchError("no free port range for correod")
        self.port = 25 + offset
        self.cmd("init", self.dir, "--domain", DOMAIN, "--listen", "127.0.0.1",
                 "--port-offset", str(offset))
        if self.extra:
            with open(self.conf, "a") as f:
                f.write("\n# bench-smtp.py --correod-opt\n")
                for line in self.extra:
                    f.write(line + "\n")
        self.cmd("user", "add", "-c", self.conf, USER, "--password-stdin",
                 input="bench-password\n")

    def version(self):
        try:
            r = subprocess.run([self.exe, "--version"], capture_output=True, text=True, timeout=10)
            out = (r.stdout or r.stderr).strip().splitlines()
            return out[0] if out else "correod"
        except OSError as ex:
            return "correod (%s)" % ex

    def start(self):
        shutil.rmtree(self.maildir, ignore_errors=True)
        make_maildir(self.maildir, os.getuid(), os.getgid())
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen([self.exe, "run", "-f", "-c", self.conf],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self.proc.poll() is not None or accepts(self.port), 30,
                       "correod to accept on port %d" % self.port)
        except BenchError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            self.stop()
            raise BenchError("correod run exited %d:\n%s" % (rc, self.log_tail()))

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._log.close()

    def root_pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def log_tail(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""


# ------------------------------------------------------------ measuring

def measure(server, msgs, conns, timeout):
    server.start()
    sampler = Sampler(os.path.join(server.maildir, "new"), server.root_pid)
    try:
        sampler.start()
        cpu0 = time.process_time()
        report = smtp_load.run_load("127.0.0.1", server.port, msgs, conns, timeout=60.0,
                                    connect_deadline=30.0, max_attempts=3)
        client_cpu = time.process_time() - cpu0
        n_ok = report.count(smtp_load.OK)
        if n_ok != len(msgs):
            bad = [r for r in report.results if r.state != smtp_load.OK][:5]
            raise BenchError("%s: %s; first failures: %r\n%s"
                             % (server.name, report.summary(), bad, server.log_tail()))
        wait_until(lambda: sampler.time_reached(n_ok), timeout,
                   "%d messages in %s/new" % (n_ok, server.maildir))
        t_end = sampler.time_reached(n_ok)
    finally:
        try:
            sampler.stop()
        finally:
            server.stop()
    check = smtp_load.check_maildir(server.maildir, msgs, report)
    if not check.ok() or check.intact != len(msgs):
        raise BenchError("%s: Maildir check failed: %s" % (server.name, check.summary()))
    elapsed = t_end - report.t_first_mail
    return {"rate": len(msgs) / elapsed, "elapsed": elapsed,
            "last_reply": report.t_last_reply - report.t_first_mail,
            "peak_kb": sampler.peak_kb(), "pss_kb": sampler.pss_peak,
            "procs": len(sampler.hwm),
            "breakdown": sampler.breakdown(),
            "client_cpu": client_cpu, "pipelining": report.pipelining}


# ---------------------------------------------------------------- report

def table(results, servers, conns_list, versions, args):
    head = ("server", "conns", "msgs/s", "median", "s to last in Maildir", "s to last 250",
            "peak RSS MB", "peak PSS MB", "procs", "rate: x/postfix", "RSS: x/postfix")
    rows = []
    for conns in conns_list:
        best = {}
        for s in servers:
            runs = results.get((s, conns))
            if runs:
                best[s] = max(runs, key=lambda r: r["rate"])
        for s in servers:
            runs = results.get((s, conns))
            if not runs:
                rows.append((s, conns, "pending", "-", "-", "-", "-", "-", "-", "-", "-"))
                continue
            b = best[s]
            peak = max(r["peak_kb"] for r in runs) / 1024.0
            pss = max(r["pss_kb"] for r in runs) / 1024.0
            ref = best.get("postfix")
            if ref and s != "postfix":
                ratio = "%.2fx" % (b["rate"] / ref["rate"])
                ref_peak = max(r["peak_kb"] for r in results[("postfix", conns)]) / 1024.0
                mem = "%.2f" % (peak / ref_peak)
            elif ref:
                ratio, mem = "1.00x", "1.00"
            else:
                ratio = mem = "-"
            rows.append((s, conns, "%.1f" % b["rate"],
                         "%.1f" % statistics.median(r["rate"] for r in runs),
                         "%.2f" % b["elapsed"], "%.2f" % b["last_reply"], "%.1f" % peak,
                         "%.1f" % pss, str(max(r["procs"] for r in runs)), ratio, mem))
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    print()
    for s in servers:
        print("%-8s %s" % (s + ":", versions.get(s, "?")))
    print()
    print("\n".join(out))
    print()
    print("%d messages per cell (seed %d, %.1f MB in all), best of %d runs (msgs/s and the two"
          % (args.count, args.seed, args.total_bytes / 1048576.0, args.runs))
    print("times are from the best run; median: median msgs/s of the runs).")
    print("msgs/s: messages / (last message present in new/ - first MAIL written).")
    print("peak RSS: sum of VmHWM over every process of the server (largest of the runs);")
    print("peak PSS: the largest sum of Pss over the server's processes at one sample")
    print("(shared pages divided among the processes sharing them; largest of the runs).")


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description="SMTP into Maildir: correod beside Postfix.")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", default="1,20", help="connection counts (default: %(default)s)")
    ap.add_argument("--only", default=",".join(SERVERS),
                    help="comma-separated servers (default: %(default)s)")
    ap.add_argument("--correod", default=os.path.join(SRCDIR, "build/localserver/correod"),
                    help="the correod binary (default: %(default)s)")
    ap.add_argument("--postfix-opt", action="append", default=[], metavar="NAME=VALUE",
                    help="extra main.cf setting for the private Postfix (repeatable)")
    ap.add_argument("--correod-opt", action="append", default=[], metavar="LINE",
                    help="extra correod.conf line (repeatable)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds to wait for the Maildir to fill after the last 250")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    servers = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in servers:
        if s not in SERVERS:
            ap.error("unknown server %r (choose from %s)" % (s, ", ".join(SERVERS)))
    try:
        conns_list = [int(c) for c in args.conns.split(",") if c.strip()]
    except ValueError:
        ap.error("--conns takes numbers separated by commas")
    if args.count < 1 or args.runs < 1 or not conns_list or min(conns_list) < 1:
        ap.error("--count, --runs and --conns must be positive")

    if "postfix" in servers:
        if os.geteuid() != 0:
            sys.exit("bench-smtp: the private Postfix needs root (its daemons change user)")
        ensure_postfix()
    if "correod" in servers:
        args.correod = os.path.abspath(args.correod)
        if not os.access(args.correod, os.X_OK):
            sys.exit("bench-smtp: %s not found; build it first" % args.correod)

    work = tempfile.mkdtemp(prefix="correo-bench-smtp-", dir="/tmp")
    os.chmod(work, 0o755)
    insts = {}
    results = {}
    versions = {}
    try:
        for s in servers:
            inst = (Postfix(work, args.postfix_opt) if s == "postfix"
                    else Correod(work, args.correod, args.correod_opt))
            inst.setup()
            insts[s] = inst
            versions[s] = inst.version()
            log("bench-smtp: %s: %s on 127.0.0.1:%d, Maildir %s"
                % (s, versions[s], inst.port, inst.maildir))
        for run in range(args.runs):
            for conns in conns_list:
                for s in servers:
                    tag = "r%dc%d%s" % (run, conns, s[0])
                    msgs = smtp_load.make_messages(args.count, args.seed, SENDER, RCPT, tag=tag)
                    args.total_bytes = sum(len(m) for m in msgs)
                    r = measure(insts[s], msgs, conns, args.timeout)
                    results.setdefault((s, conns), []).append(r)
                    log("run %d/%d %-7s %2d conns: %7.1f msgs/s, %.2f s to the last in Maildir,"
                        " %.2f s to the last 250, peak %.1f MB (PSS %.1f MB) in %d processes,"
                        " client cpu %.2f s, pipelining %s, load %.2f"
                        % (run + 1, args.runs, s, conns, r["rate"], r["elapsed"],
                           r["last_reply"], r["peak_kb"] / 1024.0, r["pss_kb"] / 1024.0,
                           r["procs"],
                           r["client_cpu"], "yes" if r["pipelining"] else "no",
                           os.getloadavg()[0]))
                    log("    processes: %s" % r["breakdown"])
        print("load average at the end: %.2f %.2f %.2f (nproc %d)"
              % (os.getloadavg() + (os.cpu_count(),)))
        table(results, servers, conns_list, versions, args)
    except BenchError as ex:
        sys.exit("bench-smtp: %s" % ex)
    finally:
        for inst in insts.values():
            try:
                inst.stop()
            except BenchError as ex:
                log("bench-smtp: %s" % ex)
        if args.keep:
            log("bench-smtp: work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
