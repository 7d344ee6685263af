"""Console accounts, login sessions and the login rate limit.

* **Users** live in ``<data>/console-users.toml`` (mode 0600), one ``[users.<name>]``
  table each, written by ``honeyjet console adduser``. A password is stored as
  ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (``hashlib.scrypt``, 16 random bytes of salt,
  base64), checked with :func:`hmac.compare_digest`. An unknown name costs the same
  scrypt work as a known one, so timing does not tell which names exist.
* **Sessions** are server-side: the cookie holds 32 random bytes; the store keeps the
  user, a per-session CSRF token, the creation and last-use times. A session ends after
  :data:`IDLE_TIMEOUT` without use, after :data:`MAX_AGE` in any case, and at logout.
  A login always starts a new session (no fixation).
* **The login rate limit** counts failures per source address and per user name in a
  sliding window; past the threshold the key is locked out until the window has passed,
  whatever the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)
USERS_FILE = "console-users.toml"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# scrypt cost: 2**15 * 8 * 128 bytes = 32 MiB and about 0.1 s per check
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_MAX_N = 2**20  # refuse absurd costs read from a file
MIN_PASSWORD = 10
MAX_PASSWORD = 1024

IDLE_TIMEOUT = 30 * 60.0
MAX_AGE = 12 * 3600.0
MAX_SESSIONS = 10_000


class UserFileError(ValueError):
    """The users file cannot be read or written; the message names the file."""


# -- passwords ----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; False for any malformed record."""
    try:
        scheme, n_s, r_s, p_s, salt_s, hash_s = stored.split("$")
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt, expected = base64.b64decode(salt_s, validate=True), base64.b64decode(hash_s, validate=True)
    except (ValueError, TypeError):
        return False
    if scheme != "scrypt" or not (2 <= n <= _MAX_N) or n & (n - 1) or not (1 <= r <= 32) or not (1 <= p <= 16) or not expected:
        return False
    digest = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                            maxmem=256 * n * r + (1 << 20), dklen=len(expected))
    return hmac.compare_digest(digest, expected)


# a record no password matches, checked for unknown names so they cost the same time
_DUMMY = hash_password(secrets.token_urlsafe(16))


# -- the users file -----------------------------------------------------------------


def users_path(data_dir: Path) -> Path:
    return Path(data_dir) / USERS_FILE


def load_users(path: Path) -> dict[str, str]:
    """name → password record; an absent file is no users."""
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UserFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserFileError(f"{path}: not valid TOML: {exc}") from None
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o); chmod 600 it", path, mode & 0o777)
    users: dict[str, str] = {}
    for name, entry in (doc.get("users") or {}).items():
        if not NAME_RE.fullmatch(name) or not isinstance(entry, dict) or not isinstance(entry.get("password"), str):
            raise UserFileError(f"{path}: users.{name}: needs a valid name and a password record")
        users[name] = entry["password"]
    return users


def _render(users: dict[str, dict[str, str]]) -> str:
    lines = ["# honeyjet console users, written by `honeyjet console adduser` (keep mode 0600)", ""]
    for name in sorted(users):
        lines.append(f"[users.{name}]")  # NAME_RE: a bare TOML key
        for key in ("password", "created"):
            value = users[name].get(key, "")
            if not re.fullmatch(r"[A-Za-z0-9$+/=:.TZ-]*", value):
                raise UserFileError(f"users.{name}.{key}: unexpected characters")
            lines.append(f'{key} = "{value}"')
        lines.append("")
    return "\n".join(lines)


