"""Topics are managed through the admin APIs: create, list, describe configs, add partitions, delete.

Each admin client (confluent-kafka AdminClient, kafka-python KafkaAdminClient, KafkaJS
admin) runs the same story and the results are normalised to compare alike:

1. CreateTopics with 3 partitions and retention.ms / segment.bytes set; a second create of
   the same name fails with TOPIC_ALREADY_EXISTS.
2. Metadata lists it with 3 partitions (kcat -L sees the same).
3. DescribeConfigs reports the two values with source DYNAMIC_TOPIC_CONFIG, and, for a
   topic created without configs, retention.ms with a default source.
4. CreatePartitions grows it to 5; partition 4 takes a message and gives it back.
5. DeleteTopics removes it from the listing.
"""

import confluent_kafka
import kafka
import kafka.errors
import pytest
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic

import clients as c

CONFIGS = {"retention.ms": "3600000", "segment.bytes": "1048576"}
DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_SOURCES = {3, 4, 5}  # dynamic default broker, static broker, default
TOPIC_ALREADY_EXISTS = 36


class ConfluentAdmin:
    def __init__(self, bootstrap):
        self.a = c.confluent_admin(bootstrap)

    def create(self, topic, partitions, configs):
        fut = self.a.create_topics([NewTopic(topic, partitions, config=configs)])[topic]
        try:
            fut.result(30)
        except confluent_kafka.KafkaException as e:
            return e.args[0].code()
        return 0

    def list(self):
        return {name: len(t.partitions) for name, t in self.a.list_topics(timeout=10).topics.items()}

    def configs(self, topic):
        res = ConfigResource(confluent_kafka.admin.ResourceType.TOPIC, topic)
        entries = self.a.describe_configs([res])[res].result(30)
        return {name: (e.value, e.source) for name, e in entries.items()}

    def add_partitions(self, topic, total):
        self.a.create_partitions([NewPartitions(topic, total)])[topic].result(30)

    def delete(self, topic):
        self.a.delete_topics([topic], operation_timeout=30)[topic].result(30)


class KafkaPythonAdmin:
    def __init__(self, bootstrap):
        self.a = c.kafka_python_admin(bootstrap)

    def create(self, topic, partitions, configs):
        try:
            self.a.create_topics({topic: {"num_partitions": partitions, "configs": configs}})
        except kafka.errors.KafkaError as e:
            return e.errno
        return 0

    def list(self):
        return {t["name"]: len(t["partitions"]) for t in self.a.describe_topics()}

    def configs(self, topic):
        res = kafka.admin.ConfigResource(kafka.admin.ConfigResourceType.TOPIC, topic)
        got = self.a.describe_configs([res], config_filter="all")["topic"][topic]
        return {name: (e["value"], int(kafka.admin.ConfigSourceType[e["config_source"]]))
                for name, e in got.items()}

    def add_partitions(self, topic, total):
        self.a.create_partitions({topic: total})

    def delete(self, topic):
        self.a.delete_topics([topic])


class KafkaJsAdmin:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap

    def run(self, *ops):
        return c.kafkajs("admin", bootstrap=self.bootstrap, ops=list(ops))["results"]

    def create(self, topic, partitions, configs):
        entries = [{"name": k, "value": v} for k, v in configs.items()]
        (created,) = self.run(["createTopics", {"topics": [{"topic": topic,
                                                            "numPartitions": partitions,
                                                            "configEntries": entries}],
                                                "waitForLeaders": True}])
        # KafkaJS turns TOPIC_ALREADY_EXISTS (and only that) into `false`.
        return 0 if created else TOPIC_ALREADY_EXISTS

    def list(self):
        (names,) = self.run(["listTopics"])
        (meta,) = self.run(["fetchTopicMetadata", {"topics": names}])
        return {t["name"]: len(t["partitions"]) for t in meta["topics"]}

    def configs(self, topic):
        (res,) = self.run(["describeConfigs", {"resources": [{"type": 2, "name": topic}],
                                               "includeSynonyms": False}])
        (resource,) = res["resources"]
        assert resource["errorCode"] == 0, resource
        return {e["configName"]: (e["configValue"], e["configSource"])
                for e in resource["configEntries"]}

    def add_partitions(self, topic, total):
        self.run(["createPartitions", {"topicPartitions": [{"topic": topic, "count": total}]}])

    def delete(self, topic):
        self.run(["deleteTopics", {"topics": [topic]}])


ADMINS = {"confluent": ConfluentAdmin, "kafka-python": KafkaPythonAdmin, "kafkajs": KafkaJsAdmin}


def source_int(source) -> int:
    return int(getattr(source, "value", source))


@pytest.mark.parametrize("client", ADMINS)
def test_topic_lifecycle_through_admin_api(broker, topic, client):
    admin = ADMINS[client](broker.bootstrap)

    assert admin.create(topic, 3, CONFIGS) == 0
    assert admin.create(topic, 3, CONFIGS) == TOPIC_ALREADY_EXISTS
    assert admin.list().get(topic) == 3
    kcat_topics = {t["topic"]: len(t["partitions"]) for t in c.kcat_metadata(broker.bootstrap)["topics"]}
    assert kcat_topics.get(topic) == 3

    configs = admin.configs(topic)
    for name, value in CONFIGS.items():
        assert name in configs, f"{name} missing from DescribeConfigs: {sorted(configs)}"
        assert configs[name][0] == value
        assert source_int(configs[name][1]) == DYNAMIC_TOPIC_CONFIG, (name, configs[name])

    plain = topic + "-plain"
    assert admin.create(plain, 1, {}) == 0
    plain_configs = admin.configs(plain)
    assert "retention.ms" in plain_configs, sorted(plain_configs)
    value, source = plain_configs["retention.ms"]
    assert int(value) != 0 and source_int(source) in DEFAULT_SOURCES, (value, source)

    admin.add_partitions(topic, 5)
    assert admin.list().get(topic) == 5
    c.confluent_produce(broker.bootstrap, topic, [(b"k", b"in-new-partition", 4)])
    (got,) = c.confluent_consume(broker.bootstrap, topic, [4], 1, timeout_s=30)
    assert (got.partition, got.offset, got.value) == (4, 0, b"in-new-partition")

    admin.delete(topic)
    listed = admin.list()
    assert topic not in listed and plain in listed
