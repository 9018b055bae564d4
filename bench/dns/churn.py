"""Churn: REST changes applied to muster at a fixed rate while dnsperf measures it.

The changes come from `churn_load` (bench/load/, built by bench.py into target/release/), a
std-only Rust client started for each run: the load generator shares dnsperf's core, and
the Python client it replaced took ~15% of that core at 1,000 changes/s, which dnsperf
then lacked. Its doc comment says what it sends: PUTs (new address) and DELETEs of the
instance `churn` of min(S, rate) services spread over the namespace, 16 keep-alive
connections, each service changed about once a second. The file source owns `i0..iK`,
so the API may not change those (409); `churn` is the API's own.

Staleness is checked two ways:
- during the run, the client follows every `sample_every`-th write at once with a DNS
  query for `churn.svcN`, which must already show that write (muster answers a write
  only once it is in DNS, so no answer may be even one change behind);
- after the run (`verify`), every touched service is queried: `churn.svcN A` and `svcN A`
  must show exactly the last write (its address, or NXDOMAIN / absence after a DELETE).

Then `cleanup()` deletes the churn instances left, so later runs (and the comparison with
Knot and NSD) see the generated namespace again, and the next run starts from none.
"""

import http.client
import json
import subprocess
import threading
import time

import dns.rcode

import histogram
from namespace import NAMESPACE, service_name
from servers import query, query_whole

CHURN_ID = "churn"
FSYNC = "muster_store_fsync_seconds"
RECORDS = "muster_store_records_total"


class Churn:
    def __init__(self, muster, binary, services, rate, clients=16, sample_every=20, batch=1):
        self.muster = muster
        self.batch = batch
        self.binary = binary
        self.services = services
        self.rate = rate
        self.clients = max(1, min(clients, services, rate))
        self.sample_every = sample_every
        # Last write per service index: an address, or None after a DELETE.
        self.last = {}

    def path(self, service):
        return f"/v1/namespaces/{NAMESPACE}/services/{service_name(service)}/instances/{CHURN_ID}"

    def run(self, deadline):
        """Applies changes until `deadline` (time.monotonic()); returns this run's figures.
        May run again after `cleanup()`; the last write per service carries over."""
        left = [service for service, address in self.last.items() if address is not None]
        if left:
            raise RuntimeError(f"churn run started with {len(left)} churn instances registered; cleanup() first")
        seconds = max(0.0, deadline - time.monotonic())
        metrics = (FSYNC, RECORDS)
        before = histogram.scrape(self.muster, metrics)
        command = [
            self.binary, "--http", f"127.0.0.1:{self.muster.http_port}", "--dns", f"127.0.0.1:{self.muster.port}",
            "--namespace", NAMESPACE, "--services", str(self.services), "--rate", str(self.rate),
            "--clients", str(self.clients), "--seconds", f"{seconds:.3f}", "--sample-every", str(self.sample_every), "--batch", str(self.batch),
        ]  # fmt: skip
        finished = subprocess.run(command, capture_output=True, text=True)
        after = histogram.scrape(self.muster, metrics)
        if finished.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({finished.returncode}): {finished.stderr.strip()}")
        result = json.loads(finished.stdout)
        for service, address in result.pop("last").items():
            self.last[int(service)] = address
        elapsed = result.pop("elapsed")
        stats = result
        stats["target_per_s"] = self.rate
        stats["achieved_per_s"] = stats["writes"] / elapsed if elapsed > 0 else 0.0
        stats["services_touched"] = len(self.last)
        records = after.get(RECORDS, 0.0) - before.get(RECORDS, 0.0)
        stats["fsync"] = histogram.summary(histogram.difference(before, after, FSYNC), records)
        return stats

    def _send(self, connection, method, path, body):
        try:
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            return f"{type(error).__name__}: {error}"

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
            whole = query_whole(self.muster.port, svc, "A", timeout=2)
            addresses = {rr.address for rrset in whole.answer for rr in rrset}
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
