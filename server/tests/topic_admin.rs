//! Topic admin: CreateTopics (defaults, configs, validate-only, errors), DescribeConfigs with
//! real values and sources, CreatePartitions, DeleteTopics, DescribeCluster, Metadata.

mod common;

use common::{topic, Broker, TestResult};
use kafka_protocol::{
    messages::{
        create_partitions_request::CreatePartitionsTopic,
        create_topics_request::{CreatableTopic, CreatableTopicConfig},
        delete_topics_request::DeleteTopicState,
        describe_configs_request::DescribeConfigsResource,
        CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
        DescribeConfigsRequest, MetadataRequest,
    },
    protocol::StrBytes,
};

fn creatable(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic(name))
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string((*k).to_string()))
                        .with_value(Some(StrBytes::from_string((*v).to_string())))
                })
                .collect(),
        )
}

#[test]
fn create_describe_grow_delete() -> TestResult {
    let broker = Broker::start(&["--default-partitions", "2"])?;
    let mut c = broker.client()?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            creatable("plain", -1, &[]),
            creatable(
                "tuned",
                3,
                &[("retention.ms", "60000"), ("segment.bytes", "1048576")],
            ),
            creatable("bad config", 1, &[]),
            creatable("badcfg", 1, &[("cleanup.policy", "compact")]),
            creatable("zero", 0, &[]),
        ]);
    let resp = c.send(7, &req)?;
    let codes: Vec<i16> = resp.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [0, 0, 17, 40, 37]);
    assert_eq!(resp.topics[0].num_partitions, 2, "-1 is the broker default");
    assert_eq!(resp.topics[1].num_partitions, 3);
    assert!(!resp.topics[1].topic_id.is_nil());
    let again = c.send(7, &req)?;
    assert_eq!(again.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");

    let dry = CreateTopicsRequest::default()
        .with_validate_only(true)
        .with_topics(vec![creatable("dry", 4, &[])]);
    assert_eq!(c.send(5, &dry)?.topics[0].error_code, 0);
    let meta = c.send(12, &MetadataRequest::default().with_topics(None))?;
    let names: Vec<String> = meta
        .topics
        .iter()
        .filter(|t| !t.is_internal)
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    assert_eq!(names, ["plain", "tuned"], "validate-only created nothing");
    assert_eq!(meta.cluster_id.as_ref().map(|c| c.len()), Some(22));
    assert_eq!(meta.brokers[0].port, i32::from(broker.addr.port()));

    let describe = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("tuned")),
        DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("0")),
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("missing")),
    ]);
    let resp = c.send(4, &describe)?;
    let tuned = &resp.results[0];
    let get = |name: &str| {
        tuned
            .configs
            .iter()
            .find(|e| e.name.as_str() == name)
            .map(|e| (e.value.as_ref().map(|v| v.to_string()), e.config_source))
    };
    assert_eq!(get("retention.ms"), Some((Some("60000".into()), 1)));
    assert_eq!(get("segment.bytes"), Some((Some("1048576".into()), 1)));
    assert_eq!(get("retention.bytes"), Some((Some("-1".into()), 5)));
    assert_eq!(get("cleanup.policy"), Some((Some("delete".into()), 5)));
    assert!(resp.results[1]
        .configs
        .iter()
        .any(|e| e.name.as_str() == "num.partitions"
            && e.value.as_ref().is_some_and(|v| v.as_str() == "2")));
    assert_eq!(resp.results[2].error_code, 3);

    let grow = |count| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic("plain"))
                .with_count(count)])
    };
    assert_eq!(c.send(3, &grow(5))?.results[0].error_code, 0);
    assert_eq!(
        c.send(3, &grow(4))?.results[0].error_code,
        37,
        "no shrinking"
    );
    assert_eq!(
        c.produce(9, "plain", 4, common::batch(&["new"])?)?
            .error_code,
        0
    );

    let delete = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic("plain"))),
            DeleteTopicState::default().with_name(Some(topic("missing"))),
        ]);
    let resp = c.send(6, &delete)?;
    let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [0, 3]);
    let old = DeleteTopicsRequest::default().with_topic_names(vec![topic("tuned")]);
    assert_eq!(c.send(1, &old)?.responses[0].error_code, 0);
    let meta = c.send(1, &MetadataRequest::default().with_topics(None))?;
    // Only the internal `__consumer_offsets` remains, flagged internal as in Kafka.
    assert!(
        meta.topics.iter().all(|t| t.is_internal),
        "{:?}",
        meta.topics
    );

    let cluster = c.send(1, &DescribeClusterRequest::default())?;
    assert_eq!((cluster.error_code, cluster.controller_id.0), (0, 0));
    assert_eq!(cluster.brokers.len(), 1);
    Ok(())
}

#[test]
fn auto_create_follows_the_broker_and_the_request() -> TestResult {
    let broker = Broker::start(&[])?;
    let mut c = broker.client()?;
    let ask = |name: &str, allow: bool| {
        MetadataRequest::default()
            .with_allow_auto_topic_creation(allow)
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(topic(name))),
            ]))
    };
    assert_eq!(c.send(9, &ask("nope", false))?.topics[0].error_code, 3);
    let made = c.send(9, &ask("yes", true))?;
    assert_eq!(
        (made.topics[0].error_code, made.topics[0].partitions.len()),
        (0, 1)
    );
    drop(broker);

    let broker = Broker::start(&["--auto-create-topics", "false"])?;
    let mut c = broker.client()?;
    assert_eq!(c.send(9, &ask("yes", true))?.topics[0].error_code, 3);
    let p = c.produce(9, "yes", 0, common::batch(&["a"])?)?;
    assert_eq!(p.error_code, 3, "produce does not create either");
    Ok(())
}
