#!/usr/bin/python3
"""correod init, check-config and gencert, and the option documentation.

Usage: correod_admin.py CORREOD SRCDIR

init writes a complete instance (files, modes, a config that loads), refuses
to run twice, check-config names file:line for a broken config, gencert
writes a pair openssl accepts with the names asked for, usage errors exit 2,
and every option in conf.c's table is documented in correod.conf(5).
"""
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

exe, srcdir = os.path.abspath(sys.argv[1]), sys.argv[2]
passed = 0
failures = []


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL: " + what, flush=True)


def correod(*args, input=None):
    return subprocess.run([exe] + list(args), input=input, capture_output=True, text=True,
                          timeout=120)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def openssl_text(cert):
    r = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-text"],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def san_of(text):
    """The subjectAltName entries of `openssl x509 -text` output."""
    m = re.search(r"X509v3 Subject Alternative Name:.*?\n\s*(.*)\n", text)
    if not m:
        return set()
    return {part.strip() for part in m.group(1).split(",")}


def pubkey(args):
    r = subprocess.run(["openssl"] + args, capture_output=True, timeout=60)
    return r.returncode, r.stdout


def option_names():
    """Option names from the table in localserver/conf.c."""
    with open(os.path.join(srcdir, "localserver", "conf.c"), encoding="utf-8") as f:
        text = f.read()
    table = text[text.index("static const struct option options[]"):]
    table = table[:table.index("};")]
    return re.findall(r'\{\s*"([a-z_]+)",\s*K_', table)


OFFSET = 30000

