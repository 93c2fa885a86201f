# Helpers shared by node steps. Each step reads the host's state and changes only what differs,
# printing one "changed: ..." line per change, so a re-run on a prepared host prints none.
changed() { printf 'changed: %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
is_installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }
