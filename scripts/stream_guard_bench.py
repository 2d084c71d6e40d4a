"""What a long-lived stream pays to check its principal again (security/revalidation.py).

Every batch of a Flight read, every message of an append stream, every request of a
Kafka connection and every round of an SSE tail asks its StreamGuard. Measured in
process, with authorization enabled (the bindings' count is read too): a check while
nothing changed (two counters compared, what nearly every batch or request pays) and a
check after a change (the principal's user looked up again and its tenant compared).

    python scripts/stream_guard_bench.py [--checks 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import timeit

from odradek.security import Authenticator, CredentialStore
from odradek.security.authorizer import enable_authorization
from odradek.security.revalidation import StreamGuard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store = CredentialStore.open(directory)
        store.add_user("alice", "alice-secret-1")
        authenticator = Authenticator(store)
        enable_authorization(authenticator)
        user = store.user("alice")
        assert user is not None
        guard = StreamGuard(authenticator, user.principal("SCRAM-SHA-256"))
        unchanged = timeit.timeit(guard.check, number=args.checks) / args.checks

        def after_a_change() -> None:
            store.generation += 1  # as a change of the store would
            guard.check()

        changed = timeit.timeit(after_a_change, number=args.checks // 10) / (args.checks // 10)
    print(f"check, nothing changed: {unchanged * 1e9:.0f} ns")
    print(f"check after a change:   {changed * 1e9:.0f} ns")


if __name__ == "__main__":
    main()
