# Step 3 of the schema job: `install-schema` exits 0 even when it failed, so check the tables really exist.
missing=$(missing_tables)
if [[ -n "${missing}" ]]; then
  echo "pithos tables missing in keyspace ${KEYSPACE}: ${missing//$'\n'/ } (see the install-schema log)" >&2
  exit 1
fi
echo "pithos schema ready in keyspace ${KEYSPACE}"
