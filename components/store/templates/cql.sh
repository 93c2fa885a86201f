# CQL helpers for the schema job (cassandra image: cqlsh talks to the ring through its headless Service).
# cqlsh -e exits 2 when the statement fails (cqlshlib/cqlshmain.py: batch mode with a statement error).
cql() { cqlsh "${CASSANDRA_HOST}" "${CQL_PORT}" --request-timeout="${REQUEST_TIMEOUT}" -e "$1"; }

# The rows of a SELECT of two or more columns as `a|b|...`: cqlsh prints a header line, a rule and one
# ` a | b ` line per row (values padded), then "(N rows)".
cql_rows() {
  cql "$1" | awk -F'|' 'NF > 1 && ++lines > 1 {
    row = ""
    for (i = 1; i <= NF; i++) { field = $i; gsub(/^ +| +$/, "", field); row = row (i > 1 ? "|" : "") field }
    print row
  }'
}

wait_for_cql() {
  local deadline=$((SECONDS + WAIT_SECONDS))
  until cql 'SELECT release_version FROM system.local' >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "Cassandra at ${CASSANDRA_HOST}:${CQL_PORT} did not answer CQL within ${WAIT_SECONDS}s" >&2
      exit 1
    fi
    echo "waiting for Cassandra at ${CASSANDRA_HOST}:${CQL_PORT}"
    sleep 5
  done
}
