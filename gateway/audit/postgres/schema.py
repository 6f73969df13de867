"""The PostgreSQL layout of the access log: the SQLite store's tree tables (docs/merkle-log.md section 8) and a
search index, in the configured schema.

Tables::

    meta(key PK, value)                              schema_version = 4 (this layout; 3: without access_hourly,
                                                     2: without checkpoints either, 1: nor access_index_persons)
    access_log(idx PK, entry NULL, leaf_hash, tree_root)
    merkle_nodes(level, idx, hash)  PK (level, idx)  complete subtrees of 2^level leaves, level >= 6
    tree_heads(tree_size PK, root_hash, timestamp_ms, log_id, signature)
    checkpoints(tree_size PK, note)                  a head's C2SP checkpoint note with its cosignatures
    access_index, access_index_checks, access_index_sources, access_index_persons
                                                     the search index (gateway.audit.postgres.search)
    access_hourly                                    the hourly aggregates (gateway.audit.postgres.aggregates)

Triggers refuse every UPDATE, DELETE and TRUNCATE of the tree tables, with one exception: an UPDATE of
``access_log`` that sets a present ``entry`` to NULL and changes nothing else (retention pruning), and an UPDATE
of ``checkpoints`` that keeps the size and appends signature lines to the stored note (cosignatures arriving
after the head was signed: the new note starts with the whole old one and adds no blank line). The search
index is derived data beside the tree (never exported; ``audit verify`` checks it against the entries); its
trigger lets rows go only once their entry was pruned. Triggers stop mistakes, not a database owner: that is
what ``audit verify`` is for.

A version 1 schema gains ``access_index_persons`` (the co-subjects of each entry), filled from the kept entries,
in one transaction under the DDL lock when a store opens it; nothing else is touched. A version 2 schema (and a
version 1 after that step) gains the empty ``checkpoints`` table and its triggers (``_migrate_v2``). A version 3
schema (and every older one after those steps) gains ``access_hourly``, built from the kept entries
(``migrate_hourly``, one self-contained step).
"""

from __future__ import annotations

from typing import Any

import psycopg

from gateway.audit.postgres.aggregates import HOURLY_TABLE, migrate_hourly
from gateway.audit.postgres.search import INDEX_CHILDREN, INDEX_GUARD, INDEX_TABLES, INDEX_TRIGGERS
from gateway.audit.search_index import index_fields
from gateway.audit.store import AccessLogCorrupt
from gateway.stores.postgres import PostgresTarget, in_ddl_lock

SCHEMA_VERSION = 4
APPEND_ONLY = "the access log is append-only"
TREE_TABLES = ("access_log", "merkle_nodes", "tree_heads", "meta")

CHECKPOINTS_TABLE = """CREATE TABLE checkpoints (
        tree_size bigint PRIMARY KEY,   -- the size of the tree head it states (tree_heads.tree_size)
        note text NOT NULL              -- the C2SP signed note: the log's signature, then the cosignatures
    )"""  # schema version 3
CHECKPOINT_GUARD = f"""CREATE FUNCTION checkpoints_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.tree_size = OLD.tree_size AND length(NEW.note) > length(OLD.note)
           AND left(NEW.note, length(OLD.note)) = OLD.note
           AND position(E'\\n\\n' IN substr(NEW.note, length(OLD.note) + 1)) = 0 THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION '{APPEND_ONLY} (a checkpoint may only gain signature lines)';
    END $$"""
CHECKPOINT_TRIGGERS = (
    "CREATE TRIGGER checkpoints_guard BEFORE UPDATE OR DELETE ON checkpoints "
    "FOR EACH ROW EXECUTE FUNCTION checkpoints_guard()",
    "CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints "
    "FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only()",
)

