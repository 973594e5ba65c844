#!/usr/bin/python3
"""bench-open.py: open a big Maildir in correo, mutt and neomutt, side by side.

usage: bench-open.py [--count 100000] [--seed 42] [--runs 3] [--keep DIR]
                     [--only correo,mutt,neomutt] [--correo PATH]

A benchmark, not a test: it is never run by meson or CI and never fails on
slow figures.  It prints them.

What it does:
  * installs mutt, neomutt, python3-pexpect and python3-pyte with apt-get
    when they are missing (root only; a /usr/sbin/policy-rc.d that exits
    101 is put in place for the install when there is none, and removed
    afterwards);
  * generates ONE folder of --count messages with tests/tools/gen-corpus.py
    (--folders 0: every message lands in INBOX, the top of the tree);
  * for each run, client, sort (date, threads) and cache state (cold: an
    empty header cache; warm: the cache the cold run just filled), starts
    the client directly in a 120x40 pty (TERM=xterm-256color, LANG=C.UTF-8)
    with a private HOME and a generated config, and measures
      open   from spawn to the arrival of the bytes that complete the index:
             a status line showing "Msgs:" with the folder's message count,
             and every index row drawn;
      quit   from sending 'q' to the end of the process;
      cpu    the client's user+system time (all threads) up to the index;
      peak   VmHWM of the client (it is the pty's child) read just before
             'q': the peak resident set of the open;
  * prints the median of --runs for each cell, with ratios against mutt.

The page cache is warm: before every measured open the script reads every
file of the folder and of the client's header cache (this kernel reclaims
file pages left unused for about half a minute, which otherwise makes the
figures depend on what ran before).  "Cold" means an empty header cache,
not a cold disk.

A reader thread drains the pty as fast as it is written, so a client never
waits for the terminal emulator; the screen is emulated with pyte
(tests/ui/screen.py) and the time of a condition is the arrival time of the
chunk that made it true.
"""
import argparse
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
CLIENTS = ("correo", "mutt", "neomutt")
SORTS = ("date", "threads")
COLS, ROWS = 120, 40
POLICY_RC = "/usr/sbin/policy-rc.d"
STATUS_RE = re.compile(r"Msgs:\s*(?:\d+/)?(\d+)")
PROGRESS_RE = re.compile(r"\b\d+/\d+\b")      # "Reading INBOX... 1200/100000"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- setup

