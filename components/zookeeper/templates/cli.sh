# ZooKeeper's command line client, and the membership as the ensemble reports it (after zookeeper/common.sh).
# Parameters: CONFIG_DIR ($CONFIG_DIR/install.env, the install step's record, names ZOOKEEPER_CLI_CLASSPATH).
SEED=

cli_classpath() {
  sed -n 's/^ZOOKEEPER_CLI_CLASSPATH=//p' "$CONFIG_DIR/install.env"
}

# zk_cli ENDPOINT COMMAND...: runs ZooKeeper's command line client with the commands on its stdin, never on its
# command line (the super user's password is one of them).
zk_cli() {
  local server=$1
  shift
  printf '%s\n' "$@" quit | timeout 60 /usr/bin/java -cp "$(cli_classpath)" org.apache.zookeeper.ZooKeeperMain \
    -server "$server" 2>/dev/null
}

# find_seed ENDPOINT...: SEED becomes the first of the endpoints whose server serves.
find_seed() {
  local seed
  for seed in "$@"; do
    if is_serving "$seed"; then
      SEED=$seed
      return 0
    fi
  done
  return 1
}

# live_membership: the membership SEED serves (`server.N=...` lines, as ZooKeeper writes them).
live_membership() {
  zk_cli "$SEED" config | grep -E '^server\.[0-9]+=' | sort -u
}

# client_endpoint LINE: the HOST:PORT a membership line's server serves clients on.
client_endpoint() {
  local spec=${1#*=} host
  if [ "${spec:0:1}" = "[" ]; then
    host=${spec#[}
    host=${host%%]*}
  else
    host=${spec%%:*}
  fi
  printf '%s:%s\n' "$host" "${1##*:}"
}
