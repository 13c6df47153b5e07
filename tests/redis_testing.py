"""Helpers for tests on real Redis replication (importable from any test folder)."""


def wait_for_all_replicas(master) -> None:
    """WAIT for every connected replica, not just any one (the session master may have several)."""
    replicas = int(master.info("replication")["connected_slaves"])
    assert master.wait(replicas, 5000) >= replicas
