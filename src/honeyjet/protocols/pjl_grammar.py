"""PJL command-line grammar (pure): one line of bytes in, a :class:`Command` out.

Rules (HP PJL Technical Reference, ch. 2): the ``@PJL`` prefix is upper case; every
other word is case-insensitive; spaces and tabs separate words; ``KEY=value``,
``KEY = value`` and ``KEY = "quoted value"`` are the same option; a modifier is
``WORD : value`` (``LPARM : PCL``, ``FORMAT:BINARY``); CR before LF is optional.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PREFIX = b"@PJL"
_SEP = " \t\r\x0b"


@dataclass(frozen=True, slots=True)
class Option:
    key: str  # upper case
    value: str | None  # as sent (without quotes)
    quoted: bool = False

    def text(self) -> str:
        if self.value is None:
            return self.key
        return f'{self.key}="{self.value}"' if self.quoted else f"{self.key}={self.value}"


@dataclass(frozen=True, slots=True)
class Command:
    command: str  # upper case; "" for a bare "@PJL"
    modifier: tuple[str, str] | None = None  # ("LPARM", "PCL")
    words: tuple[str, ...] = ()  # bare words after the command, as sent
    options: tuple[Option, ...] = ()
    rest: str = ""  # everything after the command word, stripped (ECHO, COMMENT)
    truncated: bool = False
    tokens: tuple[str, ...] = field(default=(), repr=False)

    def option(self, key: str) -> Option | None:
        for opt in self.options:
            if opt.key == key:
                return opt
        return None

    def value(self, key: str) -> str | None:
        opt = self.option(key)
        return None if opt is None else opt.value

    @property
    def modifier_text(self) -> str:
        return f"{self.modifier[0]}:{self.modifier[1]}" if self.modifier else ""

    def normalized(self) -> str:
        """The command as a printer echoes it, without the ``@PJL`` prefix."""
        if self.command in ("ECHO", "COMMENT"):
            return f"{self.command} {self.rest}".rstrip()
        parts = [self.command]
        if self.modifier:
            parts.append(self.modifier_text)
        parts.extend(w.upper() for w in self.words)
        parts.extend(o.text() for o in self.options)
        return " ".join(p for p in parts if p)


def _tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens: kind is 'w' word, 's' string, '=' or ':'."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _SEP:
            i += 1
        elif ch == '"':
            end = text.find('"', i + 1)
            if end == -1:
                end = n
            tokens.append(("s", text[i + 1 : end]))
            i = end + 1
        elif ch in "=:":
            tokens.append((ch, ch))
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SEP and text[j] not in '"=:':
                j += 1
            tokens.append(("w", text[i:j]))
            i = j
    return tokens


def parse_line(line: bytes, *, truncated: bool = False) -> Command | None:
    """Parse one line (without its LF). None when it is not a PJL command.

    Total: any bytes in, a Command or None out. Bytes are read as latin-1 so every
    byte value survives into the fields (escaped later for display).
    """
    if not line.startswith(PREFIX):
        return None
    after = line[len(PREFIX) :]
    if after and after[:1] not in b" \t\r\x0b":
        return None  # "@PJLX…" is not the PJL prefix
    text = after.decode("latin-1")
    stripped = text.strip(_SEP)
    if not stripped:
        return Command("", truncated=truncated)
    toks = _tokenize(stripped)
    if not toks or toks[0][0] != "w":
        return Command(stripped[:32].upper(), truncated=truncated, rest=stripped)
    command = toks[0][1].upper()
    rest = stripped[len(toks[0][1]) :].strip(_SEP)
    body = toks[1:]
    modifier: tuple[str, str] | None = None
    if len(body) >= 3 and body[0][0] == "w" and body[1][0] == ":" and body[2][0] in "ws":
        modifier = (body[0][1].upper(), body[2][1].upper())
        body = body[3:]
    words: list[str] = []
    options: list[Option] = []
    i = 0
    while i < len(body):
        kind, val = body[i]
        if kind in "ws" and i + 1 < len(body) and body[i + 1][0] == "=":
            if i + 2 < len(body) and body[i + 2][0] in "ws":
                vkind, vval = body[i + 2]
                options.append(Option(val.upper(), vval, vkind == "s"))
                i += 3
            else:
                options.append(Option(val.upper(), "", False))
                i += 2
        elif kind == "w":
            words.append(val)
            i += 1
        elif kind == "s":
            words.append(val)
            i += 1
        else:
            i += 1  # stray '=' or ':'
    return Command(
        command,
        modifier,
        tuple(words),
        tuple(options),
        rest,
        truncated,
        tuple(v for _, v in toks),
    )
