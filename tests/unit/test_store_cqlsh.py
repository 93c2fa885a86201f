"""A stand-in for `cqlsh -e` (run as a script by the schema job's real scripts in test_store_render.py), and
the tests that pin what it refuses."""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

# --- A stand-in for `cqlsh -e` over a tiny in-memory (JSON file) schema, to run the schema job's real scripts.
# Behaviour it reproduces (Cassandra 4.1 / cqlsh): `CREATE ... IF NOT EXISTS` of an existing object is a
# no-op and without it an AlreadyExists error; a table needs its keyspace, an index its table and column;
# cqlsh -e exits 2 after a statement error (cqlshlib/cqlshmain.py, batch mode) and 1 when it cannot connect
# (`sys.exit('Connection error: ...')`); SELECT results print as a header, a rule and ` a | b ` rows.
# It imports nothing but the standard library: the scripts start it once per statement. That the statements
# are valid CQL is checked separately, with cqlsh's own grammar (test_store_render.py).

def _cqlsh_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["", " " + " | ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)),
             "-" + "-+-".join("-" * w for w in widths) + "-"]
    lines += [" " + " | ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([*lines, "", f"({len(rows)} rows)", ""])


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "(<"
        depth -= char in ")>"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()] if current.strip() else parts


class CqlError(Exception):
    pass


def fake_cql(statement: str, state: dict[str, Any]) -> str:
    """Applies one statement to `state`; returns what cqlsh prints, or raises CqlError."""
    text = " ".join(statement.split()).rstrip(";")
    keyspaces: dict[str, Any] = state.setdefault("keyspaces", {})
    if text == "SELECT release_version FROM system.local":
        return _cqlsh_table(["release_version"], [["4.1.11"]])
    if match := re.fullmatch(r"(CREATE|ALTER) KEYSPACE (IF NOT EXISTS )?(\w+) WITH replication = (\{.*\})", text):
        verb, guarded, name, replication = match.groups()
        options = {key: str(value) for key, value in ast.literal_eval(replication).items()}
        if options.get("class") == "NetworkTopologyStrategy":
            options["class"] = "org.apache.cassandra.locator.NetworkTopologyStrategy"
        if verb == "CREATE" and name in keyspaces:
            if not guarded:
                raise CqlError(f"AlreadyExists: Keyspace '{name}' already exists")
            return ""
        if verb == "ALTER" and name not in keyspaces:
            raise CqlError(f"ConfigurationException: Keyspace '{name}' doesn't exist")
        keyspaces.setdefault(name, {"tables": {}, "indexes": {}})["replication"] = options
        return ""
    if match := re.fullmatch(r"CREATE TABLE (IF NOT EXISTS )?(\w+)\.(\w+) \((.*)\)", text):
        guarded, keyspace, table, body = match.groups()
        if keyspace not in keyspaces:
            raise CqlError(f"InvalidRequest: Keyspace '{keyspace}' doesn't exist")
        tables = keyspaces[keyspace]["tables"]
        if table in tables:
            if not guarded:
                raise CqlError(f"AlreadyExists: Table '{keyspace}.{table}' already exists")
            return ""
        columns = [part.split(" ", 1) for part in _split_top_level(body) if not part.startswith("PRIMARY KEY")]
        tables[table] = {name: kind for name, kind in columns}
        return ""
    if match := re.fullmatch(r"CREATE INDEX (IF NOT EXISTS )?(\w+) ON (\w+)\.(\w+) \((\w+)\)", text):
        guarded, index, keyspace, table, column = match.groups()
        schema = keyspaces.get(keyspace)
        if schema is None or table not in schema["tables"] or column not in schema["tables"][table]:
            raise CqlError(f"InvalidRequest: no column {column} in {keyspace}.{table}")
        if index in schema["indexes"]:
            if not guarded:
                raise CqlError(f"AlreadyExists: Index '{index}' already exists")
            return ""
        schema["indexes"][index] = [table, column]
        return ""
    where = r" WHERE keyspace_name = '(\w+)'"
    if match := re.fullmatch(r"SELECT keyspace_name, replication FROM system_schema.keyspaces" + where, text):
        name = match[1]
        rows = [[name, "{" + ", ".join(f"'{k}': '{v}'" for k, v in keyspaces[name]["replication"].items()) + "}"]
                ] if name in keyspaces else []
        return _cqlsh_table(["keyspace_name", "replication"], rows)
    if match := re.fullmatch(r"SELECT table_name, column_name, type FROM system_schema.columns" + where, text):
        tables = keyspaces.get(match[1], {}).get("tables", {})
        return _cqlsh_table(["table_name", "column_name", "type"],
                            [[t, c, kind] for t, columns in sorted(tables.items()) for c, kind in columns.items()])
    if match := re.fullmatch(r"SELECT table_name, index_name FROM system_schema.indexes" + where, text):
        indexes = keyspaces.get(match[1], {}).get("indexes", {})
        return _cqlsh_table(["table_name", "index_name"], [[t, name] for name, (t, _) in sorted(indexes.items())])
    raise CqlError(f"SyntaxException: the fake cqlsh does not know {text!r}")


