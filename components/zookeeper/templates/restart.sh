# The second step of a server: restarts it when it still runs an older configuration. After every server's
# first step only a server that was leading then is left, so the leader restarts last.
if restart_needed; then
  restart_server
else
  printf '%s runs its current configuration\n' "$SERVER_NAME"
fi
