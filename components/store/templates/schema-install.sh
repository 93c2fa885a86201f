#!/bin/sh
# Step 2 of the schema job (pithos image, POSIX sh): install pithos's tables unless step 1 found them.
set -eu
if [ -e "${STAMP}" ]; then
  echo "pithos schema present; nothing to install"
  exit 0
fi
exec java -jar "${PITHOS_JAR}" -f /etc/pithos/pithos.yaml -a install-schema
