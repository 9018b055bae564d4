#!/bin/sh
# The runtime stage of deploy/Dockerfile: lay out muster under ROOT ("/" in the image).
#   install.sh ROOT BIN
# deploy/docker-build-steps.sh runs this outside Docker with ROOT a staging directory.
set -eu
root=${1:?usage: install.sh ROOT BIN}
bin=${2:?usage: install.sh ROOT BIN}
here=$(cd "$(dirname "$0")" && pwd)
# A fixed uid/gid, no passwd entry needed: volumes and host paths can be chowned to it.
uid=10001

install -D -m 0755 "$bin" "$root/usr/local/bin/muster"
install -D -m 0755 "$here/entrypoint.sh" "$root/usr/local/bin/muster-entrypoint"
install -D -m 0755 "$here/healthcheck.sh" "$root/usr/local/bin/muster-healthcheck"
install -D -m 0644 "$here/../config/container.toml" "$root/etc/muster/muster.toml"
install -d -m 0750 "$root/var/lib/muster"
chown "$uid:$uid" "$root/var/lib/muster"
# Port 53 as a non-root user: a file capability, so no root and no --cap-add is needed.
# (Ignored under no-new-privileges; see deploy/README.md.)
setcap cap_net_bind_service=+ep "$root/usr/local/bin/muster"
