"""Leases: which server process executes each run or task, so only a gone process's are ended.

Every runner (one per component per server process) has an owner id, `host:pid:token`. It takes
a lease (a row of the component's `*_leases` table) when it queues a job, refreshes the
heartbeat of all its leases in one UPDATE every few seconds, and drops a lease when the job
ends. A run or task of the runner's creator that is still unfinished is the runner's to end
when its owner is gone:

- on DuckDB one process owns the file, so at start-up every unfinished row is a previous
  server's (the rule of one process: nothing to ask);
- on PostgreSQL (several workers, several hosts) a row is gone when its lease's owner ran on
  this host and that process no longer exists, when the lease's heartbeat is older than
  APP_LEASE_TIMEOUT seconds, or when it has no lease and was created longer ago than that (a
  job is queued, then leased: the grace covers the moment between).

Each runner looks at start-up, and on PostgreSQL every few seconds while it runs, so a worker
killed with -9 has its runs ended by a sibling, and a worker that starts or stops never ends
the runs another one executes.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psutil
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.core.models import LeaseColumns, utcnow

HOST = socket.gethostname()[:64]


def new_owner() -> str:
    """Return a fresh owner id for this process: `host:pid:token`."""
    return f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def gone_here(owner: str) -> bool:
    """Return True if `owner` ran on this host and its process no longer exists."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != HOST:
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    return not psutil.pid_exists(pid)


@dataclass
class Leases:
    """One runner's leases in its component's lease table."""

    model: type[LeaseColumns]
    owner: str
    timeout: float  # seconds without a heartbeat after which an owner counts as gone

    def take(self, session: Session, key: str) -> None:
        """Lease `key` to this owner (a lease left by a gone owner is replaced)."""
        session.execute(delete(self.model).where(self.model.job_key == key))
        lease = self.model()
        lease.job_key, lease.owner, lease.heartbeat_at = key, self.owner, utcnow()
        session.add(lease)

    def drop(self, session: Session, keys: Sequence[str]) -> None:
        """Drop the leases of `keys` (their jobs ended)."""
        if keys:
            session.execute(delete(self.model).where(self.model.job_key.in_(list(keys))))

    def beat(self, session: Session) -> None:
        """Refresh the heartbeat of every lease of this owner."""
        stmt = update(self.model).where(self.model.owner == self.owner)
        session.execute(stmt.values(heartbeat_at=utcnow()))

    def held(self, session: Session, keys: Iterable[str]) -> dict[str, tuple[str, datetime]]:
        """Return key -> (owner, heartbeat) of the leased ones among `keys`."""
        wanted = list(keys)
        if not wanted:
            return {}
        model = self.model
        query = select(model.job_key, model.owner, model.heartbeat_at)
        rows = session.execute(query.where(model.job_key.in_(wanted)))
        return {key: (owner, beat) for key, owner, beat in rows}

    def mine(self, session: Session, keys: Iterable[str]) -> list[str]:
        """Return which of `keys` this owner holds."""
        return [k for k, (owner, _) in self.held(session, keys).items() if owner == self.owner]

    def gone(self, session: Session, rows: list[dict[str, Any]], key_field: str) -> list[str]:
        """Return the keys of `rows` (unfinished, this runner's creator) whose owner is gone."""
        now = utcnow()
        limit = timedelta(seconds=self.timeout)
        held = self.held(session, (row[key_field] for row in rows))
        out = []
        for row in rows:
            key = row[key_field]
            lease = held.get(key)
            if lease is None:
                created = row.get("created_at")
                if created is None or now - _aware(created) > limit:
                    out.append(key)
            elif lease[0] != self.owner and (gone_here(lease[0]) or now - _aware(lease[1]) > limit):
                out.append(key)
        return out


def _aware(moment: datetime | str) -> datetime:
    """Return a datetime as aware UTC (rows may carry it as an ISO string)."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value if value.tzinfo is not None else value.replace(tzinfo=utcnow().tzinfo)
