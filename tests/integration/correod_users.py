#!/usr/bin/python3
"""correod user add|del|passwd|list on a real instance, checked by Dovecot.

Usage: correod_users.py CORREOD SRCDIR

`correod init` makes the instance (not started); users are added with
--password-stdin, listed, given new passwords and deleted.  The Maildir and
its special-use folders appear on add and stay on del; other lines of the
users file are kept byte for byte; bad names, non-local domains, empty
passwords and a missing terminal are refused.  Every hash written is checked
by Dovecot itself (`doveadm pw -t`): the yescrypt hash correod makes, and the
SHA-512-crypt one it falls back to when yescrypt is unavailable (simulated
with a preloaded crypt_gensalt_rn that refuses "$y$"); a wrong password fails
there too.  A hash Dovecot made is read back by `correod check-config`.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correod_fixture import Correod  # noqa: E402

exe, srcdir = os.path.abspath(sys.argv[1]), sys.argv[2]
passed = 0
failures = []
DOVEADM = shutil.which("doveadm")
SPECIAL = (".Sent", ".Drafts", ".Trash", ".Junk", ".Archive")


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL: " + what, flush=True)


def user(d, *args, input=None, env=None):
    """`correod user ARGS -c CONF`, detached from any terminal."""
    return subprocess.run([exe, "user"] + list(args[:1]) + ["-c", d.conf] + list(args[1:]),
                          input=input, capture_output=True, text=True, timeout=120,
                          env=env, start_new_session=True, stdin=None if input is not None
                          else subprocess.DEVNULL)


def users_file(d):
    with open(os.path.join(d.dir, "users"), "rb") as f:
        return f.read()


def hash_of(d, name):
    for line in users_file(d).decode().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields[1]
    return None


def is_maildir(path):
    return all(os.path.isdir(os.path.join(path, s)) for s in ("cur", "new", "tmp"))


def dovecot_verifies(hash_, password):
    r = subprocess.run([DOVEADM, "pw", "-t", hash_, "-p", password], capture_output=True,
                       text=True, timeout=60)
    return r.returncode == 0


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

/* crypt_gensalt_rn without yescrypt, as on a libcrypt built without it. */
char *crypt_gensalt_rn(const char *prefix, unsigned long count, const char *rbytes,
                       int nrbytes, char *output, int output_size)
{
    char *(*real)(const char *, unsigned long, const char *, int, char *, int);

    if (prefix != NULL && strcmp(prefix, "$y$") == 0) {
        errno = EINVAL;
        return NULL;
    }
    *(void **)&real = dlsym(RTLD_NEXT, "crypt_gensalt_rn");
    return real(prefix, count, rbytes, nrbytes, output, output_size);
}
"""


def build_shim(tmp):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = os.path.join(tmp, "noyescrypt.c")
    lib = os.path.join(tmp, "noyescrypt.so")
    with open(src, "w") as f:
        f.write(SHIM)
    r = subprocess.run([cc, "-shared", "-fPIC", "-o", lib, src, "-ldl"], capture_output=True,
                       text=True, timeout=120)
    return lib if r.returncode == 0 else None


