#!/usr/bin/env bash
# Runs moto's own Cloud Map test suite against muster and prints the pass count.
#
# Fetches moto's source package from PyPI at the version tests/interop/requirements.txt
# pins (hash-checked), extracts tests/test_servicediscovery, and runs it with this
# directory's conftest.py (mock_aws a no-op, the endpoint a fresh muster per test).
# README.md classifies every test that still fails. Exits non-zero if fewer tests pass
# than the count recorded in ./baseline, so CI notices a regression.
#
#   tests/moto_servicediscovery/run.sh [pytest args]   # MUSTER_BIN defaults to target/release/muster
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py="$root/.venv/bin/python"
version=$(sed -n 's/^moto\[server\]==\([0-9][0-9.]*\).*/\1/p' "$root/tests/interop/requirements.txt")
# The sdist's sha256 at that version; update both together.
sha256=391857257d5dac144334013c2c10e599def5f0562f553e979160140bd7bd9cf6
pinned=5.2.5
if [ "$version" != "$pinned" ]; then
    echo "run.sh pins moto $pinned (and its hash) but requirements.txt has $version: update run.sh" >&2
    exit 2
fi

cache="${MUSTER_MOTO_CACHE:-$root/target/moto-servicediscovery}"
tarball="$cache/moto-$version.tar.gz"
mkdir -p "$cache"
if [ ! -f "$tarball" ]; then
    "$py" -m pip download --quiet --no-deps --no-binary :all: -d "$cache" "moto==$version"
fi
echo "$sha256  $tarball" | sha256sum --check --quiet

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work" "moto-$version/tests/test_servicediscovery"
suite="$work/suite"
mv "$work/moto-$version/tests/test_servicediscovery" "$suite"
cp "$here/conftest.py" "$suite/conftest.py"
rm -f "$suite/__init__.py"

export MUSTER_REPO="$root"
export MUSTER_BIN="${MUSTER_BIN:-$root/target/release/muster}"
# test_server.py drives moto's own Flask app in process: there is no client to point at
# muster, so it says nothing about muster and is left out of the count.
set +e
(cd "$suite" && "$py" -m pytest -q -p no:cacheprovider --rootdir "$suite" \
    --ignore test_server.py -o addopts="" -rf "$@" . ) | tee "$work/out.txt"
set -e
passed=$(grep -Eo '[0-9]+ passed' "$work/out.txt" | tail -1 | grep -Eo '[0-9]+' || echo 0)
count() { grep -Eo "[0-9]+ $1" "$work/out.txt" | tail -1 | grep -Eo '[0-9]+' || echo 0; }
total=$(( passed + $(count failed) + $(count error) ))
baseline=$(cat "$here/baseline")
echo "moto $version tests/test_servicediscovery against muster: $passed of $total passed (baseline $baseline)"
if [ "$passed" -lt "$baseline" ]; then
    echo "fewer than the recorded $baseline pass: a regression (see README.md)" >&2
    exit 1
fi
