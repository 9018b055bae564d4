#!/bin/sh
# The builder stage of deploy/Dockerfile: compile muster and put a stripped binary in OUT.
#   build.sh OUT                 cargo build --release --locked --features etcd (as in the
#                                image: the replicated registry is in; it needs protoc)
#   MUSTER_PREBUILT=BIN build.sh OUT   take an already built release binary instead
# deploy/docker-build-steps.sh runs this outside Docker.
set -eu
out=${1:?usage: build.sh OUT_DIR}
if [ -n "${MUSTER_PREBUILT:-}" ]; then
  bin=$MUSTER_PREBUILT
else
  cargo build --release --locked --features etcd --bin muster
  bin=target/release/muster
fi
mkdir -p "$out"
# Line tables (profile.release debug) triple the size; panics still name the function.
strip --strip-debug -o "$out/muster" "$bin"
"$out/muster" --version
