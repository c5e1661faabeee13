"""Group commit: every write waiting at one moment is applied in one transaction.

A database's cost is per transaction (DuckDB here: ~600 one-statement commits/s, ~1,500
statements/s inside one transaction). One writer thread per database takes the first queued
write and every write queued behind it (up to `MAX_GROUP`), runs each in turn in one session
(flushing after each, so a failing statement is known to be its own, and starting each with an
empty identity map, as a session of its own would), and commits once. Every caller waits for
the commit that holds its write, so an acknowledged write is as durable as before; a lone
write runs at once (no timer: the writer sleeps on the queue).

A write that raises (a 4xx of the rules, a refused value, a constraint) fails alone: the
transaction is rolled back, that caller gets its exception, and the group is applied again
without it. A deadlock or serialization failure (PostgreSQL, another process's group) is no
one write's fault: the group is then applied one write at a time. Writes therefore must touch
nothing but the session (they may run more than once before their commit); whatever follows
the commit (live events, files) the caller does after. The writer holds the database's write
lock while it applies a group, so the writes that still use `Database.writing()` interleave
with groups as before. A grouped write from inside a `writing()` block is a programming error
(it would wait for itself) and raises at once.

Combining: a write submitted with `combine=True` (recording a run) may leave the rows of records
new in this transaction in the session's `Combined` buffer (`insert_fresh` in app.core.records)
instead of inserting them; the writer then inserts every buffered row of a table in one
statement (DuckDB pays ~0.7 ms a statement in a transaction, and an Arrow insert of a whole
group's rows about as much as one run's). The buffer is written before any write that is not
combinable runs and before the commit, and a combinable write that reads what earlier writes
buffered writes it first (`flush_combined`), so every write sees the rows of those before it.
When a combined insert fails no one knows whose row it was: the group is applied again without
combining, and the failing write is then found and answered alone as before.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")
MAX_GROUP = 128
"""Writes per transaction at most (a bound on the work redone when one of them fails)."""

Work = Callable[[Session], Any]
Insert = Callable[[Session, list[dict[str, Any]]], Any]
COMBINED = "group_commit.combined"
"""The `session.info` key of the buffer, present only while a combinable write runs."""


class CombinedInsertFailed(Exception):
    """A combined insert failed: whose row it was is unknown (the group is applied again)."""


Fetch = Callable[[list[Hashable]], dict[Hashable, Any]]


class Combined:
    """Rows deferred by a group's combinable writes: one insert per table at the next flush.

    It also answers the group's lookups of its writes' keys (does this run exist?) with one
    read for every key at the first lookup (`lookup`), kept until the next flush: a write that
    is not combinable may change those rows, and the buffered ones are then in the table.
    """

    def __init__(self, keys: list[Hashable] | None = None) -> None:
        self._parts: dict[Hashable, tuple[Insert, list[dict[str, Any]]]] = {}
        self.failed: BaseException | None = None
        self.statements = 0
        self._keys = keys or []
        self._known: dict[Hashable, Any] | None = None

    def lookup(self, key: Hashable, fetch: Fetch) -> Any:
        """Return what `fetch` finds for `key` (None: nothing), fetching every key at once."""
        if self._known is None or key not in self._known:
            wanted = [key] if self._known is not None else list(dict.fromkeys([*self._keys, key]))
            found = fetch(wanted)
            self._known = {**(self._known or {}), **{k: found.get(k) for k in wanted}}
        return self._known[key]

    def remember(self, key: Hashable, found: Any) -> None:
        """Record what a write of the group stored under `key` (a row it buffered)."""
        if self._known is not None:
            self._known[key] = found

    def add(self, key: Hashable, insert: Insert, rows: list[dict[str, Any]]) -> None:
        """Buffer rows for `insert`; rows of one key go into one statement, in this order."""
        part = self._parts.setdefault(key, (insert, []))
        part[1].extend(rows)

    def flush(self, session: Session) -> None:
        """Insert every buffered row (one statement per key) and empty the buffer."""
        parts, self._parts = self._parts, {}
        self._known = None  # what a write changes next is read afresh
        try:
            for insert, rows in parts.values():
                insert(session, rows)
                self.statements += 1
        except Exception as exc:
            self.failed = exc  # seen by the writer even if a write catches what follows
            raise CombinedInsertFailed(str(exc)) from exc


def combining(session: Session) -> Combined | None:
    """Return the buffer a combinable write may defer fresh rows to, or None (insert now)."""
    buffer = session.info.get(COMBINED)
    return buffer if isinstance(buffer, Combined) else None


def flush_combined(session: Session) -> None:
    """Write what earlier writes of the group deferred (before reading or changing it)."""
    buffer = combining(session)
    if buffer is not None:
        buffer.flush(session)


@dataclass
class Pending:
    """One queued write and the future its caller waits on."""

    work: Work
    combine: bool = False
    key: Hashable | None = None
    future: Future[Any] = field(default_factory=Future)


@dataclass
class GroupStats:
    """What the writer did (the tests read it)."""

    groups: int = 0
    writes: int = 0
    largest: int = 0
    retried: int = 0
    combined: int = 0
    """Groups committed with the rows of several writes combined."""
    uncombined: int = 0
    """Groups applied again without combining after a combined insert failed."""


class GroupWriter:
    """The writer thread of one database."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        lock: threading.RLock,
        translate: Callable[[BaseException], BaseException],
        name: str = "group-commit",
    ) -> None:
        self._sessions = sessions
        self._lock = lock
        self._translate = translate
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._name = name
        self._holder = threading.local()
        self._busy = 0
        self.stats = GroupStats()

    def pending(self) -> int:
        """Return how many writes wait for the writer (approximately, as queues tell)."""
        return self._queue.qsize()

    def busy(self) -> int:
        """Return how many writes the writer is applying now."""
        return self._busy

    def holding(self) -> AbstractContextManager[None]:
        """Mark the calling thread as holding the write lock (see `Database.writing`)."""
        return _Holding(self._holder)

    def submit(
        self, work: Callable[[Session], T], combine: bool = False, key: Hashable | None = None
    ) -> T:
        """Apply `work` in the next group; return its result once that group committed.

        `combine`: the write may defer rows of new records to the group's combined inserts.
        `key`: the record it writes, looked up with the group's others (`Combined.lookup`).
        """
        if getattr(self._holder, "depth", 0):
            raise RuntimeError("a grouped write inside a write transaction")
        pending = Pending(work, combine, key)
        self._start()
        self._queue.put(pending)
        result: T = pending.future.result()
        return result

    def close(self) -> None:
        """Apply what is queued, then stop the thread."""
        with self._guard:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _start(self) -> None:
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            self._busy = len(group)
            self._apply(group)
            self._busy = 0
            if stop:
                return

    def _apply(self, group: list[Pending]) -> None:
        """Commit the group; a write that fails is answered alone and the rest applied again."""
        combine = True
        while group:
            with self._lock:
                index, outcome = self._attempt(group, combine)
            if index is None:
                for pending, result in zip(group, outcome, strict=True):
                    pending.future.set_result(result)
                self.stats.groups += 1
                self.stats.writes += len(group)
                self.stats.largest = max(self.stats.largest, len(group))
                return
            if index == UNCOMBINED:  # whose row failed is unknown: each write inserts its own
                combine = False
                self.stats.uncombined += 1
                continue
            if index == ALONE:  # no one write's failure: each in a transaction of its own
                for pending in group:
                    self._apply([pending])
                return
            group.pop(index).future.set_exception(self._translate(outcome))
            self.stats.retried += 1

    def _attempt(self, group: list[Pending], combine: bool) -> tuple[int | None, Any]:
        """Run the group in one transaction.

        Returns (None, results) once committed, (i, error) when write i failed, (UNCOMBINED,
        error) when a combined insert failed, or (ALONE, error) when the group failed as a
        whole (a failed commit, a deadlock) and each write must be applied alone; a group of
        one fails as its write.
        """
        session = self._sessions()
        # Combining pays from two combinable writes on (a lone write inserts its own rows).
        combinable = [p for p in group if p.combine]
        keys = [p.key for p in combinable if p.key is not None]
        buffer = Combined(keys) if combine and len(combinable) > 1 else None
        try:
            results: list[Any] = []
            for index, pending in enumerate(group):
                try:
                    if buffer is not None and not pending.combine:
                        buffer.flush(session)  # a write that is not combinable sees every row
                    if buffer is not None and pending.combine:
                        session.info[COMBINED] = buffer
                    results.append(pending.work(session))
                    session.info.pop(COMBINED, None)
                    session.flush()
                    session.expunge_all()  # the next write loads what it reads afresh
                except Exception as exc:
                    session.info.pop(COMBINED, None)
                    session.rollback()
                    if buffer is not None and buffer.failed is not None:
                        return UNCOMBINED, buffer.failed
                    whole = _transient(exc) and len(group) > 1  # the group's doing
                    return (ALONE if whole else index), exc
            if buffer is not None:
                try:
                    buffer.flush(session)
                except Exception:
                    session.rollback()
                    return UNCOMBINED, buffer.failed
            try:
                session.commit()
            except Exception as exc:  # not any one write's
                session.rollback()
                return (ALONE if len(group) > 1 else 0), exc
            if buffer is not None and buffer.statements:
                self.stats.combined += 1
            return None, results
        finally:
            session.close()


ALONE = -1
"""What `_attempt` answers for a failure of the whole group rather than of one write."""
UNCOMBINED = -2
"""What `_attempt` answers when a combined insert failed (the group is applied uncombined)."""
TRANSIENT = frozenset({"40P01", "40001"})
"""PostgreSQL's deadlock and serialization failures: several writes in one transaction can lock
rows in an order another process's group crosses; each write alone would not."""


def _transient(exc: BaseException) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in TRANSIENT


class _Holding:
    def __init__(self, holder: threading.local) -> None:
        self._holder = holder

    def __enter__(self) -> None:
        self._holder.depth = getattr(self._holder, "depth", 0) + 1

    def __exit__(self, *_: object) -> None:
        self._holder.depth -= 1
