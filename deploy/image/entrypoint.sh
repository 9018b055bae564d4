#!/bin/sh
# The image's entrypoint. An ECS task definition cannot carry a config file, so the whole
# TOML may come in MUSTER_CONFIG_TOML instead; muster reads it from stdin (nothing is
# written, so a read-only root filesystem works). Otherwise the arguments are muster's.
set -eu
if [ -n "${MUSTER_CONFIG_TOML:-}" ]; then
  exec muster serve --config /dev/stdin <<EOF_CONFIG
$MUSTER_CONFIG_TOML
EOF_CONFIG
fi
exec muster "$@"
