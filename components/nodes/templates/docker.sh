# install_docker: on a node that runs containers (INSTALL_DOCKER=1), the Docker engine when it is missing
# (Debian's docker.io; an engine already there, e.g. docker-ce, is kept), enabled and running, and the login
# user (DOCKER_USER, when not root) in group docker: the Docker provider's `ssh://user@host` runs
# `docker system dial-stdio` as that user. Parameters: INSTALL_DOCKER, DOCKER_USER.
install_docker() {
  [ "$INSTALL_DOCKER" = 1 ] || return 0
  if ! command -v dockerd >/dev/null; then
    apt_install docker.io
  fi
  if ! systemctl is-enabled --quiet docker.service; then
    systemctl enable --quiet docker.service
    changed "enabled docker.service"
  fi
  if ! systemctl is-active --quiet docker.service; then
    systemctl start docker.service
    changed "started docker.service"
  fi
  if [ "$DOCKER_USER" != root ] && ! id -nG "$DOCKER_USER" | tr ' ' '\n' | grep -qx docker; then
    usermod -aG docker "$DOCKER_USER"
    changed "added $DOCKER_USER to group docker"
  fi
}
