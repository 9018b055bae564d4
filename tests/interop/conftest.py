"""Fixtures of the interop suite. The harness itself (the Muster class, dig/kdig output
parsing, shared assertions) is in harness.py.

``muster``         factory: ``muster(extra_toml="")`` starts a fresh server with its own ports
                   and data_dir under the test's tmp dir and returns a ``harness.Muster``
                   (``default_namespace=False``: no ``internal`` namespace is added);
                   every server it started is stopped (SIGTERM, then SIGKILL) afterwards.
``module_muster``  the same factory, module-scoped, for expensive shared set-ups.
``moto_server``    a moto_server (module-scoped) as the ECS, SQS and EventBridge endpoint.
``aws``            a ``moto_ecs.Ecs`` on it, reset, with muster's AWS environment set.
``etcd_cluster``   a 3-member etcd cluster on loopback (etcd_cluster.EtcdCluster), stopped
                   afterwards.

When a test fails, the tail of each of its servers' logs is printed with the report.
"""

import shutil

import pytest

from etcd_cluster import EtcdCluster
from harness import Muster, MusterStartError, muster_bin
from moto_ecs import CREDENTIALS, Ecs, MotoServer


class Factory:
    def __init__(self, make_dir):
        self._make_dir = make_dir
        self.servers = []

    def __call__(self, extra_toml="", start=True, default_namespace=True):
        """Start (or, with start=False, only configure) a muster with ``extra_toml``."""
        muster_bin()
        last = None
        for _ in range(3):
            m = Muster(self._make_dir(), extra_toml, default_namespace=default_namespace)
            self.servers.append(m)
            if not start:
                return m
            try:
                return m.start()
            except MusterStartError as e:
                # Another process may have taken a port between our probe and muster's bind.
                if "in use" not in str(e).lower():
                    raise
                last = e
        raise last

    def close(self):
        for m in self.servers:
            m.stop()
            m.http.close()


@pytest.fixture
def muster(tmp_path, request):
    counter = iter(range(1_000_000))
    factory = Factory(lambda: tmp_path / f"muster{next(counter)}")
    yield factory
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for m in factory.servers:
            print(m.log_tail())
    factory.close()


@pytest.fixture(scope="module")
def module_muster(tmp_path_factory):
    factory = Factory(lambda: tmp_path_factory.mktemp("muster"))
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server, monkeypatch):
    moto_server.reset()
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    return Ecs(moto_server.url)


@pytest.fixture
def etcd_cluster(tmp_path, request):
    cluster = EtcdCluster(tmp_path / "etcd").start()
    yield cluster
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for i in range(len(cluster.names)):
            print(f"--- etcd {cluster.names[i]} ---\n{cluster.log_tail(i)}")
    cluster.stop()


@pytest.fixture(scope="session", autouse=True)
def _client_tools():
    for tool in ("dig", "kdig"):
        if shutil.which(tool) is None:
            pytest.exit(f"{tool} not found: run scripts/install-test-tools.sh", returncode=3)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep
