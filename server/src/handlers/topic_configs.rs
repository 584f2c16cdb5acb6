//! Topic configs by their Kafka names: which keel honours, how a value parses into the
//! engine's [`TopicOverrides`], and what DescribeConfigs and CreateTopics report.
//!
//! | Kafka name            | engine field             | settable |
//! |-----------------------|--------------------------|----------|
//! | retention.ms          | retention_ms             | yes      |
//! | retention.bytes       | retention_bytes          | yes      |
//! | segment.bytes         | segment_bytes_max        | yes      |
//! | segment.ms            | segment_ms               | yes      |
//! | index.interval.bytes  | index_interval_bytes     | yes      |
//! | cleanup.policy        | (delete, always)         | only its value |
//! | max.message.bytes     | batch_bytes_max (broker) | only its value |
//! | message.timestamp.type| (CreateTime, always)     | only its value |
//! | min.insync.replicas   | (1: one broker)          | only its value |
//! | compression.type      | (producer: as sent)      | only its value |
//!
//! A fixed config may be "set" to the value keel has anyway (clients and tools often pass
//! `cleanup.policy=delete`); any other value, or an unknown name, is INVALID_CONFIG.

use keel_engine::{TopicConfig, TopicOverrides};

/// Kafka's ConfigSource values used here.
pub mod source {
    /// A topic's own override.
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    /// A broker setting given at start.
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    /// The default.
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// Kafka's ConfigType values used here.
pub mod kind {
    /// true/false.
    pub const BOOLEAN: i8 = 1;
    /// A string.
    pub const STRING: i8 = 2;
    /// A 32-bit integer.
    pub const INT: i8 = 3;
    /// A 64-bit integer.
    pub const LONG: i8 = 5;
    /// A comma-separated list.
    pub const LIST: i8 = 7;
}

/// One config of a topic as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    /// Kafka's name.
    pub name: &'static str,
    /// The effective value.
    pub value: String,
    /// Where the value comes from ([`source`]).
    pub source: i8,
    /// The broker-wide value (the synonym a topic override hides).
    pub default: String,
    /// Whether it can be changed.
    pub read_only: bool,
    /// Its type ([`kind`]).
    pub kind: i8,
}

struct Settable {
    name: &'static str,
    kind: i8,
    get: fn(&TopicConfig) -> i64,
    is_set: fn(&TopicOverrides) -> bool,
    set: fn(&mut TopicOverrides, i64) -> Result<(), String>,
}

fn to<T: TryFrom<i64>>(v: i64) -> Result<T, String> {
    T::try_from(v).map_err(|_| format!("{v} is out of range"))
}

const SETTABLE: &[Settable] = &[
    Settable {
        name: "retention.ms",
        kind: kind::LONG,
        get: |c| c.retention_ms,
        is_set: |o| o.retention_ms.is_some(),
        set: |o, v| {
            o.retention_ms = Some(v);
            Ok(())
        },
    },
    Settable {
        name: "retention.bytes",
        kind: kind::LONG,
        get: |c| c.retention_bytes,
        is_set: |o| o.retention_bytes.is_some(),
        set: |o, v| {
            o.retention_bytes = Some(v);
            Ok(())
        },
    },
    Settable {
        name: "segment.bytes",
        kind: kind::INT,
        get: |c| i64::try_from(c.segment_bytes_max).unwrap_or(i64::MAX),
        is_set: |o| o.segment_bytes_max.is_some(),
        set: |o, v| {
            o.segment_bytes_max = Some(to(v)?);
            Ok(())
        },
    },
    Settable {
        name: "segment.ms",
        kind: kind::LONG,
        get: |c| i64::try_from(c.segment_ms).unwrap_or(i64::MAX),
        is_set: |o| o.segment_ms.is_some(),
        set: |o, v| {
            o.segment_ms = Some(to(v)?);
            Ok(())
        },
    },
    Settable {
        name: "index.interval.bytes",
        kind: kind::INT,
        get: |c| i64::from(c.index_interval_bytes),
        is_set: |o| o.index_interval_bytes.is_some(),
        set: |o, v| {
            o.index_interval_bytes = Some(to(v)?);
            Ok(())
        },
    },
];

