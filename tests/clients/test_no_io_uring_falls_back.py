"""Where io_uring is denied (a seccomp filter like Docker's default profile), keel starts on
the pwrite backend with one clear line in its log, and every client produces to it and
consumes from it as usual; the data survives a restart under the same filter.
"""

import pytest

import clients as c

PARTITIONS = 4
COUNT = 2_000


@pytest.mark.parametrize("client", c.CLIENTS)
def test_clients_work_on_the_fallback_backend(broker_factory, topic, client):
    broker = broker_factory(deny_io_uring=True, fsync="always")
    log = broker.log_text()
    fallback = [line for line in log.splitlines() if "io_uring cannot be set up here" in line]
    assert len(fallback) == 1, f"one line about the fallback, got:\n{log}"
    assert "Operation not permitted" in fallback[0], fallback[0]
    assert "io_backend=pwrite" in log
    c.create_topic(broker.bootstrap, topic, PARTITIONS)
    produced = c.keyed_messages(COUNT)
    c.produce_with(client, broker.bootstrap, topic, produced)
    broker.restart()
    consumed = c.consume_with(client, broker.bootstrap, topic, list(range(PARTITIONS)), COUNT,
                              timeout_s=120)
    c.check_keyed_order(consumed, produced)