TABLES = (
    "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE access_log (
        idx bigint PRIMARY KEY,     -- the leaf index: 0, 1, 2, ...
        entry bytea,                -- AccessRecord.canonical(); NULL once pruned
        leaf_hash bytea NOT NULL,   -- SHA-256(0x00 || entry), kept when pruned
        tree_root bytea NOT NULL    -- MTH of entries 0 .. idx: what a tree head of size idx + 1 signs
    )""",
    """CREATE TABLE merkle_nodes (
        level integer NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL, PRIMARY KEY (level, idx)
    )""",
    """CREATE TABLE tree_heads (
        tree_size bigint PRIMARY KEY, root_hash bytea NOT NULL, timestamp_ms bigint NOT NULL,
        log_id text NOT NULL, signature text NOT NULL
    )""",
    *INDEX_TABLES,
    HOURLY_TABLE,
)

FUNCTIONS = (
    f"""CREATE FUNCTION access_log_guard() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            IF OLD.entry IS NOT NULL AND NEW.entry IS NULL AND NEW.idx = OLD.idx
               AND NEW.leaf_hash = OLD.leaf_hash AND NEW.tree_root = OLD.tree_root THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION '{APPEND_ONLY} (pruning may only clear an entry''s payload)';
        END IF;
        RAISE EXCEPTION '{APPEND_ONLY}';
    END $$""",
    f"""CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{APPEND_ONLY}';
    END $$""",
    INDEX_GUARD,
)

TRIGGERS = (
    "CREATE TRIGGER access_log_guard BEFORE UPDATE OR DELETE ON access_log "
    "FOR EACH ROW EXECUTE FUNCTION access_log_guard()",
    *(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
      "FOR EACH ROW EXECUTE FUNCTION access_log_append_only()" for table in TREE_TABLES if table != "access_log"),
    *(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
      "FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only()"
      for table in (*TREE_TABLES, "access_index", *INDEX_CHILDREN)),
    *INDEX_TRIGGERS,
)


async def schema_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """0: no access log in the schema yet; otherwise ``meta.schema_version``."""
    found = await (await conn.execute("SELECT to_regclass('meta') IS NOT NULL")).fetchone()
    if not found or not found[0]:
        return 0
    row = await (await conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")).fetchone()
    return int(row[0]) if row else 0


async def ensure_schema(target: PostgresTarget, conn: psycopg.AsyncConnection[Any]) -> int:
    """Create the access log's tables in ``target``'s schema unless they exist (several processes may start at
    once: one creates, the others wait and find them); return the version found (0 when created)."""
    found = 0

    async def create(conn: psycopg.AsyncConnection[Any]) -> None:
        nonlocal found
        found = await schema_version(conn)
        if found > SCHEMA_VERSION:
            raise AccessLogCorrupt(f"the access log has schema version {found}; this gateway knows up to "
                                   f"{SCHEMA_VERSION}")
        if found == 0:
            for statement in (*TABLES, CHECKPOINTS_TABLE, *FUNCTIONS, CHECKPOINT_GUARD, *TRIGGERS,
                              *CHECKPOINT_TRIGGERS):
                await conn.execute(statement)
            await conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s)", (str(SCHEMA_VERSION),))
        elif found in (1, 2, 3):
            if found == 1:
                await _migrate_v1(conn)
            if found <= 2:
                await _migrate_v2(conn)
            await migrate_hourly(conn)
            await _set_version(conn)

    await in_ddl_lock(target, conn, create)
    return found


PERSONS = "access_index_persons"


async def _migrate_v1(conn: psycopg.AsyncConnection[Any]) -> None:
    """Add the co-subjects' table of the search index, filled from the kept entries that name co-subjects."""
    await conn.execute(next(t for t in TABLES if f"TABLE {PERSONS} " in t))
    rows = await (await conn.execute("SELECT idx, entry FROM access_log WHERE entry IS NOT NULL AND "
                                     "position('\"co_subjects\"'::bytea IN entry) > 0 ORDER BY idx")).fetchall()
    names = [(name, idx) for idx, entry in rows for name in index_fields(bytes(entry)).persons]
    if names:
        await conn.execute(f"INSERT INTO {PERSONS} (name, idx) SELECT * FROM unnest(%s::text[], %s::bigint[])",
                           ([n for n, _ in names], [i for _, i in names]))
    for statement in TRIGGERS:
        if f" ON {PERSONS} " in statement:
            await conn.execute(statement)


async def _migrate_v2(conn: psycopg.AsyncConnection[Any]) -> None:
    """Version 2 → 3: the table of the heads' checkpoint notes, empty, and its triggers; nothing else changes."""
    for statement in (CHECKPOINTS_TABLE, CHECKPOINT_GUARD, *CHECKPOINT_TRIGGERS):
        await conn.execute(statement)


async def _set_version(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("ALTER TABLE meta DISABLE TRIGGER meta_append_only")  # the one change ever made to meta
    await conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    await conn.execute("ALTER TABLE meta ENABLE TRIGGER meta_append_only")


def table_exists(conn: psycopg.Connection[Any]) -> bool:
    """Whether the schema holds an access log (for commands: ``audit verify`` on nothing is an error)."""
    row = conn.execute("SELECT to_regclass('meta') IS NOT NULL AND to_regclass('access_log') IS NOT NULL").fetchone()
    return bool(row and row[0])
