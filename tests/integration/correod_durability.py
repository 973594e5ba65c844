#!/usr/bin/python3
"""correod_durability: nothing acknowledged is lost when workers are killed.

usage: correod_durability.py CORREOD_EXE SOURCE_ROOT

1,000 messages (2-50 KB, some with attachments, generated from a seed by
smtp_load.py) go to one local user over 20 concurrent SMTP connections.
At a random moment in the middle of the run (chosen from the seed) every
worker process of correod -- the supervisor's children that hold the
listening socket, so not the queue runner -- is killed with SIGKILL.  The
load generator reconnects and goes on; the supervisor must start new
workers.  At the end:
  * every message that got a 250 is in the user's Maildir (new/ or cur/),
    once, byte for byte after the trace headers correod adds (SHA-256 of
    the message from its X-Load-Id header on, LF line ends);
  * no file in new/ or cur/ is half-written: each one is a complete
    message of this run (leftovers in tmp/ are allowed);
  * nothing refused by the server, or never sent complete, was delivered;
  * every message either got its 250 or lost its reply to the kill (at
    most one per connection), and mail got 250s again after the kill.
Messages delivered without the client seeing the 250 (the kill came
between the fsync and the reply) are allowed and counted.

The seed is printed; CORREOD_DURABILITY_SEED=N repeats a run.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

NAME = "correod_durability"
COUNT = 1000
CONNS = 20
USER = "load"

passed = 0
failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok: %s" % what)
    else:
        failed += 1
        print("FAIL: %s%s" % (what, ("\n    " + detail) if detail else ""))
    sys.stdout.flush()


def listening_inodes(port):
    """Socket inodes of the TCP listeners on port (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(inode)
        except OSError:
            continue
    return inodes


def children(pid):
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


def holds_socket(pid, inodes):
    want = {"socket:[%s]" % i for i in inodes}
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) in want:
                    return True
            except OSError:
                continue
    except OSError:
        pass
    return False


def workers(supervisor, port):
    """The supervisor's children serving port; all children if none can be told apart."""
    kids = children(supervisor)
    inodes = listening_inodes(port)
    serving = [p for p in kids if holds_socket(p, inodes)]
    return serving if serving else kids, bool(serving)


