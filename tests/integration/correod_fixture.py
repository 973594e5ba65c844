"""A private correod instance for tests.

    with Correod(exe, tmp, domain="example.test") as d:
        d.dir, d.conf, d.port("smtp"), d.add_user("alice", "secret")
        d.maildir("alice")   # the user's Maildir root
        d.restart(), d.pid, d.log()

`correod init` makes the instance with a port offset whose ports are all
free on 127.0.0.1 right now; `correod run -f` serves it in the foreground
and the fixture waits (with a deadline, never a bare sleep) until the SMTP
port accepts a connection.  The process is stopped by its PID.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import time

BASE_PORTS = {"smtp": 25, "submissions": 465, "submission": 587,
              "imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}


def _free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_offset():
    """An offset N such that every standard port + N is free now."""
    for _ in range(200):
        n = random.randrange(20000, 60000)
        if all(_free(p + n) for p in BASE_PORTS.values()):
            return n
    raise RuntimeError("no free port range on 127.0.0.1")


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for " + what)
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Correod:
    def __init__(self, exe, tmp, domain="example.test", init_args=(), conf_extra="",
                 start=True):
        self.exe = os.path.abspath(exe)
        self.dir = os.path.join(tmp, "correod")
        self.domain = domain
        self.init_args = list(init_args)
        self.conf_extra = conf_extra
        self.start_on_enter = start
        self.proc = None
        self.offset = None
        self.logpath = os.path.join(tmp, "correod.log")

    @property
    def conf(self):
        return os.path.join(self.dir, "correod.conf")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def port(self, name):
        return BASE_PORTS[name] + self.offset

    def cmd(self, *args, input=None, check=True):
        """Run `correod ARGS -c CONF`-style admin commands (args given whole)."""
        r = subprocess.run([self.exe] + list(args), input=input, capture_output=True,
                           text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError("correod %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                               r.stderr))
        return r

    def __enter__(self):
        # Tests run in parallel: a port range found free can be taken by
        # another test before correod binds it; then a new instance is made
        # on another range (only here, before the test has used it).
        for attempt in range(4):
            self.offset = pick_offset()
            self.cmd("init", self.dir, "--domain", self.domain, "--listen", "127.0.0.1",
                     "--port-offset", str(self.offset), *self.init_args)
            if self.conf_extra:
                with open(self.conf, "a") as f:
                    f.write("\n" + self.conf_extra + "\n")
            if not self.start_on_enter:
                return self
            try:
                self.start()
                return self
            except RuntimeError:
                if attempt == 3 or "cannot listen on" not in self.log():
                    raise
                self.stop()
                shutil.rmtree(self.dir, ignore_errors=True)
                open(self.logpath, "wb").close()
        return self

    def start(self):
        self._log = open(self.logpath, "ab")
        self.proc = subprocess.Popen([self.exe, "run", "-f", "-c", self.conf],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        try:
            # Listening means its own sockets: the supervisor logs that it
            # started only after binding them all (a port held by someone
            # else would accept too).
            started = "started (pid %d)" % self.proc.pid
            wait_until(lambda: self.proc.poll() is not None or
                       (started in self.log() and _accepts(self.port("smtp"))),
                       timeout=15, what="correod to listen")
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError("correod exited %d:\n%s" % (self.proc.returncode, self.log()))

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self._log.close()
        return rc

    def restart(self):
        self.stop()
        self.start()

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def __exit__(self, *exc):
        self.stop()

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def add_user(self, name, password):
        self.cmd("user", "add", "-c", self.conf, name, "--password-stdin",
                 input=password + "\n")

    def maildir(self, local, domain=None):
        """The Maildir root the default template gives local@domain."""
        return os.path.join(self.dir, "mail", domain or self.domain, local)

    def messages(self, local, domain=None, sub="new"):
        """Contents (bytes) of the messages in a user's INBOX sub-directory."""
        d = os.path.join(self.maildir(local, domain), sub)
        if not os.path.isdir(d):
            return []
        out = []
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                out.append(f.read())
        return out
