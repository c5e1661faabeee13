"""Lists of request rows held column by column: the shared machinery of CaseColumns, MetricColumns.

A large list of plain rows is checked one column at a time (`_fast`) instead of one pydantic
model per row; anything the pass is not sure of goes to the item model's own validation, so
what is accepted, the values stored and every 422 stay the model's. The schema stays
`list[Item]` (OpenAPI, serialization).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import GenericAlias
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, Field, GetCoreSchemaHandler, ValidatorFunctionWrapHandler
from pydantic_core import CoreSchema, core_schema

# Bounds restated for the column-wise passes (tests prove each boundary against the models).
# Device's pattern is matched whole, as Rust's `^...$` reads it (Python's `$` would also match
# before a final newline).
DEVICE_MAX = 32
DEVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
FLOAT_MAX = sys.float_info.max
EXACT_INT = 2**53  # ints below convert to the same float whichever way they are converted
NONE = type(None)


def plain_rows(
    rows: list[Any], keys: frozenset[str], required: tuple[str, ...]
) -> tuple[set[str], list[list[Any]]] | None:
    """Return the fields sent and the required fields' columns, when every row is a dict that
    names only `keys` and every one of `required`; None otherwise."""
    if set(map(type, rows)) - {dict}:
        return None
    sent: set[str] = set().union(*rows)
    if not sent <= keys:
        return None
    try:
        return sent, [[row[name] for row in rows] for name in required]
    except KeyError:  # a required field left out
        return None


def column(rows: list[dict[str, Any]], sent: set[str], name: str, default: Any = None) -> list[Any]:
    """Return one optional field's column (`default` where a row leaves it out)."""
    if name in sent:
        return [row.get(name, default) for row in rows]
    return [default] * len(rows)


def texts(values: list[Any], low: int, high: int, *, optional: bool) -> bool:
    """Return whether every value is a plain str (or None when optional) of low..high characters."""
    kinds = set(map(type, values))
    if not kinds <= ({str, NONE} if optional else {str}):
        return False
    present = [v for v in values if v is not None] if NONE in kinds else values
    if not present:
        return True
    lengths = list(map(len, present))
    return low <= min(lengths) and max(lengths) <= high


def devices(values: list[Any]) -> bool:
    """Return whether every value is None or a device name `Device` accepts as it is."""
    return texts(values, 1, DEVICE_MAX, optional=True) and all(
        DEVICE.fullmatch(d) for d in set(values) - {None}
    )


def finite_floats(
    values: list[Any], *, optional: bool, low: float = -FLOAT_MAX
) -> list[Any] | None:
    """Return the values as floats when each is a plain finite int or float >= low (or None when
    optional) that a float field takes as it is; None otherwise.

    Bools and numeric strings are left to the model: its lax coercions decide.
    """
    kinds = set(map(type, values))
    if not kinds <= ({float, int, NONE} if optional else {float, int}):
        return None
    present = [v for v in values if v is not None] if NONE in kinds else values
    if not all(low <= v <= FLOAT_MAX for v in present):  # NaN fails every comparison
        return None
    if int in kinds:
        if max(abs(v) for v in present if type(v) is int) >= EXACT_INT:
            return None
        return [float(v) if type(v) is int else v for v in values]
    return values


class RowColumns:
    """Rows of `ITEM`, `list[ITEM]` on the wire, held as one list per field (a dataclass each).

    Subclasses give the fields in `FIELDS` order and `_fast`, the column-wise pass: the columns
    when `ITEM` surely accepts every row as it is, else None.
    """

    __slots__ = ()
    ITEM: ClassVar[type[BaseModel]]
    FIELDS: ClassVar[tuple[str, ...]]

    def __len__(self) -> int:
        return len(getattr(self, self.FIELDS[0]))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.models())

    def columns(self) -> dict[str, list[Any]]:
        """Return the columns by field name, in the model's order."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def rows(self) -> list[dict[str, Any]]:
        """Return one dict per row (what the model's model_dump gives)."""
        return [
            dict(zip(self.FIELDS, values, strict=True))
            for values in zip(*self.columns().values(), strict=True)
        ]

    def models(self) -> list[Any]:
        """Return the rows as models (built, not validated again: they were validated)."""
        return [self.ITEM.model_construct(**row) for row in self.rows()]

    @classmethod
    def of(cls, items: Iterable[Any]) -> Self:
        """Return the columns of validated models."""
        items = list(items)
        return cls(*([getattr(item, name) for item in items] for name in cls.FIELDS))

    @classmethod
    def _fast(cls, rows: list[Any]) -> Self | None:
        raise NotImplementedError

    @classmethod
    def _validate(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, limit: int | None
    ) -> Self:
        if isinstance(value, cls):
            if limit is None or len(value) <= limit:
                return value
            value = value.models()
        if type(value) is list and (limit is None or len(value) <= limit):
            fast = cls._fast(value)
            if fast is not None:
                return fast
        return cls.of(handler(value))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return columns_schema(cls, handler, None)


@dataclass(frozen=True)
class MaxRows:
    """`Annotated[SomeColumns, MaxRows(n)]`: at most n rows (list[Item]'s max_length rule)."""

    n: int

    def __get_pydantic_core_schema__(
        self, source: type[RowColumns], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return columns_schema(source, handler, self.n)


def columns_schema(
    cls: type[RowColumns], handler: GetCoreSchemaHandler, limit: int | None
) -> CoreSchema:
    """Return the core schema of `cls`: validated and serialized as list[ITEM] (its JSON schema
    too), held as `cls`."""
    as_list: Any = GenericAlias(list, (cls.ITEM,))
    if limit is not None:
        as_list = Annotated[as_list, Field(max_length=limit)]
    inner = handler.generate_schema(as_list)

    def validate(value: Any, fallback: ValidatorFunctionWrapHandler) -> RowColumns:
        return cls._validate(value, fallback, limit)

    def serialize(value: Any, to_list: core_schema.SerializerFunctionWrapHandler) -> Any:
        return to_list(value.models() if isinstance(value, RowColumns) else value)

    return core_schema.no_info_wrap_validator_function(
        validate,
        inner,
        serialization=core_schema.wrap_serializer_function_ser_schema(serialize, schema=inner),
    )
