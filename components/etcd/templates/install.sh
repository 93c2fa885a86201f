# Installs etcd. Parameters: INSTALL_MODE (package | tarball | preinstalled), ETCD_VERSION, ETCD_BIN,
# ETCDCTL_BIN, TARBALL_PATH and TARBALL_SHA256 (tarball mode: the file CopyToRemote uploaded).
install_from_tarball() {
  local unpack
  if [ -x "$ETCD_BIN" ] && [ -x "$ETCDCTL_BIN" ] \
    && "$ETCD_BIN" --version 2>/dev/null | grep -qx "etcd Version: $ETCD_VERSION"; then
    return 0
  fi
  if ! printf '%s  %s\n' "$TARBALL_SHA256" "$TARBALL_PATH" | sha256sum --check --status; then
    printf 'error: %s does not match etcd.tarballs sha256 %s\n' "$TARBALL_PATH" "$TARBALL_SHA256" >&2
    exit 1
  fi
  unpack=$(mktemp -d)
  tar -xzf "$TARBALL_PATH" -C "$unpack" --strip-components=1 --wildcards '*/etcd' '*/etcdctl'
  install -D -m 0755 "$unpack/etcd" "$ETCD_BIN"
  install -D -m 0755 "$unpack/etcdctl" "$ETCDCTL_BIN"
  rm -rf "$unpack"
  changed "installed etcd $ETCD_VERSION from $TARBALL_PATH"
}

ensure_etcd_user() {
  if ! getent group etcd >/dev/null; then
    groupadd --system etcd
    changed "created group etcd"
  fi
  if ! getent passwd etcd >/dev/null; then
    useradd --system --gid etcd --home-dir /var/lib/etcd --no-create-home --shell /usr/sbin/nologin etcd
    changed "created user etcd"
  fi
}

install_etcd() {
  local binary
  case "$INSTALL_MODE" in
    package) apt_install etcd-server etcd-client ;;
    tarball) install_from_tarball ;;
    preinstalled) ;;
    *) printf 'error: unknown install mode %s\n' "$INSTALL_MODE" >&2; exit 1 ;;
  esac
  for binary in "$ETCD_BIN" "$ETCDCTL_BIN"; do
    if [ ! -x "$binary" ]; then
      printf 'error: %s is missing (etcd.install is %s)\n' "$binary" "$INSTALL_MODE" >&2
      exit 1
    fi
  done
  ensure_etcd_user
}
