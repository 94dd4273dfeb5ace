"""Run a command with stderr on a pseudo-terminal, and replay what it drew like a terminal would.

`Screen` understands what rich's live display sends (carriage return, newline, cursor up, erase
line, SGR colours, cursor show/hide): enough to tell what is left on the screen at the end, which
is what a person sees, rather than every intermediate frame of the byte stream.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import threading
from pathlib import Path

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_OSC = re.compile(r"\x1b\][^\x07]*\x07")
BOX_CHARS = set("─━│┃┌┍┎┏┐┑┒┓└┕┖┗┘┙┚┛├┝┞┟┠┡┢┣┤┥┦┧┨┩┪┫┬┭┮┯┰┱┲┳┴┵┶┷┸┹┺┻┼┽┾┿╀╁╂╃╄╅╆╇╈╉╊╋╭╮╯╰═║╔╗╚╝")


class Screen:
    """A terminal of unlimited height: lines of text and a cursor."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = [[]]
        self.row = 0
        self.col = 0

    def feed(self, text: str) -> None:
        text = _OSC.sub("", text)
        pos = 0
        for match in _CSI.finditer(text):
            self._write(text[pos : match.start()])
            self._control(match.group(1), match.group(2))
            pos = match.end()
        self._write(text[pos:])

    def _write(self, text: str) -> None:
        for ch in text:
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
                self.col = 0
                while len(self.lines) <= self.row:
                    self.lines.append([])
            elif ch == "\x1b" or ch in "\x07\x08":
                continue
            else:
                line = self.lines[self.row]
                while len(line) < self.col:
                    line.append(" ")
                if self.col < len(line):
                    line[self.col] = ch
                else:
                    line.append(ch)
                self.col += 1

    def _control(self, params: str, command: str) -> None:
        n = int(params) if params.isdigit() else 1
        if command == "A":  # cursor up
            self.row = max(0, self.row - n)
        elif command == "B":
            self.row += n
            while len(self.lines) <= self.row:
                self.lines.append([])
        elif command == "K":  # erase line (0: to the end, 2: whole line)
            line = self.lines[self.row]
            if params in ("", "0"):
                del line[self.col :]
            else:
                line.clear()
        elif command == "J":  # erase below
            del self.lines[self.row + 1 :]
            del self.lines[self.row][self.col :]
        elif command == "G":  # column
            self.col = max(0, n - 1)
        # colours (m), cursor visibility (h/l) and the rest change nothing visible here

    def text(self) -> list[str]:
        """The screen's lines, trailing blanks removed."""
        out = ["".join(line).rstrip() for line in self.lines]
        while out and not out[-1]:
            out.pop()
        return out


def run_with_tty_stderr(
    cmd: list[str], env: dict[str, str], cwd: Path | str | None = None, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run `cmd` with stdout on a pipe and stderr on a pseudo-terminal; returns (result, tty output)."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the slave side closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        result = subprocess.run(
            cmd, env={"TERM": "xterm-256color", "COLUMNS": "100", **env}, cwd=cwd, stdout=subprocess.PIPE,
            stderr=slave, stdin=subprocess.DEVNULL, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    finally:
        os.close(slave)
        reader.join(timeout=5)
        os.close(master)
    return result, b"".join(chunks).decode("utf-8", "replace")
