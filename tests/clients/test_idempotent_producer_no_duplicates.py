"""An idempotent producer whose sends are retried writes each message exactly once.

A proxy (fault_proxy.py) sits between the clients and the broker, which advertises the
proxy's port. It lets Produce requests through but swallows the broker's answer to some
of them and cuts the connection, so the client must send the same batch again, with the
same producer id, epoch and sequence. The broker has already appended it once: it must
recognise the retry as a duplicate (InitProducerId and per-partition sequence checks),
acknowledge it, and not append it twice.

The control case runs the same fault with idempotence off: there the retries do
duplicate messages, which shows the fault really makes the client resend.
"""

import pytest

import clients as c
from conftest import free_port
from fault_proxy import FaultProxy

COUNT = 2_000
DROPS = 2


@pytest.fixture
def proxied(broker_factory):
    """A broker whose advertised address is a FaultProxy in front of it."""
    proxy_port, broker_port = free_port(), free_port()
    proxy = FaultProxy(upstream_port=broker_port, listen_port=proxy_port)
    try:
        broker = broker_factory(port=broker_port, advertised_port=proxy_port)
        yield broker, proxy
    finally:
        proxy.close()


def produce_through_faults(client: str, bootstrap: str, topic: str, idempotent: bool) -> None:
    messages = c.keyed_messages(COUNT)
    if client == "confluent":
        c.confluent_produce(bootstrap, topic, messages, enable_idempotence=idempotent, acks=-1,
                            linger_ms=20, retry_backoff_ms=50)
    elif client == "kafka-python":
        c.kafka_python_produce(bootstrap, topic, messages, enable_idempotence=idempotent,
                               acks="all", linger_ms=20, retries=10, retry_backoff_ms=50)
    elif client == "kafkajs":
        c.kafkajs_produce(bootstrap, topic, COUNT, idempotent=idempotent, acks=-1, chunk=200)
    else:
        raise ValueError(client)


def consumed_values(bootstrap: str, topic: str, at_least: int) -> list[bytes]:
    msgs = c.confluent_consume(bootstrap, topic, [0, 1], at_least, timeout_s=30)
    # Read to the end: duplicates past the expected count must show up too.
    hw = sum(c.confluent_watermarks(bootstrap, topic, p)[1] for p in (0, 1))
    if hw > len(msgs):
        msgs = c.confluent_consume(bootstrap, topic, [0, 1], hw, timeout_s=30)
    return [m.value for m in msgs]


@pytest.mark.parametrize("client", ["confluent", "kafka-python", "kafkajs"])
def test_idempotent_retries_write_once(proxied, topic, client):
    broker, proxy = proxied
    c.create_topic(broker.bootstrap, topic, 2)
    proxy.drop_produce_responses = DROPS
    produce_through_faults(client, broker.bootstrap, topic, idempotent=True)
    assert proxy.dropped == DROPS, "the proxy never got to drop a produce response"

    values = consumed_values(broker.bootstrap, topic, COUNT)
    dupes = len(values) - len(set(values))
    assert dupes == 0, f"{dupes} duplicated messages after {DROPS} retried produces"
    assert sorted(values) == sorted(v for _, v in c.keyed_messages(COUNT))


def test_without_idempotence_the_same_fault_duplicates(proxied, topic):
    """Control: the fault really causes resends (so the test above can fail)."""
    broker, proxy = proxied
    c.create_topic(broker.bootstrap, topic, 2)
    proxy.drop_produce_responses = DROPS
    produce_through_faults("confluent", broker.bootstrap, topic, idempotent=False)
    assert proxy.dropped == DROPS
    values = consumed_values(broker.bootstrap, topic, COUNT)
    assert len(values) > len(set(values)) == COUNT
