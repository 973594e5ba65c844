"""smtp_load: SMTP load for benchmarks and durability tests.

    msgs = make_messages(1000, seed=7, sender="load@client.test",
                         rcpt="load@example.test", tag="dur")
    report = run_load("127.0.0.1", port, msgs, concurrency=20)
    check = check_maildir(maildir_root, msgs, report)

Messages are generated deterministically from the seed: sizes from 2 to
50 KB (most of them small), plain text or multipart/mixed with a base64
attachment, some lines starting with a dot (so dot-stuffing is exercised).
The first header of each message is a unique "X-Load-Id: TAG.N", so a
delivered copy is found by its id and checked by the SHA-256 of everything
from that header to the end, with line ends taken as LF: the trace headers
a server puts in front (Return-Path, Delivered-To, Received) are skipped,
and a server that stores LF line ends (Maildir) compares equal.

The load is raw SMTP over asyncio: each of the `concurrency` connections
sends EHLO once, then for each message MAIL, RCPT and DATA in one write
when the server offers PIPELINING (one at a time otherwise), then the
dot-stuffed data.  No RSET between transactions; RSET only after a refused
RCPT or DATA, which leaves a MAIL transaction open.

Each message gets one Result.  A lost connection is reconnected (with a
short back-off, up to `connect_deadline` seconds without a successful
connection) and the load goes on.  A message is sent again only when the
server cannot have accepted it: the connection broke before the final
"." was written, or the server answered 4xx (up to `max_attempts`).  Once
the final "." is written and no reply comes, the outcome is unknown and
the message is not sent again, so a copy found later is not a duplicate.
"""

import asyncio
import base64
import hashlib
import os
import random
import re
import time

ID_HEADER = b"X-Load-Id"

# Result states
OK = "ok"                # final reply 250 after the data
REFUSED = "refused"      # a definitive reply other than 250 (5xx, or 4xx on the last try)
UNKNOWN = "unknown"      # the final "." was written, no reply came
UNSENT = "unsent"        # never sent complete (no connection, broken before the ".")

_WORDS = ("the of and to in is that for it as was with be by on not he this are or his "
          "from at which but have an they you were her she there been one all we their "
          "has would when if so no will more out up into do any your what some can only "
          "other new time could about than them may these now over such our very just "
          "message server delivery queue mailbox durable commit report benchmark invoice "
          "meeting schedule project release attached review please thanks regards agenda "
          "quarterly budget draft minutes update status ticket customer order shipment").split()


class Message:
    """One generated message.

    data: the message with CRLF line ends, not dot-stuffed.
    wire: what DATA sends: dot-stuffed, ending with CRLF . CRLF.
    checksum: sha256 hex of the message with LF line ends."""

    __slots__ = ("index", "load_id", "sender", "rcpt", "data", "wire", "checksum")

    def __init__(self, index, load_id, sender, rcpt, data):
        self.index = index
        self.load_id = load_id
        self.sender = sender
        self.rcpt = rcpt
        self.data = data
        self.wire = dot_stuff(data) + b".\r\n"
        self.checksum = hashlib.sha256(lf(data)).hexdigest()

    def __len__(self):
        return len(self.data)


class Result:
    __slots__ = ("load_id", "state", "code", "reply", "attempts", "t_reply", "checksum")

    def __init__(self, msg):
        self.load_id = msg.load_id
        self.checksum = msg.checksum
        self.state = UNSENT
        self.code = None          # the last reply code that decided the outcome
        self.reply = ""           # its text (first line)
        self.attempts = 0
        self.t_reply = None       # monotonic time of the final reply

    def __repr__(self):
        return "Result(%s %s %s %r)" % (self.load_id, self.state, self.code, self.reply)


class Report:
    """Outcome of run_load: results (in message order) and timings."""

    def __init__(self, results):
        self.results = results
        self.by_id = {r.load_id: r for r in results}
        self.t_first_mail = None  # monotonic time the first MAIL was written
        self.t_last_reply = None
        self.connections = 0      # successful connections (greeting 220 and EHLO)
        self.connect_errors = 0
        self.lost = 0             # connections that broke in the middle
        self.pipelining = None    # whether the server offered it (first connection)

    def count(self, state):
        return sum(1 for r in self.results if r.state == state)

    def summary(self):
        return ("%d messages: %d ok (250), %d refused, %d unknown (no final reply), %d unsent; "
                "%d connections, %d lost, %d connect errors"
                % (len(self.results), self.count(OK), self.count(REFUSED), self.count(UNKNOWN),
                   self.count(UNSENT), self.connections, self.lost, self.connect_errors))


# ---------------------------------------------------------------- messages

