"""Pithos 0.7.5's Cassandra schema, as data, and the CQL that installs it so a re-run is always safe.

Pithos's own `install-schema` (`io.pithos.schema/converge-schema`) runs `CREATE TABLE`/`CREATE INDEX`
without `IF NOT EXISTS` (hayt's `create-table`/`create-index` as used in 0.7.5) and logs and swallows any
error, exiting 0: a second run fails on the first existing table and an install interrupted half-way can
never finish. So the schema job runs these statements itself, each with `IF NOT EXISTS`, then checks every
table, column type and index against the same data.

Source: exoscale/pithos tag 0.7.5 (commit d9d9480231a6927285460a52037acf4de4d0bac8):
`src/io/pithos/bucket.clj` (bucket-table, bucket_tenant-index; converge! executes them in that order),
`src/io/pithos/meta.clj` (object-table, upload-table, object_uploads-table, object_inode-index,
upload_bucket-index), `src/io/pithos/blob.clj` (inode_blocks-table, block-table). hayt's
`:primary-key [[a b] c]` is `PRIMARY KEY ((a, b), c)`; no table options are set (clustering order ASC).
"""

from __future__ import annotations

from dataclasses import dataclass

PITHOS_COMMIT = "d9d9480231a6927285460a52037acf4de4d0bac8"  # tag 0.7.5


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, CQL type as system_schema.columns prints it)
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    column: str
    source: str = ""


MAP_TEXT = "map<text, text>"

TABLES: tuple[Table, ...] = (
    Table("bucket", (("bucket", "text"), ("created", "text"), ("tenant", "text"), ("region", "text"),
                     ("acl", "text"), ("cors", "text"), ("website", "text"), ("policy", "text"),
                     ("versioned", "boolean")),
          partition_key=("bucket",), source="src/io/pithos/bucket.clj bucket-table"),
    Table("object", (("bucket", "text"), ("object", "text"), ("inode", "uuid"), ("version", "timeuuid"),
                     ("atime", "text"), ("size", "bigint"), ("checksum", "text"), ("storageclass", "text"),
                     ("acl", "text"), ("metadata", MAP_TEXT)),
          partition_key=("bucket",), clustering=("object",), source="src/io/pithos/meta.clj object-table"),
    Table("upload", (("upload", "uuid"), ("version", "uuid"), ("bucket", "text"), ("object", "text"),
                     ("inode", "uuid"), ("partno", "int"), ("modified", "text"), ("size", "bigint"),
                     ("checksum", "text")),
          partition_key=("bucket", "object", "upload"), clustering=("partno",),
          source="src/io/pithos/meta.clj upload-table"),
    Table("object_uploads", (("bucket", "text"), ("object", "text"), ("upload", "uuid"), ("metadata", MAP_TEXT)),
          partition_key=("bucket", "object"), clustering=("upload",),
          source="src/io/pithos/meta.clj object_uploads-table"),
    Table("inode_blocks", (("inode", "uuid"), ("version", "timeuuid"), ("block", "bigint")),
          partition_key=("inode", "version"), clustering=("block",),
          source="src/io/pithos/blob.clj inode_blocks-table"),
    Table("block", (("inode", "uuid"), ("version", "timeuuid"), ("block", "bigint"), ("offset", "bigint"),
                    ("chunksize", "int"), ("payload", "blob")),
          partition_key=("inode", "version", "block"), clustering=("offset",),
          source="src/io/pithos/blob.clj block-table"),
)

INDEXES: tuple[Index, ...] = (
    Index("bucket_tenant", "bucket", "tenant", source="src/io/pithos/bucket.clj bucket_tenant-index"),
    Index("object_inode", "object", "inode", source="src/io/pithos/meta.clj object_inode-index"),
    Index("upload_bucket", "object_uploads", "bucket", source="src/io/pithos/meta.clj upload_bucket-index"),
)


def _primary_key(table: Table) -> str:
    partition = table.partition_key[0] if len(table.partition_key) == 1 else f"({', '.join(table.partition_key)})"
    return ", ".join((partition, *table.clustering))


def create_table(keyspace: str, table: Table) -> str:
    columns = ", ".join(f"{name} {kind}" for name, kind in table.columns)
    return f"CREATE TABLE IF NOT EXISTS {keyspace}.{table.name} ({columns}, PRIMARY KEY ({_primary_key(table)}));"


def create_index(keyspace: str, index: Index) -> str:
    return f"CREATE INDEX IF NOT EXISTS {index.name} ON {keyspace}.{index.table} ({index.column});"


def schema_statements(keyspace: str) -> tuple[str, ...]:
    """Every table, then every index (an index needs its table), each safe to run again."""
    return (*(create_table(keyspace, t) for t in TABLES), *(create_index(keyspace, i) for i in INDEXES))


def expected_columns() -> tuple[str, ...]:
    """`table|column|type` for every column, as the verify step reads them from system_schema.columns."""
    return tuple(f"{t.name}|{name}|{kind}" for t in TABLES for name, kind in t.columns)


def expected_indexes() -> tuple[str, ...]:
    """`table|index` for every index, as the verify step reads them from system_schema.indexes."""
    return tuple(f"{i.table}|{i.name}" for i in INDEXES)