def have_pyte():
    r = subprocess.run([PYTHON, "-c", "import pexpect, pyte"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def apt_install(pkgs):
    if os.geteuid() != 0:
        sys.exit("bench-open: missing %s and not root: install them with apt-get"
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
        log("bench-open: %s" % " ".join(cmd))
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True)
    finally:
        if created:
            os.unlink(POLICY_RC)


def ensure_tools(clients):
    pkgs = [c for c in clients if c != "correo" and shutil.which(c) is None]
    if not have_pyte():
        pkgs += ["python3-pexpect", "python3-pyte"]
    if pkgs:
        apt_install(pkgs)


def version(client, exe):
    arg = "--version" if client == "correo" else "-v"
    try:
        out = subprocess.run([exe, arg], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, text=True, errors="replace").stdout
    except OSError as ex:
        return "(%s)" % ex
    return out.splitlines()[0] if out else "?"


# --------------------------------------------------------------- corpus

def count_messages(md):
    n_cur = len(os.listdir(os.path.join(md, "cur")))
    n_new = len(os.listdir(os.path.join(md, "new")))
    return n_cur, n_new


def make_corpus(base, count, seed, reuse):
    """The Maildir at base/INBOX; reused when base holds one of the same count and seed."""
    md = os.path.join(base, "INBOX")
    stamp = os.path.join(base, "corpus.stamp")
    want = "count=%d seed=%d folders=0\n" % (count, seed)
    if reuse and os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == want and os.path.isdir(md):
                log("bench-open: reusing the corpus in %s" % md)
                return md
        sys.exit("bench-open: %s holds another corpus; remove it or pick another --keep" % base)
    if reuse and os.listdir(base):
        sys.exit("bench-open: --keep %s is not empty and holds no corpus of this script" % base)
    log("bench-open: generating %d messages (seed %d) in %s ..." % (count, seed, md))
    t0 = time.monotonic()
    subprocess.run([PYTHON, os.path.join(SRCDIR, "tests/tools/gen-corpus.py"), md,
                    "--count", str(count), "--seed", str(seed), "--folders", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    with open(stamp, "w") as f:
        f.write(want)
    log("bench-open: corpus generated in %.0f s" % (time.monotonic() - t0))
    return md


# -------------------------------------------------------------- clients

def client_setup(client, exe, work, md, sort):
    """argv, extra environment and header-cache directory for one client and sort."""
    top = os.path.join(work, client)
    home = os.path.join(top, "home")
    cache = os.path.join(top, "hcache")
    for d in (home, cache):
        os.makedirs(d, exist_ok=True)
    env = {"HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config"),
           "XDG_CACHE_HOME": cache, "XDG_DATA_HOME": os.path.join(home, ".local/share"),
           "TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm-256color"}
    rc = os.path.join(top, "rc-%s" % sort)
    if client == "correo":
        # -n would make correo ignore -F, so the private HOME keeps any
        # user configuration out and -F gives the options.
        env["CORREO_DATADIR_OVERRIDE"] = SRCDIR
        lines = ["set sort=%s" % sort, "set sort_aux=date", "unset mark_old",
                 "set move=no", "set quit=yes", "set delete=no", "set beep=no"]
        argv = [exe, "-F", rc, "-f", md]
    else:
        # header_cache names an existing directory: one cache file per folder.
        lines = ["set folder=%s" % os.path.dirname(md), "set spoolfile=%s" % md,
                 "set mbox_type=Maildir", "set header_cache=%s/" % cache,
                 "set sort=%s" % sort, "set sort_aux=date", "set mail_check=600",
                 "set timeout=600", "unset mark_old", "set quit=yes", "set delete=no",
                 "set move=no", "set beep=no", "set sleep_time=0", "unset wait_key"]
        argv = [exe, "-n", "-F", rc, "-f", md]
    with open(rc, "w") as f:
        f.write("\n".join(lines) + "\n")
    return argv, env, cache


def clear_dir(d):
    for name in os.listdir(d):
        p = os.path.join(d, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


def dir_bytes(d):
    total = 0
    for root, _dirs, files in os.walk(d):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def prewarm(dirs):
    """Read every file under dirs, so the run starts from a warm page cache.

    This kernel reclaims file pages that go unused for a while, so a folder
    read a minute ago may be half on disk again; reading it first gives each
    client the same start."""
    n = 0
    for d in dirs:
        for root, _dirs, files in os.walk(d):
            for name in files:
                try:
                    with open(os.path.join(root, name), "rb") as f:
                        while f.read(1 << 16):
                            pass
                    n += 1
                except OSError:
                    pass
    return n


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM for pid %d" % pid)


def cpu_seconds(pid):
    """User plus system time of the process (all its threads) so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Reader(threading.Thread):
    """Drains the pty into a queue of (arrival time, bytes); None at the end."""

    def __init__(self, fd):
        super().__init__(daemon=True)
        self.fd = fd
        self.q = queue.Queue()

    def run(self):
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except OSError:
                data = b""
            now = time.monotonic()
            if not data:
                self.q.put((now, None))
                return
            self.q.put((now, data))


class RunError(Exception):
    pass


def index_drawn(term, expected):
    """The status line shows the folder's count and every index row is drawn."""
    lines = term.lines()
    status = False
    for line in lines:
        m = STATUS_RE.search(line)
        if m and int(m.group(1)) == expected:
            status = True
            break
    if not status:
        return False
    # Help line, index rows, status line, message line: the index rows are
    # full (or hold every message of a small folder); one line of slack for
    # the message line and layouts without a help line.
    return sum(1 for line in lines if line.strip()) >= min(ROWS - 2, expected + 1)


def measure(argv, env, expected, timeout):
    from screen import Term

    t0 = time.monotonic()
    term = Term(argv, cols=COLS, rows=ROWS, env=env)
    reader = Reader(term.child.child_fd)
    reader.start()
    pid = term.child.pid
    saw_progress = False
    try:
        deadline = t0 + timeout
        t_open = None
        while t_open is None:
            try:
                ts, data = reader.q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RunError("timed out after %.0f s waiting for the index; screen:\n%s"
                               % (timeout, term.text()))
            if data is None:
                raise RunError("exited before the index was drawn; screen:\n%s" % term.text())
            term.raw += data
            term.stream.feed(data)
            if not saw_progress and PROGRESS_RE.search(term.lines()[-1]):
                saw_progress = True
            if index_drawn(term, expected):
                t_open = ts
        # Everything the reader holds was written after the index was complete.
        peak_kb = vm_hwm_kb(pid)
        cpu = cpu_seconds(pid)
        t_q = time.monotonic()
        term.send("q")
        t_end = None
        deadline = t_q + timeout
        while t_end is None:
            try:
                ts, data = reader.q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RunError("did not exit after 'q'; screen:\n%s" % term.text())
            if data is None:
                t_end = ts
            else:
                term.stream.feed(data)
        term.child.wait()
        return {"open": t_open - t0, "quit": t_end - t_q, "total": (t_open - t0) + (t_end - t_q),
                "peak_kb": peak_kb, "cpu": cpu, "progress": saw_progress}
    finally:
        term.close()


# ---------------------------------------------------------------- report

def fmt_ratio(x):
    return "%.1fx" % x if x >= 0.995 else "%.2fx" % x


def table(results, clients, versions):
    """results[(client, sort, cache)] -> list of runs; prints medians and ratios."""
    rows = []
    head = ("client", "sort", "cache", "open s", "total s", "cpu s", "peak RSS MB",
            "open: mutt/x", "cpu: mutt/x", "RSS: x/mutt", "progress")
    for sort in SORTS:
        for cache in ("cold", "warm"):
            for client in clients:
                runs = results.get((client, sort, cache))
                if not runs:
                    continue
                o = statistics.median(r["open"] for r in runs)
                tot = statistics.median(r["total"] for r in runs)
                cpu = statistics.median(r["cpu"] for r in runs)
                mb = statistics.median(r["peak_kb"] for r in runs) / 1024.0
                ref = results.get(("mutt", sort, cache))
                if ref:
                    ro = statistics.median(r["open"] for r in ref)
                    rc = statistics.median(r["cpu"] for r in ref)
                    rm = statistics.median(r["peak_kb"] for r in ref) / 1024.0
                    sp, mem = fmt_ratio(ro / o), "%.2f" % (mb / rm)
                    spc = fmt_ratio(rc / cpu) if cpu > 0 and rc > 0 else "-"
                else:
                    sp = spc = mem = "-"
                prog = "yes" if all(r["progress"] for r in runs) else (
                    "some" if any(r["progress"] for r in runs) else "no")
                rows.append((client, sort, cache, "%.3f" % o, "%.3f" % tot, "%.3f" % cpu,
                             "%.1f" % mb, sp, spc, mem, prog))
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    print()
    for c in clients:
        print("%-8s %s" % (c + ":", versions[c]))
    print()
    print("\n".join(out))
    print()
    print("open: spawn to the index drawn; total: open plus 'q' to exit; cpu: the client's")
    print("user+system time (all threads) up to the index; median of each cell.")
    print("mutt/x: how many times less than mutt's (open time, cpu time); RSS x/mutt: the")
    print("share of mutt's peak.")
    print("progress: an \"n/total\" count was on the message line before the index.")


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description="Open a big Maildir in correo, mutt and neomutt.")
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR",
                    help="generate the corpus in DIR (or reuse the one there) and keep it")
    ap.add_argument("--only", default=",".join(CLIENTS),
                    help="comma-separated clients (default: %(default)s)")
    ap.add_argument("--correo", default=os.path.join(SRCDIR, "build/mua/correo"),
                    help="the correo binary (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds one open may take before the run is abandoned")
    args = ap.parse_args()
    clients = [c.strip() for c in args.only.split(",") if c.strip()]
    for c in clients:
        if c not in CLIENTS:
            ap.error("unknown client %r (choose from %s)" % (c, ", ".join(CLIENTS)))
    if args.count < 1 or args.runs < 1:
        ap.error("--count and --runs must be positive")

    # The clients see only what this script gives them.
    for var in ("MAIL", "MAILDIR", "MAILCHECK", "MAILPATH", "MUTT", "MUTTRC", "NEOMUTTRC",
                "EMAIL", "REPLYTO", "CORREO_DATADIR_OVERRIDE", "COLUMNS", "LINES"):
        os.environ.pop(var, None)

    ensure_tools(clients)
    sys.dont_write_bytecode = True      # no __pycache__ in the source tree
    sys.path.insert(0, os.path.join(SRCDIR, "tests/ui"))
    exes = {}
    for c in clients:
        exes[c] = os.path.abspath(args.correo) if c == "correo" else shutil.which(c)
        if not exes[c] or not os.access(exes[c], os.X_OK):
            sys.exit("bench-open: %s not found (%s); build it first" % (c, exes[c]))
    versions = {c: version(c, exes[c]) for c in clients}

    if args.keep:
        base = os.path.abspath(args.keep)
        os.makedirs(base, exist_ok=True)
    else:
        base = tempfile.mkdtemp(prefix="correo-bench-corpus-", dir="/tmp")
    work = tempfile.mkdtemp(prefix="correo-bench-work-", dir="/tmp")
    results = {}
    try:
        md = make_corpus(base, args.count, args.seed, bool(args.keep))
        n_cur, n_new = count_messages(md)
        expected = n_cur + n_new
        log("bench-open: %s: %d messages (%d in new/)" % (md, expected, n_new))
        for run in range(args.runs):
            for client in clients:
                for sort in SORTS:
                    argv, env, cache = client_setup(client, exes[client], work, md, sort)
                    clear_dir(cache)
                    for state in ("cold", "warm"):
                        prewarm([md, cache])
                        try:
                            r = measure(argv, env, expected, args.timeout)
                        except RunError as ex:
                            raise RunError("%s, sort=%s, %s: %s" % (client, sort, state, ex))
                        r["cache_bytes"] = dir_bytes(cache)
                        results.setdefault((client, sort, state), []).append(r)
                        log("run %d/%d %-7s %-7s %s: open %.3f s, total %.3f s, cpu %.3f s,"
                            " peak %.1f MB, cache %.1f MB, load %.2f%s"
                            % (run + 1, args.runs, client, sort, state, r["open"], r["total"],
                               r["cpu"], r["peak_kb"] / 1024.0, r["cache_bytes"] / 1048576.0,
                               os.getloadavg()[0],
                               ", progress shown" if r["progress"] else ""))
                        if state == "cold" and r["cache_bytes"] == 0:
                            log("bench-open: WARNING: %s left no header cache in %s"
                                % (client, cache))
                    if count_messages(md) != (n_cur, n_new):
                        sys.exit("bench-open: %s changed the Maildir (cur/new counts); "
                                 "the figures after it would not compare" % client)
        for client in clients:
            for sort in SORTS:
                cold = results[(client, sort, "cold")]
                warm = results[(client, sort, "warm")]
                if statistics.median(r["open"] for r in warm) >= \
                        statistics.median(r["open"] for r in cold):
                    log("bench-open: WARNING: %s %s: warm open is not faster than cold;"
                        " is its header cache used?" % (client, sort))
        print("load average at the end: %.2f %.2f %.2f (nproc %d)"
              % (os.getloadavg() + (os.cpu_count(),)))
        print("corpus: %d messages in one Maildir folder (gen-corpus.py --count %d --seed %d"
              " --folders 0), %dx%d pty, median of %d runs"
              % (expected, args.count, args.seed, COLS, ROWS, args.runs))
        table(results, clients, versions)
    except RunError as ex:
        sys.exit("bench-open: %s" % ex)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
