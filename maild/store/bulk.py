"""Many rows in one go: the inserts of a batch (COPY on PostgreSQL, the driver's executemany
on SQLite), and the JSON recordset for PostgreSQL statements that do more than insert.

A batch writes hundreds of rows a table (ingestion: tickets, messages, outbox rows, events;
the SLA pass: alerts, events). How they reach the database decides what a row costs:

* PostgreSQL: COPY, each value converted by its column type's bind processor and written
  by psycopg in C, the cheapest of the ways below for both the database and the daemon's
  CPU (figures in bench/README.md). The obvious alternatives cost per row in the daemon:
  `executemany` without RETURNING makes the driver send one execution per row; with
  RETURNING it becomes a VALUES list with thousands of placeholders that SQLAlchemy expands
  and the driver parses anew for every batch; arrays per column (`unnest`) have the driver
  quote every element in Python. Where a statement must do more than insert (the SLA pass's
  INSERT ... ON CONFLICT and UPDATE ... FROM), or a column default has to be filled in, the
  rows go as one JSON document that the server turns back into typed rows
  (`json_to_recordset`): one statement with one parameter.
* SQLite: `executemany` in process, with the compiled INSERT handed to the driver as it is
  and each value converted by its column type's own bind processor, as SQLAlchemy converts
  it: what SQLAlchemy adds per row of an executemany (the parameters built anew through the
  compiled statement) cost about as much as SQLite's insert itself.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Dialect,
    Integer,
    Select,
    Table,
    Text,
    bindparam,
    cast,
    column,
    func,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias

from maild.store.models import Base

Row = Mapping[str, Any]


def table(model: type[Base]) -> Table:
    """The model's table, for Core statements: a batch of plain rows needs none of the
    ORM's per-object bookkeeping."""
    found = model.__table__
    assert isinstance(found, Table)
    return found


def insert_rows(conn: Connection, model: type[Base], rows: Sequence[Row]) -> None:
    """Insert `rows` (the same keys in each), in the order given (ids follow it)."""
    if not rows:
        return
    target = table(model)
    dialect = conn.dialect
    postgresql = dialect.name == "postgresql"
    driver = _driver_insert(dialect, target, tuple(rows[0])) \
        if postgresql or dialect.name == "sqlite" else None
    if driver is None and postgresql:  # a column default to fill in: the server does it
        source = Recordset(target, rows)
        conn.execute(insert(target).from_select(source.names, source.select()), source.params)
    elif driver is None:  # the same, or another database: SQLAlchemy's own executemany
        conn.execute(insert(target), rows)
    elif postgresql:
        sql, convert = driver
        psycopg_connection = conn.connection.driver_connection  # in the same transaction
        assert psycopg_connection is not None
        try:
            with psycopg_connection.cursor() as cursor, cursor.copy(sql) as copy:
                for row in rows:  # psycopg writes each value in COPY's text form, in C
                    copy.write_row(convert(row))
        except dialect.loaded_dbapi.Error as exc:
            # Past SQLAlchemy, the driver's own error: wrapped as SQLAlchemy would have
            # (a unique key hit is an IntegrityError), so that callers handle it as any
            # other statement's: the runner retries the batch message by message.
            raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error,
                                      dialect=dialect) from exc
    else:
        sql, convert = driver
        conn.exec_driver_sql(sql, [convert(row) for row in rows])

Convert = Callable[[Row], tuple[Any, ...]]


@functools.lru_cache(maxsize=32)
def _driver_insert(dialect: Dialect, target: Table,
                   keys: tuple[str, ...]) -> tuple[str, Convert] | None:
    """The statement that inserts these columns as the driver takes it (SQLite: an INSERT
    with positional parameters; PostgreSQL: COPY of the columns in that order), and what
    turns a row into its values; None when the INSERT wants more than the row gives (a
    column default), which only SQLAlchemy fills in."""
    compiled = insert(target).compile(dialect=dialect, column_keys=list(keys))
    order = compiled.positiontup or [c.key for c in target.c if c.key in keys]
    if set(compiled.params) != set(keys):
        return None
    steps = [(key, target.c[key].type.dialect_impl(dialect).bind_processor(dialect))
             for key in order]
    sql = str(compiled)
    if dialect.name == "postgresql":
        names = ", ".join(dialect.identifier_preparer.quote(key) for key in order)
        sql = f"COPY {dialect.identifier_preparer.format_table(target)} ({names}) FROM STDIN"

    def convert(row: Row) -> tuple[Any, ...]:
        return tuple([process(row[key]) if process else row[key] for key, process in steps])

    return sql, convert


class Recordset:
    """Rows given as dicts (the same keys in each) as one JSON document, and the table
    PostgreSQL makes of it (`json_to_recordset`), typed like the target's columns; a row
    number keeps their order for INSERT ... SELECT.

    One text parameter, which json.dumps writes in C. Datetimes travel in ISO 8601 with their
    offset (exact to the microsecond, as the columns store them), JSON columns as JSON (the
    text json.dumps gives, as the engine writes them), bytes in bytea's hex form. `key` names
    a value that is not a column of the table, and the column whose type it has.
    """

    ORDER = "_row"

    def __init__(self, target: Table, rows: Sequence[Row],
                 key: tuple[str, str] | None = None) -> None:
        self.names = list(rows[0])
        columns = [column(n, target.c[key[1] if key and n == key[0] else n].type)
                   for n in self.names]
        document = cast(bindparam("rows", type_=Text()), JSON)
        self.alias: TableValuedAlias = func.json_to_recordset(document).table_valued(
            *columns, column(self.ORDER, Integer())).render_derived(with_types=True)
        self.params = {"rows": json.dumps([{**r, self.ORDER: i} for i, r in enumerate(rows)],
                                          default=_json_value)}

    def values(self) -> dict[str, ColumnElement[Any]]:
        """Each value's column of the recordset, by name."""
        return {n: self.alias.c[n] for n in self.names}

    def select(self) -> Select[Any]:
        """The rows, in their order, for INSERT ... SELECT."""
        return select(*self.values().values()).order_by(self.alias.c[self.ORDER])


def _json_value(value: object) -> str:
    """A datetime or bytes for the JSON document; naive datetimes are refused, as
    UtcDateTime does."""
    if isinstance(value, bytes):
        return "\\x" + value.hex()  # bytea's input form
    if not isinstance(value, datetime):
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime given to the database")
    return value.isoformat()
