#!/usr/bin/python3
"""gen-corpus.py: a deterministic, realistic Maildir++ corpus for parser tests.

usage: gen-corpus.py OUTDIR --count N --seed S [--folders K] [--manifest FILE]

The same arguments always give a byte-identical tree: file names, contents and
modification times come from random.Random(seed) and from a base date derived
from the seed, never from the clock, the host or the environment.

Tree: OUTDIR/{cur,new,tmp} is INBOX; the first K names of FOLDERS (default 5)
become Maildir++ subfolders ".Name/{cur,new,tmp}" with an empty
"maildirfolder" file.  Mail for a category whose folder was not requested
lands in INBOX.  About 5% of the messages are in new/ (no info suffix), the
rest in cur/ as "<time>.M<n>P<n>Q<n>.corpus,S=<size>:2,<flags>".

The corpus has threads of varied depth and branching (In-Reply-To and
References, either alone, broken references to missing parents, subject-only
replies, "Re: Re:"), mailing-list headers, patch series, 7bit / 8bit /
quoted-printable / base64 text, multipart/alternative, related, mixed and
signed trees, attachments, forwarded message/rfc822 parts, HTML-only mail,
UTF-8 and ISO-8859-1 text, RFC 2047 B and Q words, folded headers, CRLF
files, quoting and signatures.

With --manifest FILE (and only then; nothing is written into OUTDIR besides
the Maildir) one JSON object per message, in delivery order:
  path        file name relative to OUTDIR
  folder      "INBOX" or the Maildir++ name without the leading dot
  flags       Maildir flags ("" for new/)
  subject     decoded subject, "" for an empty header, null if absent
  from        [[display name or null, addr-spec], ...]
  message_id, in_reply_to     ids without <>, or null
  references  ids without <>, in order
  date        the Date header as UTC seconds, or null
  list_id     List-Id without <>, or null
  parts       MIME types of all parts in pre-order (message/rfc822 parts are
              followed by the parts of the message they carry)
  text        the best text part (rules of lib/message.h) decoded to Unicode
              with "\\n" line ends, or null when there is none
  text_type   "plain", "html" or null
A few messages are damaged on purpose; they also carry "malformed" (the
kind), "expect_warnings" (substrings of the warnings the damage must cause;
no other warning is allowed) and "skip" (fields the damage leaves
unspecified).
"""

import argparse
import base64
import datetime
import json
import os
import random
import re
import sys

# Maildir++ subfolders, in the order --folders takes them.
FOLDERS = ["Lists.dev", "Lists.announce", "Work", "Sent", "Archive.2025",
           "Lists.users", "Family", "Receipts", "Drafts", "Trash"]

# Category of a thread -> folder it is filed in (INBOX when not created).
CATEGORY_FOLDER = {
    "dev": "Lists.dev", "patch": "Lists.dev", "users": "Lists.users",
    "announce": "Lists.announce", "work": "Work", "family": "Family",
    "receipt": "Receipts", "personal": "INBOX", "system": "INBOX",
}

# (category, weight, smallest thread, largest thread)
CATEGORIES = [
    ("personal", 22, 1, 7), ("dev", 18, 1, 40), ("patch", 6, 2, 14),
    ("users", 9, 1, 10), ("announce", 5, 1, 1), ("work", 17, 1, 12),
    ("family", 8, 1, 6), ("receipt", 8, 1, 1), ("system", 7, 1, 1),
]

# category -> (list name, list host, description, subject tag)
LIST_HOST = "lists.correo.example"
LISTS = {
    "dev": ("correo-dev", LIST_HOST, "Development of the correo mail client", "dev"),
    "patch": ("correo-dev", LIST_HOST, "Development of the correo mail client", "dev"),
    "users": ("correo-users", LIST_HOST, "Questions and help for correo users", "users"),
    "announce": ("correo-announce", LIST_HOST, "correo release announcements", None),
}

EPOCH_2026 = 1767225600          # 2026-01-01T00:00:00Z
BASE_2025 = 1735689600           # 2025-01-01T00:00:00Z

# ------------------------------------------------------------------ text

EN_SENTENCES = [
    "I pushed a fix for the crash you reported yesterday.",
    "Could you try the attached build and tell me if it still happens?",
    "The new index format is about twice as fast on large folders.",
    "We agreed to move the meeting to Thursday afternoon.",
    "Please review the draft before Friday so we can send it out.",
    "I am not sure this is the right approach, but it is a start.",
    "The numbers for last quarter look better than expected.",
    "Let me know if anything in the plan is unclear.",
    "The test suite passes on my machine, but CI is still red.",
    "I think the lock is held too long while the folder is scanned.",
    "Thanks for the quick reply, that answers my question.",
    "Can we keep the old behaviour behind an option for one release?",
    "The invoice is attached; payment is due within thirty days.",
    "Sorry for the late answer, I was travelling last week.",
    "Here is the summary of what we discussed on the call.",
    "The server was restarted at noon and has been stable since.",
    "I would rather not change the file format again this year.",
    "Does anyone know why the timeout is set to ninety seconds?",
    "We should document this in the release notes.",
    "The kids loved the photos, thank you for sending them!",
    "Dinner is at seven, bring something to drink if you like.",
    "This change also removes two unused helper functions.",
    "Memory use stays flat even after ten thousand messages.",
    "I have a few small comments inline, nothing blocking.",
    "Looks good to me; feel free to merge it.",
    "The budget request needs one more signature from finance.",
    "We will meet at the station and walk from there.",
    "Has anybody tested this with a read-only mailbox?",
    "The patch applies cleanly on top of the current branch.",
    "Costs went up 12% (mostly hosting), see the table = page 3.",
    "For the record: 50% of the failures were on the old runners.",
    "Use \"make check\" rather than running the binaries by hand.",
    "Ticket #4711 tracks the remaining work & open questions.",
    "The <tab> key now completes folder names, as requested.",
]

LATIN1_SENTENCES = [
    "Können wir das Treffen auf nächste Woche verschieben?",
    "Die Änderung ist klein, aber sie löst das Problem mit den Umlauten.",
    "Merci pour ton aide, la réunion s'est très bien passée.",
    "Le fichier joint contient les résultats de l'étude.",
    "¿Te parece bien si hablamos mañana por la mañana?",
    "La señal del servidor volvió a fallar anoche.",
    "Vi ses på fredag, hilsen fra hele familien.",
    "Grüße aus Köln, und danke für die schöne Überraschung!",
    "Ça fait longtemps ! On se voit à Noël ?",
    "Obrigado pela ajuda, até amanhã.",
    "Die Rechnung über 1.250 € ist bezahlt.",
    "Þetta er í lagi, takk fyrir.",
]

UTF8_SENTENCES = [
    "Dziękuję za szybką odpowiedź, wszystko działa.",
    "Спасибо, встреча переносится на пятницу.",
    "来週の会議の資料を添付します。ご確認ください。",
    "这个问题已经修好了，请再试一次。",
    "Ευχαριστώ πολύ, τα λέμε αύριο.",
    "Cảm ơn anh, em sẽ gửi báo cáo vào thứ Hai.",
    "Great news, the release is out! 🎉",
    "Happy birthday! 🎂🎈 Hope you have a wonderful day.",
    "테스트가 모두 통과했습니다. 감사합니다.",
    "Díky, zítra to zkusím znovu.",
    "Price is 30 € — or ¥4,500 if you pay in yen.",
    "Ship it 🚀 (finally).",
]

# Outlook-style text: smart quotes, dashes, ellipsis, euro (windows-1252)
SMART_SENTENCES = [
    "That’s the “final” version – promise…",
    "Licences are 20 € per seat — see the attached offer.",
    "We’re done; don’t forget the “retro” on Friday.",
    "Quick note • the call moves to 3pm • same link.",
    "I’ll send the ‘clean’ copy tomorrow morning.",
]

WORDS = """folder index message thread cache server client patch release
branch header parser scanner lock timeout option theme keymap pager editor
sidebar search limit pattern filter queue socket certificate session quota
draft reply forward attachment signature charset encoding boundary budget
meeting schedule invoice report review summary proposal contract deadline
backup restore upgrade migration benchmark profile regression warning
""".split()
VERBS = """fix handle avoid document simplify rework split rename restore
validate rewrite drop speed up clean up cache refresh retry report""".split()
COMPONENTS = """maildir message thread pattern sanitize rcfile tls imap smtp
hcache pager sidebar index config build docs tests""".split()

FIRST_NAMES = """Aaron Beatrice Carlos Dmitri Elena Farid Grace Hiro Imani Jonas
Keiko Liam Mateo Nadia Oscar Priya Quinn Rosa Samir Tamar Umar Vera Wendell
Ximena Yusuf Zara Nils Ines Toby Maren Colm Ada Bruno Dagny Eamon Fiona""".split()
LAST_NAMES = """Abbott Baptiste Chowdhury Delgado Eriksen Fontaine Gallagher
Haddad Iwasaki Jovanovic Kowal Lindqvist Moreno Nakamura Okonkwo Petrakis
Quist Rahman Sorensen Thibault Ueda Varga Whitfield Yilmaz Zielinski Brennan
Castellano Dufour Osei Lund""".split()
# (display name, ascii local part); the first list fits ISO-8859-1
LATIN1_PEOPLE = [
    ("Inès Lefèbvre", "ines.lefebvre"), ("Jörg Häußler", "joerg"),
    ("Ángel Núñez", "angel.nunez"), ("Åsa Grönvall", "asa.gronvall"),
    ("Chloé Dubé", "chloe"), ("Mónica Peña", "mpena"),
    ("Thérèse Aubé", "therese.aube"), ("Björk Sigurðardóttir", "bjork"),
    ("Raphaël Côté", "raphael.cote"), ("Günter Oßwald", "g.osswald"),
]
UTF8_PEOPLE = [
    ("Małgorzata Wójcik", "m.wojcik"), ("Анна Смирнова", "anna.smirnova"),
    ("佐藤 花子", "hanako.sato"), ("王 芳", "wang.fang"),
    ("Σοφία Νικολάου", "sofia.n"), ("Đặng Thu Hà", "thuha"),
    ("Jiří Černý", "jiri.cerny"), ("김 민준", "minjun.kim"),
    ("Ana 🌻 Ruiz", "ana.ruiz"), ("Łukasz Żak", "lukasz.zak"),
]
DOMAINS = """example.com example.org example.net kite.example river.example
studio.example uni-koeln.example mailhost.example fjord.example""".split()
TIMEZONES = [0, 60, 60, 120, -300, -300, -480, 330, 540, -180, 600, 60, -240]
TZ_NAMES = {0: "UTC", 60: "CET", 120: "CEST", -300: "EST", -480: "PST",
            330: "IST", 540: "JST", -180: "BRT", 600: "AEST", -240: "EDT"}