def main():
    if DOVEADM is None:
        print("doveadm not found (dovecot-core, scripts/deps.sh test): skipping the checks "
              "of hashes by Dovecot", flush=True)
    with tempfile.TemporaryDirectory(prefix="correod-users-") as tmp:
        with Correod(exe, tmp, start=False) as d:
            # ---- add
            r = user(d, "add", "Alice", "--password-stdin", input="s3cret pass\n")
            check(r.returncode == 0, "add alice: %d %s" % (r.returncode, r.stderr))
            check("left" not in r.stdout and d.maildir("alice") in r.stdout,
                  "add names the Maildir: " + r.stdout)
            h = hash_of(d, "alice@example.test")
            check(h is not None and h.startswith("{CRYPT}$y$"), "yescrypt hash: %r" % h)
            line = users_file(d).decode()
            check(line == "alice@example.test:%s:::::\n" % h, "the line written: %r" % line)
            check(oct(os.stat(os.path.join(d.dir, "users")).st_mode & 0o777) == "0o600",
                  "users file mode 0600")
            md = d.maildir("alice")
            check(is_maildir(md), "Maildir made for alice")
            for f in SPECIAL:
                check(is_maildir(os.path.join(md, f)), "folder %s made" % f)
                check(os.path.isfile(os.path.join(md, f, "maildirfolder")),
                      "folder %s has maildirfolder" % f)
            if DOVEADM and h:
                check(dovecot_verifies(h, "s3cret pass"), "Dovecot verifies the yescrypt hash")
                check(not dovecot_verifies(h, "s3cret pasS"),
                      "Dovecot refuses a wrong password (yescrypt)")

            # ---- refusals
            before = users_file(d)
            r = user(d, "add", "ALICE@example.test", "--password-stdin", input="x\n")
            check(r.returncode == 1 and "exists" in r.stderr, "duplicate add refused")
            r = user(d, "add", "bob@other.test", "--password-stdin", input="x\n")
            check(r.returncode == 1 and "not a local domain" in r.stderr,
                  "non-local domain refused")
            for bad in ("../evil", "a/b", "x:y", "sp ace", "a..b"):
                r = user(d, "add", bad, "--password-stdin", input="x\n")
                check(r.returncode == 1, "bad name %r refused" % bad)
            check(not os.path.exists(os.path.join(d.dir, "mail", "evil")) and
                  not os.path.exists(os.path.join(d.dir, "evil")), "no directory escaped")
            r = user(d, "add", "bob", "--password-stdin", input="\n")
            check(r.returncode == 1 and "empty" in r.stderr, "empty password refused")
            r = user(d, "add", "bob", "--password-stdin", input="")
            check(r.returncode == 1, "no password line refused")
            r = user(d, "add", "bob")
            check(r.returncode == 1 and "--password-stdin" in r.stderr,
                  "no terminal and no --password-stdin refused: " + r.stderr)
            check(users_file(d) == before, "refusals leave the users file alone")
            check(not os.path.exists(d.maildir("bob")), "refusals make no Maildir")
            for args in (("frob",), ("add",), ("list", "extra"), ("del", "x", "--password-stdin"),
                         ("add", "x", "--bogus")):
                r = user(d, *args)
                check(r.returncode == 2, "usage error %r exits 2 (%d)" % (args, r.returncode))

            # ---- lines written by hand are kept
            hand = ("# written by hand\n"
                    "\n"
                    "Carol@Example.test:{SHA512-CRYPT}%s:1000:1000:Carol:/home/carol:"
                    "/bin/sh:userdb_quota_rule=*:storage=1G\n")
            if DOVEADM:
                r = subprocess.run([DOVEADM, "pw", "-s", "SHA512-CRYPT", "-p", "carol pw"],
                                   capture_output=True, text=True, timeout=60)
                carol = r.stdout.strip()[len("{SHA512-CRYPT}"):]
            else:
                carol = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterL" \
                        "p8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/"
            hand = hand % carol
            with open(os.path.join(d.dir, "users"), "ab") as f:
                f.write(hand.encode())
            before = users_file(d)
            r = subprocess.run([exe, "check-config", "-c", d.conf], capture_output=True,
                               text=True, timeout=60)
            check(r.returncode == 0 and "users        2" in r.stdout,
                  "a Dovecot-made {SHA512-CRYPT} line loads: %s %s" % (r.stdout, r.stderr))
            r = user(d, "list")
            check(r.returncode == 0 and r.stdout == "alice@example.test\ncarol@example.test\n",
                  "list: %r" % r.stdout)

            # ---- passwd
            r = user(d, "passwd", "alice", "--password-stdin", input="n3w pass\r\n")
            check(r.returncode == 0, "passwd alice: " + r.stderr)
            h2 = hash_of(d, "alice@example.test")
            check(h2 is not None and h2 != h and h2.startswith("{CRYPT}$y$"), "new hash")
            after = users_file(d)
            check(after == before.replace(h.encode(), h2.encode()),
                  "passwd changes only the hash")
            if DOVEADM and h2:
                check(dovecot_verifies(h2, "n3w pass"), "Dovecot verifies the new hash")
                check(not dovecot_verifies(h2, "s3cret pass"), "the old password is gone")
            r = user(d, "passwd", "nobody", "--password-stdin", input="x\n")
            check(r.returncode == 1 and "no such user" in r.stderr, "passwd of nobody refused")

            # ---- the SHA-512-crypt fallback
            shim = build_shim(tmp)
            if shim is None:
                print("no C compiler: skipping the SHA-512-crypt fallback check", flush=True)
            else:
                env = dict(os.environ, LD_PRELOAD=shim)
                env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
                r = user(d, "add", "dave", "--password-stdin", input="dave pw\n", env=env)
                check(r.returncode == 0, "add dave without yescrypt: " + r.stderr)
                h6 = hash_of(d, "dave@example.test")
                check(h6 is not None and h6.startswith("{CRYPT}$6$"),
                      "SHA-512-crypt hash without yescrypt: %r" % h6)
                if DOVEADM and h6:
                    check(dovecot_verifies(h6, "dave pw"), "Dovecot verifies the $6$ hash")
                    check(not dovecot_verifies(h6, "dave pW"),
                          "Dovecot refuses a wrong password ($6$)")
                check(is_maildir(d.maildir("dave")), "Maildir made for dave")

            # ---- del
            r = user(d, "del", "alice@EXAMPLE.test")
            check(r.returncode == 0 and "left in place" in r.stdout and md in r.stdout,
                  "del alice: %d %s %s" % (r.returncode, r.stdout, r.stderr))
            check(hash_of(d, "alice@example.test") is None, "alice's line is gone")
            check(users_file(d).startswith(hand.encode()) or hand.encode() in users_file(d),
                  "other lines kept by del")
            check(is_maildir(md) and is_maildir(os.path.join(md, ".Sent")),
                  "del leaves the Maildir")
            r = user(d, "list")
            check(r.returncode == 0 and "alice" not in r.stdout and "carol@example.test"
                  in r.stdout, "list after del: %r" % r.stdout)
            r = user(d, "del", "alice")
            check(r.returncode == 1, "del of a deleted user fails")

            # ---- re-adding keeps the old Maildir and its mail
            with open(os.path.join(md, "cur", "1.kept:2,S"), "w") as f:
                f.write("Subject: old\n\nold mail\n")
            r = user(d, "add", "alice", "--password-stdin", input="again\n")
            check(r.returncode == 0, "re-add alice: " + r.stderr)
            check(os.path.isfile(os.path.join(md, "cur", "1.kept:2,S")),
                  "re-add keeps the old mail")

    print("correod_users: %d passed, %d failed" % (passed, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
