# Step 2 of the schema job: Pithos 0.7.5's tables and indexes (components/store/schema.py), each statement
# with IF NOT EXISTS, so an install interrupted at any statement completes on the next run.
wait_for_cql
echo "ensuring Pithos ${PITHOS_VERSION}'s tables and indexes in keyspace ${KEYSPACE}"
for statement in "${STATEMENTS[@]}"; do
  echo "ensure: ${statement%% (*}"
  cql "${statement}"
done