SUBJECTS = {
    "personal": ["Quick question", "Weekend plans", "Book recommendation",
                 "Are you around on {day}?", "Lunch {day}?", "Long time no see",
                 "The {noun} you asked about", "Moving to a new flat"],
    "dev": ["{comp}: {verb} the {noun} when the folder is empty",
            "Crash in {comp} after {noun} refresh",
            "RFC: {verb} {noun} handling in {comp}",
            "Build failure on {platform}",
            "Why does {comp} {verb} the {noun}?",
            "Proposal: drop the old {noun} format",
            "Test failure in test_{comp} on {platform}"],
    "users": ["How do I {verb} the {noun}?", "Problem with {noun} after upgrade",
              "Question about {noun} settings", "{noun} looks wrong on {platform}",
              "Feature request: {noun} per folder"],
    "work": ["Meeting notes {date}", "Q{q} budget review", "Offsite planning",
             "Draft: {noun} proposal", "Reminder: {noun} review on {day}",
             "Contract renewal for {year}", "Hiring update", "Status report week {week}"],
    "family": ["Photos from the weekend", "Dinner on {day}?", "Holiday plans {year}",
               "Grandma's recipe", "Train tickets"],
}
LATIN1_SUBJECTS = ["Treffen in München", "Réunion de l'équipe à Genève",
                   "Año nuevo en Málaga", "Übersicht der Änderungen",
                   "Café am Freitag?", "Besøg i Århus", "Déjà vu: le même bug",
                   "Größere Dateien schneller öffnen"]
UTF8_SUBJECTS = ["Встреча в пятницу", "会議の日程について", "下周的项目进度",
                 "Spotkanie w Łodzi", "Αναφορά προόδου", "Release party 🎉",
                 "Café ☕ and ideas", "Kế hoạch tuần sau", "주간 보고서"]
