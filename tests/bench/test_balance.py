"""bench/balance.py: its stand-ins for the cluster DNS and kube-proxy, and one real scale-up."""

from __future__ import annotations

import socket
from pathlib import Path

import dns.message
import dns.query

from bench.balance import Endpoints, Network, measure


def test_the_dns_stand_in_answers_with_the_ready_replicas_and_follows_a_scale_up() -> None:
    network = Network(Endpoints(["127.0.0.1"]), port=1)
    with network.running():

        def answer() -> list[str]:
            query = dns.message.make_query("cvae.balance.", "A")
            reply = dns.query.udp(query, "127.0.0.1", port=network.dns_port, timeout=5)
            return sorted(record.address for rrset in reply.answer for record in rrset)

        assert answer() == ["127.0.0.1"]
        network.endpoints.add("127.0.0.2")
        assert answer() == ["127.0.0.1", "127.0.0.2"]


def test_the_proxy_picks_a_backend_per_connection_round_robin() -> None:
    backends = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    port = backends[0].getsockname()[1]
    backends[1].close()
    backends[1] = socket.create_server(("127.0.0.2", port))
    network = Network(Endpoints(["127.0.0.1", "127.0.0.2"]), port=port)
    try:
        with network.running():
            for _ in range(4):
                with socket.create_connection(("127.0.0.1", network.proxy_port)) as client:
                    client.sendall(b"x")
                    picked = [b for b in backends if _accepts(b)]
                    assert len(picked) == 1
            assert network.connections == {"127.0.0.1": 2, "127.0.0.2": 2}
    finally:
        for backend in backends:
            backend.close()


def _accepts(server: socket.socket) -> bool:
    server.settimeout(0.5)
    try:
        connection, _ = server.accept()
    except TimeoutError:
        return False
    connection.close()
    return True


def test_a_new_replica_behind_the_proxy_gets_calls_once_connections_age_out(
    tmp_path: Path,
) -> None:
    """Real replicas and client processes: with a 2 s connection age the new replica reaches a
    fair share; the seconds it took are the benchmark's, not asserted here."""
    run = measure("clusterip", 2.0, callers=2, observe_s=20, logs=tmp_path)
    assert run.seconds_to_fair_share is not None, run.new_share
    assert max(run.new_share) >= 0.4
