# Step 1 of the schema job: wait for the ring, then create the keyspace or converge its replication.
wait_for_cql
cql "CREATE KEYSPACE IF NOT EXISTS ${KEYSPACE} WITH replication = ${REPLICATION}"
current=$(cql_rows "SELECT keyspace_name, replication FROM system_schema.keyspaces WHERE keyspace_name = '${KEYSPACE}'")
if ! grep -q "NetworkTopologyStrategy" <<<"${current}" \
   || ! grep -qF "'${DATACENTER}': '${REPLICATION_FACTOR}'" <<<"${current}"; then
  cql "ALTER KEYSPACE ${KEYSPACE} WITH replication = ${REPLICATION}"
  echo "changed: keyspace ${KEYSPACE} replication is now ${REPLICATION};" \
       "run 'nodetool repair -full ${KEYSPACE}' on every node so existing data gets its new replicas"
fi
