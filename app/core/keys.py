"""API keys with scopes (read < write < admin), from `APP_API_KEYS` or a file of hashed keys.

`APP_API_KEYS` holds `key` or `key:scope` entries (a bare key is an admin key: before scopes a
key could do everything). `APP_API_KEYS_FILE` names a file of hashed keys, one
`sha256:<64 hex> <scope> [name]` a line (`#` comments, blank lines), re-read whenever it
changes, so keys are added and revoked without a restart. Offered keys are hashed and compared
with every configured digest in constant time.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.core.errors import AppError, Forbidden, StartupError, Unauthorized

log = logging.getLogger(__name__)

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
_RANK = {scope: rank for rank, scope in enumerate(SCOPES)}

MAX_FILE_BYTES = 1024 * 1024
MAX_FILE_KEYS = 10_000
_LINE = re.compile(r"^sha256:(?P<hex>[0-9a-fA-F]{64})\s+(?P<scope>\S+)(?:\s+(?P<name>.{1,256}))?$")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
# What only an admin key may do: delete, import, export, read-only SQL, retention, backup.
ADMIN_PATHS = (re.compile(r"^/api/[^/]+/db/(import(/[^/]+)?|export|query|retention|backup)$"),)
# Paths whose writes (only) are admin: writing a suite names an interpreter and arguments the
# server will run; reading it is a read.
ADMIN_WRITE_PATHS = (re.compile(r"^/api/[^/]+/suites/[^/]+$"),)
# POSTs that only read (a search body): they follow the read rule, not the write rule.
READ_POST_PATHS = (re.compile(r"^/api/[^/]+/db/search$"), re.compile(r"^/api/db/search$"))


class InsufficientScope(AppError):
    """The key is valid but its scope does not allow this operation (403)."""

    status_code = 403
    code = "insufficient_scope"


def required_scope(method: str, path: str) -> Scope:
    """Return the scope a request needs: admin, write for other writes, read otherwise."""
    if method == "DELETE" or any(p.match(path) for p in ADMIN_PATHS):
        return "admin"
    if method not in WRITE_METHODS or any(p.match(path) for p in READ_POST_PATHS):
        return "read"
    return "admin" if any(p.match(path) for p in ADMIN_WRITE_PATHS) else "write"


def key_needed(method: str, path: str, protect_reads: bool) -> Scope | None:
    """Return the scope a request needs when keys are set, None when it needs no key."""
    needed = required_scope(method, path)
    return None if needed == "read" and not protect_reads else needed


def allows(scope: Scope, needed: Scope) -> bool:
    """Return whether a key of `scope` may do what needs `needed`."""
    return _RANK[scope] >= _RANK[needed]


def hash_key(key: str) -> str:
    """Return a key's line form for the keys file: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """Return a fresh random key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class KeyEntry:
    """One configured key: the SHA-256 digest of the key, its scope and an optional name."""

    digest: bytes
    scope: Scope
    name: str = ""


def parse_plain(entries: Sequence[str]) -> list[KeyEntry]:
    """Return `APP_API_KEYS` entries as keys: `key:scope` (read, write, admin) or a bare key."""
    out = []
    for entry in entries:
        key, sep, scope = entry.rpartition(":")
        if sep and key and scope in _RANK:
            out.append(KeyEntry(hashlib.sha256(key.encode()).digest(), scope))
        else:
            out.append(KeyEntry(hashlib.sha256(entry.encode()).digest(), "admin"))
    return out


def parse_file(text: str, source: str) -> list[KeyEntry]:
    """Return the keys of a keys file; ValueError naming the first bad line."""
    out: list[KeyEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"{source}:{number}: expected `sha256:<64 hex digits> <scope> [name]`")
        scope = match["scope"]
        if scope not in _RANK:
            raise ValueError(f"{source}:{number}: scope {scope!r} is not read, write or admin")
        digest = bytes.fromhex(match["hex"])
        out.append(KeyEntry(digest, scope, (match["name"] or "").strip()))
        if len(out) > MAX_FILE_KEYS:
            raise ValueError(f"{source}: more than {MAX_FILE_KEYS} keys")
    return out


