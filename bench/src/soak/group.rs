//! The group load: members of one consumer group, each on its own thread and connection,
//! that join, sync, heartbeat, commit offsets and leave, then join again as new members.
//!
//! ```text
//!   member i:  wait i x life/members
//!              +-> FindCoordinator, JoinGroup (MEMBER_ID_REQUIRED: again with the id given)
//!              |   SyncGroup (the leader sends every member's partitions), OffsetFetch
//!              |   every heartbeat_ms: Heartbeat      REBALANCE_IN_PROGRESS: join again
//!              |   every commit_ms: ListOffsets, OffsetCommit of the end offsets
//!              |   after member_life_s: LeaveGroup
//!              +-- pause one heartbeat, then join again as a new member
//! ```
//!
//! Members start staggered, so the group changes (one leaves, one joins) every
//! `member_life_s / members` seconds and every change is a rebalance of all members. The
//! assignment is the leader's, as in Kafka: partitions dealt round-robin over the members
//! sorted by id, encoded with the consumer protocol's own schema.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest,
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::load::LoadCtx;
use crate::kafka::client::{topic_name, Connection};

/// Kafka error codes the group protocol answers with.
const ILLEGAL_GENERATION: i16 = 22;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;

/// The highest version of each group API this code builds its requests for (FindCoordinator
/// v4 and OffsetFetch v8 batch several keys or groups, which one member does not need).
const FIND_COORDINATOR_MAX: i16 = 3;
const JOIN_GROUP_MAX: i16 = 7;
const SYNC_GROUP_MAX: i16 = 5;
const HEARTBEAT_MAX: i16 = 4;
const LEAVE_GROUP_MAX: i16 = 4;
const OFFSET_COMMIT_MAX: i16 = 8;
const OFFSET_FETCH_MAX: i16 = 7;

/// Version of the consumer protocol's subscription and assignment bytes.
const CONSUMER_PROTOCOL_VERSION: i16 = 0;

const PROTOCOL_TYPE: &str = "consumer";
const PROTOCOL_NAME: &str = "range";

/// Runs member `index` until the soak stops.
pub fn member_loop(ctx: &LoadCtx, index: u32) {
    let g = &ctx.config.groups;
    let stagger =
        Duration::from_secs_f64(g.member_life_s * f64::from(index) / f64::from(g.members));
    if !ctx.sleep_until(Instant::now() + stagger) {
        return;
    }
    let pause = Duration::from_millis(g.heartbeat_ms);
    while !ctx.stopping() {
        let life_end = Instant::now() + Duration::from_secs_f64(g.member_life_s);
        if let Err(error) = membership(ctx, life_end) {
            ctx.group_error(&error);
        }
        if !ctx.sleep_until(Instant::now() + pause) {
            return;
        }
    }
}

/// One member's life: connect, join, take part until `life_end`, leave.
fn membership(ctx: &LoadCtx, life_end: Instant) -> anyhow::Result<()> {
    let mut member = Member::connect(ctx)?;
    member.find_coordinator()?;
    let mut member_id = String::new();
    loop {
        let joined = member.join(&member_id)?;
        member_id.clone_from(&joined.member_id);
        let Some(partitions) = member.sync(&joined)? else {
            continue;
        };
        member.fetch_committed(&partitions)?;
        match member.take_part(&joined, &partitions, life_end)? {
            Outcome::Rejoin => continue,
            Outcome::Leave => return member.leave(&member_id),
        }
    }
}

/// What ended a member's time in one generation.
enum Outcome {
    Rejoin,
    Leave,
}

/// A generation joined.
struct Joined {
    generation: i32,
    member_id: String,
    /// Every member's id, when this member is the leader (it assigns the partitions).
    members: Option<Vec<String>>,
}

/// One member's connection.
struct Member<'a> {
    ctx: &'a LoadCtx,
    connection: Connection,
    group: GroupId,
}

impl<'a> Member<'a> {
    fn connect(ctx: &'a LoadCtx) -> anyhow::Result<Self> {
        Ok(Self {
            ctx,
            connection: Connection::connect(ctx.bootstrap, Duration::from_secs(5))?,
            group: GroupId(StrBytes::from_string(ctx.config.groups.group.clone())),
        })
    }

    fn find_coordinator(&mut self) -> anyhow::Result<()> {
        let version = self
            .connection
            .version(ApiKey::FindCoordinator, FIND_COORDINATOR_MAX)?;
        let request = FindCoordinatorRequest::default()
            .with_key(self.group.0.clone())
            .with_key_type(0);
        let response = self.connection.call(&request, version)?;
        anyhow::ensure!(
            response.error_code == 0,
            "FindCoordinator: error {}",
            response.error_code
        );
        Ok(())
    }