with tempfile.TemporaryDirectory(prefix="correod-admin-") as tmp:
    inst = os.path.join(tmp, "inst")
    conf = os.path.join(inst, "correod.conf")

    # ---- init ----------------------------------------------------------------
    r = correod("init", inst, "--domain", "example.test", "--listen", "127.0.0.1",
                "--port-offset", str(OFFSET), "--hostname", "mx.example.test")
    check(r.returncode == 0, "init exit %d: %s" % (r.returncode, r.stderr))
    for port in (25, 587, 465):
        check(str(port + OFFSET) in r.stdout, "init prints port %d" % (port + OFFSET))
    check("user add" in r.stdout and "correod run" in r.stdout,
          "init prints the next steps: %r" % r.stdout)

    for name in ("correod.conf", "users", "aliases", "cert.pem", "key.pem"):
        check(os.path.isfile(os.path.join(inst, name)), "init wrote " + name)
    for name in ("mail", "queue"):
        check(os.path.isdir(os.path.join(inst, name)), "init made %s/" % name)
    check(mode(inst) == 0o700, "instance dir mode %o" % mode(inst))
    check(mode(conf) == 0o600, "config mode %o" % mode(conf))
    check(mode(os.path.join(inst, "key.pem")) == 0o600, "key mode")
    check(mode(os.path.join(inst, "users")) == 0o600, "users mode")
    check(os.path.getsize(os.path.join(inst, "users")) == 0, "users file empty")
    check(os.path.getsize(os.path.join(inst, "aliases")) == 0, "aliases file empty")
    check(not [n for n in os.listdir(inst) if n.startswith(".")],
          "no temporary files left: %r" % os.listdir(inst))

    with open(conf, encoding="utf-8") as f:
        conf_text = f.read()
    check(re.search(r"^auth_allow_plaintext_loopback no$", conf_text, re.M) is not None,
          "config sets auth_allow_plaintext_loopback no")
    check(re.search(r"^domains example\.test$", conf_text, re.M) is not None,
          "config names the domain")
    check(re.search(r"^port_offset %d$" % OFFSET, conf_text, re.M) is not None,
          "config names the offset")
    names = option_names()
    check(len(names) >= 40, "found the option table in conf.c (%d names)" % len(names))
    missing = [n for n in names if not re.search(r"^#? ?%s\b" % n, conf_text, re.M)]
    check(not missing, "init's config names every option; missing %r" % missing)

    rc, text = openssl_text(os.path.join(inst, "cert.pem"))
    san = san_of(text)
    check(rc == 0, "openssl reads init's certificate: " + text[:300])
    for want in ("DNS:example.test", "DNS:localhost", "IP Address:127.0.0.1",
                 "DNS:mx.example.test"):
        check(want in san, "init certificate has %s (SAN %r)" % (want, san))

    # the config loads: check-config says so
    r = correod("check-config", "-c", conf)
    check(r.returncode == 0, "check-config on a fresh instance: %d %s" % (r.returncode,
                                                                            r.stderr))
    check("example.test" in r.stdout and str(25 + OFFSET) in r.stdout,
          "check-config summary names domain and ports: %r" % r.stdout)
    check(re.search(r"users\s+0", r.stdout) is not None, "check-config counts 0 users")

    # the instance can be moved as a whole (relative paths)
    moved = os.path.join(tmp, "moved")
    shutil.copytree(inst, moved, symlinks=True)
    r = correod("check-config", "-c", os.path.join(moved, "correod.conf"))
    check(r.returncode == 0 and moved in r.stdout,
          "a moved instance checks clean from its new place: %s %s" % (r.stdout, r.stderr))

    # CORREOD_CONF is the default config
    env_r = subprocess.run([exe, "check-config"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, CORREOD_CONF=conf))
    check(env_r.returncode == 0, "check-config finds $CORREOD_CONF: " + env_r.stderr)

    # ---- init twice --------------------------------------------------------
    before = open(conf, "rb").read()
    r = correod("init", inst, "--domain", "other.test")
    check(r.returncode == 1, "second init refused (exit %d)" % r.returncode)
    check("already exists" in r.stderr, "second init says why: %r" % r.stderr)
    check(open(conf, "rb").read() == before, "second init left the config alone")

    # a directory that already has one of init's files is refused too
    partial = os.path.join(tmp, "partial")
    os.mkdir(partial)
    with open(os.path.join(partial, "users"), "w") as f:
        f.write("keep\n")
    r = correod("init", partial, "--domain", "example.test")
    check(r.returncode == 1 and open(os.path.join(partial, "users")).read() == "keep\n",
          "init does not overwrite an existing users file")

    # ---- check-config on broken configs ---------------------------------------
    broken = os.path.join(tmp, "broken")
    shutil.copytree(inst, broken, symlinks=True)
    bconf = os.path.join(broken, "correod.conf")
    with open(bconf, "a") as f:
        f.write("max_message_size 12Q\n")
    nlines = len(open(bconf).read().splitlines())
    r = correod("check-config", "-c", bconf)
    check(r.returncode == 1, "check-config on a broken line exits 1 (got %d)" % r.returncode)
    check("%s:%d: max_message_size" % (bconf, nlines) in r.stderr,
          "check-config names file:line: %r" % r.stderr)

    with open(bconf, "a") as f:
        f.write("smtp-port 25\nworkers 0\n")
    r = correod("check-config", "-c", bconf)
    check(r.returncode == 1, "several problems: exit 1")
    check("%s:%d: unknown option 'smtp-port' (did you mean 'smtp_port'?)" % (bconf, nlines + 1)
          in r.stderr, "unknown option with a suggestion: %r" % r.stderr)
    check("%s:%d: workers" % (bconf, nlines + 2) in r.stderr,
          "every problem is listed: %r" % r.stderr)

    # a broken users file line is named too
    bad_users = os.path.join(tmp, "badusers")
    shutil.copytree(inst, bad_users, symlinks=True)
    with open(os.path.join(bad_users, "users"), "w") as f:
        f.write("no colons on this line\n")
    r = correod("check-config", "-c", os.path.join(bad_users, "correod.conf"))
    check(r.returncode == 1 and os.path.join(bad_users, "users") in r.stderr,
          "check-config reports a broken users file: %d %r" % (r.returncode, r.stderr))

    # a certificate that is not one
    bad_cert = os.path.join(tmp, "badcert")
    shutil.copytree(inst, bad_cert, symlinks=True)
    with open(os.path.join(bad_cert, "cert.pem"), "w") as f:
        f.write("not a certificate\n")
    r = correod("check-config", "-c", os.path.join(bad_cert, "correod.conf"))
    check(r.returncode == 1 and "tls" in r.stderr,
          "check-config loads the TLS pair: %d %r" % (r.returncode, r.stderr))

    r = correod("check-config", "-c", os.path.join(tmp, "nope.conf"))
    check(r.returncode == 1 and "nope.conf" in r.stderr, "missing config: exit 1")

    # ---- gencert -----------------------------------------------------------
    cert = os.path.join(inst, "cert.pem")
    key = os.path.join(inst, "key.pem")
    before = open(cert, "rb").read()
    r = correod("gencert", "-c", conf)
    check(r.returncode == 1 and "--force" in r.stderr,
          "gencert refuses to overwrite: %d %r" % (r.returncode, r.stderr))
    check(open(cert, "rb").read() == before, "refused gencert left the certificate alone")

    r = correod("gencert", "-c", conf, "--force", "--days", "30",
                "mail.example.test", "alt.example.test", "127.0.0.1", "::1")
    check(r.returncode == 0, "gencert --force: %d %s" % (r.returncode, r.stderr))
    rc, text = openssl_text(cert)
    san = san_of(text)
    check(rc == 0, "openssl x509 accepts the new certificate")
    check({"DNS:mail.example.test", "DNS:alt.example.test", "IP Address:127.0.0.1"} <= san,
          "SAN has the names asked for: %r" % san)
    check(any(s.startswith("IP Address:0:0:0:0:0:0:0:1") or s == "IP Address:::1"
              for s in san), "SAN has ::1: %r" % san)
    check("DNS:localhost" not in san, "explicit names replace the defaults")
    check(mode(key) == 0o600, "gencert key mode %o" % mode(key))
    rc1, cert_pub = pubkey(["x509", "-in", cert, "-noout", "-pubkey"])
    rc2, key_pub = pubkey(["pkey", "-in", key, "-pubout"])
    check(rc1 == 0 and rc2 == 0 and cert_pub == key_pub, "the key belongs to the certificate")
    r = correod("check-config", "-c", conf)
    check(r.returncode == 0, "check-config accepts the new pair: " + r.stderr)

    # a config naming a pair that does not exist yet: check-config fails,
    # gencert makes it with the default names, then check-config passes
    fresh = os.path.join(tmp, "fresh")
    shutil.copytree(inst, fresh, symlinks=True)
    fconf = os.path.join(fresh, "correod.conf")
    os.unlink(os.path.join(fresh, "cert.pem"))
    os.unlink(os.path.join(fresh, "key.pem"))
    r = correod("check-config", "-c", fconf)
    check(r.returncode == 1 and "tls_cert: cannot read" in r.stderr,
          "missing pair reported: %r" % r.stderr)
    r = correod("gencert", "-c", fconf)
    check(r.returncode == 0, "gencert creates a missing pair: %s" % r.stderr)
    rc, text = openssl_text(os.path.join(fresh, "cert.pem"))
    san = san_of(text)
    for want in ("DNS:mx.example.test", "DNS:example.test", "DNS:localhost"):
        check(want in san, "default gencert names include %s: %r" % (want, san))
    check("Not After" in text and rc == 0, "openssl shows validity")
    r = correod("check-config", "-c", fconf)
    check(r.returncode == 0, "check-config after gencert: " + r.stderr)

    # ---- a single-user instance (init run by an ordinary user) ---------------------
    as_user = []
    if os.geteuid() == 0 and shutil.which("setpriv"):
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if os.geteuid() != 0 or as_user:
        pub = os.path.join(tmp, "pub")
        os.mkdir(pub)
        os.chmod(tmp, 0o711)
        os.chmod(pub, 0o777)
        single = os.path.join(pub, "single")
        r = subprocess.run(as_user + [exe, "init", single, "--domain", "me.test"],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, "init as an ordinary user: %d %s" % (r.returncode, r.stderr))
        sconf = open(os.path.join(single, "correod.conf")).read()
        check(re.search(r"^port_offset 10000$", sconf, re.M) is not None,
              "single-user instance defaults to port offset 10000")
        check(re.search(r"^run_user", sconf, re.M) is None, "single-user instance: no run_user")
        check("10025" in r.stdout and "10587" in r.stdout, "single-user init prints its ports")
        r = subprocess.run(as_user + [exe, "init", os.path.join(pub, "two"), "--domain",
                                      "a.test", "--domain", "b.test"],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 2, "single-user init takes one domain (exit %d)" % r.returncode)

    # ---- help and usage errors -------------------------------------------------
    for cmd in ("init", "check-config", "gencert"):
        r = correod(cmd, "--help")
        check(r.returncode == 0 and ("usage: correod " + cmd) in r.stdout,
              "%s --help exits 0 with usage" % cmd)
    usage_cases = [
        ("init",),
        ("init", os.path.join(tmp, "u1"), os.path.join(tmp, "u2")),
        ("init", os.path.join(tmp, "u3"), "--bogus"),
        ("init", os.path.join(tmp, "u4"), "--port-offset", "abc"),
        ("init", os.path.join(tmp, "u5"), "--port-offset", "65000"),
        ("init", os.path.join(tmp, "u6"), "--domain", "bad..domain"),
        ("init", os.path.join(tmp, "u7"), "--listen", "localhost"),
        ("init", os.path.join(tmp, "u8"), "--domain"),
        ("check-config", "-c", conf, "extra"),
        ("check-config", "-x"),
        ("check-config", "-c"),
        ("gencert", "-c", conf, "--days", "0"),
        ("gencert", "-c", conf, "--days", "x"),
        ("gencert", "--nope"),
    ]
    for args in usage_cases:
        r = correod(*args)
        check(r.returncode == 2 and "usage: correod" in r.stderr,
              "%r exits 2 with usage (got %d: %r)" % (args, r.returncode, r.stderr))
    check(not any(os.path.exists(os.path.join(tmp, "u%d" % i)) for i in range(1, 9)),
          "usage errors create nothing")

    # ---- the documentation ---------------------------------------------------
    with open(os.path.join(srcdir, "doc", "correod.conf.5"), encoding="utf-8") as f:
        man = f.read()
    # each option has an entry of its own: a .TP paragraph tagged with it
    undocumented = [n for n in names
                    if not re.search(r"^\.TP\n\\fB%s\\fR" % re.escape(n), man, re.M)]
    check(not undocumented, "correod.conf.5 documents every option; missing %r" % undocumented)
    with open(os.path.join(srcdir, "doc", "correod.8"), encoding="utf-8") as f:
        man8 = f.read().replace("\\-", "-")
    for word in ("init", "run", "check-config", "gencert", "user", "queue", "dkim-keygen",
                 "sendmail", "SIGHUP", "SIGTERM"):
        check(word in man8, "correod.8 mentions " + word)

print("correod_admin: %d passed, %d failed" % (passed, len(failures)))
sys.exit(1 if failures else 0)