def add_user(path: Path, name: str, password: str, *, n: int = SCRYPT_N) -> bool:
    """Add or replace ``name``; returns True when it replaced an existing user."""
    if not NAME_RE.fullmatch(name):
        raise UserFileError(f"user name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if not (MIN_PASSWORD <= len(password) <= MAX_PASSWORD):
        raise UserFileError(f"password: use {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    existing: dict[str, dict[str, str]] = {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        existing = {k: {kk: str(vv) for kk, vv in v.items()} for k, v in (doc.get("users") or {}).items()}
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserFileError(f"{path}: cannot read: {exc}") from None
    replaced = name in existing
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    existing[name] = {"password": hash_password(password, n=n), "created": created}
    data = _render(existing).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return replaced


class Users:
    """The users file, re-read when it changes (adduser while the console runs)."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, str] = {}

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._users = load_users(self.path) if stamp else {}
            self._stamp = stamp

    def __len__(self) -> int:
        self._refresh()
        return len(self._users)

    def check(self, name: str, password: str) -> bool:
        self._refresh()
        if len(password) > MAX_PASSWORD:
            return False
        record = self._users.get(name)
        ok = verify_password(password, record if record is not None else _DUMMY)
        return ok and record is not None


# -- sessions -----------------------------------------------------------------------


@dataclass
class LoginSession:
    user: str
    csrf: str
    created: float
    last_seen: float


@dataclass
class SessionStore:
    idle_timeout: float = IDLE_TIMEOUT
    max_age: float = MAX_AGE
    max_sessions: int = MAX_SESSIONS
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, LoginSession] = field(default_factory=dict)

    @staticmethod
    def _key(token: str) -> str:
        # the store is keyed by a digest: a memory dump does not hand out live cookies
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    def create(self, user: str) -> tuple[str, LoginSession]:
        now = self.clock()
        self.expire()
        while len(self._sessions) >= self.max_sessions:
            oldest = min(self._sessions, key=lambda k: self._sessions[k].last_seen)
            del self._sessions[oldest]
        token = secrets.token_urlsafe(32)
        sess = LoginSession(user, secrets.token_urlsafe(32), now, now)
        self._sessions[self._key(token)] = sess
        return token, sess

    def get(self, token: str | None) -> LoginSession | None:
        if not token or len(token) > 128:
            return None
        key = self._key(token)
        sess = self._sessions.get(key)
        if sess is None:
            return None
        now = self.clock()
        if now - sess.last_seen > self.idle_timeout or now - sess.created > self.max_age:
            del self._sessions[key]
            return None
        sess.last_seen = now
        return sess

    def peek(self, token: str | None) -> bool:
        """Still valid (without counting as use)."""
        if not token or len(token) > 128:
            return False
        sess = self._sessions.get(self._key(token))
        now = self.clock()
        return sess is not None and now - sess.last_seen <= self.idle_timeout and now - sess.created <= self.max_age

    def drop(self, token: str | None) -> None:
        if token:
            self._sessions.pop(self._key(token), None)

    def expire(self) -> None:
        now = self.clock()
        dead = [k for k, s in self._sessions.items()
                if now - s.last_seen > self.idle_timeout or now - s.created > self.max_age]
        for k in dead:
            del self._sessions[k]


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


# -- the login rate limit -----------------------------------------------------------


@dataclass
class LoginLimiter:
    """Failures per key in a sliding window; ``limit`` failures lock the key for ``window``."""

    per_address: int = 20
    per_user: int = 5
    window: float = 15 * 60.0
    max_keys: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)
    lockouts: int = 0  # how many times a key went over its limit

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, ()) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def blocked(self, address: str, user: str) -> bool:
        now = self.clock()
        return (len(self._recent("a:" + address, now)) >= self.per_address
                or len(self._recent("u:" + user.lower(), now)) >= self.per_user)

    def failed(self, address: str, user: str) -> None:
        now = self.clock()
        if len(self._failures) >= self.max_keys:  # bounded memory under a spray of names
            for key in list(self._failures)[: self.max_keys // 10]:
                del self._failures[key]
        for key, limit in (("a:" + address, self.per_address), ("u:" + user.lower(), self.per_user)):
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times
            if len(times) == limit:
                self.lockouts += 1

    def succeeded(self, user: str) -> None:
        self._failures.pop("u:" + user.lower(), None)
