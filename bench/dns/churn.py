"""Churn: REST changes applied to muster at a fixed rate while dnsperf measures it.

Each change is a PUT (new address) or DELETE of the instance `churn` of one service,
`PUT/DELETE /v1/namespaces/internal/services/svcN/instances/churn`. The churned services
are min(S, rate) services spread evenly over the namespace, taken in turn, so each gets
about one change per second and sees PUTs and DELETEs; worker k of `clients` (one
keep-alive HTTP connection each) owns every `clients`-th of them, so the last write to
every service is well defined. The file source owns `i0..iK`, so the API may not change
those (409); `churn` is the API's own.

Staleness is checked two ways:
- during the run, every `sample_every`-th write is followed at once by a DNS query for
  `churn.svcN`, which must already show that write (muster answers a write only once it
  is in DNS, so no answer may be even one change behind);
- after the run, every touched service is queried: `churn.svcN A` and `svcN A` must show
  exactly the last write (its address, or NXDOMAIN / absence after a DELETE).

Then `cleanup()` deletes the churn instances left, so later runs (and the comparison with
Knot and NSD) see the generated namespace again.
"""

import http.client
import ipaddress
import json
import threading
import time

import dns.exception
import dns.rcode

from namespace import NAMESPACE, service_name
from servers import query

CHURN_ID = "churn"
FIRST_CHURN_ADDRESS = ipaddress.IPv4Address("10.255.0.1")


class Churn:
    def __init__(self, muster, services, rate, clients=4, sample_every=20):
        self.muster = muster
        self.services = services
        self.rate = rate
        self.clients = max(1, min(clients, services, rate))
        self.sample_every = sample_every
        # Last write per service index: an address, or None after a DELETE.
        self.last = {}
        self.lock = threading.Lock()

    def path(self, service):
        return f"/v1/namespaces/{NAMESPACE}/services/{service_name(service)}/instances/{CHURN_ID}"

    def run(self, deadline):
        """Applies changes until `deadline` (time.monotonic()); returns this run's figures.
        May run again: the last write per service carries over."""
        self.stats = {"writes": 0, "puts": 0, "deletes": 0, "errors": [], "read_checks": 0, "stale_reads": [], "probe_timeouts": 0}
        started = time.monotonic()
        threads = [threading.Thread(target=self._worker, args=(k, started, deadline)) for k in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        stats = dict(self.stats)
        stats["target_per_s"] = self.rate
        stats["achieved_per_s"] = stats["writes"] / elapsed if elapsed > 0 else 0.0
        stats["services_touched"] = len(self.last)
        stats["errors"] = stats["errors"][:20]
        stats["stale_reads"] = stats["stale_reads"][:20]
        return stats

    def _worker(self, k, started, deadline):
        churned = min(self.services, self.rate)
        spread = [n * self.services // churned for n in range(churned)]
        owned = spread[k :: self.clients]
        interval = self.clients / self.rate
        connection = http.client.HTTPConnection("127.0.0.1", self.muster.http_port, timeout=10)
        j = 0
        while True:
            due = started + j * interval
            if due >= deadline:
                break
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            service = owned[j % len(owned)]
            round_ = j // len(owned)
            previous = self.last.get(service)
            if previous is not None and round_ % 3 == 2:
                address = None
                status = self._send(connection, "DELETE", self.path(service), None)
            else:
                address = str(FIRST_CHURN_ADDRESS + ((j * self.clients + k) % 65_000))
                body = json.dumps({"ipv4": address, "port": 9000}).encode()
                status = self._send(connection, "PUT", self.path(service), body)
            with self.lock:
                self.stats["writes"] += 1
                if status == 200:
                    self.stats["deletes" if address is None else "puts"] += 1
                    self.last[service] = address
                else:
                    self.stats["errors"].append(f"{service_name(service)}: HTTP {status}")
            if status == 200 and j % self.sample_every == 0:
                self._check_read(service, address)
            j += 1
        connection.close()

    def _send(self, connection, method, path, body):
        try:
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            return f"{type(error).__name__}: {error}"

    def _check_read(self, service, address):
        """Right after the write's response, DNS must answer it (read-your-writes)."""
        name = f"{CHURN_ID}.{service_name(service)}.{NAMESPACE}."
        try:
            response = query(self.muster.port, name, "A", timeout=1)
        except dns.exception.Timeout:
            with self.lock:
                self.stats["probe_timeouts"] += 1
            return
        problem = _mismatch(response, address)
        with self.lock:
            self.stats["read_checks"] += 1
            if problem:
                self.stats["stale_reads"].append(f"{name}: {problem}")

    def cleanup(self):
        """Deletes every churn instance still registered, so the namespace is the one
        Knot and NSD serve again before the next run."""
        present = [service for service, address in sorted(self.last.items()) if address is not None]

        def delete(share):
            connection = http.client.HTTPConnection("127.0.0.1", self.muster.http_port, timeout=10)
            for service in share:
                status = self._send(connection, "DELETE", self.path(service), None)
                if status != 200:
                    raise RuntimeError(f"cleanup DELETE {self.path(service)}: HTTP {status}")
                self.last[service] = None
            connection.close()

        threads = [threading.Thread(target=delete, args=(present[k :: self.clients],)) for k in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        left = [service for service, address in self.last.items() if address is not None]
        if left:
            raise RuntimeError(f"cleanup left {len(left)} churn instances registered")

    def verify(self):
        """After the run: every touched service answers exactly its last write."""
        stale, checked = [], 0
        for service, address in sorted(self.last.items()):
            svc = f"{service_name(service)}.{NAMESPACE}."
            instance = query(self.muster.port, f"{CHURN_ID}.{svc}", "A", timeout=2)
            problem = _mismatch(instance, address)
            if problem:
                stale.append(f"{CHURN_ID}.{svc}: {problem}")
            addresses = {rr.address for rrset in query(self.muster.port, svc, "A", timeout=2).answer for rr in rrset}
            if address is not None and address not in addresses:
                stale.append(f"{svc}: {address} missing from {sorted(addresses)}")
            if address is None and any(a.startswith("10.255.") for a in addresses):
                stale.append(f"{svc}: deleted churn instance still answered: {sorted(addresses)}")
            checked += 1
        return {"services_checked": checked, "stale": len(stale), "examples": stale[:20]}


def _mismatch(response, address):
    """Why `response` (to `churn.svcN A`) does not show `address` (None: deleted)."""
    got = sorted(rr.address for rrset in response.answer for rr in rrset)
    if address is None:
        if response.rcode() != dns.rcode.NXDOMAIN:
            return f"expected NXDOMAIN after DELETE, got {dns.rcode.to_text(response.rcode())} {got}"
        return None
    if got != [address]:
        return f"expected [{address}], got {dns.rcode.to_text(response.rcode())} {got}"
    return None
