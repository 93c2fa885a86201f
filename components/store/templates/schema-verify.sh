# Step 3 of the schema job: every table, column type and index Pithos 0.7.5 uses is there. A table that
# already existed with other columns (another Pithos version) is reported, never changed.
wait_for_cql
columns=$(cql_rows "SELECT table_name, column_name, type FROM system_schema.columns WHERE keyspace_name = '${KEYSPACE}'")
indexes=$(cql_rows "SELECT table_name, index_name FROM system_schema.indexes WHERE keyspace_name = '${KEYSPACE}'")
missing=()
for column in "${EXPECTED_COLUMNS[@]}"; do
  grep -qxF -- "${column}" <<<"${columns}" || missing+=("column ${column}")
done
for index in "${EXPECTED_INDEXES[@]}"; do
  grep -qxF -- "${index}" <<<"${indexes}" || missing+=("index ${index}")
done
if ((${#missing[@]} > 0)); then
  echo "keyspace ${KEYSPACE} does not match Pithos 0.7.5's schema; missing (table|name|type):" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
echo "pithos schema ready in keyspace ${KEYSPACE}: ${#EXPECTED_COLUMNS[@]} columns, ${#EXPECTED_INDEXES[@]} indexes"