    /// JoinGroup, again with the member id the broker gives when it asks for one.
    fn join(&mut self, member_id: &str) -> anyhow::Result<Joined> {
        let version = self.connection.version(ApiKey::JoinGroup, JOIN_GROUP_MAX)?;
        let g = &self.ctx.config.groups;
        let mut subscription = BytesMut::new();
        subscription.put_i16(CONSUMER_PROTOCOL_VERSION);
        ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_string(self.ctx.topic.clone())])
            .encode(&mut subscription, CONSUMER_PROTOCOL_VERSION)
            .context("encoding a subscription")?;
        let mut member_id = member_id.to_owned();
        for _ in 0..2 {
            let request = JoinGroupRequest::default()
                .with_group_id(self.group.clone())
                .with_session_timeout_ms(g.session_timeout_ms)
                .with_rebalance_timeout_ms(g.session_timeout_ms)
                .with_member_id(StrBytes::from_string(member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(PROTOCOL_NAME))
                    .with_metadata(subscription.clone().freeze())]);
            let response = self.connection.call(&request, version)?;
            match response.error_code {
                MEMBER_ID_REQUIRED => member_id = response.member_id.to_string(),
                0 => {
                    let generation = response.generation_id;
                    self.ctx.group(|f| {
                        f.joins += 1;
                        f.generation_max = f.generation_max.max(i64::from(generation));
                    });
                    let member_id = response.member_id.to_string();
                    let members = (response.leader == response.member_id).then(|| {
                        response
                            .members
                            .iter()
                            .map(|m| m.member_id.to_string())
                            .collect()
                    });
                    return Ok(Joined {
                        generation,
                        member_id,
                        members,
                    });
                }
                code => anyhow::bail!("JoinGroup: error {code}"),
            }
        }
        anyhow::bail!("JoinGroup asked for a member id twice")
    }

    /// SyncGroup; the partitions assigned to this member, or `None` when a rebalance began
    /// meanwhile (join again).
    fn sync(&mut self, joined: &Joined) -> anyhow::Result<Option<Vec<i32>>> {
        let version = self.connection.version(ApiKey::SyncGroup, SYNC_GROUP_MAX)?;
        let assignments = match &joined.members {
            Some(members) => self.assign(members)?,
            None => Vec::new(),
        };
        let request = SyncGroupRequest::default()
            .with_group_id(self.group.clone())
            .with_generation_id(joined.generation)
            .with_member_id(StrBytes::from_string(joined.member_id.clone()))
            .with_protocol_type((version >= 5).then(|| StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name((version >= 5).then(|| StrBytes::from_static_str(PROTOCOL_NAME)))
            .with_assignments(assignments);
        let response = self.connection.call(&request, version)?;
        match response.error_code {
            0 => {}
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => {
                self.ctx.group(|f| f.interrupted += 1);
                return Ok(None);
            }
            code => anyhow::bail!("SyncGroup: error {code}"),
        }
        self.ctx.group(|f| f.syncs += 1);
        decode_assignment(response.assignment, &self.ctx.topic).map(Some)
    }

    /// The leader's assignment: partition p to member p mod members, members sorted by id.
    fn assign(&self, members: &[String]) -> anyhow::Result<Vec<SyncGroupRequestAssignment>> {
        let mut sorted: Vec<&String> = members.iter().collect();
        sorted.sort();
        let partitions = i32::try_from(self.ctx.config.workload.partitions)?;
        sorted
            .iter()
            .enumerate()
            .map(|(index, member)| {
                let mine: Vec<i32> = (0..partitions)
                    .filter(|p| usize::try_from(*p).is_ok_and(|p| p % sorted.len() == index))
                    .collect();
                let mut bytes = BytesMut::new();
                bytes.put_i16(CONSUMER_PROTOCOL_VERSION);
                ConsumerProtocolAssignment::default()
                    .with_assigned_partitions(vec![AssignedTopic::default()
                        .with_topic(topic_name(&self.ctx.topic))
                        .with_partitions(mine)])
                    .encode(&mut bytes, CONSUMER_PROTOCOL_VERSION)
                    .context("encoding an assignment")?;
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string((*member).clone()))
                    .with_assignment(bytes.freeze()))
            })
            .collect()
    }

    /// OffsetFetch of the assigned partitions: where a consumer would resume.
    fn fetch_committed(&mut self, partitions: &[i32]) -> anyhow::Result<()> {
        let version = self
            .connection
            .version(ApiKey::OffsetFetch, OFFSET_FETCH_MAX)?;
        let request = OffsetFetchRequest::default()
            .with_group_id(self.group.clone())
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(&self.ctx.topic))
                .with_partition_indexes(partitions.to_vec())]));
        let response = self.connection.call(&request, version)?;
        anyhow::ensure!(
            response.error_code == 0,
            "OffsetFetch: error {}",
            response.error_code
        );
        for partition in response.topics.iter().flat_map(|t| t.partitions.iter()) {
            anyhow::ensure!(
                partition.error_code == 0,
                "OffsetFetch partition {}: error {}",
                partition.partition_index,
                partition.error_code
            );
        }
        self.ctx.group(|f| f.offset_fetches += 1);
        Ok(())
    }

    /// Heartbeats and commits until the member's life ends or the group rebalances.
    fn take_part(
        &mut self,
        joined: &Joined,
        partitions: &[i32],
        life_end: Instant,
    ) -> anyhow::Result<Outcome> {
        let g = &self.ctx.config.groups;
        let heartbeat_every = Duration::from_millis(g.heartbeat_ms);
        let commit_every = Duration::from_millis(g.commit_ms);
        let mut next_commit = Instant::now() + commit_every;
        loop {
            let next = (Instant::now() + heartbeat_every).min(life_end);
            if !self.ctx.sleep_until(next) || Instant::now() >= life_end {
                return Ok(Outcome::Leave);
            }
            if !self.heartbeat(joined)? {
                return Ok(Outcome::Rejoin);
            }
            if Instant::now() >= next_commit && !partitions.is_empty() {
                next_commit += commit_every;
                if !self.commit(joined, partitions)? {
                    return Ok(Outcome::Rejoin);
                }
            }
        }
    }

    /// One heartbeat; false when the group is rebalancing.
    fn heartbeat(&mut self, joined: &Joined) -> anyhow::Result<bool> {
        let version = self.connection.version(ApiKey::Heartbeat, HEARTBEAT_MAX)?;
        let request = HeartbeatRequest::default()
            .with_group_id(self.group.clone())
            .with_generation_id(joined.generation)
            .with_member_id(StrBytes::from_string(joined.member_id.clone()));
        let response = self.connection.call(&request, version)?;
        match response.error_code {
            0 => {
                self.ctx.group(|f| f.heartbeats += 1);
                Ok(true)
            }
            REBALANCE_IN_PROGRESS => {
                self.ctx.group(|f| {
                    f.heartbeats += 1;
                    f.rebalances += 1;
                });
                Ok(false)
            }
            code => anyhow::bail!("Heartbeat: error {code}"),
        }
    }

    /// Commits the end offsets of `partitions`; false when a rebalance cut it short.
    fn commit(&mut self, joined: &Joined, partitions: &[i32]) -> anyhow::Result<bool> {
        let ends = self.connection.end_offsets(&self.ctx.topic, partitions)?;
        let version = self
            .connection
            .version(ApiKey::OffsetCommit, OFFSET_COMMIT_MAX)?;
        let request = OffsetCommitRequest::default()
            .with_group_id(self.group.clone())
            .with_generation_id_or_member_epoch(joined.generation)
            .with_member_id(StrBytes::from_string(joined.member_id.clone()))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(&self.ctx.topic))
                .with_partitions(
                    partitions
                        .iter()
                        .zip(ends)
                        .map(|(&partition, end)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(partition)
                                .with_committed_offset(end)
                        })
                        .collect(),
                )]);
        let response = self.connection.call(&request, version)?;
        let answers: Vec<(i32, i16)> = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        anyhow::ensure!(
            answers.len() == partitions.len(),
            "OffsetCommit: {} answers for {} partitions",
            answers.len(),
            partitions.len()
        );
        if answers
            .iter()
            .any(|(_, code)| matches!(*code, REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION))
        {
            self.ctx.group(|f| f.interrupted += 1);
            return Ok(false);
        }
        if let Some((partition, code)) = answers.iter().find(|(_, code)| *code != 0) {
            anyhow::bail!("OffsetCommit partition {partition}: error {code}");
        }
        self.ctx.group(|f| {
            f.commits += 1;
            f.committed_partitions += answers.len() as u64;
        });
        Ok(true)
    }

    fn leave(&mut self, member_id: &str) -> anyhow::Result<()> {
        let version = self
            .connection
            .version(ApiKey::LeaveGroup, LEAVE_GROUP_MAX)?;
        let id = StrBytes::from_string(member_id.to_owned());
        // v3 names the members leaving in a list; before it, one member id.
        let request = if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(self.group.clone())
                .with_members(vec![MemberIdentity::default().with_member_id(id)])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(self.group.clone())
                .with_member_id(id)
        };
        let response = self.connection.call(&request, version)?;
        let member_error = response.members.iter().find(|m| m.error_code != 0);
        anyhow::ensure!(
            response.error_code == 0 && member_error.is_none(),
            "LeaveGroup: error {} (member {:?})",
            response.error_code,
            member_error.map(|m| m.error_code)
        );
        self.ctx.group(|f| f.leaves += 1);
        Ok(())
    }
}

/// The partitions of `topic` in a SyncGroup assignment (consumer protocol bytes: a version,
/// then the assignment). An empty assignment gives no partitions.
fn decode_assignment(mut bytes: Bytes, topic: &str) -> anyhow::Result<Vec<i32>> {
    if bytes.remaining() < 2 {
        return Ok(Vec::new());
    }
    let version = bytes.get_i16();
    let assignment = ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3))
        .context("decoding an assignment")?;
    let name = topic_name(topic);
    Ok(assignment
        .assigned_partitions
        .into_iter()
        .filter(|t| t.topic == name)
        .flat_map(|t| t.partitions)
        .collect())
}
