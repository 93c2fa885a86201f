# Installs etcd. Parameters: INSTALL_MODE (package | tarball | preinstalled), ETCD_VERSION (tarball mode),
# ETCD_BIN, ETCDCTL_BIN, GO_ARCH, TARBALL_PATH and TARBALL_SHA256 (tarball mode: the file CopyToRemote
# uploaded), ENV_CONTENT (etcd_env).

# installed_version_matches: the binary reports ETCD_VERSION. The probe runs with ETCD_UNSUPPORTED_ARCH:
# etcd checks the architecture before it reads --version, and 3.4 refuses arm64 without it. Its output is
# read whole first: piped into `grep -q`, etcd could die of SIGPIPE writing its next line (pipefail).
installed_version_matches() {
  local reported
  [ -x "$ETCD_BIN" ] && [ -x "$ETCDCTL_BIN" ] \
    && reported=$(ETCD_UNSUPPORTED_ARCH="$GO_ARCH" "$ETCD_BIN" --version 2>/dev/null) \
    && grep -qx "etcd Version: $ETCD_VERSION" <<<"$reported"
}

install_from_tarball() {
  local unpack
  if installed_version_matches; then
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
  if ! installed_version_matches; then
    printf 'error: the etcd in %s does not report version %s (etcd.version)\n' "$TARBALL_PATH" "$ETCD_VERSION" >&2
    exit 1
  fi
  changed "installed etcd $ETCD_VERSION from $TARBALL_PATH"
}

# etcd_env: the env file; with ETCD_UNSUPPORTED_ARCH when the installed etcd refuses to run on this
# architecture without it (etcd 3.4 on arm64, any version on 32-bit arm), as the binary itself says.
etcd_env() {
  printf '%s\n' "$ENV_CONTENT"
  if ! "$ETCD_BIN" --version >/dev/null 2>&1 \
    && ETCD_UNSUPPORTED_ARCH="$GO_ARCH" "$ETCD_BIN" --version >/dev/null 2>&1; then
    printf 'ETCD_UNSUPPORTED_ARCH=%s\n' "$GO_ARCH"
  fi
}

# keep_distribution_service_masked: the distribution's etcd.service runs a default single-member cluster on
# port 2379. Masked before the package is installed (its postinst starts the service) and on every run.
keep_distribution_service_masked() {
  if [ "$(systemctl is-enabled etcd.service 2>/dev/null || true)" != masked ]; then
    if systemctl is-active --quiet etcd.service; then
      systemctl stop etcd.service
      changed "stopped the distribution's etcd.service"
    fi
    systemctl mask --quiet etcd.service
    changed "masked the distribution's etcd.service"
  fi
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
  keep_distribution_service_masked
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
