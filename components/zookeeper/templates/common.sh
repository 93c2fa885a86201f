# Helpers shared by the ZooKeeper steps (after shared/common.sh). Servers are addressed as HOST:PORT
# (an IPv6 host without brackets: the port follows the last colon).

# four_letter HOST:PORT WORD: the server's answer to a four-letter word; empty when it does not answer in 3 s.
four_letter() {
  # shellcheck disable=SC2016  # the inner script expands its own positional parameters
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf %s "$3" >&3 && cat <&3' four_letter \
    "${1%:*}" "${1##*:}" "$2" 2>/dev/null || true
}

# server_mode HOST:PORT: "leader" or "follower" while the server serves. `ruok` answers imok even out of
# quorum; `srvr` answers "not currently serving requests" then, so its Mode line is the test.
server_mode() {
  four_letter "$1" srvr | sed -n 's/^Mode: //p'
}

is_serving() {
  case "$(server_mode "$1")" in
    leader | follower) return 0 ;;
    *) return 1 ;;
  esac
}

# config_hash: one hash of every file the server reads when it starts (installation, settings, JVM options,
# the unit).
# The unit's ExecStartPre records it as the configuration the running server started with.
config_hash() {
  cat "$CONFIG_DIR/install.env" "$CONFIG_DIR/zoo.cfg" "$CONFIG_DIR/jvm.args" "$CONFIG_DIR/jvm-secret.args" \
    "$UNIT_FILE" 2>/dev/null | sha256sum | cut -d' ' -f1
}
