"""Every compression codec round-trips, and the broker stores the batches as compressed.

Each client produces with each codec it has, reads the messages back itself, and
confluent-kafka reads them too (a second decoder). Then a raw Fetch checks that the
stored batches still carry the codec in their attributes and a valid CRC-32C: keel passes
compressed batches through rather than recompressing them.

KafkaJS has gzip built in, snappy from kafkajs-snappy and LZ4 from lz4js; no pure-JS zstd
encoder exists, so KafkaJS skips zstd.

kcat bundles librdkafka 2.0.2, which compresses gzip, snappy and lz4 only when the broker
advertises Produce v0 (it asks whether Produce in 0..0 is supported, a check fixed in
librdkafka 2.11.1). Against a broker whose lowest Produce version is above 0, as in Apache
Kafka 4.0, kcat logs "Broker does not support compression type" and sends those batches
uncompressed. The test then expects uncompressed batches from kcat, and still checks the
round trip; confluent-kafka (librdkafka 2.16) covers those codecs through keel.
"""

import pytest

import clients as c
import kafka_wire as kw

CODECS = {"gzip": kw.COMPRESSION_GZIP, "snappy": kw.COMPRESSION_SNAPPY,
          "lz4": kw.COMPRESSION_LZ4, "zstd": kw.COMPRESSION_ZSTD}
COUNT = 2_000

CASES = [(client, codec) for client in c.CLIENTS for codec in CODECS
         if not (client == "kafkajs" and codec == "zstd")]


def expected_stored_codec(bootstrap: str, client: str, codec: str) -> int:
    if client == "kcat" and codec != "zstd":
        with kw.Connection(bootstrap) as conn:
            produce_min, _ = conn.api_versions(0).api_keys[kw.API_PRODUCE]
        if produce_min > 0:
            return kw.COMPRESSION_NONE
    return CODECS[codec]


@pytest.mark.parametrize("client,codec", CASES)
def test_codec_round_trip_and_pass_through(broker, topic, client, codec):
    c.create_topic(broker.bootstrap, topic, 1)
    produced = c.keyed_messages(COUNT, pad_bytes=200)
    c.produce_with(client, broker.bootstrap, topic, produced, compression=codec)

    own = c.consume_with(client, broker.bootstrap, topic, [0], COUNT)
    c.check_keyed_order(own, produced)
    if client != "confluent":
        c.check_keyed_order(c.confluent_consume(broker.bootstrap, topic, [0], COUNT), produced)

    batches, watermark = kw.read_all_batches(broker.bootstrap, topic, 0)
    assert watermark == COUNT
    assert batches, "no batches fetched"
    expected = expected_stored_codec(broker.bootstrap, client, codec)
    assert {b.compression for b in batches} == {expected}, "stored batches not as produced"
    assert all(b.crc_ok and b.magic == 2 for b in batches), "stored batch CRC-32C does not match"
    assert sum(b.record_count for b in batches) == COUNT
