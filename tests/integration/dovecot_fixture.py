"""A private Dovecot instance for tests (Debian's dovecot-imapd and
dovecot-pop3d), never the machine's own: its own config file (-c), its own
base_dir, a passwd-file of test users, Maildirs under the test's directory,
IMAP, IMAPS, POP3 and POP3S on loopback ports chosen at run time, and a
self-signed certificate made with the openssl command.

    with Dovecot(tmp, users={"alice": "secret"}) as d:
        d.port("imap"), d.port("imaps"), d.port("pop3"), d.port("pop3s")
        d.maildir("alice"), d.cert, d.fingerprint
        d.deliver("alice", b"From: ...")     # drop a message into new/

The process is started in the foreground (-F), waited for with a deadline
until its ports accept, and stopped by its PID.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def available():
    return os.path.exists(DOVECOT)


class Dovecot:
    def __init__(self, tmp, users=None, extra_conf=""):
        self.root = os.path.join(tmp, "dovecot")
        self.users = dict(users or {"alice": "secret"})
        self.extra_conf = extra_conf
        self.proc = None
        self.ports = {}

    def port(self, name):
        return self.ports[name]

    def maildir(self, user):
        return os.path.join(self.root, "mail", user, "Maildir")

    def _write_config(self):
        os.makedirs(self.root, exist_ok=True)
        self.cert = os.path.join(self.root, "cert.pem")
        self.key = os.path.join(self.root, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in",
                              self.cert], check=True, capture_output=True, text=True).stdout
        self.fingerprint = out.strip().split("=", 1)[1]
        uid, gid = os.getuid(), os.getgid()
        # login and internal processes must not run as root: Debian's
        # package makes the dovenull and dovecot users for that
        # and Dovecot never runs a mail process as root: as root the mail
        # belongs to Debian's "mail" system user
        if uid == 0:
            login_user, login_group = "dovenull", "dovenull"
            import pwd
            pw = pwd.getpwnam("mail")
            uid, gid = pw.pw_uid, pw.pw_gid
        else:
            login_user, login_group = _user_name(uid), _group_name(gid)
        passwd = os.path.join(self.root, "passwd")
        with open(passwd, "w") as f:
            for user, pw in self.users.items():
                home = os.path.join(self.root, "mail", user)
                os.makedirs(os.path.join(home, "Maildir"), exist_ok=True)
                for sub in ("cur", "new", "tmp"):
                    os.makedirs(os.path.join(home, "Maildir", sub), exist_ok=True)
                f.write("%s:{PLAIN}%s:%d:%d::%s::\n" % (user, pw, uid, gid, home))
                for dirpath, dirnames, filenames in os.walk(home):
                    os.chown(dirpath, uid, gid)
                os.chown(os.path.join(self.root, "mail"), uid, gid)
        self.mail_uid, self.mail_gid = uid, gid
        # Four distinct ports: each socket stays bound until all are chosen.
        held = []
        for name in ("imap", "imaps", "pop3", "pop3s"):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            self.ports[name] = sock.getsockname()[1]
        for sock in held:
            sock.close()
        self.conf = os.path.join(self.root, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write("""# private test instance
base_dir = {root}/run
state_dir = {root}/state
instance_name = correo-test-{pid}
log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
pop3_uidl_format = %08Xu%08Xv
{extra}
""".format(root=self.root, pid=os.getpid(), cert=self.cert, key=self.key, passwd=passwd,
           user=login_user, group=login_group, extra=self.extra_conf, **self.ports))

    def __enter__(self):
        # Tests run in parallel: a port chosen free may be taken before
        # Dovecot binds it.  Then Dovecot exits at once, and another set of
        # ports is tried.
        for attempt in range(5):
            self._write_config()
            for name in ("dovecot.log", "stderr.log"):
                open(os.path.join(self.root, name), "wb").close()
            self._log = open(os.path.join(self.root, "stderr.log"), "ab")
            self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf],
                                         stdout=self._log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 20
            while not all(_accepts(p) for p in self.ports.values()):
                if self.proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("dovecot did not listen: %s" % self.log())
                time.sleep(0.05)
            else:
                return self
            log = self.log()
            self._log.close()
            self.proc = None
            if "Address already in use" not in log and "duplicate listener" not in log:
                break
        raise RuntimeError("dovecot could not start: %s" % log)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._log.close()
        self.proc = None

    def __exit__(self, *exc):
        self.stop()

    def log(self):
        out = ""
        for name in ("dovecot.log", "stderr.log"):
            try:
                with open(os.path.join(self.root, name), "rb") as f:
                    out += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return out

    def deliver(self, user, data, name=None):
        """Put a message into the user's INBOX new/ (tmp + rename)."""
        md = self.maildir(user)
        # Names sort in delivery order (seconds, then a counter in the
        # microseconds field), so the UIDs a server gives follow it too.
        self._seq = getattr(self, "_seq", 0) + 1
        name = name or "%d.M%06dP%d.test" % (time.time(), self._seq, os.getpid())
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chown(tmp, self.mail_uid, self.mail_gid)
        os.rename(tmp, os.path.join(md, "new", name))
        return name


def _user_name(uid):
    import pwd
    return pwd.getpwuid(uid).pw_name


def _group_name(gid):
    import grp
    return grp.getgrgid(gid).gr_name
