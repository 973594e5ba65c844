#!/usr/bin/python3
"""seeds.py: write the seed corpora of the fuzz targets.

usage: seeds.py OUTDIR

Writes OUTDIR/message, OUTDIR/render, OUTDIR/rcfile, OUTDIR/pattern,
OUTDIR/smtp, OUTDIR/pop3d and OUTDIR/imap_parse:
  message, render   300 messages of tests/tools/gen-corpus.py (seed 9) plus
                    the handcrafted hostile messages below, and the inputs
                    in regress/message (render also regress/render)
  rcfile            keymaps/*.keys, themes/*.theme, handcrafted correorc
                    texts; the first byte of each is the loader option byte
  pattern           the patterns quoted in tests/unit/test_pattern.c and
                    the handcrafted ones below, each with option byte 0 and 1
  smtp              the SMTP sessions in seeds/smtp (option byte first) and
                    the inputs in regress/smtp
  pop3d             the POP3 sessions in seeds/pop3d (option byte first) and
                    the inputs in regress/pop3d
  imap_parse        the IMAP client inputs in seeds/imap_parse (option byte
                    first) and the inputs in regress/imap_parse
The output is the same on every run.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))


def deep():
    s = "From: a@b\nSubject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n"
    for i in range(25):
        s += "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1)
    return s + "--b25\nContent-Type: text/plain\n\nleaf\n--b25--\n"


MESSAGES = {
    "deep": deep(),
    "boundaries":
        "Content-Type: multipart/alternative; boundary=\"x\"\r\n\r\npreamble\r\n"
        "--x\r\n\r\nno headers\r\n--x \r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<p>hi &amp; <b>bye</b>\r\n--x\r\n--x--\r\nepilogue\r\n--x\r\nafter close\r\n",
    "missing_close":
        "Content-Type: multipart/mixed; boundary=zz\n\n--zz\n"
        "Content-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: quoted-printable\n\n"
        "caf=E9 =\nsoft=3D=\n=4\n=ZZ end=",
    "b64":
        "Subject: b64\nContent-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: base64\n\nw6nDqcOp\n=Zm9v\nYm==Fy\n!!!!\nQUJD\nQQ\n",
    "rfc2047":
        "From: =?utf-8?B?w6lsw6k=?= <e@x>, =?iso-8859-1?Q?Andr=E9?= <a@x>, "
        "=?bogus?Q?x?= <b@x>\n"
        "Subject: =?utf-8?Q?a_b?= =?utf-8?Q?c?=  =?utf-8*en?B?w6k=?= =?UTF-8?B?8J+Y?= "
        "=?UTF-8?B?gA==?= =?x?q?=?= =??B??= =?utf-8?B?====?=\n"
        "To: \"unterminated <u@x>, v@x\n"
        "Cc: (comment) c@x (Name), group: g1@x, g2@x;, <@route,@r2:real@x>\n"
        "Date: Tue, 31 Feb 2025 25:61:61 +9999\n\nbody\n",
    "rfc2231":
        "Content-Type: multipart/mixed; boundary=q\n\n--q\n"
        "Content-Type: application/octet-stream; name*1=\"b.txt\"; "
        "name*0*=utf-8'en'%C3%A9; name*99999999=x; name*=\"\"\n"
        "Content-Disposition: attachment; filename*0*=iso-8859-1''%E9%; "
        "filename*2=z; filename*1*=%zz%4\n\ndata\n--q\n"
        "Content-Type: text/plain; charset*=utf-8''utf-8; format=flowed; delsp=yes\n\n"
        "flowed line \n> quoted flowed \n>> deeper\n-- \nsig\n--q--\n",
    "rfc822":
        "Content-Type: message/rfc822\n\nFrom: inner@x\nSubject: inner\n"
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\nFrom: digest@x\n"
        "Subject: in digest\n\ntext\n--d\nContent-Type: message/rfc822\n"
        "Content-Transfer-Encoding: base64\n\nRnJvbTogeEB5Cgp0ZXh0Cg==\n--d--\n",
    "html":
        "Content-Type: text/html; charset=windows-1252\n\n<html><head><title>t</title>"
        "<style>x{}</style></head><body><!-- c --><blockquote><blockquote><p>q&#x41;"
        "&#0;&#xD800;&#1114112;&#150;&nbsp;&eacute;&unknown;&#99999999999;</p>"
        "</blockquote></blockquote><pre>\tpre  \x1b[31m</pre><a href=\"http://x\">"
        "link</a><a href=\"mailto:a@x\">a@x</a><img alt=\"pic\"><ul><li>one<ol><li>two"
        "</ol></ul><hr><table><tr><td>a<td>b</table><script>alert(1)</script>"
        "<![CDATA[ x ]]><?pi?><!doctype html>\x93quoted\x94</body>",
    "controls":
        b"Subject: \x1b]0;title\x07 \x9b31m \xe2\x80\xae evil \x00nul\r\n"
        b"From: \x1b[2J<x@y>\r\nX-Label: \xff\xfe\r\n\r\n\x1b[31mred\x1b[0m\ttab\x08bs\r\n"
        b"line\rcr\n\xe2\x80\x8f\xe2\x81\xa6\xe3\x81\x82\xe3\x81\x82\xcc\x81\xcc\x81 wide\n",
    "charsets":
        b"Content-Type: multipart/mixed; boundary=c\n\n--c\n"
        b"Content-Type: text/plain; charset=utf-16\nContent-Transfer-Encoding: base64\n\n"
        b"//5hAGIA\n--c\nContent-Type: text/plain; charset=utf-7\n\n+AOk-+AOk\n--c\n"
        b"Content-Type: text/plain; charset=iso-2022-jp\n\n\x1b$B$\"\x1b(B\x1b$B\n--c\n"
        b"Content-Type: text/plain; charset=gb18030\n\n\x81\x30\x81\x30\x81\n--c\n"
        b"Content-Type: text/plain; charset=\"utf-32le\"\n\nabc\n--c\n"
        b"Content-Type: text/plain; charset=../../etc/passwd\n\nx\n--c--\n",
    "refs":
        "Message-ID: <<<a@b>>>\nIn-Reply-To: foo bar <\n"
        "References: <a@b> <> < > <c d@e> <" + "x" * 100 + ">  <unterminated\n"
        "List-Id: List <list.example.org>\nList-Post: <mailto:l@x>, <http://x>\n\n",
    "folded":
        "Subject: a\n b\n\tc\n \nFrom:\n a@b\n  \nX:y\nno colon line\n: empty name\n\n\nbody\n",
    "empty": "",
    "onlyheader": "Content-Type: multipart/mixed; boundary=\n",
    "cr_only": "Subject: cr\rContent-Type: text/plain\r\rbody\r",
}

RCFILES = {
    "basic":
        "set sort=reverse-threads; set pager_index_lines=10\n"
        "set editor=\"vim +/^$ '+set tw=72'\"\nunset markers\nset ?sort\n"
        "set my_var=\"${HOME}/mail\" my_x=$my_var\nmailboxes +inbox =lists \"+with space\"\n"
        "alias ana Ana P\\351rez <ana@example.org>\nignore *\nunignore from: subject to cc\n"
        "hdr_order from subject\nmy_hdr X-Mailer: correo\n",
    "escapes":
        "macro index \\Cx \"<save-message>=archive<enter>\" \"archive\"\n"
        "bind pager \\e[A previous-line\nbind index \\cF next-page\n"
        "push \\n\\t\\r\\f\\e\\101\\777\\000\nset status_format='%f \\n $x'\n"
        "set quote_regexp=\"^([ \\t]*[|>:}#])+\"\n",
    "quotes":
        "set a='unterminated\nset b=\"also unterminated\nset c=`date`\n"
        "set d=\"line \\\ncontinued\"\nset e=x\\\n y\n# comment\nset f=x#notcomment\n"
        "set g=${unterminated\nset h=${}\n;;;\n\\",
    "hooks":
        "folder-hook . 'set sort=date'\nsend-hook '~t ana' 'set signature=~/.sig'\n"
        "color index red default '~F'\ncolor body brightyellow default \"[a-z]+@[a-z.]+\"\n"
        "mono quoted bold\ntheme dusk\nkeymap vim\nsubscribe dev@lists.example.org\n"
        "lists '.*@lists\\.example\\.org'\nalternates 'ana@(work|home)\\.org'\n"
        "auto_view text/html\nalternative_order text/plain text/html\n",
    "source":
        "source /nonexistent\nsource ~/missing\nsource\nsource a b\nsource .\n",
}

PATTERNS = [
    "~s re(ply|fwd)", "(~s foo) | !(~f \"a b\" =t 'x|y')", "~d 15/1/2025*2w",
    "~d 1/1/70-31/12/69", "~d <1y", "~d =3H", "~r >2m", "~z 1K-2M", "~z <10G",
    "~z -5", "~h '^X-Label: todo'", "~B caf\u00e9", "=b \\(x\\)", "~b \\.", "~L ana",
    "~C bob ~p", "~e x@y ~v", "((((~A))))", "!!!~A", "~s \"\" ", "~i '' | ~y", "~Q",
    "%f x", "~d 99/99/9999", "~z 99999999999999999999G", "~d 01/02-",
    "~d -03/04/05+1d-2w*3m", "alice bob", "~s [[:alpha:]]+$", "~d<1d", "~x a1@",
    "~N ~O | ~U ~R ~T ~D ~F ~l", "=s 'a\\b' =f \"x\\\"y\"",
]


def write(path, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)


def copy_dir(src, dst, prefix):
    if not os.path.isdir(src):
        return
    for name in sorted(os.listdir(src)):
        shutil.copyfile(os.path.join(src, name), os.path.join(dst, prefix + name))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    dirs = {k: os.path.join(out, k) for k in ("message", "render", "rcfile", "pattern", "smtp",
                                      "pop3d", "imap_parse")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, os.path.join(SRC, "tests/tools/gen-corpus.py"),
                        os.path.join(tmp, "md"), "--count", "300", "--seed", "9"],
                       check=True)
        n = 0
        for root, _, files in sorted(os.walk(os.path.join(tmp, "md"))):
            for f in sorted(files):
                p = os.path.join(root, f)
                if os.path.getsize(p) == 0:
                    continue
                for k in ("message", "render"):
                    shutil.copyfile(p, os.path.join(dirs[k], "gen%03d" % n))
                n += 1
    for name, text in MESSAGES.items():
        for k in ("message", "render"):
            write(os.path.join(dirs[k], name + ".eml"), text)
    for k in ("message", "render"):
        copy_dir(os.path.join(HERE, "regress", "message"), dirs[k], "regress-")
    copy_dir(os.path.join(HERE, "regress", "render"), dirs["render"], "regress-")

    for sub, ext in (("keymaps", ".keys"), ("themes", ".theme")):
        d = os.path.join(SRC, sub)
        for f in sorted(os.listdir(d)):
            if f.endswith(ext):
                with open(os.path.join(d, f), "rb") as fh:
                    write(os.path.join(dirs["rcfile"], f), b"\x01" + fh.read())
    for name, text in RCFILES.items():
        write(os.path.join(dirs["rcfile"], name), b"\x00" + text.encode("latin-1"))
        write(os.path.join(dirs["rcfile"], name + "-noenv"), b"\x03" + text.encode("latin-1"))
    copy_dir(os.path.join(HERE, "regress", "rcfile"), dirs["rcfile"], "regress-")

    pats = set(PATTERNS)
    with open(os.path.join(SRC, "tests/unit/test_pattern.c"), encoding="utf-8") as f:
        for m in re.finditer(r'\{\s*"((?:[^"\\]|\\.)*)"\s*,', f.read()):
            s = m.group(1).replace('\\"', '"').replace("\\\\", "\\")
            if s and any(c in s for c in "~=!("):
                pats.add(s)
    for i, p in enumerate(sorted(pats)):
        for flag in (0, 1):
            write(os.path.join(dirs["pattern"], "p%03d-%d" % (i, flag)),
                  bytes([flag]) + p.encode("utf-8"))
    copy_dir(os.path.join(HERE, "regress", "pattern"), dirs["pattern"], "regress-")

    copy_dir(os.path.join(HERE, "seeds", "smtp"), dirs["smtp"], "")
    copy_dir(os.path.join(HERE, "regress", "smtp"), dirs["smtp"], "regress-")
    copy_dir(os.path.join(HERE, "seeds", "pop3d"), dirs["pop3d"], "")
    copy_dir(os.path.join(HERE, "regress", "pop3d"), dirs["pop3d"], "regress-")
    copy_dir(os.path.join(HERE, "seeds", "imap_parse"), dirs["imap_parse"], "")
    copy_dir(os.path.join(HERE, "regress", "imap_parse"), dirs["imap_parse"], "regress-")


if __name__ == "__main__":
    main()
