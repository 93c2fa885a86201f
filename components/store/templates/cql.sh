# CQL helpers for the schema job (cassandra image: cqlsh talks to the ring through its headless Service).
cql() { cqlsh "${CASSANDRA_HOST}" "${CQL_PORT}" --request-timeout=60 -e "$1"; }

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

missing_tables() {
  local present
  present=$(cql "SELECT table_name FROM system_schema.tables WHERE keyspace_name = '${KEYSPACE}'")
  for table in "${REQUIRED_TABLES[@]}"; do
    grep -qw -- "${table}" <<<"${present}" || echo "${table}"
  done
}