def main():
    exe, src = sys.argv[1], sys.argv[2]
    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.join(src, "tests/integration"))
    from correod_fixture import Correod, wait_until
    import smtp_load

    env_seed = os.environ.get("CORREOD_DURABILITY_SEED")
    seed = int(env_seed) if env_seed else random.SystemRandom().randrange(1, 1 << 31)
    print("%s: seed %d (CORREOD_DURABILITY_SEED=%d repeats this run)" % (NAME, seed, seed))
    rng = random.Random(seed)
    kill_after = rng.randint(COUNT // 10, COUNT * 6 // 10)   # outcomes before the kill
    kill_delay = rng.uniform(0.0, 0.05)                       # and then this many seconds
    print("%s: the workers are killed %.3f s after reply number %d"
          % (NAME, kill_delay, kill_after))

    tmp = tempfile.mkdtemp(prefix="correod-durability-", dir="/tmp")
    try:
        # The user exists before the server starts, so every worker -- the
        # first ones and those started after the kill -- knows it.
        with Correod(exe, tmp, start=False) as d:
            d.add_user(USER, "durability-secret")
            d.start()
            rcpt = "%s@%s" % (USER, d.domain)
            port = d.port("smtp")
            msgs = smtp_load.make_messages(COUNT, seed, "sender@client.test", rcpt,
                                           tag="dur%d" % seed)
            state = {"done": 0, "killed": [], "t_kill": None, "precise": None,
                     "left": None, "error": None}

            def kill_workers():
                try:
                    pids, precise = workers(d.pid, port)
                    state["precise"] = precise
                    state["left"] = COUNT - state["done"]
                    for p in pids:
                        try:
                            os.kill(p, signal.SIGKILL)
                            state["killed"].append(p)
                        except ProcessLookupError:
                            pass
                    state["t_kill"] = time.monotonic()
                    print("%s: SIGKILL to %s %s after %d replies"
                          % (NAME, "workers" if precise else "all children of", pids,
                             state["done"]))
                    sys.stdout.flush()
                except Exception as ex:         # noqa: BLE001  reported below
                    state["error"] = ex

            def on_result(res, report):
                import asyncio
                state["done"] += 1
                if state["done"] == kill_after:
                    asyncio.get_running_loop().call_later(kill_delay, kill_workers)

            t0 = time.monotonic()
            report = smtp_load.run_load("127.0.0.1", port, msgs, CONNS, timeout=60.0,
                                        connect_deadline=60.0, max_attempts=40,
                                        on_result=on_result)
            elapsed = time.monotonic() - t0
            print("%s: %s in %.1f s" % (NAME, report.summary(), elapsed))

            check(state["error"] is None, "the kill ran", repr(state["error"]))
            check(len(state["killed"]) > 0 and state["left"] and state["left"] > 0,
                  "workers were killed in the middle of the run",
                  "killed %r with %r messages left" % (state["killed"], state["left"]))
            if state["killed"]:
                try:
                    fresh = wait_until(
                        lambda: [p for p in workers(d.pid, port)[0]
                                 if p not in state["killed"]],
                        timeout=20, what="new workers")
                except TimeoutError:
                    fresh = []
                check(bool(fresh) and d.proc.poll() is None,
                      "the supervisor is alive and started new workers %s" % fresh)
            after = [r for r in report.results
                     if r.state == smtp_load.OK and state["t_kill"]
                     and r.t_reply and r.t_reply > state["t_kill"]]
            check(len(after) > 0, "messages got 250 after the kill (%d)" % len(after))
            unknown = report.count(smtp_load.UNKNOWN)
            not_done = [r for r in report.results
                        if r.state not in (smtp_load.OK, smtp_load.UNKNOWN)]
            check(not not_done, "every message got a 250 or lost its reply to the kill",
                  "; ".join(repr(r) for r in not_done[:5]))
            check(unknown <= CONNS, "at most one reply lost per connection (%d)" % unknown)

            d.stop()
            root = d.maildir(USER)
            res = smtp_load.check_maildir(root, msgs, report)
            n_tmp = smtp_load.count_files(root, "tmp")
            print("%s: Maildir: %s; %d files left in tmp/" % (NAME, res.summary(), n_tmp))
            print("%s: %d acknowledged with 250, %d delivered without the client seeing a 250, "
                  "%d replies lost and not delivered"
                  % (NAME, report.count(smtp_load.OK), len(res.without_250),
                     unknown - len(res.without_250)))
            check(not res.missing, "every message that got 250 is in the Maildir",
                  "missing: %s" % res.missing[:10])
            check(not res.corrupt, "every delivered copy is intact (checksum)",
                  "corrupt: %s" % res.corrupt[:10])
            check(not res.bad, "no half-written or foreign file in new/ or cur/",
                  "bad: %s" % res.bad[:10])
            check(not res.duplicates, "no message delivered twice",
                  "duplicates: %s" % res.duplicates[:10])
            check(not res.after_refusal, "nothing refused or unsent was delivered",
                  "%s" % res.after_refusal[:10])
            check(res.intact == report.count(smtp_load.OK) + len(res.without_250),
                  "the Maildir holds exactly the acknowledged messages plus those whose "
                  "reply was lost (%d)" % res.intact)
            if failed:
                print("--- correod log (tail) ---")
                print("\n".join(d.log().splitlines()[-40:]))
    except Exception as ex:                     # noqa: BLE001  a failure, reported
        check(False, "the run completed", "%s: %s" % (type(ex).__name__, ex))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d passed, %d failed" % (NAME, passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