PLATFORMS = ["FreeBSD 14", "Debian 12", "macOS 14", "Alpine 3.19", "OpenBSD 7.5",
             "Fedora 40", "NetBSD 10"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
LONG_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

MAILERS = [
    # name, user-agent header, html share, top-posting share, boundary style
    ("thunderbird", ("User-Agent", "Mozilla Thunderbird 115.8.0"), 0.25, 0.1, "tb"),
    ("outlook", ("X-Mailer", "Microsoft Outlook 16.0"), 0.9, 0.9, "ms"),
    ("gmail", None, 0.8, 0.75, "gm"),
    ("apple", ("X-Mailer", "Apple Mail (2.3774.400.31)"), 0.5, 0.5, "ap"),
    ("mutt", ("User-Agent", "NeoMutt/20240201"), 0.0, 0.0, "mu"),
    ("roundcube", ("User-Agent", "Roundcube Webmail/1.6.6"), 0.4, 0.3, "rc"),
]

SAFE_Q = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/")
SPECIALS = set('()<>[]:;@\\,."')


class Person:
    def __init__(self, name, addr, tz, mailer, form):
        self.name = name            # display name (may be None)
        self.addr = addr
        self.tz = tz                # minutes east of UTC
        self.mailer = mailer
        self.form = form            # how the From header is written
        self.pref = "utf8"          # body/header charset: "utf8", "latin1", "cp1252"
        self.cte = "8bit"           # preferred transfer encoding for 8-bit text
        self.crlf = False           # its messages are stored with CRLF
        self.lang = "en"
        self.sig = []

    @property
    def first(self):
        if not self.name:
            return self.addr.split("@")[0]
        if "," in self.name:
            return self.name.split(",")[1].strip()
        return self.name.split(" ")[0]


class Part:
    """One MIME part of the model: leaf body bytes, children or a message."""

    def __init__(self, mime):
        self.mime = mime            # lower-case "type/subtype"
        self.headers = []           # [(name, value, byte encoding)]
        self.body = b""             # leaf: transfer-encoded bytes, "\n" line ends
        self.children = []
        self.boundary = None
        self.preamble = None
        self.epilogue = None
        self.closed = True
        self.disposition = None     # "inline", "attachment" or None
        self.text = None            # text/plain|html leaves: the decoded text
        self.fold_ws = " "          # blank after a mandatory header fold
        self.pad = ""               # blanks after the boundary delimiters
        self.headers_only = False   # no empty line and no body at all
        self.codec = None           # text leaves: Python codec of the body bytes
        self.cte = None             # text leaves: transfer encoding used


class Msg:
    def __init__(self):
        self.root = None            # root Part; its headers include the envelope
        self.time = 0               # UTC seconds the message was written
        self.author = None
        self.category = None
        self.folder = "INBOX"
        self.subject = None         # unicode as the reader sees it
        self.msgid = None
        self.chain = []             # true ancestry ids, oldest first
        self.quote_lines = []       # plain rendering, for replies to quote
        self.exp = {}               # manifest fields known while building
        self.flags = set()
        self.new = False
        self.crlf = False
        self.crlf_headers = False   # only the top header block has CRLF
        self.malformed = None       # kind of deliberate damage, or None
        self.expect = ([], [])      # (warning substrings, fields to skip)
        self.bare_id = False        # Message-ID written without <>


# ------------------------------------------------------------------ helpers


def ascii_ok(s):
    return s.isascii()


C1_CONTROLS = re.compile("[\x80-\x9f]")


def latin1_ok(s):
    try:
        s.encode("latin-1")
    except UnicodeEncodeError:
        return False
    # C1 controls mean something else in windows-1252, the decoder's choice
    return not C1_CONTROLS.search(s)


def wrap(text, width=72):
    lines, cur = [], ""
    for w in text.split(" "):
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = w if not cur else cur + " " + w
    if cur:
        lines.append(cur)
    return lines


def fmt_date(rng, t, tz):
    """Date header value for UTC time t in zone tz; returns (text, seconds)."""
    lt = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=t + tz * 60)
    sign = "+" if tz >= 0 else "-"
    zone = "%s%02d%02d" % (sign, abs(tz) // 60, abs(tz) % 60)
    r = rng.random()
    day = "%02d" % lt.day
    wd = DAYS[lt.weekday()] + ", "
    year = "%04d" % lt.year
    hms = "%02d:%02d:%02d" % (lt.hour, lt.minute, lt.second)
    comment = ""
    if r < 0.12:
        day = "%d" % lt.day
    elif r < 0.18:
        wd = ""
    elif r < 0.26:
        comment = " (%s)" % TZ_NAMES.get(tz, "local")
    elif r < 0.29:
        hms = "%02d:%02d" % (lt.hour, lt.minute)
        t -= lt.second
    elif r < 0.31:
        year = "%02d" % (lt.year % 100)
    elif r < 0.35 and tz == 0:
        zone = "GMT"
    elif r < 0.38 and tz in (-300, -480, -240):
        zone = {-300: "EST", -480: "PST", -240: "EDT"}[tz]
    return "%s%s %s %s %s %s%s" % (wd, day, MONTHS[lt.month - 1], year, hms, zone, comment), t


def q_word(data, lower):
    out = []
    for c in data:
        if c in SAFE_Q:
            out.append(chr(c))
        elif c == 32:
            out.append("_")
        else:
            out.append(("=%02x" if lower else "=%02X") % c)
    return "".join(out)


def encoded_words(rng, text, charset, enc):
    """text as RFC 2047 words of at most 75 characters joined by "\\x00" (a
    mandatory fold for fold_header).  Words end between characters, except
    that a few UTF-8 B runs are cut at fixed byte counts, splitting
    characters across words as some mailers do."""
    codec = codec_for(charset)
    lower = rng.random() < 0.1
    room = 75 - len(charset) - 7
    tag = enc if rng.random() < 0.9 else enc.lower()
    data = text.encode(codec)
    if enc == "B" and codec == "utf-8" and rng.random() < 0.06:
        step = rng.choice([10, 13, 20, room // 4 * 3 - 1])
        chunks = [data[i:i + step] for i in range(0, len(data), step)]
    else:
        chunks, cur, size = [], b"", 0
        for ch in text:
            b = ch.encode(codec)
            if enc == "B":
                nsize = (len(cur) + len(b) + 2) // 3 * 4
            else:
                nsize = size + len(q_word(b, False))
            if cur and nsize > room:
                chunks.append(cur)
                cur = b
                size = len(q_word(b, False))
            else:
                cur += b
                size = nsize
        if cur:
            chunks.append(cur)
    words = []
    for c in chunks:
        if enc == "B":
            payload = base64.b64encode(c).decode("ascii")
        else:
            payload = q_word(c, lower)
        words.append("=?%s?%s?%s?=" % (charset, tag, payload))
    return "\x00".join(words)


def cp1252_ok(s):
    try:
        s.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def codec_for(label):
    """Python codec writing text in the charset called label.  ISO-8859-1
    labels get windows-1252 bytes: the same for Latin-1 text, and what
    mislabelling mailers send for smart quotes (readers decode it so)."""
    low = label.lower()
    if low.startswith(("iso", "latin", "windows")):
        return "cp1252"
    return "utf-8"


def pick_charset(rng, text, pref):
    if pref == "cp1252" and cp1252_ok(text) and not ascii_ok(text):
        return rng.choice(["windows-1252", "Windows-1252", "iso-8859-1"])
    if pref == "latin1" and latin1_ok(text) and not ascii_ok(text):
        return rng.choice(["ISO-8859-1", "iso-8859-1", "ISO-8859-1", "latin1"])
    return rng.choice(["UTF-8", "utf-8", "UTF-8", "UTF-8", "utf-8", "utf8"])


def header_text(rng, text, pref, allow_raw=True):
    """Header value for unstructured text; returns (value, byte encoding)."""
    if ascii_ok(text) or text == "":
        return text, "utf-8"
    r = rng.random()
    if allow_raw and r < 0.08:
        return text, "utf-8"                        # RFC 6532 style 8-bit
    if allow_raw and r < 0.11 and latin1_ok(text):
        raw = text.encode("latin-1")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return text, "latin-1"                  # old mailer, undeclared
    charset = pick_charset(rng, text, pref)
    if charset in ("utf8", "latin1"):
        charset = "UTF-8" if charset == "utf8" else "ISO-8859-1"
    enc = "Q" if rng.random() < 0.45 else "B"
    words = text.split(" ")
    if rng.random() < 0.4 and len(words) > 1:
        # encode only the span from the first to the last non-ASCII word
        bad = [i for i, w in enumerate(words) if not ascii_ok(w)]
        lo, hi = bad[0], bad[-1] + 1
        mid = encoded_words(rng, " ".join(words[lo:hi]), charset, enc)
        parts = words[:lo] + [mid] + words[hi:]
        return " ".join(parts), "utf-8"
    return encoded_words(rng, text, charset, enc), "utf-8"


def fold_header(name, value, fold_ws=" "):
    """name: value with folding at spaces for lines over 78 characters; a
    "\\x00" inside value is a mandatory fold: a line break plus fold_ws
    (a space or, as Exchange writes, a tab)."""
    out = [name, ":"]
    linelen = len(name) + 1
    first = True
    for word in value.split(" "):
        pieces = word.split("\x00")
        for k, piece in enumerate(pieces):
            if k == 0:
                if not first and linelen + 1 + len(piece) > 78:
                    out.append("\n")
                    linelen = 0
                out.append(" " + piece)
                linelen += 1 + len(piece)
            else:
                out.append("\n" + fold_ws + piece)
                linelen = 1 + len(piece)
        first = False
    return "".join(out)


def atom_safe(name):
    return not any(c in SPECIALS for c in name)


def mailbox(rng, person, form=None):
    """Header text for one mailbox and the (name, addr) a parser must see."""
    form = form or person.form
    name, addr = person.name, person.addr
    if not name or form == "bare":
        return addr, [None, addr]
    if form == "angle":
        return "<%s>" % addr, [None, addr]
    if ascii_ok(name):
        if form == "comment" and not any(c in name for c in '()"\\'):
            return "%s (%s)" % (addr, name), [name, addr]
        if form == "quoted" or not atom_safe(name):
            q = name.replace("\\", "\\\\").replace('"', '\\"')
            return '"%s" <%s>' % (q, addr), [name, addr]
        return "%s <%s>" % (name, addr), [name, addr]
    if form == "raw":
        if atom_safe(name) and rng.random() < 0.5:
            return "%s <%s>" % (name, addr), [name, addr]
        return '"%s" <%s>' % (name, addr), [name, addr]
    value, _ = header_text(rng, name, person.pref, allow_raw=False)
    if form == "quoted_enc" and "\x00" not in value:
        return '"%s" <%s>' % (value, addr), [name, addr]
    if form == "comment" and "\x00" not in value:
        return "%s (%s)" % (addr, value), [name, addr]
    return "%s <%s>" % (value, addr), [name, addr]


# ------------------------------------------------------------------ bodies


def qp_encode(data, rng):
    """Quoted-printable with "=\\n" soft breaks, lines of at most 76."""
    lower = rng.random() < 0.08
    fmt = "=%02x" if lower else "=%02X"
    table = []
    for b in range(256):
        if 33 <= b <= 126 and b != 61:
            table.append(chr(b))
        elif b in (9, 32):
            table.append(chr(b))
        else:
            table.append(fmt % b)
    out = []
    for line in data.split(b"\n"):
        toks = [table[b] for b in line]
        if toks and line[-1] in (9, 32):
            toks[-1] = fmt % line[-1]
        enc = "".join(toks)
        if len(enc) <= 76:
            out.append(enc)
            continue
        cur = ""
        for tok in toks:
            if len(cur) + len(tok) > 75:
                out.append(cur + "=")
                cur = ""
            cur += tok
        out.append(cur)
    return "\n".join(out).encode("ascii")


def b64_encode(data, width=76):
    s = base64.b64encode(data).decode("ascii")
    return ("\n".join(s[i:i + width] for i in range(0, len(s), width)) + "\n").encode("ascii")


def quote_line(line):
    if not line:
        return ">"
    if line.startswith(">"):
        return ">" + line
    return "> " + line


def render_plain(blocks):
    lines = []
    for kind, head, body in blocks:
        if lines and kind != "sig":
            lines.append("")
        if kind == "quote":
            if head:
                lines.append(head)
            lines.extend(quote_line(x) for x in body)
        elif kind == "sig":
            lines.append("-- ")
            lines.extend(body)
        else:
            lines.extend(body)
    return lines


def html_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def render_html(blocks, meta_charset, entities):
    esc = html_escape
    if entities:
        def esc(s):
            return "".join(c if ord(c) < 128 else "&#%d;" % ord(c) for c in html_escape(s))
    out = ["<html>", "<head>",
           '<meta http-equiv="Content-Type" content="text/html; charset=%s">' % meta_charset,
           "</head>", '<body style="font-family: sans-serif;">']
    for kind, head, body in blocks:
        if kind == "quote":
            if head:
                out.append("<div>%s</div>" % esc(head))
            out.append('<blockquote type="cite" style="border-left: 2px solid #ccc;">')
            out.extend("%s<br>" % esc(x) for x in body)
            out.append("</blockquote>")
        elif kind == "sig":
            out.append('<div class="signature">-- <br>')
            out.extend("%s<br>" % esc(x) for x in body)
            out.append("</div>")
        else:
            out.append("<p>")
            out.extend("%s<br>" % esc(x) for x in body)
            out.append("</p>")
    out += ["</body>", "</html>"]
    return out


class Gen:
    def __init__(self, seed, count, nfolders):
        self.rng = random.Random(seed)
        self.count = count
        self.folders = FOLDERS[:nfolders]
        self.base = BASE_2025 + self.rng.randrange(0, 30 * 86400)
        self.id_counter = 0
        self.boundary_counter = 0
        self.people = self.make_people()
        self.me = Person("Robin Asante", "robin@asante.example", 60, MAILERS[0], "plain")
        self.me.sig = ["Robin Asante", "https://asante.example/"]
        self.msgs = []

    # ---------------------------------------------------------- people

    def make_people(self):
        rng = self.rng
        people, seen = [], set()
        for _ in range(160):
            r = rng.random()
            if r < 0.7:
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                name = "%s %s" % (first, last)
                local = rng.choice(["%s.%s" % (first, last), first, first[0] + last,
                                    "%s_%s" % (first, last[0])]).lower()
                if rng.random() < 0.05:
                    name = "%s, %s" % (last, first)
                elif rng.random() < 0.03:
                    name = '%s "%s" %s' % (first, rng.choice(["Doc", "Ace", "JJ"]), last)
                elif rng.random() < 0.03:
                    name = "%s %s. %s" % (first, rng.choice("ABCDEFGHJKLM"), last)
                lang = "en"
            elif r < 0.85:
                name, local = rng.choice(LATIN1_PEOPLE)
                lang = "latin1"
            else:
                name, local = rng.choice(UTF8_PEOPLE)
                lang = "utf8"
            if lang != "en" and rng.random() < 0.05:
                local = name.split(" ")[0].lower()        # EAI (RFC 6531) local part
            addr = "%s@%s" % (local, rng.choice(DOMAINS))
            while addr in seen:
                addr = "%s%d@%s" % (local, rng.randrange(2, 99), addr.split("@")[1])
            seen.add(addr)
            mailer = rng.choice(MAILERS)
            rf = rng.random()
            if ascii_ok(name):
                form = ("plain" if rf < 0.7 else "quoted" if rf < 0.82 else
                        "comment" if rf < 0.88 else "bare" if rf < 0.94 else "angle")
            else:
                form = ("enc" if rf < 0.7 else "raw" if rf < 0.8 else
                        "quoted_enc" if rf < 0.9 else "comment" if rf < 0.95 else "bare")
            if rng.random() < 0.04:
                name = None
            p = Person(name, addr, rng.choice(TIMEZONES), mailer, form)
            p.lang = lang
            if lang == "latin1" and rng.random() < 0.6:
                p.pref = "latin1"
            if mailer[0] == "outlook" and lang in ("en", "latin1") and rng.random() < 0.6:
                p.pref = "cp1252"
                p.lang = "smart" if lang == "en" else lang
            p.cte = rng.choice(["8bit", "8bit", "quoted-printable", "quoted-printable", "base64"])
            p.crlf = mailer[0] == "outlook" and rng.random() < 0.35 or rng.random() < 0.02
            signame = name or local
            p.sig = rng.choice([[signame], [signame, rng.choice(["Platform team", "Kite Studio",
                                "Universität zu Köln" if lang == "latin1" else "River Labs",
                                "+49 221 555 0142", "Sent from my phone"])], []])
            people.append(p)
        return people

    # ---------------------------------------------------------- ids

    def new_id(self, author):
        rng = self.rng
        self.id_counter += 1
        n = self.id_counter
        dom = author.addr.split("@")[1]
        r = rng.random()
        if r < 0.3:
            return "%016x.%04x@%s" % (rng.getrandbits(64), n, dom)
        if r < 0.5:
            tok = base64.b64encode(rng.randbytes(27)).decode("ascii")
            return "CA+%s%d@mail.gmail.example" % (tok, n)
        if r < 0.7:
            return "%d.%d.%s@%s" % (self.base + n * 37, n, rng.choice(["GA", "GB", "GC"]), dom)
        h = "%032x" % rng.getrandbits(128)
        return "%s-%s-%s-%s-%s%x@%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:], n, dom)

    def boundary(self, style):
        rng = self.rng
        self.boundary_counter += 1
        n = self.boundary_counter
        alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        rnd = "".join(rng.choice(alnum) for _ in range(20))
        if style == "tb":
            return "------------%s%d" % (rnd, n)
        if style == "ms":
            return "_000_%s%dEXCHANGE_" % (rnd, n)
        if style == "gm":
            return "000000000000%016x%d" % (rng.getrandbits(64), n)
        if style == "ap":
            return "Apple-Mail=_%s-%d" % (rnd, n)
        return "=_%s_%d" % (rnd, n)

    # ---------------------------------------------------------- text

    def sentence(self, lang):
        rng = self.rng
        r = rng.random()
        if lang == "latin1" and r < 0.45:
            return rng.choice(LATIN1_SENTENCES)
        if lang == "utf8" and r < 0.45:
            return rng.choice(UTF8_SENTENCES)
        if lang == "smart" and r < 0.35:
            return rng.choice(SMART_SENTENCES)
        if r < 0.6:
            return rng.choice(EN_SENTENCES)
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        s = " ".join(words)
        return s[0].upper() + s[1:] + rng.choice([".", ".", "?", "!"])

    def paragraphs(self, lang, lo, hi):
        rng = self.rng
        out = []
        for _ in range(rng.randint(lo, hi)):
            out.append(wrap(" ".join(self.sentence(lang) for _ in range(rng.randint(1, 5)))))
        return out

    def attribution(self, parent):
        p = parent.author
        d, _ = fmt_date(random.Random(parent.time), parent.time, p.tz)
        who = p.name or p.addr
        r = self.rng.random()
        if r < 0.6:
            return "On %s, %s wrote:" % (d, who)
        if r < 0.8:
            return "%s <%s> writes:" % (who, p.addr)
        return "Am %s schrieb %s:" % (d, who)

    def body_blocks(self, author, parent, lang, lo=1, hi=4):
        rng = self.rng
        blocks = []
        greet = rng.random()
        target = parent.author.first if parent else rng.choice(["all", "everyone", "team"])
        if greet < 0.5:
            g = {"latin1": "Hallo %s,", "utf8": "%s,"}.get(lang, "Hi %s,")
            blocks.append(("para", None, [g % target]))
        paras = self.paragraphs(lang, lo, hi)
        quote = None
        if parent and rng.random() < 0.85:
            q = list(parent.quote_lines)
            if rng.random() < 0.5 and "-- " in q:
                q = q[:q.index("-- ")]
            while q and q[-1] == "":
                q.pop()
            quote = q[:20] if q else ["(no text)"]
        top = rng.random() < author.mailer[3]
        if quote and top:
            for p in paras:
                blocks.append(("para", None, p))
        elif quote:
            if len(quote) > 6 and len(paras) > 1:
                cut = len(quote) // 2
                blocks.append(("quote", self.attribution(parent), quote[:cut]))
                blocks.append(("para", None, paras[0]))
                blocks.append(("quote", None, quote[cut:]))
                for p in paras[1:]:
                    blocks.append(("para", None, p))
            else:
                blocks.append(("quote", self.attribution(parent), quote))
                for p in paras:
                    blocks.append(("para", None, p))
        else:
            for p in paras:
                blocks.append(("para", None, p))
        if rng.random() < 0.4:
            closing = rng.choice(["Thanks,", "Cheers,", "Best regards,", "-- sent in a hurry",
                                  "Viele Grüße," if lang == "latin1" else "Best,"])
            blocks.append(("para", None, [closing, author.first]))
        if author.sig and rng.random() < 0.8:
            blocks.append(("sig", None, author.sig))
        if quote and top:
            blocks.append(("quote", self.attribution(parent), quote))
        return blocks

    # ---------------------------------------------------------- parts

    def text_part(self, text, subtype, author, cte=None, charset=None, disp=None,
                  filename=None):
        """A text leaf; text uses "\\n" line ends and is what the reader sees."""
        rng = self.rng
        p = Part("text/" + subtype)
        p.text = text
        if charset is None:
            if ascii_ok(text):
                charset = rng.choice(["us-ascii", "utf-8", "UTF-8", "US-ASCII", None])
            else:
                charset = pick_charset(rng, text, author.pref)
                if codec_for(charset) == "utf-8" and rng.random() < 0.03:
                    charset = None      # undeclared, but valid UTF-8
        codec = codec_for(charset) if charset else "utf-8"
        p.codec = codec
        data = text.encode(codec)
        if cte is None:
            if ascii_ok(text):
                cte = rng.choice(["7bit", "7bit", "7bit", None, "quoted-printable", "base64"])
            else:
                cte = author.cte if rng.random() < 0.85 else rng.choice(
                    ["8bit", "quoted-printable", "base64"])
        p.cte = cte
        if cte == "quoted-printable":
            p.body = qp_encode(data, rng)
            if not text.endswith("\n") and rng.random() < 0.5:
                p.body += b"=\n"        # a soft break ends the last line
        elif cte == "base64":
            if rng.random() < 0.6:
                data = data.replace(b"\n", b"\r\n")       # canonical form
            p.body = b64_encode(data, rng.choice([76, 76, 76, 72, 64]))
        else:
            p.body = data
        ctype = "text/" + subtype
        if rng.random() < 0.03:
            ctype = "Text/" + subtype.capitalize()
        if charset:
            ctype += rng.choice(['; charset="%s"', "; charset=%s", ";\x00charset=%s"]) % charset
        if filename:
            ctype += '; name="%s"' % filename
        p.headers.append(("Content-Type", ctype, "utf-8"))
        if cte:
            p.headers.append(("Content-Transfer-Encoding",
                              cte if rng.random() < 0.95 else cte.upper(), "utf-8"))
        if disp:
            p.disposition = disp
            d = disp + ('; filename="%s"' % filename if filename else "")
            p.headers.append(("Content-Disposition", d, "utf-8"))
        return p

    def plain_and_html(self, blocks, author):
        rng = self.rng
        plain = "\n".join(render_plain(blocks))
        if rng.random() < 0.85:
            plain += "\n"
        entities = rng.random() < 0.1
        hcharset = pick_charset(rng, plain, author.pref) if not entities else "us-ascii"
        html = "\n".join(render_html(blocks, hcharset, entities)) + "\n"
        pp = self.text_part(plain, "plain", author)
        hp = self.text_part(html, "html", author, charset=hcharset,
                            cte=rng.choice(["quoted-printable", "quoted-printable", "base64",
                                            "7bit" if ascii_ok(html) else "8bit"]))
        return pp, hp

    def multipart(self, sub, children, author):
        rng = self.rng
        p = Part("multipart/" + sub)
        p.children = children
        p.boundary = self.boundary(author.mailer[4])
        inner = [c for c in children if c.boundary]
        if inner and rng.random() < 0.15:
            # the child's delimiter lines start with this one's ("--X" and "--X_7")
            p.boundary = inner[0].boundary
            inner[0].boundary += "_%d" % self.boundary_counter
            set_header(inner[0], "Content-Type", inner[0].headers[0][1].replace(
                p.boundary, inner[0].boundary))
        b = p.boundary
        if any(c in b for c in "=()<>@,;:\\/[]?") or rng.random() < 0.7:
            b = '"%s"' % b
        extra = ""
        if sub == "signed":
            extra = '; micalg=pgp-sha256; protocol="application/pgp-signature"'
        elif sub == "related" and rng.random() < 0.5:
            extra = '; type="text/html"'
        p.headers.append(("Content-Type", "multipart/%s;\x00boundary=%s%s" % (sub, b, extra),
                          "utf-8"))
        if rng.random() < 0.3:
            p.preamble = "This is a multi-part message in MIME format."
        if rng.random() < 0.1:
            p.epilogue = "\n"
        if rng.random() < 0.02:
            p.pad = rng.choice([" ", "\t", "  "])     # transport padding
        return p

    def attachment(self, kind):
        rng = self.rng
        if kind == "pdf":
            n = int(min(60000, max(800, rng.lognormvariate(8.5, 0.8))))
            data = b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(n) + b"\n%%EOF\n"
            name = rng.choice(["report-%d.pdf" % rng.randrange(1, 99), "invoice.pdf",
                               "Übersicht.pdf", "minutes.pdf", "scan0001.pdf"])
            mime = "application/pdf"
        elif kind == "png":
            n = int(min(40000, max(300, rng.lognormvariate(8.0, 0.9))))
            data = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(17) +
                    rng.randbytes(n) + b"\x00\x00\x00\x00IEND\xaeB`\x82")
            name = rng.choice(["image001.png", "screenshot.png", "graph.png", "写真.png"])
            mime = "image/png"
        else:
            n = rng.randrange(200, 3000)
            data = b"PK\x03\x04" + rng.randbytes(n)
            name = "logs.zip"
            mime = "application/zip"
        p = Part(mime)
        p.body = b64_encode(data)
        if ascii_ok(name):
            fname = '"%s"' % name
            pname = fname
        elif rng.random() < 0.5:
            pct = "".join(chr(b) if b < 128 and (chr(b).isalnum() or chr(b) in ".-")
                          else "%%%02X" % b for b in name.encode("utf-8"))
            fname = "*=UTF-8''" + pct
            pname = '"%s"' % encoded_words(rng, name, "UTF-8", "B").replace("\x00", " ")
        else:
            fname = '"%s"' % encoded_words(rng, name, "UTF-8", "Q").replace("\x00", " ")
            pname = fname
        eq = "=" if not fname.startswith("*") else ""
        p.headers.append(("Content-Type", "%s;\x00name=%s" % (mime, pname), "utf-8"))
        p.headers.append(("Content-Transfer-Encoding", "base64", "utf-8"))
        p.disposition = "attachment"
        p.headers.append(("Content-Disposition", "attachment;\x00filename%s%s" % (eq, fname),
                          "utf-8"))
        return p

    def diff_text(self):
        rng = self.rng
        comp = rng.choice(COMPONENTS)
        path = "lib/%s.c" % comp
        out = ["diff --git a/%s b/%s" % (path, path),
               "index %07x..%07x 100644" % (rng.getrandbits(28), rng.getrandbits(28)),
               "--- a/%s" % path, "+++ b/%s" % path]
        for _ in range(rng.randint(1, 3)):
            start = rng.randrange(10, 900)
            ctx = ["    if (%s == NULL)" % rng.choice(WORDS), "        return -1;",
                   "    %s_%s(%s);" % (comp, rng.choice(WORDS), rng.choice(WORDS)), "", "}"]
            minus = ["    %s = %s(%s, %d);" % (rng.choice(WORDS),
                                               rng.choice(VERBS).replace(" ", "_"),
                                               rng.choice(WORDS), rng.randrange(100))]
            plus = ["    /* %s */" % rng.choice(EN_SENTENCES).rstrip("."),
                    "    %s = %s_%s(%s, %d);" % (rng.choice(WORDS), comp,
                                                 rng.choice(VERBS).replace(" ", "_"),
                                                 rng.choice(WORDS), rng.randrange(100))]
            out.append("@@ -%d,%d +%d,%d @@ static int %s_%s(void)" % (
                start, 4, start, 5, comp, rng.choice(WORDS)))
            out += [" " + ctx[0], " " + ctx[1]] + ["-" + x for x in minus] + \
                   ["+" + x for x in plus] + [" " + ctx[2] if ctx[2] else ""]
        return comp, path, out

    # ---------------------------------------------------------- messages

    def envelope(self, m, to, cc, parent_ids, irt_style, list_cat, date_text):
        rng = self.rng
        a = m.author
        h = []
        lst = LISTS.get(list_cat) if list_cat else None
        if m.folder != "Sent" and m.folder != "Drafts":
            h.append(("Return-Path", "<%s>" % (a.addr if not lst else
                                              "%s-bounces@%s" % (lst[0], lst[1])), "utf-8"))
            h.append(("Delivered-To", self.me.addr, "utf-8"))
            relay = "mx%d.%s" % (rng.randrange(1, 4), a.addr.split("@")[1])
            h.append(("Received", "from %s (%s [192.0.2.%d])\x00by mail.asante.example (Postfix) "
                      "with ESMTPS id %X\x00for <%s>; %s" % (
                          relay, relay, rng.randrange(1, 255), rng.getrandbits(40),
                          self.me.addr, date_text), "utf-8"))
            if rng.random() < 0.5:
                sig = base64.b64encode(rng.randbytes(96)).decode("ascii")
                h.append(("DKIM-Signature", "v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s;\x00"
                          "s=mail; h=from:to:subject:date:message-id;\x00b=%s\x00%s" % (
                              a.addr.split("@")[1], sig[:60], sig[60:]), "utf-8"))
            if rng.random() < 0.4:
                h.append(("X-Spam-Status", "No, score=%.1f required=5.0\x00tests=BAYES_00,"
                          "DKIM_SIGNED,DKIM_VALID,SPF_HELO_NONE,SPF_PASS\x00autolearn=ham "
                          "autolearn_force=no version=3.4.6" % (rng.uniform(-5, 2)), "utf-8"))
        froms = [mailbox(rng, a)]
        if rng.random() < 0.01 and m.category in ("work", "personal"):
            froms.append(mailbox(rng, rng.choice(self.people)))
        h.append(("From", ", ".join(f[0] for f in froms), "utf-8"))
        m.exp["from"] = [f[1] for f in froms]
        h.append(("To", to, "utf-8"))
        if cc:
            h.append(("Cc", cc, "utf-8"))
        if m.subject is not None:
            value, enc = header_text(rng, m.subject, a.pref)
            r = rng.random()
            if r < 0.01 and "\x00" not in value and len(value) < 60:
                h.append(("raw", "Subject:" + value, enc))        # no blank after the colon
            elif r < 0.013 and "\x00" not in value and len(value) < 60:
                h.append(("raw", "Subject : " + value, enc))      # obsolete blank before it
            else:
                h.append(("Subject", value, enc))
        h.append(("Date", date_text, "utf-8"))
        if m.msgid:
            h.append(("Message-ID", m.msgid if m.bare_id else "<%s>" % m.msgid, "utf-8"))
        irt, refs = parent_ids
        if irt:
            r = irt_style
            if r < 0.89:
                v = "<%s>" % irt
            elif r < 0.9:
                v = "<%s> <%s>" % (irt, refs[0] if refs else self.new_id(a))
            elif r < 0.95:
                v = "<%s> (%s's message of %s)" % (irt, "someone", date_text.split(" +")[0])
            else:
                v = 'Your message of "%s"\x00<%s>' % (date_text, irt)
            h.append(("In-Reply-To", v, "utf-8"))
        if refs:
            seps = ["\x00", "\x00", "\x00", " ", " "] + ([""] if rng.random() < 0.1 else [])
            sep = rng.choice(seps)
            h.append(("References", sep.join("<%s>" % r for r in refs), "utf-8"))
        if lst:
            lname, lhost, ldesc, _ = lst
            r = rng.random()
            lid = "%s.%s" % (lname, lhost)
            if r < 0.7:
                h.append(("List-Id", "%s <%s>" % (ldesc, lid), "utf-8"))
            elif r < 0.85:
                h.append(("List-Id", '"%s" <%s>' % (ldesc, lid), "utf-8"))
            else:
                h.append(("List-Id", "<%s>" % lid, "utf-8"))
            m.exp["list_id"] = lid
            h.append(("List-Unsubscribe", "<mailto:%s-request@%s?subject=unsubscribe>,\x00"
                      "<https://%s/mailman/options/%s>" % (lname, lhost, lhost, lname), "utf-8"))
            h.append(("List-Archive", "<https://%s/archives/%s/>" % (lhost, lname), "utf-8"))
            if list_cat == "announce":
                h.append(("List-Post", "NO", "utf-8"))
            else:
                h.append(("List-Post", "<mailto:%s@%s>" % (lname, lhost), "utf-8"))
            h.append(("List-Help", "<mailto:%s-request@%s?subject=help>" % (lname, lhost), "utf-8"))
            h.append(("Precedence", "list", "utf-8"))
            h.append(("Sender", '"%s" <%s-bounces@%s>' % (lname, lname, lhost), "utf-8"))
        ua = a.mailer[1]
        if ua:
            h.append((ua[0], ua[1], "utf-8"))
        # spellings other programs use for the same fields
        variants = {}
        if rng.random() < 0.3:
            variants["Message-ID"] = "Message-Id"
        if a.mailer[0] == "outlook":
            variants["Cc"] = "CC"
        if rng.random() < 0.01:
            variants.update({"Subject": "SUBJECT", "From": "FROM", "In-Reply-To": "In-reply-to",
                             "References": "REFERENCES", "Date": "DATE"})
        return [(variants.get(n, n), v, e) for n, v, e in h]

    def reply_subject(self, parent):
        rng = self.rng
        s = parent.subject
        if s is None or s == "":
            return "Re:"
        base = s
        while True:
            low = base.lower()
            if low.startswith(("re: ", "aw: ", "sv: ")):
                base = base[4:]
            elif low.startswith("re[") and "]: " in base[:8]:
                base = base[base.index("]: ") + 3:]
            else:
                break
        r = rng.random()
        if r < 0.72:
            return "Re: " + base
        if r < 0.84:
            return "Re: " + s                   # naive mailer: "Re: Re: ..."
        if r < 0.9:
            return "RE: " + base
        if r < 0.95:
            return "AW: " + base
        return "Re[2]: " + base

    def subject_for(self, cat, author):
        rng = self.rng
        lang = author.lang
        r = rng.random()
        if lang == "latin1" and r < 0.5 or r < 0.06:
            s = rng.choice(LATIN1_SUBJECTS)
        elif lang == "utf8" and r < 0.5 or r < 0.12:
            s = rng.choice(UTF8_SUBJECTS)
        else:
            tmpl = rng.choice(SUBJECTS.get(cat, SUBJECTS["personal"]))
            s = tmpl.format(day=rng.choice(LONG_DAYS), noun=rng.choice(WORDS),
                            comp=rng.choice(COMPONENTS), verb=rng.choice(VERBS),
                            platform=rng.choice(PLATFORMS), q=rng.randint(1, 4),
                            year=rng.choice([2025, 2026]), week=rng.randint(1, 52),
                            date="%d-%02d-%02d" % (2025, rng.randint(1, 12), rng.randint(1, 28)))
        if rng.random() < 0.07:
            s += " - " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 14)))
        return s

    def recipients(self, m, list_cat):
        rng = self.rng
        lst = LISTS.get(list_cat) if list_cat else None
        if lst:
            to = "%s@%s" % (lst[0], lst[1])
            if rng.random() < 0.5:
                to = "%s <%s>" % (lst[0], to)
            return to, None
        others = rng.sample(self.people, rng.randint(0, 3))
        tos = [] if m.author is self.me else [self.me]
        tos += [o for o in others[:2] if o is not m.author]
        if not tos:
            tos = [rng.choice(self.people)]
        to = ", ".join(mailbox(rng, t, "plain" if t.name and ascii_ok(t.name) and atom_safe(t.name)
                               else "quoted" if t.name and ascii_ok(t.name) else None)[0]
                       for t in tos)
        if m.category == "announce" or (m.category == "receipt" and rng.random() < 0.3):
            to = "undisclosed-recipients:;"
        cc = None
        if len(others) == 3 and others[2] is not m.author:
            cc = mailbox(rng, others[2])[0]
        return to, cc

    def file_folder(self, m):
        rng = self.rng
        if m.author is self.me:
            if "Drafts" in self.folders and rng.random() < 0.03:
                return "Drafts"
            if "Sent" in self.folders:
                return "Sent"
        f = CATEGORY_FOLDER[m.category]
        if f == "INBOX" and m.category == "personal" and m.time < EPOCH_2026 \
                and "Archive.2025" in self.folders and rng.random() < 0.6:
            f = "Archive.2025"
        if f == "INBOX" and "Trash" in self.folders and rng.random() < 0.04:
            f = "Trash"
        return f if f == "INBOX" or f in self.folders else "INBOX"

    def build(self, m, parent, structure, list_cat, ref_style):
        """Fill in headers, body and expectations of m."""
        rng = self.rng
        a = m.author
        m.crlf = a.crlf
        m.crlf_headers = not m.crlf and rng.random() < 0.006
        lang = a.lang
        date_text, date_val = fmt_date(rng, m.time, a.tz)
        m.exp["date"] = date_val
        m.exp["list_id"] = None
        m.exp["subject"] = m.subject
        m.exp["message_id"] = m.msgid
        irt, refs = None, []
        if parent is not None:
            pid = parent.msgid
            chain = m.chain
            if ref_style == "both":
                irt, refs = pid, chain
            elif ref_style == "irt":
                irt = pid
            elif ref_style == "refs":
                refs = chain
            elif ref_style == "broken":
                phantom = self.new_id(rng.choice(self.people))
                irt = phantom
                refs = chain[:-1] + [phantom] if rng.random() < 0.5 else [phantom]
            # "subject": no ids at all
            if len(refs) > 10 and rng.random() < 0.7:
                refs = refs[:1] + refs[-8:]
        m.exp["in_reply_to"] = irt
        m.exp["references"] = list(refs)
        to, cc = self.recipients(m, list_cat)
        env = self.envelope(m, to, cc, (irt, refs), rng.random(), list_cat, date_text)

        root, quote_lines = self.make_body(m, parent, structure, lang)
        m.quote_lines = quote_lines
        if list_cat in ("dev", "patch", "users") and m.folder != "Sent" and rng.random() < 0.5:
            root = self.list_footer(root, LISTS[list_cat], a)
        mime = []
        if structure != "bare" or root.children:
            mime.append(("MIME-Version", "1.0", "utf-8"))
        root.headers = env + mime + root.headers
        m.root = root
        if a.mailer[0] == "outlook" and rng.random() < 0.7 or rng.random() < 0.03:
            for p in walk(root):
                p.fold_ws = "\t"
        return root

    def make_body(self, m, parent, structure, lang):
        """Root part for the structure; returns (root, plain lines to quote)."""
        rng = self.rng
        a = m.author
        if structure == "patch":
            return self.patch_body(m)
        if structure == "system":
            return self.system_body(m)
        if structure == "newsletter":
            return self.newsletter_body(m)
        blocks = self.body_blocks(a, parent, lang)
        lines = render_plain(blocks)
        plain = "\n".join(lines) + "\n"
        if structure == "empty":
            p = self.text_part("", "plain", a, cte=rng.choice(["7bit", None, "quoted-printable",
                                                              "base64"]))
            p.headers_only = rng.random() < 0.3
            return p, ["(empty)"]
        if structure in ("plain", "bare"):
            if structure == "bare":
                p = Part("text/plain")
                p.text = plain
                p.body = plain.encode("utf-8")
                return p, lines
            return self.text_part(plain, "plain", a), lines
        if structure == "html":
            pp, hp = self.plain_and_html(blocks, a)
            return hp, lines
        if structure in ("alt", "alt_html_first"):
            pp, hp = self.plain_and_html(blocks, a)
            kids = [hp, pp] if structure == "alt_html_first" else [pp, hp]
            return self.multipart("alternative", kids, a), lines
        if structure == "alt_related":
            pp, hp = self.plain_and_html(blocks, a)
            img = self.attachment("png")
            img.disposition = "inline"
            img.headers = [h for h in img.headers if h[0] != "Content-Disposition"]
            img.headers.append(("Content-ID", "<img%d@%s>" % (self.boundary_counter,
                                                              a.addr.split("@")[1]), "utf-8"))
            img.headers.append(("Content-Disposition", "inline", "utf-8"))
            rel = self.multipart("related", [hp, img], a)
            return self.multipart("alternative", [pp, rel], a), lines
        if structure == "signed":
            pp = self.text_part(plain, "plain", a,
                                cte=rng.choice(["quoted-printable", "7bit" if ascii_ok(plain)
                                                else "quoted-printable"]))
            sig = Part("application/pgp-signature")
            sig.headers = [("Content-Type", 'application/pgp-signature; name="signature.asc"',
                            "utf-8"),
                           ("Content-Description", "OpenPGP digital signature", "utf-8"),
                           ("Content-Disposition", 'attachment; filename="signature.asc"', "utf-8")]
            sig.disposition = "attachment"
            b = base64.b64encode(rng.randbytes(110)).decode("ascii")
            sig.body = ("-----BEGIN PGP SIGNATURE-----\n\n%s\n%s\n=%s\n"
                        "-----END PGP SIGNATURE-----\n" % (b[:64], b[64:], b[:4])).encode("ascii")
            return self.multipart("signed", [pp, sig], a), lines
        if structure == "mixed":
            if rng.random() < 0.35:
                pp, hp = self.plain_and_html(blocks, a)
                first = self.multipart("alternative", [pp, hp], a)
            elif rng.random() < 0.06:
                first = Part("text/plain")          # no header: text/plain by default
                first.text = plain
                first.body = plain.encode("utf-8")
            else:
                first = self.text_part(plain, "plain", a)
            kids = [first]
            for _ in range(rng.randint(1, 3)):
                kind = rng.choice(["pdf", "pdf", "png", "diff", "txt", "zip"])
                if kind == "diff":
                    _, path, dl = self.diff_text()
                    d = Part("text/x-diff")
                    d.body = ("\n".join(dl) + "\n").encode("utf-8")
                    d.disposition = "inline"
                    d.headers = [("Content-Type", 'text/x-diff; charset=us-ascii; name="fix.patch"',
                                  "utf-8"),
                                 ("Content-Disposition", 'inline; filename="fix.patch"', "utf-8"),
                                 ("Content-Transfer-Encoding", "7bit", "utf-8")]
                    kids.append(d)
                elif kind == "txt":
                    log = "\n".join("2025-%02d-%02d %02d:%02d:%02d %s" % (
                        rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                        rng.randint(0, 59), rng.randint(0, 59), self.sentence("en"))
                        for _ in range(rng.randint(3, 20))) + "\n"
                    kids.append(self.text_part(log, "plain", a, disp="attachment",
                                               filename="server.log"))
                else:
                    kids.append(self.attachment(kind))
            return self.multipart("mixed", kids, a), lines
        if structure == "mixed_html_related":
            pp, hp = self.plain_and_html(blocks, a)
            img = self.attachment("png")
            img.disposition = None
            img.headers = [h for h in img.headers if h[0] != "Content-Disposition"]
            img.headers.append(("Content-ID", "<logo%d@x>" % self.boundary_counter, "utf-8"))
            rel = self.multipart("related", [hp, img], a)
            return self.multipart("mixed", [rel, self.attachment("pdf")], a), lines
        if structure == "mixed_html_then_plain":
            # an HTML body and a plain-text inline part: the plain one wins
            pp, hp = self.plain_and_html(blocks, a)
            notes = "Notes for the call:\n" + "\n".join(
                "- " + self.sentence(lang) for _ in range(rng.randint(2, 5))) + "\n"
            np = self.text_part(notes, "plain", a, disp="inline", filename="notes.txt")
            return self.multipart("mixed", [hp, np], a), lines
        if structure == "forward":
            inner = self.inner_message(a, m.time)
            intro = ["Forwarding this, see below."] if rng.random() < 0.7 else [
                self.sentence(lang)]
            fblocks = [("para", None, intro)] + ([("sig", None, a.sig)] if a.sig else [])
            r = rng.random()
            if r < 0.2:
                kids = []                       # forwarded as attachment, nothing added
            elif r < 0.45:
                # HTML-only note: still the text, whatever the attached message holds
                kids = [self.plain_and_html(fblocks, a)[1]]
            else:
                kids = [self.text_part("\n".join(render_plain(fblocks)) + "\n", "plain", a)]
            rp = Part("message/rfc822")
            rp.children = [inner]
            rp.headers = [("Content-Type", "message/rfc822", "utf-8")]
            if rng.random() < 0.6:
                rp.disposition = rng.choice(["inline", "attachment"])
                rp.headers.append(("Content-Disposition", rp.disposition, "utf-8"))
            return self.multipart("mixed", kids + [rp], a), intro
        if structure == "signed_mixed":
            pp, hp = self.plain_and_html(blocks, a)
            alt = self.multipart("alternative", [pp, hp], a)
            mixed = self.multipart("mixed", [alt, self.attachment("pdf")], a)
            sig = Part("application/pkcs7-signature")
            sig.headers = [("Content-Type", 'application/pkcs7-signature; name="smime.p7s"',
                            "utf-8"),
                           ("Content-Transfer-Encoding", "base64", "utf-8"),
                           ("Content-Disposition", 'attachment; filename="smime.p7s"', "utf-8")]
            sig.disposition = "attachment"
            sig.body = b64_encode(rng.randbytes(rng.randrange(1500, 4000)))
            signed = self.multipart("signed", [mixed, sig], a)
            signed.headers = [("Content-Type", signed.headers[0][1].replace(
                "pgp-sha256", "sha-256").replace("application/pgp-signature",
                                                 "application/pkcs7-signature"), "utf-8")]
            return signed, lines
        if structure == "digest":
            return self.digest_body(m)
        if structure == "attach_only":
            kids = [self.attachment("pdf")]
            if rng.random() < 0.3:
                kids.append(self.text_part("Scanned on device MFP-%d.\n" % rng.randrange(100),
                                           "plain", a, disp="attachment", filename="info.txt"))
            return self.multipart("mixed", kids, a), ["(attachment)"]
        raise ValueError(structure)

    def inner_message(self, fwd_author, before):
        """A complete message (headers and body) to carry in message/rfc822."""
        rng = self.rng
        orig = rng.choice(self.people)
        blocks = self.body_blocks(orig, None, orig.lang, 1, 2)
        t = before - rng.randrange(600, 60 * 86400)
        date_text, _ = fmt_date(rng, t, orig.tz)
        subj = self.subject_for("work", orig)
        value, enc = header_text(rng, subj, orig.pref)
        h = [("From", mailbox(rng, orig)[0], "utf-8"),
             ("To", mailbox(rng, fwd_author)[0], "utf-8"),
             ("Subject", value, enc), ("Date", date_text, "utf-8"),
             ("Message-ID", "<%s>" % self.new_id(orig), "utf-8"),
             ("MIME-Version", "1.0", "utf-8")]
        if rng.random() < 0.5:
            pp, hp = self.plain_and_html(blocks, orig)
            root = self.multipart("alternative", [pp, hp], orig)
        else:
            text = "\n".join(render_plain(blocks)) + "\n"
            # 8-bit or QP; a base64 body is fine inside, only the outer part must not be
            root = self.text_part(text, "plain", orig)
        root.headers = h + root.headers
        return root

    def list_footer(self, root, lst, author):
        """The list server's footer: appended to a plain 8-bit body, else a
        text/plain part after the message in a new multipart/mixed."""
        rng = self.rng
        lname, lhost = lst[0], lst[1]
        footer = ("_______________________________________________\n"
                  "%s mailing list\n%s@%s\nhttps://%s/mailman/listinfo/%s\n" % (
                      lname, lname, lhost, lhost, lname))
        if root.mime == "text/plain" and root.cte in (None, "7bit", "8bit") and root.text \
                and root.text.endswith("\n") and root.codec and not root.headers_only:
            root.text += footer
            root.body += footer.encode(root.codec)
            return root
        fp = self.text_part(footer, "plain", author, cte="7bit", charset="us-ascii")
        if rng.random() < 0.5:
            fp.disposition = "inline"
            fp.headers.append(("Content-Disposition", "inline", "utf-8"))
        return self.multipart("mixed", [root, fp], author)

    def digest_body(self, m):
        """A mailing list digest: a table of contents and a multipart/digest
        whose parts default to message/rfc822."""
        rng = self.rng
        lname, lhost = LISTS["users"][0], LISTS["users"][1]
        toc = ["Send %s mailing list submissions to" % lname, "\t%s@%s" % (lname, lhost), "",
               "Today's Topics:", ""]
        parts = []
        for i in range(1, rng.randint(2, 6) + 1):
            orig = rng.choice(self.people)
            subj = self.subject_for("users", orig)
            toc.append("   %d. %s (%s)" % (i, subj, orig.name or orig.addr))
            value, enc = header_text(rng, subj, orig.pref)
            t = m.time - rng.randrange(3600, 86400)
            date_text, _ = fmt_date(rng, t, orig.tz)
            text = "\n".join(render_plain(self.body_blocks(orig, None, orig.lang, 1, 2))) + "\n"
            inner = self.text_part(text, "plain", orig, cte=rng.choice(
                ["quoted-printable", "8bit" if not ascii_ok(text) else "7bit"]))
            inner.headers = [("From", mailbox(rng, orig)[0], "utf-8"),
                             ("Subject", value, enc), ("Date", date_text, "utf-8"),
                             ("Message-ID", "<%s>" % self.new_id(orig), "utf-8"),
                             ("MIME-Version", "1.0", "utf-8")] + inner.headers
            mp = Part("message/rfc822")
            mp.children = [inner]
            if rng.random() < 0.3:
                mp.headers = [("Content-Type", "message/rfc822", "utf-8")]
            parts.append(mp)
        toc.append("")
        text = "\n".join(toc) + "\n"
        first = self.text_part(text, "plain", m.author, cte="7bit" if ascii_ok(text) else "8bit",
                               charset="us-ascii" if ascii_ok(text) else "utf-8")
        first.headers.append(("Content-Description", "%s Digest, Vol %d, Issue %d" % (
            lname, rng.randint(1, 9), rng.randint(1, 40)), "utf-8"))
        dig = self.multipart("digest", parts, m.author)
        return self.multipart("mixed", [first, dig], m.author), toc

    def patch_body(self, m):
        rng = self.rng
        comp, path, dl = self.diff_text()
        msg = self.paragraphs("en", 1, 2)
        lines = []
        for p in msg:
            lines += p + [""]
        lines.append("Signed-off-by: %s <%s>" % (m.author.name or m.author.addr, m.author.addr))
        lines += ["---", " %s | %d ++++--" % (path, rng.randint(3, 30)),
                  " 1 file changed, %d insertions(+), %d deletions(-)" % (
                      rng.randint(1, 20), rng.randint(1, 10)), ""]
        lines += dl
        lines += ["-- ", "2.%d.%d" % (rng.randint(39, 47), rng.randint(0, 3))]
        text = "\n".join(lines) + "\n"
        p = self.text_part(text, "plain", m.author, cte="8bit" if not ascii_ok(text) else "7bit",
                           charset="UTF-8")
        return p, lines

    def system_body(self, m):
        rng = self.rng
        lines = ["/etc/cron.daily/backup:", ""]
        for _ in range(rng.randint(2, 12)):
            lines.append("%s: %s %d files, %d bytes" % (
                rng.choice(["home", "srv", "etc", "var/mail"]),
                rng.choice(["copied", "skipped", "verified"]), rng.randrange(1000),
                rng.randrange(10 ** 7)))
        if rng.random() < 0.3:
            lines.append("rsync warning: some files vanished before they could be transferred")
        text = "\n".join(lines) + "\n"
        p = Part("text/plain")
        p.text = text
        p.body = text.encode("ascii")
        if rng.random() < 0.5:
            p.headers = [("Content-Type", "text/plain; charset=US-ASCII", "utf-8")]
        return p, lines

    def newsletter_body(self, m):
        rng = self.rng
        a = m.author
        items = []
        for _ in range(rng.randint(2, 6)):
            items.append((self.sentence(a.lang), "https://%s/p/%d" % (
                a.addr.split("@")[1], rng.randrange(10 ** 6))))
        rows = []
        for title, url in items:
            rows.append('<tr><td style="padding: 8px;"><a href="%s">%s</a></td></tr>' % (
                url, html_escape(title)))
        entities = rng.random() < 0.2
        if rng.random() < 0.3:
            rows = ["".join(rows) * rng.randint(4, 12)]    # one line far over 998 bytes
        html_lines = ["<!DOCTYPE html>", "<html>", "<head>",
                      '<meta charset="utf-8">', "<title>%s</title>" % html_escape(m.subject or ""),
                      "<style>td { font-family: Helvetica, Arial; } .foot { color: #888; }</style>",
                      "</head>", "<body>", '<table width="100%" cellpadding="0">'] + rows + [
                      "</table>",
                      '<p class="foot">You receive this because you signed up&nbsp;at '
                      "%s. <a href=\"https://%s/unsubscribe\">Unsubscribe</a></p>" % (
                          a.addr.split("@")[1], a.addr.split("@")[1]),
                      "</body>", "</html>"]
        html = "\n".join(html_lines) + "\n"
        if entities:
            html = "".join(c if ord(c) < 128 else "&#%d;" % ord(c) for c in html)
        plain_lines = []
        for title, url in items:
            plain_lines += ["* " + title, "  " + url, ""]
        plain_lines.append("Unsubscribe: https://%s/unsubscribe" % a.addr.split("@")[1])
        plain = "\n".join(plain_lines) + "\n"
        hp = self.text_part(html, "html", a, charset="utf-8",
                            cte=rng.choice(["quoted-printable", "base64",
                                            "7bit" if ascii_ok(html) else "8bit"]))
        if rng.random() < 0.5:
            return hp, plain_lines
        pp = self.text_part(plain, "plain", a)
        return self.multipart("alternative", [pp, hp], a), plain_lines

    # ---------------------------------------------------------- threads

    def pick_structure(self, m):
        rng = self.rng
        a = m.author
        cat = m.category
        if cat == "system":
            return "system" if rng.random() < 0.85 else "bare"
        if cat in ("announce", "receipt"):
            r = rng.random()
            if r < 0.55:
                return "newsletter"
            if r < 0.7 and cat == "receipt":
                return "attach_only"
            if r < 0.85:
                return "mixed"
            return "alt"
        r = rng.random()
        if r < 0.025:
            return "forward"
        if r < 0.04:
            return "signed"
        if r < 0.05:
            return "alt_html_first"
        if r < 0.06:
            return "mixed_html_then_plain"
        if r < 0.07:
            return "mixed_html_related"
        if r < 0.075:
            return "signed_mixed"
        if r < 0.08:
            return "empty"
        if r < 0.085 and cat in ("work", "personal"):
            return "attach_only"
        if r < 0.16:
            return "mixed"
        if rng.random() < a.mailer[2]:
            r2 = rng.random()
            if r2 < 0.12:
                return "html"
            if r2 < 0.25:
                return "alt_related"
            return "alt"
        return "plain" if rng.random() < 0.97 else "bare"

    def new_msg(self, cat, author, parent, when, subject=None, ref_style="both",
                structure=None, list_cat=None):
        m = Msg()
        m.category = cat
        m.author = author
        m.time = when
        if parent is None:
            m.subject = subject if subject is not None else self.subject_for(cat, author)
        else:
            m.subject = subject if subject is not None else self.reply_subject(parent)
            m.chain = parent.chain + [parent.msgid]
        m.msgid = self.new_id(author)
        m.folder = self.file_folder(m)
        if structure is None:
            structure = self.pick_structure(m)
        self.build(m, parent, structure, list_cat, ref_style)
        if parent is not None and author is self.me:
            parent.flags.add("R")
        self.msgs.append(m)
        return m

    def ref_style(self):
        r = self.rng.random()
        if r < 0.72:
            return "both"
        if r < 0.82:
            return "irt"
        if r < 0.9:
            return "refs"
        if r < 0.95:
            return "broken"
        return "subject"

    def delay(self):
        return int(min(6 * 86400, max(40, self.rng.lognormvariate(8.5, 1.3))))

    def thread(self, cat, size):
        rng = self.rng
        start = self.base + rng.randrange(0, 420 * 86400)
        list_cat = cat if cat in LISTS else None
        tag = LISTS[cat][3] if list_cat else None
        if cat == "system":
            host = rng.choice(["backup", "nas", "build"])
            auth = Person("Cron Daemon", "root@%s.asante.example" % host, 0,
                          ("cron", None, 0, 0, "mu"), rng.choice(["plain", "bare"]))
            m = Msg()
            m.category = cat
            m.author = auth
            m.time = start
            m.subject = rng.choice(["Cron <root@%s> run-parts /etc/cron.daily" % host,
                                    "Anacron job 'cron.daily' on %s" % host, "", None])
            m.msgid = None if rng.random() < 0.3 else "%d.%d@%s.asante.example" % (
                start, self.id_counter, host)
            self.id_counter += 1
            m.folder = self.file_folder(m)
            m.bare_id = m.msgid is not None and rng.random() < 0.5
            self.build(m, None, "system" if rng.random() < 0.85 else "bare", None, None)
            self.msgs.append(m)
            return
        if cat in ("announce", "receipt"):
            shop = rng.choice(self.people)
            auth = Person(rng.choice(["Kite Shop", "Fjord Rail", "correo release team",
                                      "Bäckerei Köhler", "Bücherstube Müller"]),
                          rng.choice(["noreply", "orders", "news"]) + "@" + rng.choice(DOMAINS),
                          shop.tz, MAILERS[rng.randrange(len(MAILERS))],
                          rng.choice(["plain", "quoted", "enc"]))
            auth.lang = rng.choice(["en", "en", "latin1", "utf8"])
            auth.cte = rng.choice(["quoted-printable", "base64", "8bit"])
            if cat == "announce":
                subj = rng.choice(["[ANN] correo %d.%d.%d released" % (
                    0, rng.randint(1, 9), rng.randint(0, 5)), "Security advisory CORREO-%d-%03d" % (
                    rng.choice([2025, 2026]), rng.randrange(1000)), "Call for testing: %s" % (
                    rng.choice(WORDS))])
            else:
                subj = rng.choice(["Your order #%d has shipped" % rng.randrange(10 ** 6),
                                   "Receipt for your payment",
                                   "Ihre Bestellung bei Bäckerei Köhler",
                                   "Rechnung %d-%04d" % (rng.choice([2025, 2026]),
                                                         rng.randrange(10000)),
                                   "Votre reçu n°%d" % rng.randrange(10 ** 5)])
            self.new_msg(cat, auth, None, start, subject=subj, list_cat=list_cat)
            return
        if cat == "users" and rng.random() < 0.08:
            lname, lhost = LISTS["users"][0], LISTS["users"][1]
            auth = Person(None, "%s-request@%s" % (lname, lhost), 0, MAILERS[4], "bare")
            self.new_msg(cat, auth, None, start, subject="%s Digest, Vol %d, Issue %d" % (
                lname, rng.randint(1, 9), rng.randint(1, 40)), structure="digest",
                list_cat=list_cat)
            return
        participants = rng.sample(self.people, rng.randint(2, 6))
        first = self.me if rng.random() < 0.12 else participants[0]
        subj = self.subject_for(cat, first)
        if tag and rng.random() < 0.8:
            subj = "[%s] %s" % (tag, subj)
        if cat == "patch":
            self.patch_series(first, participants, size, start, list_cat)
            return
        msgs = [self.new_msg(cat, first, None, start, subject=subj, list_cat=list_cat)]
        for _ in range(size - 1):
            parent = msgs[-1] if rng.random() < 0.55 else rng.choice(msgs)
            if rng.random() < 0.2 and parent.author is not self.me:
                author = self.me
            else:
                author = rng.choice([p for p in participants if p is not parent.author])
            style = self.ref_style()
            msgs.append(self.new_msg(cat, author, parent, parent.time + self.delay(),
                                     ref_style=style, list_cat=list_cat))

    def patch_series(self, author, participants, size, start, list_cat):
        rng = self.rng
        n = max(1, min(size - 1, rng.randint(1, 8)))
        v = rng.choice(["", "", " v2", " v3"])
        m0 = self.new_msg("patch", author, None, start, list_cat=list_cat,
                          subject="[PATCH%s 0/%d] %s: %s" % (v, n, rng.choice(COMPONENTS),
                                                            rng.choice(WORDS) + " cleanups"),
                          structure="plain")
        msgs = [m0]
        for i in range(1, n + 1):
            if len(msgs) >= size:
                return
            s = "[PATCH%s %d/%d] %s: %s %s" % (v, i, n, rng.choice(COMPONENTS),
                                              rng.choice(VERBS), rng.choice(WORDS))
            msgs.append(self.new_msg("patch", author, m0, start + i, subject=s,
                                     ref_style="both", structure="patch", list_cat=list_cat))
        while len(msgs) < size:
            parent = rng.choice(msgs)
            reviewer = rng.choice([p for p in participants + [self.me] if p is not author] or
                                  [self.me])
            msgs.append(self.new_msg("patch", reviewer, parent, parent.time + self.delay(),
                                     ref_style="both" if rng.random() < 0.9 else "irt",
                                     structure="plain", list_cat=list_cat))

    def generate(self):
        rng = self.rng
        weights = [c[1] for c in CATEGORIES]
        while len(self.msgs) < self.count:
            cat, _, lo, hi = rng.choices(CATEGORIES, weights)[0]
            size = lo if lo == hi else min(hi, max(lo, int(rng.lognormvariate(0.9, 0.8))))
            if hi >= 10 and rng.random() < 0.05:
                size = rng.randint(hi // 2, hi)       # the occasional long discussion
            size = min(size, self.count - len(self.msgs))
            self.thread(cat, size)
        self.msgs = self.msgs[:self.count]
        self.malform()
        self.msgs.sort(key=lambda m: m.time)

    # ---------------------------------------------------------- damage

    def malform(self):
        """Damage about 1% of the messages in ways a parser must survive."""
        rng = self.rng
        for m in self.msgs:
            if rng.random() >= 0.012 or m.malformed:
                continue
            kind = rng.choice(["bad-date", "no-colon", "unterminated-quote", "missing-close",
                               "broken-base64", "unknown-charset", "undeclared-8bit",
                               "invalid-utf8", "unknown-cte"])
            if self.damage(m, kind):
                m.malformed = kind

    def damage(self, m, kind):
        rng = self.rng
        root = m.root
        hs = root.headers
        best = best_text(root, True)
        if kind == "bad-date":
            i = header_index(hs, "Date")
            hs[i] = ("Date", rng.choice(["Someday soon", "32 Foo 2025 25:61:00 +9999",
                                         "yesterday at noon"]), "utf-8")
            m.exp["date"] = None
            m.expect = (["unparsable Date header"], [])
            return True
        if kind == "no-colon":
            i = header_index(hs, "From")
            hs.insert(i, ("raw", "X-Broken header line without a colon", "utf-8"))
            m.expect = (["header line without a colon"], [])
            return True
        if kind == "unterminated-quote":
            i = header_index(hs, "From")
            name = m.author.name or "Somebody"
            hs[i] = ("From", '"%s <%s>' % (name.replace('"', ""), m.author.addr), "utf-8")
            m.expect = (["unterminated quoted string"], ["from"])
            return True
        if kind == "missing-close":
            if not root.mime.startswith("multipart/"):
                return False
            root.closed = False
            m.expect = (["missing closing MIME boundary"], [])
            return True
        if best is None or best.text is None:
            return False
        if kind == "broken-base64":
            data = best.text.encode("utf-8")
            lines = b64_encode(data).split(b"\n")
            lines[0] = lines[0][:10] + b"!*" + lines[0][10:]
            best.body = b"\n".join(lines)
            set_header(best, "Content-Type", "text/%s; charset=utf-8" % best.mime[5:])
            set_header(best, "Content-Transfer-Encoding", "base64")
            m.expect = (["broken transfer encoding"], [])
            return True
        if kind in ("unknown-charset", "undeclared-8bit", "invalid-utf8"):
            text = best.text
            if not latin1_ok(text) or ascii_ok(text):
                text = text.rstrip("\n") + "\nMerci, à bientôt.\n"
                if not latin1_ok(text):
                    return False
                best.text = text
            best.body = text.encode("latin-1")
            cs = {"unknown-charset": "; charset=x-klingon-8bit",
                  "undeclared-8bit": "", "invalid-utf8": "; charset=utf-8"}[kind]
            set_header(best, "Content-Type", "text/%s%s" % (best.mime[5:], cs))
            set_header(best, "Content-Transfer-Encoding", "8bit")
            if kind == "invalid-utf8":
                m.expect = (["invalid bytes"], ["text"])
            else:
                m.expect = (["charset unknown or wrong"], [])
            return True
        if kind == "unknown-cte":
            set_header(best, "Content-Transfer-Encoding", "x-token-%d" % rng.randrange(100))
            if not ascii_ok(best.text):
                best.body = best.text.encode("utf-8")
                set_header(best, "Content-Type", "text/%s; charset=utf-8" % best.mime[5:])
            else:
                best.body = best.text.encode("ascii")
            m.expect = (['unknown Content-Transfer-Encoding'], [])
            return True
        return False

    # ---------------------------------------------------------- output

    def assign_flags(self):
        rng = self.rng
        for m in self.msgs:
            f = m.flags
            if m.folder == "Drafts":
                f.add("D")
                continue
            if m.folder != "Sent" and rng.random() < 0.05:
                m.new = True
                f.clear()
                continue
            if rng.random() < 0.9 or m.folder == "Sent" or "R" in f:
                f.add("S")
            if rng.random() < 0.05:
                f.add("F")
            if rng.random() < 0.01:
                f.add("P")
            if m.folder != "Trash" and rng.random() < 0.01:
                f.add("T")

    def write(self, outdir, manifest):
        rng = self.rng
        self.assign_flags()
        for d in ["cur", "new", "tmp"]:
            os.makedirs(os.path.join(outdir, d), exist_ok=True)
        for f in self.folders:
            for d in ["cur", "new", "tmp"]:
                os.makedirs(os.path.join(outdir, "." + f, d), exist_ok=True)
            marker = os.path.join(outdir, "." + f, "maildirfolder")
            with open(marker, "wb"):
                pass
            os.utime(marker, (self.base, self.base))
        out = open(manifest, "w", encoding="utf-8") if manifest else None
        for q, m in enumerate(self.msgs, 1):
            data = serialize(m.root)
            if m.crlf:
                data = data.replace(b"\n", b"\r\n")
            elif m.crlf_headers:
                end = data.find(b"\n\n")
                end = len(data) if end < 0 else end + 2
                data = data[:end].replace(b"\n", b"\r\n") + data[end:]
            t = m.time + rng.randrange(1, 300)
            flags = "".join(sorted(m.flags))
            base = "%d.M%dP%dQ%d.corpus,S=%d" % (t, rng.randrange(10 ** 6),
                                                 rng.randrange(300, 60000), q, len(data))
            sub = "" if m.folder == "INBOX" else "." + m.folder + "/"
            rel = sub + ("new/" + base if m.new else "cur/" + base + ":2," + flags)
            path = os.path.join(outdir, rel)
            with open(path, "wb") as fh:
                fh.write(data)
            os.utime(path, (t, t))
            if out:
                out.write(json.dumps(self.manifest_entry(m, rel, flags), ensure_ascii=False,
                                     sort_keys=True) + "\n")
        if out:
            out.close()

    def manifest_entry(self, m, rel, flags):
        best = best_text(m.root, True)
        e = dict(m.exp)
        e["path"] = rel
        e["folder"] = m.folder
        e["flags"] = "" if m.new else flags
        e["parts"] = part_types(m.root)
        e["text"] = best.text if best else None
        e["text_type"] = None if best is None else best.mime[5:]
        if m.malformed:
            e["malformed"] = m.malformed
            e["expect_warnings"], e["skip"] = m.expect
        return e


def header_index(headers, name):
    return next(i for i, h in enumerate(headers) if h[0].lower() == name.lower())


def set_header(p, name, value):
    for i, h in enumerate(p.headers):
        if h[0].lower() == name.lower():
            p.headers[i] = (name, value, "utf-8")
            return
    p.headers.append((name, value, "utf-8"))


def best_text(p, top):
    """The best text part of the model by the rules in lib/message.h."""
    if p.mime in ("text/plain", "text/html"):
        if p.disposition not in (None, "inline"):
            return None
        return p
    is_msg = p.mime.startswith("message/")
    if is_msg and not top:
        return None
    first_html = None
    for c in p.children:
        r = best_text(c, top and is_msg)
        if r is not None and r.mime == "text/plain":
            return r
        if r is not None and first_html is None:
            first_html = r
    return first_html


def walk(p):
    yield p
    for c in p.children:
        yield from walk(c)


def part_types(p):
    out = [p.mime]
    for c in p.children:
        out += part_types(c)
    return out


def serialize(p):
    chunks = []
    for name, value, enc in p.headers:
        line = value if name == "raw" else fold_header(name, value, p.fold_ws)
        chunks.append(line.encode(enc) + b"\n")
    if p.headers_only:
        return b"".join(chunks)
    chunks.append(b"\n")
    if p.mime.startswith("multipart/"):
        b = p.boundary.encode("ascii")
        if p.preamble:
            chunks.append(p.preamble.encode("ascii") + b"\n")
        pad = p.pad.encode("ascii")
        for i, c in enumerate(p.children):
            chunks.append(b"--" + b + pad + b"\n" + serialize(c))
            if i + 1 < len(p.children) or p.closed:
                chunks.append(b"\n")
        if p.closed:
            chunks.append(b"--" + b + b"--" + pad + b"\n")
            if p.epilogue:
                chunks.append(p.epilogue.encode("ascii"))
    elif p.mime == "message/rfc822":
        chunks.append(serialize(p.children[0]))
    else:
        chunks.append(p.body)
    return b"".join(chunks)


def main():
    ap = argparse.ArgumentParser(description="Generate a deterministic Maildir++ test corpus.")
    ap.add_argument("outdir")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--folders", type=int, default=5,
                    help="number of subfolders, 0..%d (default 5)" % len(FOLDERS))
    ap.add_argument("--manifest", help="write the expected parse results here (JSON lines)")
    args = ap.parse_args()
    if args.count < 0:
        ap.error("--count must not be negative")
    if not 0 <= args.folders <= len(FOLDERS):
        ap.error("--folders must be between 0 and %d" % len(FOLDERS))
    if os.path.exists(args.outdir) and os.listdir(args.outdir):
        ap.error("%s exists and is not empty" % args.outdir)
    if args.manifest:
        man = os.path.abspath(args.manifest)
        top = os.path.abspath(args.outdir)
        if man.startswith(top + os.sep):
            ap.error("the manifest must not be written inside the Maildir")
    g = Gen(args.seed, args.count, args.folders)
    g.generate()
    g.write(args.outdir, args.manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
