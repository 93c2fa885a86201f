# Installs ZooKeeper and a Java runtime, and records where it lives (the unit and the join step read it).
# Parameters: INSTALL_MODE (package | tarball), TARBALL_PATH and TARBALL_SHA256 (tarball mode: the file
# CopyToRemote uploaded), INSTALL_DIR (tarball mode: where it unpacks), DISTRIBUTION_SERVICE (the zookeeperd
# package's unit, masked first), INSTALL_ENV (the record), INSTALL_ENV_CONTENT.
mask_distribution_service() {
  # zookeeperd's postinst would start a default single server on port 2181; ours replaces it.
  if [ "$(systemctl is-enabled "$DISTRIBUTION_SERVICE" 2>/dev/null || true)" != masked ]; then
    systemctl disable --now "$DISTRIBUTION_SERVICE" >/dev/null 2>&1 || true
    systemctl mask "$DISTRIBUTION_SERVICE" >/dev/null 2>&1
    changed "masked $DISTRIBUTION_SERVICE"
  fi
}

install_from_tarball() {
  local unpack
  if [ "$(cat "$INSTALL_DIR/.cookbook-sha256" 2>/dev/null)" = "$TARBALL_SHA256" ]; then
    return 0
  fi
  if ! printf '%s  %s\n' "$TARBALL_SHA256" "$TARBALL_PATH" | sha256sum --check --status; then
    printf 'error: %s does not match zookeeper.tarball.sha256 %s\n' "$TARBALL_PATH" "$TARBALL_SHA256" >&2
    exit 1
  fi
  unpack=$(mktemp -d "$(dirname "$INSTALL_DIR")/.unpack.XXXXXX")
  tar -xzf "$TARBALL_PATH" -C "$unpack" --strip-components=1 --no-same-owner
  # mktemp made it private; the server runs as user zookeeper.
  chmod -R u=rwX,go=rX "$unpack"
  if ! compgen -G "$unpack/lib/zookeeper-*.jar" >/dev/null; then
    rm -rf "$unpack"
    printf 'error: %s holds no lib/zookeeper-*.jar: not a ZooKeeper binary release (-bin.tar.gz)\n' \
      "$TARBALL_PATH" >&2
    exit 1
  fi
  printf '%s\n' "$TARBALL_SHA256" >"$unpack/.cookbook-sha256"
  rm -rf "$INSTALL_DIR"
  mv "$unpack" "$INSTALL_DIR"
  changed "installed ZooKeeper from $TARBALL_PATH into $INSTALL_DIR"
}

ensure_zookeeper_user() {
  if ! getent group zookeeper >/dev/null; then
    groupadd --system zookeeper
    changed "created group zookeeper"
  fi
  if ! getent passwd zookeeper >/dev/null; then
    useradd --system --gid zookeeper --home-dir /var/lib/zookeeper --no-create-home --shell /usr/sbin/nologin \
      zookeeper
    changed "created user zookeeper"
  fi
}

install_zookeeper() {
  mask_distribution_service
  case "$INSTALL_MODE" in
    package) apt_install zookeeper ;;
    tarball)
      apt_install default-jre-headless
      install -d -m 0755 "$(dirname "$INSTALL_DIR")"
      install_from_tarball
      ;;
    *) printf 'error: unknown install mode %s\n' "$INSTALL_MODE" >&2; exit 1 ;;
  esac
  if [ ! -x /usr/bin/java ]; then
    printf 'error: /usr/bin/java is missing after installing ZooKeeper (%s)\n' "$INSTALL_MODE" >&2
    exit 1
  fi
  ensure_zookeeper_user
  install -d -m 0755 "$(dirname "$INSTALL_ENV")"
  install_file "$INSTALL_ENV" 0644 <<<"$INSTALL_ENV_CONTENT"
  if [ "$FILE_CHANGED" -eq 1 ] && systemctl is-active --quiet cookbook-zookeeper; then
    printf 'the server runs another installation: its configure step restarts it with this one\n'
  fi
}

install_zookeeper
