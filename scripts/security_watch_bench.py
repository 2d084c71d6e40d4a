"""How soon a token revoked on one agent is refused on another (decision 0029).

Two ``EtcdDocuments`` on one cluster of a real single-member etcd (Debian's etcd-server
on loopback, started as the cluster tests start it) stand for two agents: the first
revokes a token, the second, whose periodic refresh is set to an hour, refuses it once
its etcd watch woke its refresh thread. Reported: the time from the revocation's answer
to the first refusal seen by a polling reader (every 0.2 ms), and what a change costs
(one compare-and-swap transaction of the credential document, with the size of the
document).

    python scripts/security_watch_bench.py [--rounds 200] [--users 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from odradek.chaos.etcd import etcd_cluster
from odradek.cluster.documents import EtcdDocuments
from odradek.security import CredentialStore
from odradek.security.credentials import DOCUMENT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--users", type=int, default=200, help="users in the document besides the one used")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, etcd_cluster(Path(directory), 1) as etcd:
        here_documents = EtcdDocuments(etcd.url, "bench")
        there_documents = EtcdDocuments(etcd.url, "bench")
        try:
            here = CredentialStore(here_documents.persistence(DOCUMENT))
            for n in range(args.users):
                here.add_user(f"user{n:05d}", "secret-secret")
            here.add_user("bob", "bob-secret")
            there = CredentialStore(there_documents.persistence(DOCUMENT))
            there_documents.watch()
            stop = there.refresh_every(3600.0)
            reached: list[float] = []
            changes: list[float] = []
            for _ in range(args.rounds):
                token, entry = here.create_token("bob")
                while there.token_user(token) is None:  # the new token reaches it too
                    time.sleep(0.0002)
                began = time.perf_counter()
                here.revoke_token(entry.id)
                answered = time.perf_counter()
                while there.token_user(token) is not None:
                    time.sleep(0.0002)
                reached.append(time.perf_counter() - answered)
                changes.append(answered - began)
            stop.set()
            size = len(here_documents.read(here_documents.layout.security(DOCUMENT))[0] or b"")
        finally:
            here_documents.close()
            there_documents.close()
    reached.sort()
    changes.sort()

    def ms(values: list[float], q: float) -> str:
        return f"{values[min(len(values) - 1, int(q * len(values)))] * 1000:.2f} ms"

    print(f"document: {size:,} bytes ({args.users + 1} users)")
    print(
        f"revocation refused on the other agent after: median {statistics.median(reached) * 1000:.2f} ms, "
        f"p99 {ms(reached, 0.99)}, max {reached[-1] * 1000:.2f} ms ({args.rounds} rounds)"
    )
    print(
        f"a change (revoke_token: revision check + transaction): median {ms(changes, 0.5)}, "
        f"p99 {ms(changes, 0.99)}"
    )


if __name__ == "__main__":
    main()
