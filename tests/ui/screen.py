"""Drive a program in a pseudo-terminal and read its screen as a person sees it.

The program runs under pexpect in a pty of a fixed size; everything it writes
is fed to a pyte screen, so tests assert on the rendered characters and on
their attributes, never on raw escape sequences.  Waits are on conditions
with a deadline, never fixed sleeps.

Also records every byte the program wrote (Term.raw), so a test can prove
that bytes from a hostile message never reached the terminal.
"""
import os
import time

import pexpect
import pyte


class Timeout(AssertionError):
    pass


class _Screen(pyte.Screen):
    """pyte's screen plus what ncurses sends for xterm-256color and this pyte
    does not know: REP (CSI Ps b, repeat the last character) and SU/SD
    (CSI Ps S / CSI Ps T, scroll the region up / down)."""

    def _scroll(self, count, up):
        count = max(int(count or 1), 1)
        top, bottom = (self.margins.top, self.margins.bottom) if self.margins \
            else (0, self.lines - 1)
        saved = (self.cursor.x, self.cursor.y)
        self.cursor.y = bottom if up else top
        for _ in range(count):
            if up:
                self.index()
            else:
                self.reverse_index()
        self.cursor.x, self.cursor.y = saved

    def scroll_up(self, count=1, *args, **kwargs):
        self._scroll(count, True)

    def scroll_down(self, count=1, *args, **kwargs):
        self._scroll(count, False)

    _last = " "

    def draw(self, data):
        if data:
            self._last = data[-1]
        super().draw(data)

    def repeat_last(self, count=1, *args, **kwargs):
        self.draw(self._last * max(int(count or 1), 1))


class _Stream(pyte.ByteStream):
    csi = dict(pyte.ByteStream.csi, b="repeat_last", S="scroll_up", T="scroll_down")


class Term:
    def __init__(self, argv, cols=100, rows=30, env=None, cwd=None):
        self.cols, self.rows = cols, rows
        self.screen = _Screen(cols, rows)
        self.stream = _Stream(self.screen)
        self.raw = bytearray()
        full_env = dict(os.environ)
        full_env.update({"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
        if env:
            full_env.update(env)
        self.child = pexpect.spawn(argv[0], argv[1:], env=full_env, cwd=cwd,
                                   dimensions=(rows, cols), echo=False)

    # -- reading -----------------------------------------------------------
    def pump(self, timeout=0.05):
        """Read whatever the program wrote within timeout seconds."""
        try:
            while True:
                data = self.child.read_nonblocking(65536, timeout=timeout)
                self.raw += data
                self.stream.feed(data)
                timeout = 0.01
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            pass

    def lines(self):
        return [line.rstrip() for line in self.screen.display]

    def text(self):
        return "\n".join(self.lines())

    def wait_for(self, cond, timeout=10.0, what=None):
        """Wait until cond(self) is true (or a string appears on screen)."""
        if isinstance(cond, str):
            needle = cond
            what = what or repr(needle)
            cond = lambda t: needle in t.text()
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if cond(self):
                return
            if time.monotonic() > deadline:
                raise Timeout("timed out waiting for %s; screen:\n%s" % (what, self.text()))
            if not self.child.isalive():
                self.pump()
                if cond(self):
                    return
                raise Timeout("program exited (%s) waiting for %s; screen:\n%s"
                              % (self.child.exitstatus, what, self.text()))

    def wait_gone(self, needle, timeout=10.0):
        self.wait_for(lambda t: needle not in t.text(), timeout, "%r to disappear" % needle)

    # -- writing -----------------------------------------------------------
    def send(self, keys):
        self.child.send(keys)

    def resize(self, cols, rows):
        self.cols, self.rows = cols, rows
        self.screen.resize(rows, cols)
        self.child.setwinsize(rows, cols)

    def wait_exit(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while self.child.isalive():
            self.pump()
            if time.monotonic() > deadline:
                raise Timeout("program did not exit; screen:\n%s" % self.text())
        self.pump()
        self.child.close()
        return self.child.exitstatus

    def close(self):
        if self.child.isalive():
            self.child.terminate(force=True)