def lf(data):
    return data.replace(b"\r\n", b"\n")


def dot_stuff(data):
    """RFC 5321 4.5.2: a line starting with "." gets another one."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


def _text_lines(rng, nbytes):
    out = []
    size = 0
    while size < nbytes:
        n = rng.randint(4, 13)
        line = " ".join(rng.choice(_WORDS) for _ in range(n))
        r = rng.random()
        if r < 0.02:
            line = "." + line            # dot-stuffing on the wire
        elif r < 0.03:
            line = "."                   # a lone dot inside the data
        elif r < 0.08:
            line = ""
        out.append(line)
        size += len(line) + 2
    return out


def make_messages(count, seed, sender, rcpt, tag=None, min_size=2048, max_size=51200,
                  attach_ratio=0.3):
    """count Messages, the same bytes for the same arguments."""
    rng = random.Random(seed)
    tag = tag if tag is not None else "s%d" % seed
    # A pool of text lines, so big messages are cheap to make.
    pool = _text_lines(rng, 256 * 1024)
    msgs = []
    base_time = 1767225600 + rng.randrange(86400 * 300)   # a fixed day in 2026
    for i in range(count):
        load_id = "%s.%06d" % (tag, i)
        target = int(rng.triangular(min_size, max_size, min_size * 2))
        when = time.gmtime(base_time + i * 7)
        hdr = [
            "X-Load-Id: %s" % load_id,
            "Message-ID: <%s.%d@load.test>" % (load_id, seed),
            "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0000", when),
            "From: Load Generator <%s>" % sender,
            "To: <%s>" % rcpt,
            "Subject: load %s: %s" % (load_id, " ".join(rng.choice(_WORDS) for _ in range(5))),
            "MIME-Version: 1.0",
        ]
        body = []
        if rng.random() < attach_ratio:
            boundary = "=_b%s_%d" % (load_id.replace(".", "_"), rng.randrange(10 ** 9))
            text_size = rng.randint(300, max(400, target // 4))
            att_raw = max(256, (target - text_size - 600) * 3 // 4)
            start = rng.randrange(len(pool))
            hdr.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
            body.append("This is a multi-part message in MIME format.")
            body.append("")
            body.append("--" + boundary)
            body.append("Content-Type: text/plain; charset=us-ascii")
            body.append("")
            size = 0
            j = start
            while size < text_size:
                line = pool[j % len(pool)]
                body.append(line)
                size += len(line) + 2
                j += 1
            body.append("")
            body.append("--" + boundary)
            kind = rng.choice((("application/pdf", "report.pdf"), ("image/png", "photo.png"),
                               ("application/octet-stream", "data.bin")))
            body.append('Content-Type: %s; name="%s"' % kind)
            body.append("Content-Transfer-Encoding: base64")
            body.append('Content-Disposition: attachment; filename="%s"' % kind[1])
            body.append("")
            b64 = base64.encodebytes(rng.randbytes(att_raw)).decode("ascii")
            body.extend(b64.rstrip("\n").split("\n"))
            body.append("--" + boundary + "--")
        else:
            hdr.append("Content-Type: text/plain; charset=us-ascii")
            size = sum(len(h) + 2 for h in hdr) + 2
            j = rng.randrange(len(pool))
            while size < target:
                line = pool[j % len(pool)]
                body.append(line)
                size += len(line) + 2
                j += 1
        data = ("\r\n".join(hdr) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode("ascii")
        msgs.append(Message(i, load_id, sender, rcpt, data))
    return msgs


# ------------------------------------------------------------- the client

class _Lost(Exception):
    """The connection broke; sent_end: the final "." had been written."""

    def __init__(self, why, sent_end=False):
        super().__init__(why)
        self.sent_end = sent_end


async def _read_reply(reader, timeout):
    """(code, first line text) of one possibly multi-line reply; _Lost on EOF."""
    lines = []
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except asyncio.TimeoutError:
            raise _Lost("no reply within %.0f s" % timeout)
        except (ConnectionError, OSError, asyncio.LimitOverrunError, ValueError) as ex:
            raise _Lost("read: %s" % ex)
        if not line.endswith(b"\n"):
            raise _Lost("connection closed")
        line = line.rstrip(b"\r\n")
        if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3:4] not in b" -"):
            raise _Lost("bad reply line %r" % line[:80])
        lines.append(line)
        if len(line) == 3 or line[3:4] == b" ":
            return int(line[:3]), [l[4:].decode("utf-8", "replace") for l in lines]


class _Conn:
    def __init__(self, reader, writer, pipelining, timeout):
        self.reader = reader
        self.writer = writer
        self.pipelining = pipelining
        self.timeout = timeout

    async def write(self, data, sent_end=False):
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except asyncio.TimeoutError:
            raise _Lost("write timed out", sent_end)
        except (ConnectionError, OSError) as ex:
            raise _Lost("write: %s" % ex, sent_end)

    async def reply(self, sent_end=False):
        try:
            return await _read_reply(self.reader, self.timeout)
        except _Lost as ex:
            ex.sent_end = sent_end
            raise

    def close(self):
        try:
            self.writer.close()
        except Exception:       # noqa: BLE001  the socket may be gone already
            pass


async def _connect(host, port, helo, timeout):
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, limit=1 << 20), timeout)
    conn = _Conn(reader, writer, False, timeout)
    try:
        code, _ = await conn.reply()
        if code != 220:
            raise _Lost("greeting %d" % code)
        await conn.write(b"EHLO %s\r\n" % helo.encode("ascii"))
        code, lines = await conn.reply()
        if code != 250:
            raise _Lost("EHLO answered %d" % code)
        conn.pipelining = any(l.upper().split(" ")[0] == "PIPELINING" for l in lines[1:])
    except BaseException:
        conn.close()
        raise
    return conn


async def _transaction(conn, msg, report):
    """Send one message; returns (code, text) of the reply that decided it."""
    mail = b"MAIL FROM:<%s>\r\n" % msg.sender.encode("ascii")
    rcpt = b"RCPT TO:<%s>\r\n" % msg.rcpt.encode("ascii")
    if report.t_first_mail is None:
        report.t_first_mail = time.monotonic()
    if conn.pipelining:
        await conn.write(mail + rcpt + b"DATA\r\n")
        r_mail = await conn.reply()
        r_rcpt = await conn.reply()
        r_data = await conn.reply()
    else:
        await conn.write(mail)
        r_mail = await conn.reply()
        if r_mail[0] != 250:
            return r_mail[0], r_mail[1][0]
        await conn.write(rcpt)
        r_rcpt = await conn.reply()
        if r_rcpt[0] not in (250, 251):
            await conn.write(b"RSET\r\n")
            await conn.reply()
            return r_rcpt[0], r_rcpt[1][0]
        await conn.write(b"DATA\r\n")
        r_data = await conn.reply()
    if r_data[0] != 354:
        if r_mail[0] == 250:
            # The MAIL transaction is still open: close it before the next one.
            await conn.write(b"RSET\r\n")
            await conn.reply()
        for r in (r_mail, r_rcpt, r_data):
            if r[0] >= 400:
                return r[0], r[1][0]
        return r_data[0], r_data[1][0]
    await conn.write(msg.wire, sent_end=True)
    code, lines = await conn.reply(sent_end=True)
    return code, lines[0]


async def _run(host, port, msgs, concurrency, helo, timeout, connect_deadline, max_attempts,
               on_result):
    report = Report([Result(m) for m in msgs])
    todo = list(range(len(msgs)))
    todo.reverse()

    async def worker():
        conn = None
        last_ok = time.monotonic()
        backoff = 0.02
        try:
            while todo:
                i = todo.pop()
                msg, res = msgs[i], report.results[i]
                while True:
                    if conn is None:
                        try:
                            conn = await _connect(host, port, helo, timeout)
                            report.connections += 1
                            if report.pipelining is None:
                                report.pipelining = conn.pipelining
                            last_ok = time.monotonic()
                            backoff = 0.02
                        except (OSError, asyncio.TimeoutError, _Lost) as ex:
                            report.connect_errors += 1
                            if time.monotonic() - last_ok > connect_deadline:
                                res.reply = "no connection: %s" % ex
                                break
                            await asyncio.sleep(backoff)
                            backoff = min(backoff * 2, 0.5)
                            continue
                    res.attempts += 1
                    try:
                        code, text = await _transaction(conn, msg, report)
                    except _Lost as ex:
                        report.lost += 1
                        conn.close()
                        conn = None
                        if ex.sent_end:
                            res.state, res.code, res.reply = UNKNOWN, None, str(ex)
                            break
                        res.reply = str(ex)
                        if res.attempts >= max_attempts:
                            break
                        continue
                    res.code, res.reply = code, text
                    if code == 250:
                        res.state = OK
                    elif 400 <= code < 500 and res.attempts < max_attempts:
                        if code == 421:
                            conn.close()
                            conn = None
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 0.5)
                        continue
                    else:
                        res.state = REFUSED
                    break
                res.t_reply = time.monotonic()
                report.t_last_reply = res.t_reply
                if on_result:
                    on_result(res, report)
        finally:
            if conn is not None:
                try:
                    await conn.write(b"QUIT\r\n")
                    await asyncio.wait_for(conn.reply(), 5)
                except (_Lost, asyncio.TimeoutError):
                    pass
                conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return report


def run_load(host, port, msgs, concurrency, helo="load.test", timeout=60.0,
             connect_deadline=30.0, max_attempts=10, on_result=None):
    """Send msgs over `concurrency` connections; returns a Report.

    on_result(result, report) is called after each message's outcome, on
    the event loop's thread (it must not block for long)."""
    return asyncio.run(_run(host, port, msgs, max(1, concurrency), helo, timeout,
                            connect_deadline, max_attempts, on_result))