def read_keys_file(path: Path) -> list[KeyEntry]:
    """Read and parse a keys file (bounded to MAX_FILE_BYTES); ValueError when it is bad."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    return parse_file(text, str(path))


class KeyRing:
    """The configured keys: `APP_API_KEYS` plus the keys file, re-read when the file changes.

    A keys file that turns bad (unreadable, a bad line, deleted) keeps the last good keys and
    logs the error: a half-written file never opens the server or locks every client out.
    """

    def __init__(self, plain: Sequence[str] = (), file: Path | None = None) -> None:
        self._plain = parse_plain(plain)
        self.file = file.expanduser().resolve() if file is not None else None
        self._from_file: list[KeyEntry] = []
        self._stamp: tuple[int, int, int] | None = None
        self._loaded = False
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Return whether keys are required at all (any key configured, or a keys file)."""
        return bool(self._plain) or self.file is not None

    def load(self) -> None:
        """Read the keys file now; StartupError when it is missing or bad (at start-up)."""
        if self.file is None:
            return
        try:
            stat = self.file.stat()
            entries = read_keys_file(self.file)
        except (OSError, ValueError) as exc:
            reason = exc if isinstance(exc, ValueError) else f"{self.file}: {exc.strerror}"
            raise StartupError(f"APP_API_KEYS_FILE: {reason}") from None
        with self._lock:
            self._from_file = entries
            self._stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            self._loaded = True

    def _refresh(self) -> None:
        if self.file is None:
            return
        try:
            stat = self.file.stat()
        except OSError as exc:
            if self._stamp is not None:
                log.error("keys file %s: %s; keeping the last keys read", self.file, exc.strerror)
                self._stamp = None
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp and self._loaded:
            return
        with self._lock:
            if stamp == self._stamp and self._loaded:
                return
            self._stamp = stamp
            try:
                self._from_file = read_keys_file(self.file)
                self._loaded = True
                log.info("keys file %s read: %d keys", self.file, len(self._from_file))
            except ValueError as exc:
                log.error("keys file: %s; keeping the last keys read", exc)

    def entries(self) -> list[KeyEntry]:
        """Return every configured key (the keys file re-read first when it changed)."""
        self._refresh()
        return [*self._plain, *self._from_file]

    def scope_of(self, key: str) -> Scope | None:
        """Return the scope of a key, or None when it is not configured (constant time)."""
        offered = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found: Scope | None = None
        for entry in self.entries():
            # Every entry is compared (no early exit), each in constant time.
            if secrets.compare_digest(offered, entry.digest) and (
                found is None or allows(entry.scope, found)
            ):
                found = entry.scope
        return found

    def check(self, key: str | None, needed: Scope) -> None:
        """Raise 401 (no key), 403 `forbidden` (unknown key) or 403 `insufficient_scope`."""
        if not self.enabled:
            return
        if not key:
            raise Unauthorized("this operation needs an API key in the X-API-Key header")
        scope = self.scope_of(key)
        if scope is None:
            raise Forbidden("the X-API-Key sent is not a valid key")
        if not allows(scope, needed):
            raise InsufficientScope(
                f"this operation needs a key with the {needed} scope; the key sent has {scope}"
            )


def hash_key_main(argv: Sequence[str]) -> int:
    """`python -m app hash-key [KEY] [--scope S] [--name N]`: print a keys-file line."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m app hash-key")
    parser.add_argument("key", nargs="?", help="the key (default: read from stdin, or a new one)")
    parser.add_argument("--scope", choices=SCOPES, default="read")
    parser.add_argument("--name", default="")
    parser.add_argument("--new", action="store_true", help="make a new random key and print it")
    args = parser.parse_args(list(argv))
    key = args.key
    if args.new:
        key = new_key()
        print(f"# key (give it to the client; it is not stored): {key}", flush=True)
    elif key is None:
        key = sys.stdin.readline(4096).strip()
    if not key:
        print("error: an empty key", file=sys.stderr)
        return 2
    print(" ".join(part for part in (hash_key(key), args.scope, args.name) if part))
    return 0
