# Step 1 of the schema job: wait for the ring, converge the keyspace's replication, and leave a stamp when
# pithos's tables already exist so step 2 (install-schema, which is not re-runnable) is skipped.
wait_for_cql
cql "CREATE KEYSPACE IF NOT EXISTS ${KEYSPACE} WITH replication = ${REPLICATION}"
current=$(cql "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = '${KEYSPACE}'")
if ! grep -q "NetworkTopologyStrategy" <<<"${current}" \
   || ! grep -qF "'${DATACENTER}': '${REPLICATION_FACTOR}'" <<<"${current}"; then
  cql "ALTER KEYSPACE ${KEYSPACE} WITH replication = ${REPLICATION}"
  echo "changed: keyspace ${KEYSPACE} replication is now ${REPLICATION};" \
       "run 'nodetool repair -full ${KEYSPACE}' on every node so existing data gets its new replicas"
fi
missing=$(missing_tables)
if [[ -z "${missing}" ]]; then
  echo "pithos schema already present in keyspace ${KEYSPACE}"
  touch "${STAMP}"
else
  echo "pithos schema to install in keyspace ${KEYSPACE} (missing: ${missing//$'\n'/ })"
fi