# ------------------------------------------------------------ the Maildir

_HDR_LINE = re.compile(rb"^[!-9;-~]+:|^[ \t]")


class StoredMessage:
    __slots__ = ("path", "load_id", "checksum", "error")

    def __init__(self, path, load_id=None, checksum=None, error=None):
        self.path = path
        self.load_id = load_id
        self.checksum = checksum
        self.error = error


def parse_stored(path):
    """Find the X-Load-Id header in a delivered file and checksum from it on.

    Only header lines may stand before it (the server's trace headers);
    error is set when the file is not a complete message of ours."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as ex:
        return StoredMessage(path, error="unreadable: %s" % ex)
    data = lf(raw)
    head_end = data.find(b"\n\n")
    if head_end < 0:
        return StoredMessage(path, error="no end of header")
    pos = 0
    while pos <= head_end:
        nl = data.find(b"\n", pos)
        line = data[pos:nl]
        if line[:len(ID_HEADER) + 1].lower() == ID_HEADER.lower() + b":":
            load_id = line[len(ID_HEADER) + 1:].strip().decode("ascii", "replace")
            return StoredMessage(path, load_id, hashlib.sha256(data[pos:]).hexdigest())
        if not _HDR_LINE.match(line):
            return StoredMessage(path, error="not a header line before %s: %r"
                                 % (ID_HEADER.decode(), line[:60]))
        pos = nl + 1
    return StoredMessage(path, error="no %s header" % ID_HEADER.decode())


def maildir_files(root, subs=("new", "cur")):
    out = []
    for sub in subs:
        d = os.path.join(root, sub)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        out.extend(os.path.join(d, n) for n in sorted(names) if not n.startswith("."))
    return out


def count_files(root, sub="new"):
    try:
        with os.scandir(os.path.join(root, sub)) as it:
            return sum(1 for e in it if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


class MaildirCheck:
    """What a Maildir holds against what the load was told.

    missing: ids that got 250 and are not stored.  corrupt: stored files
    of a known id whose checksum differs (half-written or altered).  bad:
    files that are not a message of this load (no id, unknown id, garbage).
    duplicates: ids stored more than once.  without_250: ids stored whose
    result was UNKNOWN (allowed).  after_refusal: ids stored although the
    server refused them or they were never sent complete (never allowed)."""

    def __init__(self):
        self.files = 0
        self.intact = 0
        self.missing = []
        self.corrupt = []
        self.bad = []
        self.duplicates = []
        self.without_250 = []
        self.after_refusal = []

    def ok(self):
        return not (self.missing or self.corrupt or self.bad or self.duplicates
                    or self.after_refusal)

    def summary(self):
        return ("%d files, %d intact; %d acknowledged missing, %d corrupt, %d unparsable, "
                "%d duplicated, %d delivered without a 250 (reply never seen), "
                "%d delivered after a refusal"
                % (self.files, self.intact, len(self.missing), len(self.corrupt), len(self.bad),
                   len(self.duplicates), len(self.without_250), len(self.after_refusal)))


def check_maildir(root, msgs, report, subs=("new", "cur")):
    by_id = {m.load_id: m for m in msgs}
    check = MaildirCheck()
    seen = {}
    for path in maildir_files(root, subs):
        check.files += 1
        st = parse_stored(path)
        if st.error:
            check.bad.append((path, st.error))
            continue
        m = by_id.get(st.load_id)
        if m is None:
            check.bad.append((path, "unknown id %r" % st.load_id))
            continue
        if st.checksum != m.checksum:
            check.corrupt.append((path, st.load_id))
            continue
        check.intact += 1
        seen[st.load_id] = seen.get(st.load_id, 0) + 1
    for load_id, n in seen.items():
        if n > 1:
            check.duplicates.append(load_id)
        res = report.by_id.get(load_id) if report else None
        if res is None:
            continue
        if res.state == UNKNOWN:
            check.without_250.append(load_id)
        elif res.state != OK:
            check.after_refusal.append(load_id)
    if report:
        for res in report.results:
            if res.state == OK and res.load_id not in seen:
                check.missing.append(res.load_id)
    return check
