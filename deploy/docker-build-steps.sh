#!/usr/bin/env bash
# deploy/Dockerfile's build steps without Docker (CI machines have no Docker engine):
# the builder stage's deploy/image/build.sh, then the runtime stage's
# deploy/image/install.sh into STAGING/rootfs, laid out as the image's filesystem.
#
#   deploy/docker-build-steps.sh STAGING                 cargo build, as the image does
#   deploy/docker-build-steps.sh --prebuilt BIN STAGING  reuse a release binary (CI: the
#                                                        one scripts/test already built)
#
# Not run here: the image's apt-get (this host provides setcap) and its USER/ENTRYPOINT
# metadata, which tests/interop/test_deploy.py mimics when it starts the result.
set -euo pipefail

prebuilt=
if [ "${1:-}" = "--prebuilt" ]; then
  prebuilt=$(realpath "${2:?--prebuilt needs a binary}")
  shift 2
fi
staging=${1:?usage: docker-build-steps.sh [--prebuilt BIN] STAGING_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$staging"
staging=$(realpath "$staging")

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

echo "==> builder stage: deploy/image/build.sh"
(cd "$root" && MUSTER_PREBUILT="$prebuilt" deploy/image/build.sh "$staging/out")

echo "==> runtime stage: deploy/image/install.sh"
as_root rm -rf "$staging/rootfs"
as_root "$root/deploy/image/install.sh" "$staging/rootfs" "$staging/out/muster"

echo "==> result"
caps=$(getcap "$staging/rootfs/usr/local/bin/muster")
echo "$caps"
case $caps in
  *cap_net_bind_service=ep*) ;;
  *) echo "docker-build-steps: muster lacks cap_net_bind_service" >&2; exit 1 ;;
esac
"$staging/rootfs/usr/local/bin/muster" check-config "$staging/rootfs/etc/muster/muster.toml"
(cd "$staging/rootfs" && find . -mindepth 1 -printf '%M %U:%G %p\n' | sort -k3)