def fake_cqlsh_main(argv: list[str]) -> int:
    """`cqlsh HOST PORT --request-timeout=N -e STATEMENT` against the JSON state in $FAKE_CQL_STATE.
    $FAKE_CQL_DOWN makes every call a connection error; $FAKE_CQL_FAIL_AT=N makes the N-th call (counted in
    the state) time out without applying anything, like a run interrupted there."""
    statement = argv[argv.index("-e") + 1]
    if os.environ.get("FAKE_CQL_DOWN"):
        print("Connection error: ('Unable to connect to any servers')", file=sys.stderr)
        return 1
    path = Path(os.environ["FAKE_CQL_STATE"])
    state = json.loads(path.read_text()) if path.exists() else {}
    state["calls"] = state.get("calls", 0) + 1
    try:
        if str(state["calls"]) == os.environ.get("FAKE_CQL_FAIL_AT"):
            raise CqlError("OperationTimedOut: errors={}, last_host=10.0.0.1:9042")
        output = fake_cql(statement, state)
    except CqlError as error:
        print(f"<stdin>:1:{error}", file=sys.stderr)
        return 2
    finally:
        path.write_text(json.dumps(state, sort_keys=True))
    print(output, end="")
    return 0


def install_fake_cqlsh(directory: Path) -> Path:
    """A `cqlsh` executable in `directory` running `fake_cqlsh_main`; returns the directory (for PATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "cqlsh"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} "$@"\n')

    script.chmod(0o755)
    return directory



def test_the_fake_cqlsh_refuses_what_cassandra_refuses() -> None:
    import pytest

    guarded = "CREATE TABLE IF NOT EXISTS storage.t (a text, b int, PRIMARY KEY (a))"
    state: dict[str, Any] = {}
    with pytest.raises(CqlError, match="Keyspace 'storage' doesn't exist"):
        fake_cql(guarded, state)
    fake_cql("CREATE KEYSPACE storage WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 1}", state)
    fake_cql(guarded.replace(" IF NOT EXISTS", ""), state)
    with pytest.raises(CqlError, match="AlreadyExists"):
        fake_cql(guarded.replace(" IF NOT EXISTS", ""), state)
    assert fake_cql(guarded, state) == ""
    with pytest.raises(CqlError, match="no column c"):
        fake_cql("CREATE INDEX IF NOT EXISTS t_c ON storage.t (c)", state)
    with pytest.raises(CqlError, match="SyntaxException"):
        fake_cql("CREATE TABLE storage.x (a text PRIMARY KEY", state)
    assert state["keyspaces"]["storage"]["tables"] == {"t": {"a": "text", "b": "int"}}


def test_the_fake_cqlsh_prints_rows_like_cqlsh() -> None:
    table = _cqlsh_table(["table_name", "index_name"], [["bucket", "bucket_tenant"]])
    assert table.splitlines() == ["", " table_name |    index_name", "------------+---------------",
                                  "     bucket | bucket_tenant", "", "(1 rows)"]


if __name__ == "__main__":
    sys.exit(fake_cqlsh_main(sys.argv[1:]))
