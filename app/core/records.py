"""Row operations both components share: upserts by natural key, owned children, deletes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Result, Select, Table, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import DeclarativeBase, Session

from app.core.bulk import chunks, column_rows, insert_columns, insert_rows, is_postgres
from app.core.group_commit import combining

if TYPE_CHECKING:
    from app.core.pagination import Page

M = TypeVar("M", bound=DeclarativeBase)
S = TypeVar("S", bound=DeclarativeBase)


def table_of(model: type[DeclarativeBase]) -> Table:
    """Return a model's Table."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def upsert(
    session: Session,
    model: type[DeclarativeBase],
    keys: Sequence[str],
    rows: Sequence[dict[str, Any]],
    update: Sequence[str] | None = None,
) -> int:
    """Insert rows, updating those whose natural key exists (INSERT … ON CONFLICT)."""
    if not rows:
        return 0
    table = table_of(model)
    # One statement cannot touch the same key twice: the last row for a key wins.
    unique = list({tuple(row[k] for k in keys): row for row in rows}.values())
    names = list(dict.fromkeys(name for row in unique for name in row))
    update_cols = [c for c in (update or names) if c not in keys]
    for part in chunks(unique, 1000):
        stmt = pg_insert(table).values([{n: row.get(n) for n in names} for row in part])
        if update_cols:
            stmt = stmt.on_conflict_do_update(
                index_elements=list(keys),
                set_={c: stmt.excluded[c] for c in update_cols},
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        session.execute(stmt)
    return len(unique)


def insert_fresh(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    constants: dict[str, Any] | None = None,
) -> int:
    """Insert rows of a record new in this transaction (nothing can conflict with them).

    Inside a combinable grouped write they join the group's one insert per table
    (app.core.group_commit) instead: nothing in the write reads them back.
    """
    buffer = combining(session)
    if buffer is None or not rows:
        return insert_rows(session, table, rows, constants)
    constants = constants or {}
    # The columns insert_rows would name for these rows alone: rows absent a column get NULL
    # as they would there, and rows naming other columns go into a statement of their own.
    names = [*constants, *rows[0]]
    names += sorted(set().union(*rows) - set(names))
    buffer.add(
        (table.name, tuple(names)),
        partial(_insert_into, table),
        [{**constants, **{n: row.get(n) for n in names if n not in constants}} for row in rows],
    )
    return len(rows)


def insert_fresh_columns(
    session: Session,
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    constants: dict[str, Any] | None = None,
) -> int:
    """`insert_fresh` for rows given column by column (`insert_columns` when not combining)."""
    if combining(session) is None:
        return insert_columns(session, table, columns, constants)
    return insert_fresh(session, table, column_rows(columns), constants)


def _insert_into(table: Table, session: Session, rows: list[dict[str, Any]]) -> int:
    return insert_rows(session, table, rows)


def replace_owned(
    session: Session,
    model: type[DeclarativeBase],
    owner: str,
    owner_id: str,
    rows: Sequence[dict[str, Any]],
    *,
    fresh: bool = False,
) -> int:
    """Replace every row an owner has in a child table with `rows`.

    `fresh`: the owner was created in this transaction and has no rows yet, so there is
    nothing to delete (on DuckDB the DELETE scans the whole child column: ~1-2 ms a table).
    """
    table = table_of(model)
    if fresh:
        return insert_fresh(session, table, rows, constants={owner: owner_id})
    session.execute(delete(table).where(table.c[owner] == owner_id))
    return insert_rows(session, table, rows, constants={owner: owner_id})


def replace_owned_columns(
    session: Session,
    model: type[DeclarativeBase],
    owner: str,
    owner_id: str,
    columns: Mapping[str, Sequence[Any]],
    *,
    fresh: bool = False,
) -> int:
    """`replace_owned` for rows given column by column (equal lengths)."""
    table = table_of(model)
    if fresh:
        return insert_fresh_columns(session, table, columns, constants={owner: owner_id})
    session.execute(delete(table).where(table.c[owner] == owner_id))
    return insert_columns(session, table, columns, constants={owner: owner_id})


def delete_owned(
    session: Session, models: Sequence[type[DeclarativeBase]], owner: str, owner_ids: Sequence[str]
) -> dict[str, int]:
    """Delete the rows of several child tables that belong to the given owners."""
    counts: dict[str, int] = {}
    if not owner_ids:
        return counts
    for model in models:
        table = table_of(model)
        total = 0
        for part in chunks(list(owner_ids), 1000):
            result = session.execute(delete(table).where(table.c[owner].in_(part)))
            total += int(getattr(result, "rowcount", 0) or 0)
        counts[table.name] = total
    return counts


def rows_of(
    session: Session, query: Any, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Return a query's rows as dicts (plain columns, no ORM entities: far cheaper to build)."""
    result = session.execute(query, params)
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def add_row(session: Session, model: type[M], fields: dict[str, Any]) -> M:
    """Insert one row through the ORM and return it."""
    row = model(**fields)
    session.add(row)
    session.flush()
    return row


def set_fields(session: Session, row: DeclarativeBase, fields: dict[str, Any]) -> None:
    """Change some of a row's own fields."""
    for key, value in fields.items():
        setattr(row, key, value)
    session.flush()


def existing_keys(session: Session, column: Any, keys: Sequence[str]) -> set[str]:
    """Return which of the given keys a key column holds."""
    if not keys:
        return set()
    return set(session.scalars(select(column).where(column.in_(list(keys)))))


def set_owned_tags(
    session: Session,
    model: type[DeclarativeBase],
    owner: str,
    owner_id: str,
    tags: dict[str, str],
    *,
    replace: bool,
    fresh: bool = False,
) -> None:
    """Set an owner's tags (name → value), replacing all of them or merging (`fresh`: see
    `replace_owned`)."""
    rows = [{"tag_name": k, "tag_value": v} for k, v in tags.items()]
    if replace or fresh:  # nothing is left to conflict with: one plain multi-row insert
        replace_owned(session, model, owner, owner_id, rows, fresh=fresh)
    else:
        upsert(session, model, [owner, "tag_name"], [{owner: owner_id, **r} for r in rows])


def page_of(session: Session, query: Select[M], page: Page, *order_by: Any) -> tuple[list[M], int]:
    """Return one page of a query's entities in the given order, and the number of matches."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(*order_by).limit(page.limit).offset(page.offset))
    return list(rows), int(total)


def page_by_status(
    session: Session, model: type[M], key: str, status: str | None, page: Page
) -> tuple[list[M], int]:
    """Return a page of a model's rows (all, or one status), newest first by created_at, key."""
    table = table_of(model)
    query = select(model)
    if status:
        query = query.where(table.c.status == status)
    return page_of(session, query, page, table.c.created_at.desc(), table.c[key].desc())


def update_by_key(
    session: Session, model: type[DeclarativeBase], key: str, value: str, fields: dict[str, Any]
) -> None:
    """Change some fields of the row whose `key` column holds `value`."""
    table = table_of(model)
    session.execute(update(table).where(table.c[key] == value).values(**fields))


def ended_keys(
    session: Session,
    model: type[DeclarativeBase],
    key: str,
    keys: Sequence[str],
    final: Sequence[str] | frozenset[str] | set[str],
) -> list[str]:
    """Return which of `keys` name a row with a final status, or no row at all."""
    table = table_of(model)
    query = select(table.c[key], table.c.status).where(table.c[key].in_(list(keys)))
    status = {k: str(getattr(v, "value", v)) for k, v in session.execute(query)}
    return [k for k in keys if k not in status or status[k] in final]


def lock_rows(
    session: Session, model: type[DeclarativeBase], key: str, values: Sequence[str]
) -> None:
    """On PostgreSQL, lock these rows until the transaction ends, in key order (no deadlock).

    For a value derived from other rows (a batch's status from its members'): a second writer
    waits for the first's commit, then reads what it committed. DuckDB needs none (one
    process, writers serialised by the write lock).
    """
    if not values or not is_postgres(session):
        return
    table = table_of(model)
    query = select(table.c[key]).where(table.c[key].in_(sorted(set(values))))
    session.execute(query.order_by(table.c[key]).with_for_update())


def affected(result: Result[Any]) -> int:
    """Return how many rows an UPDATE or DELETE changed (0 when the driver cannot say)."""
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Children(Generic[S]):
    """The rows one owner (a run, a task) has in its step, metric and tag tables, by `key`."""

    key: str
    owner: type[DeclarativeBase]
    steps: type[S]
    metrics: type[DeclarativeBase]
    tags: type[DeclarativeBase]

    def replace_steps(
        self,
        session: Session,
        owner_id: str,
        steps: Sequence[dict[str, Any]],
        *,
        fresh: bool = False,
    ) -> int:
        """Replace an owner's steps (`fresh`: see `replace_owned`)."""
        return replace_owned(session, self.steps, self.key, owner_id, steps, fresh=fresh)

    def put_step(
        self, session: Session, owner_id: str, step_name: str, values: dict[str, Any]
    ) -> bool:
        """Create or update one named step of an owner; return False when there is no owner.

        A known step is one UPDATE; a new one an INSERT … SELECT from the owner's row, so a
        missing owner inserts nothing (no separate existence check). DuckDB's ON CONFLICT
        costs ~5 ms a statement against ~2.5 for the UPDATE (raw, full bench data set), and
        its single writer leaves no race; PostgreSQL's processes race, so it upserts.
        """
        steps, owners = table_of(self.steps), table_of(self.owner)
        names = list(values)
        source = select(
            owners.c[self.key],
            literal(step_name, steps.c.step_name.type),
            *(literal(values[n], steps.c[n].type) for n in names),
        ).where(owners.c[self.key] == owner_id)
        columns = [self.key, "step_name", *names]
        # The inserted ids are returned and counted: a driver's rowcount of an INSERT … SELECT
        # is not portable (psycopg answered 0 for a row it inserted).
        if is_postgres(session):
            stmt = pg_insert(steps).from_select(columns, source)
            stmt = stmt.on_conflict_do_update(
                index_elements=[self.key, "step_name"],
                set_={n: stmt.excluded[n] for n in names},
            )
            return bool(session.execute(stmt.returning(steps.c.id)).all())
        known = (steps.c[self.key] == owner_id, steps.c.step_name == step_name)
        if affected(session.execute(update(steps).where(*known).values(**values))):
            return True
        new_step = insert(steps).from_select(columns, source).returning(steps.c.id)
        return bool(session.execute(new_step).all())

    def get_step(self, session: Session, owner_id: str, step_name: str) -> S | None:
        """Return one named step of an owner, or None."""
        table = table_of(self.steps)
        where = (table.c[self.key] == owner_id, table.c.step_name == step_name)
        return session.scalar(select(self.steps).where(*where))

    def replace_metrics(
        self,
        session: Session,
        owner_id: str,
        metrics: Mapping[str, Sequence[Any]],
        *,
        fresh: bool = False,
    ) -> int:
        """Replace an owner's metric points, given column by column (`fresh`: see
        `replace_owned`)."""
        return replace_owned_columns(
            session, self.metrics, self.key, owner_id, metrics, fresh=fresh
        )

    def append_metrics(
        self, session: Session, owner_id: str, metrics: Mapping[str, Sequence[Any]]
    ) -> int:
        """Append metric points, given column by column, to an owner's series."""
        table = table_of(self.metrics)
        return insert_columns(session, table, metrics, constants={self.key: owner_id})

    def set_tags(
        self,
        session: Session,
        owner_id: str,
        tags: dict[str, str],
        *,
        replace: bool,
        fresh: bool = False,
    ) -> None:
        """Set an owner's tags (replacing all of them, or merging; `fresh`: see `replace_owned`)."""
        set_owned_tags(session, self.tags, self.key, owner_id, tags, replace=replace, fresh=fresh)

    def tags_of(self, session: Session, owner_id: str) -> dict[str, str]:
        """Return an owner's tags (name → value), by name."""
        table = table_of(self.tags)
        query = (
            select(table.c.tag_name, table.c.tag_value)
            .where(table.c[self.key] == owner_id)
            .order_by(table.c.tag_name)
        )
        return {name: value for name, value in session.execute(query)}
