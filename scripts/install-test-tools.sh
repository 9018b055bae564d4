#!/usr/bin/env bash
# Installs every tool the test suite uses that does not come with the Rust toolchain:
#   - dig and nsupdate (Debian package dnsutils) and kdig (knot-dnsutils), real DNS clients we
#     did not write; knotd, named and unbound, real servers and a resolver around muster;
#   - for deploy/ (tests/interop/test_deploy.py): systemd-analyze (systemd), setcap/getcap
#     (libcap2-bin) and setpriv (util-linux);
#   - a Python virtualenv at .venv with the packages pinned in tests/interop/requirements.txt
#     (pytest, dnspython, requests; boto3 and moto's server for the ECS source's tests).
# Idempotent and quick when everything is already there: apt runs only for a missing package,
# pip only when requirements.txt changed since the last install. Ends by running each tool and
# exits non-zero, naming the tool, if any of them does not work.
# With --build-deps, only what `cargo build --features etcd` needs (protoc), so the build can
# start while the rest installs (scripts/test).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
requirements="$root/tests/interop/requirements.txt"
stamp="$venv/.requirements.sha256"
# knot (knotd) and bind9 (named) run as secondaries of muster and knotd as a forwarding
# upstream; unbound as a resolver in front of it; iproute2's `ip netns` gives getent a
# private resolv.conf (tests/interop/test_transfer.py, test_resolvers.py).
# etcd-server and etcd-client (etcdctl): the 3-member cluster of the replicated registry's
# tests (tests/interop/test_etcd.py); protobuf-compiler and libprotobuf-dev (protoc and its
# well-known types) build the `etcd` feature's client.
# prometheus: its promtool checks deploy/monitoring/alerts.yml and runs its rule unit tests
# (tests/interop/test_monitoring.py); Debian ships promtool only inside the server package.
# chromium: the headless browser that loads the status page (tests/interop/test_status_page.py:
# rendered DOM, live update, screenshots).
# curl: a second HTTP client in the REST, batch, watch and auth tests.
apt_packages=(dnsutils knot-dnsutils knot bind9 unbound iproute2 systemd libcap2-bin util-linux
  etcd-server etcd-client protobuf-compiler libprotobuf-dev prometheus chromium curl)
build_only=false
if [ "${1:-}" = "--build-deps" ]; then
  build_only=true
  apt_packages=(protobuf-compiler libprotobuf-dev)
fi

say() { printf 'install-test-tools: %s\n' "$*"; }
die() { printf 'install-test-tools: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# --- Debian packages -------------------------------------------------------------------
missing=()
for pkg in "${apt_packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${missing[*]} by hand"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if $build_only; then
  protoc --version >/dev/null || die "protoc does not work"
  exit 0
fi

# --- Python virtualenv -----------------------------------------------------------------
[ -f "$requirements" ] || die "missing $requirements"
if [ -d "$venv" ] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  say "removing broken virtualenv $venv"
  rm -rf "$venv"
fi
if [ ! -d "$venv" ]; then
  command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for the .venv)"
  say "creating virtualenv $venv with $(python3 --version 2>&1)"
  python3 -m venv "$venv"
fi
want=$(sha256sum "$requirements" | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  say "installing Python packages from ${requirements#"$root"/}"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  printf '%s\n' "$want" >"$stamp"
fi

# --- Verify: every tool runs, or we fail naming it -------------------------------------
failed=()
check() {
  local name=$1
  shift
  if ! out=$("$@" 2>&1); then
    printf 'install-test-tools: ERROR: %s does not work (%s):\n%s\n' "$name" "$*" "$out" >&2
    failed+=("$name")
  fi
}
check dig dig -v
check nsupdate nsupdate -V
check kdig kdig --version
check knotd knotd --version
check named named -v
check unbound unbound -V
check "ip netns" ip netns list
check getent getent hosts localhost
check "python packages (pytest, dnspython, requests, boto3, moto)" \
  "$venv/bin/python" -c 'import dns, pytest, requests, boto3, moto.server'
check moto_server test -x "$venv/bin/moto_server"
check cfn-lint "$venv/bin/cfn-lint" --version
check systemd-analyze systemd-analyze --version
check "setcap and getcap" sh -c 'command -v setcap && command -v getcap'
check setpriv setpriv --version
check etcd etcd --version
check etcdctl etcdctl version
check protoc protoc --version
check promtool promtool --version
check chromium chromium --headless --no-sandbox --version
check curl curl --version
if [ ${#failed[@]} -gt 0 ]; then
  die "missing or broken: ${failed[*]}"
fi
say "ok: $(dig -v 2>&1 | head -n1); $(kdig --version 2>&1 | head -n1); $("$venv/bin/python" -c 'import dns.version, pytest, requests; print("dnspython", dns.version.version, "pytest", pytest.__version__, "requests", requests.__version__)')"