/// The fixed configs: name, kind, value (max.message.bytes is filled in from the broker).
fn fixed(batch_bytes_max: usize) -> [(&'static str, i8, String); 5] {
    [
        ("cleanup.policy", kind::LIST, "delete".into()),
        ("max.message.bytes", kind::INT, batch_bytes_max.to_string()),
        ("message.timestamp.type", kind::STRING, "CreateTime".into()),
        ("min.insync.replicas", kind::INT, "1".into()),
        ("compression.type", kind::STRING, "producer".into()),
    ]
}

/// Parses `name = value` pairs (a `None` value means the default) into overrides.
///
/// # Errors
/// An unknown name, a value that does not parse, or a fixed config set to another value: the
/// message for INVALID_CONFIG.
pub fn parse_overrides<'a>(
    pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    batch_bytes_max: usize,
) -> Result<TopicOverrides, String> {
    let mut o = TopicOverrides::default();
    let fixed = fixed(batch_bytes_max);
    for (name, value) in pairs {
        let Some(value) = value else { continue };
        if let Some(s) = SETTABLE.iter().find(|s| s.name == name) {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name}: {value:?} is not an integer"))?;
            (s.set)(&mut o, v).map_err(|e| format!("{name}: {e}"))?;
        } else if let Some((_, _, keel_value)) = fixed.iter().find(|(n, _, _)| *n == name) {
            if value.trim() != keel_value {
                return Err(format!(
                    "{name} is {keel_value} in keel and cannot be set to {value:?}"
                ));
            }
        } else {
            return Err(format!("unknown or unsupported topic config {name}"));
        }
    }
    Ok(o)
}

/// Every config of a topic with its effective value and source.
#[must_use]
pub fn describe(
    overrides: &TopicOverrides,
    defaults: &TopicConfig,
    batch_bytes_max: usize,
) -> Vec<ConfigValue> {
    let effective = overrides.apply(defaults);
    let mut out: Vec<ConfigValue> = SETTABLE
        .iter()
        .map(|s| ConfigValue {
            name: s.name,
            value: (s.get)(&effective).to_string(),
            source: if (s.is_set)(overrides) {
                source::DYNAMIC_TOPIC_CONFIG
            } else {
                source::DEFAULT_CONFIG
            },
            default: (s.get)(defaults).to_string(),
            read_only: false,
            kind: s.kind,
        })
        .collect();
    out.extend(
        fixed(batch_bytes_max)
            .into_iter()
            .map(|(name, kind, value)| ConfigValue {
                name,
                default: value.clone(),
                value,
                source: source::DEFAULT_CONFIG,
                read_only: true,
                kind,
            }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_and_describe() -> Result<(), String> {
        let o = parse_overrides(
            [
                ("retention.ms", Some("1000")),
                ("segment.bytes", Some("1048576")),
                ("cleanup.policy", Some("delete")),
                ("retention.bytes", None),
            ],
            1 << 20,
        )?;
        assert_eq!(o.retention_ms, Some(1000));
        assert_eq!(o.segment_bytes_max, Some(1 << 20));
        assert_eq!(o.retention_bytes, None);
        let d = describe(&o, &TopicConfig::default(), 1 << 20);
        let get = |n: &str| d.iter().find(|c| c.name == n).cloned();
        let r = get("retention.ms").ok_or("retention.ms missing")?;
        assert_eq!(
            (r.value.as_str(), r.source),
            ("1000", source::DYNAMIC_TOPIC_CONFIG)
        );
        let b = get("retention.bytes").ok_or("retention.bytes missing")?;
        assert_eq!((b.value.as_str(), b.source), ("-1", source::DEFAULT_CONFIG));
        Ok(())
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = [
            ("cleanup.policy", Some("compact")),
            ("retention.ms", Some("soon")),
            ("no.such.config", Some("1")),
            ("segment.bytes", Some("-5")),
        ];
        for pair in bad {
            assert!(parse_overrides([pair], 1).is_err(), "{pair:?}");
        }
    }
}
