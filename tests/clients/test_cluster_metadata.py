"""Metadata and DescribeCluster describe one broker at its advertised address.

Every client finds the broker through Metadata, so the one broker must be listed at the
address given by --advertised-listener, be the controller, and lead every partition.
DescribeCluster (confluent-kafka, kafka-python) gives the same broker and a cluster id.
"""

import clients as c
import kafka_wire as kw


def test_metadata_lists_the_advertised_broker_as_leader(broker, topic):
    c.create_topic(broker.bootstrap, topic, 3)
    with kw.Connection(broker.bootstrap) as conn:
        meta = conn.metadata([topic])
    assert len(meta.brokers) == 1
    node_id, host, port = meta.brokers[0]
    assert f"{host}:{port}" == broker.bootstrap
    assert meta.controller_id == node_id
    t = meta.topics[topic]
    assert t.error_code == kw.NONE and not t.is_internal
    assert t.partitions == {p: (kw.NONE, node_id) for p in range(3)}

    kcat = c.kcat_metadata(broker.bootstrap)
    assert [(b["id"], b["name"]) for b in kcat["brokers"]] == [(node_id, broker.bootstrap)]


def test_describe_cluster(broker):
    admin = c.confluent_admin(broker.bootstrap)
    desc = admin.describe_cluster(request_timeout=10).result(30)
    assert desc.cluster_id, "no cluster id"
    assert [(n.host, n.port) for n in desc.nodes] == [("127.0.0.1", broker.advertised_port)]
    assert desc.controller is not None and desc.controller.id == desc.nodes[0].id

    kp = c.kafka_python_admin(broker.bootstrap)
    try:
        cluster = kp.describe_cluster()
    finally:
        kp.close()
    assert cluster["cluster_id"] == desc.cluster_id
    assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [
        ("127.0.0.1", broker.advertised_port)]
