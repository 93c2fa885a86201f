# Installs the pinned k3s. Parameters: NODE_NAME, ROLE, INSTALL_MODE (online | airgap | preinstalled),
# K3S_VERSION, ARCH, BIN_DIR, K3S_BIN, BINARY_UPLOAD/BINARY_SHA256 and IMAGES_UPLOAD/IMAGES_SHA256/IMAGES_FILE
# (airgap: the files CopyToRemote uploaded into UPLOAD_DIR, named by their sha256), INSTALL_SCRIPT_URL/
# INSTALL_SCRIPT_SHA256 (online).

installed_version() {
  if [ -x "$K3S_BIN" ]; then
    "$K3S_BIN" --version 2>/dev/null | awk 'NR == 1 { print $3 }'
  fi
}

has_sha256() {
  [ -f "$1" ] && printf '%s  %s\n' "$2" "$1" | sha256sum --check --status
}

# verify_upload FILE SHA256 CONFIG_KEY: refuses a file that is missing or does not match its sha256.
verify_upload() {
  if [ ! -f "$1" ]; then
    fail "$NODE_NAME: $1 is missing (uploaded from $3); re-run after restoring it"
  fi
  if ! has_sha256 "$1" "$2"; then
    fail "$NODE_NAME: $1 does not match $3 ($2); refusing to install it"
  fi
}

link_tools() {
  local tool
  for tool in kubectl crictl ctr; do
    if [ ! -e "$BIN_DIR/$tool" ] && ! command -v "$tool" >/dev/null; then
      ln -s k3s "$BIN_DIR/$tool"
      changed "linked $BIN_DIR/$tool to k3s"
    fi
  done
}

install_airgap() {
  if ! has_sha256 "$K3S_BIN" "$BINARY_SHA256"; then
    verify_upload "$BINARY_UPLOAD" "$BINARY_SHA256" "kubernetes.airgap.$ARCH.binary"
    install -d -m 0755 "$BIN_DIR"
    install -m 0755 "$BINARY_UPLOAD" "$K3S_BIN.cookbook-new"
    mv -f "$K3S_BIN.cookbook-new" "$K3S_BIN"
    changed "installed $K3S_BIN $(installed_version)"
  fi
  if ! has_sha256 "$IMAGES_FILE" "$IMAGES_SHA256"; then
    verify_upload "$IMAGES_UPLOAD" "$IMAGES_SHA256" "kubernetes.airgap.$ARCH.images"
    install -d -m 0755 "$(dirname "$IMAGES_FILE")"
    install -m 0644 "$IMAGES_UPLOAD" "$IMAGES_FILE.cookbook-new"
    mv -f "$IMAGES_FILE.cookbook-new" "$IMAGES_FILE"
    changed "placed the airgap images in $IMAGES_FILE"
  fi
  link_tools
  prune_uploads
}

# prune_uploads: the uploads of this version stay (CopyToRemote copies only when its inputs change, so they are
# what a later run reinstalls from); those of other versions go, and so do the /var/tmp uploads of earlier
# versions of this program.
prune_uploads() {
  local file
  for file in "$UPLOAD_DIR"/* /var/tmp/cookbook-k3s-*; do
    if [ -f "$file" ] && [ "$file" != "$BINARY_UPLOAD" ] && [ "$file" != "$IMAGES_UPLOAD" ]; then
      rm -f "$file"
      changed "removed the upload $file (another version)"
    fi
  done
}

# install_online: k3s's install.sh at the pinned tag, checked against its sha256, run without enabling or
# starting anything (INSTALL_K3S_SKIP_ENABLE, INSTALL_K3S_SKIP_START): this step writes the unit and starts
# k3s itself. The script verifies the binary it downloads against the release's sha256 list.
install_online() {
  local script
  [ "$(installed_version)" = "$K3S_VERSION" ] && return 0
  command -v curl >/dev/null || fail "$NODE_NAME: curl is needed to download k3s (add it to prepare.packages)"
  script=$(mktemp)
  if ! curl -sfL --retry 3 -o "$script" "$INSTALL_SCRIPT_URL"; then
    rm -f "$script"
    fail "$NODE_NAME: cannot download $INSTALL_SCRIPT_URL"
  fi
  if ! has_sha256 "$script" "$INSTALL_SCRIPT_SHA256"; then
    rm -f "$script"
    fail "$NODE_NAME: $INSTALL_SCRIPT_URL does not match kubernetes.install_script_sha256 ($INSTALL_SCRIPT_SHA256); refusing to run it"
  fi
  INSTALL_K3S_VERSION=$K3S_VERSION INSTALL_K3S_EXEC=$ROLE INSTALL_K3S_BIN_DIR=$BIN_DIR \
    INSTALL_K3S_SKIP_ENABLE=true INSTALL_K3S_SKIP_START=true sh "$script" >&2
  rm -f "$script"
  changed "installed k3s $K3S_VERSION with its install script"
}

install_k3s() {
  local version
  case "$INSTALL_MODE" in
    airgap) install_airgap ;;
    online) install_online ;;
    preinstalled) [ -x "$K3S_BIN" ] || fail "$NODE_NAME: $K3S_BIN is missing (kubernetes.install is preinstalled)" ;;
    *) fail "unknown install mode $INSTALL_MODE" ;;
  esac
  version=$(installed_version)
  if [ "$version" != "$K3S_VERSION" ]; then
    fail "$NODE_NAME: $K3S_BIN reports version '${version:-none}', kubernetes.version is $K3S_VERSION"
  fi
}
