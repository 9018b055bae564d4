"""Runs moto's own Cloud Map tests (tests/test_servicediscovery of moto's source package)
against muster: run.sh copies this file beside them.

moto's ``mock_aws`` becomes a no-op, so every boto3 client the tests make talks to a real
endpoint: ``AWS_ENDPOINT_URL_SERVICEDISCOVERY`` points it at a muster started afresh for
each test (a fresh AWS account), configured with no namespace in its file (as a pure
Cloud Map user's), the region the test's clients use (``region_name=...`` in the test's
source; one muster serves one region, as one AWS endpoint does), moto's account id and
the DNS namespace names the tests create in ``[cloudmap] allowed_namespaces``. The host
prefix that botocore puts in front of DiscoverInstances' endpoint is turned off with
``AWS_DISABLE_HOST_PREFIX_INJECTION``. Nothing else in the tests is changed.
"""

import inspect
import os
import re
import sys
from pathlib import Path

import moto
import pytest

INTEROP = Path(os.environ["MUSTER_REPO"]) / "tests" / "interop"
sys.path.insert(0, str(INTEROP))

from harness import Muster, MusterStartError  # noqa: E402


def _no_op(func=None, *args, **kwargs):
    """``mock_aws`` as a decorator (with or without arguments) or a context manager."""
    if callable(func):
        return func
    return _NoMock()


class _NoMock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, func):
        return func

    def start(self, *args, **kwargs):
        pass

    def stop(self, *args, **kwargs):
        pass


moto.mock_aws = _no_op

# The DNS namespace names moto's tests create; an operator lists theirs the same way.
ALLOWED = ["dns_ns", "mynamespace", "public_dns_ns"]
ACCOUNT = "123456789012"  # moto.core.DEFAULT_ACCOUNT_ID


def _region(function):
    found = re.findall(r'region_name="([a-z0-9-]+)"', inspect.getsource(function))
    return found[0] if found else "us-east-1"


@pytest.fixture(autouse=True)
def muster_endpoint(request, tmp_path, monkeypatch):
    toml = (
        "[cloudmap]\n"
        f'region = "{_region(request.function)}"\n'
        f'account = "{ACCOUNT}"\n'
        f"allowed_namespaces = {ALLOWED!r}\n".replace("'", '"')
    )
    for attempt in range(3):
        m = Muster(tmp_path / f"muster{attempt}", toml, default_namespace=False)
        try:
            m.start()
            break
        except MusterStartError as e:
            if "in use" not in str(e).lower() or attempt == 2:
                raise
    monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICEDISCOVERY", f"http://127.0.0.1:{m.http_port}")
    monkeypatch.setenv("AWS_DISABLE_HOST_PREFIX_INJECTION", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    yield m
    m.stop()
    m.http.close()
