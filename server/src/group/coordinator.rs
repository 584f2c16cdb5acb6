//! The group coordinator of one shard: the groups whose `__consumer_offsets` partition this
//! shard owns. Requests reach it on its own shard ([`super::on_coordinator`]); its state is a
//! `RefCell` never borrowed across an await. Whatever must survive a restart (committed
//! offsets, a generation's members and assignment, deletions) is appended to the group's
//! partition before it is acknowledged.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::{error::ResponseError, records::RecordBatchDecoder};
use keel_engine::{EngineError, Offset, Shard, TimestampMs, TopicPartition};

use super::{
    machine::{Committed, Group, GroupState, JoinResult, Member, RebalanceTiming, SyncResult},
    partition_for,
    store::{self, OffsetValue, StoreRecord},
    OFFSETS_TOPIC,
};
use crate::broker::Broker;

/// The coordinator's bounds and timings, from the broker's config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// groups_max.
    pub groups_max: usize,
    /// group_members_max.
    pub members_max: usize,
    /// group_metadata_bytes_max.
    pub metadata_bytes_max: usize,
    /// offset_metadata_bytes_max.
    pub offset_metadata_bytes_max: usize,
    /// group_min_session_timeout_ms.
    pub session_min_ms: i32,
    /// group_max_session_timeout_ms.
    pub session_max_ms: i32,
    /// group_initial_rebalance_delay_ms.
    pub initial_delay: Duration,
    /// offsets_retention_ms.
    pub retention_ms: u64,
    /// offsets_snapshot_bytes.
    pub snapshot_bytes: u64,
}

/// A JoinGroup, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct JoinReq {
    /// Group id.
    pub group_id: String,
    /// Member id ("" for a new member).
    pub member_id: String,
    /// Static member id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// Protocols with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new member first gets its id with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// A SyncGroup, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct SyncReq {
    /// Group id.
    pub group_id: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static member id.
    pub instance_id: Option<String>,
    /// v5: the protocol type the member believes in.
    pub protocol_type: Option<String>,
    /// v5: the protocol name the member believes in.
    pub protocol_name: Option<String>,
    /// The leader's assignments by member id.
    pub assignments: Vec<(String, Bytes)>,
}

/// A member's identity in Heartbeat, OffsetCommit and friends.
#[derive(Debug, Clone)]
pub struct MemberRef {
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static member id.
    pub instance_id: Option<String>,
}

/// One partition's commit: (partition, offset, leader epoch, metadata).
pub type CommitPartition = (i32, i64, i32, Option<String>);
/// Per topic, per partition error codes.
pub type TopicErrors = Vec<(String, Vec<(i32, i16)>)>;
/// A described group: (error, state, protocol type, protocol, members).
pub type Described = (i16, &'static str, String, String, Vec<DescribedMember>);

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct DescribedMember {
    /// Member id.
    pub id: String,
    /// Static member id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

enum Joined {
    Now(JoinResult),
    Wait(oneshot::Receiver<JoinResult>),
}

type Reject = ResponseError;

/// Records per batch of a snapshot: offsets records are under 600 bytes (topic and group
/// names are short strings, metadata at most offset_metadata_bytes_max), so a batch stays
/// far below batch_bytes_max; group records are bounded by group_members_max and
/// group_metadata_bytes_max.
const SNAPSHOT_RECORDS_PER_BATCH: usize = 500;

/// The coordinator of one shard.
pub struct Coordinator {
    shard: Shard,
    broker: Arc<Broker>,
    settings: Settings,
    partition_count: i32,
    groups: RefCell<HashMap<String, Group>>,
    loaded: RefCell<HashSet<i32>>,
    /// Appends under way, per partition: a snapshot waits for none, so that no record it
    /// does not hold can land below it.
    in_flight: RefCell<HashMap<i32, usize>>,
    /// Bytes appended per partition since its last snapshot (or in the log at load).
    since_snapshot: RefCell<HashMap<i32, u64>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("shard", &self.shard.id())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    TimestampMs::now().0
}

impl Coordinator {
    /// A coordinator for this shard's partitions of `__consumer_offsets` (not yet loaded).
    #[must_use]
    pub fn new(
        shard: Shard,
        broker: Arc<Broker>,
        settings: Settings,
        partition_count: i32,
    ) -> Self {
        Coordinator {
            shard,
            broker,
            settings,
            partition_count,
            groups: RefCell::new(HashMap::new()),
            loaded: RefCell::new(HashSet::new()),
            in_flight: RefCell::new(HashMap::new()),
            since_snapshot: RefCell::new(HashMap::new()),
        }
    }

    fn timing(&self) -> RebalanceTiming {
        RebalanceTiming {
            initial_delay: self.settings.initial_delay,
        }
    }

    fn partition(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.partition_count)
    }

    fn check_loaded(&self, group_id: &str) -> Result<(), Reject> {
        if self.loaded.borrow().contains(&self.partition(group_id)) {
            Ok(())
        } else {
            Err(ResponseError::CoordinatorLoadInProgress)
        }
    }

    /// Counts one more group against `groups_max`.
    fn reserve_group(&self) -> Result<(), Reject> {
        let count = &self.broker.group_count;
        if count.fetch_add(1, Ordering::AcqRel) >= self.settings.groups_max {
            count.fetch_sub(1, Ordering::AcqRel);
            return Err(ResponseError::GroupMaxSizeReached);
        }
        Ok(())
    }

    fn release_group(&self) {
        self.broker.group_count.fetch_sub(1, Ordering::AcqRel);
    }

    /// Appends records to a group's partition; the offset of the first once durable.
    async fn append(&self, partition: i32, records: &[StoreRecord]) -> Result<i64, Reject> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
        let batch = store::batch(records, now_ms()).map_err(|e| {
            tracing::error!(error = %e, "encoding a __consumer_offsets batch");
            ResponseError::UnknownServerError
        })?;
        *self
            .since_snapshot
            .borrow_mut()
            .entry(partition)
            .or_default() += batch.len() as u64;
        *self.in_flight.borrow_mut().entry(partition).or_default() += 1;
        let result = self.shard.append(&tp, batch).await;
        if let Some(n) = self.in_flight.borrow_mut().get_mut(&partition) {
            *n -= 1;
        }
        match result {
            Ok(out) => Ok(out.base_offset.0),
            Err(e) => {
                tracing::error!(partition, error = %e, "__consumer_offsets append failed");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    // --- JoinGroup -------------------------------------------------------------------------

    /// JoinGroup: answers once the rebalance this join belongs to completes.
    pub async fn join(&self, req: JoinReq) -> JoinResult {
        let member_id = req.member_id.clone();
        match self.join_begin(req) {
            Ok(Joined::Now(r)) => r,
            Ok(Joined::Wait(rx)) => rx.await.unwrap_or_else(|_| {
                JoinResult::error(ResponseError::RebalanceInProgress, &member_id)
            }),
            Err(e) => JoinResult::error(e, &member_id),
        }
    }

    fn join_begin(&self, req: JoinReq) -> Result<Joined, Reject> {
        self.check_loaded(&req.group_id)?;
        let s = &self.settings;
        if req.session_timeout_ms < s.session_min_ms || req.session_timeout_ms > s.session_max_ms {
            return Err(ResponseError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        let metadata_bytes: usize = req.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if metadata_bytes > s.metadata_bytes_max {
            return Err(ResponseError::MessageTooLarge);
        }
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                return Err(ResponseError::UnknownMemberId);
            }
            self.reserve_group()?;
            groups.insert(req.group_id.clone(), Group::new(&req.group_id, now_ms()));
        }
        let g = groups
            .get_mut(&req.group_id)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        if g.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if !g.accepts(&req.member_id, &req.protocol_type, &req.protocols) {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            return self.join_new(g, req);
        }
        if g.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_member(g, id, req);
        }
        if !g.members.contains_key(&req.member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if let Some(instance) = &req.instance_id {
            if g.instances.get(instance) != Some(&req.member_id) {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        Ok(self.rejoin(g, &req.member_id.clone(), req))
    }

    fn join_new(&self, g: &mut Group, req: JoinReq) -> Result<Joined, Reject> {
        let prefix = req.instance_id.as_deref().unwrap_or(&req.client_id);
        let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if let Some(instance) = &req.instance_id {
            if let Some(old) = g.instances.get(instance).cloned() {
                return Ok(self.replace_static(g, &old, new_id, req));
            }
        } else if req.require_known_member_id {
            if g.size() >= self.settings.members_max {
                return Err(ResponseError::GroupMaxSizeReached);
            }
            let session = Duration::from_millis(u64::try_from(req.session_timeout_ms).unwrap_or(0));
            g.pending.insert(new_id.clone(), Instant::now() + session);
            return Ok(Joined::Now(JoinResult::error(
                ResponseError::MemberIdRequired,
                &new_id,
            )));
        }
        self.add_member(g, new_id, req)
    }

    fn add_member(&self, g: &mut Group, id: String, req: JoinReq) -> Result<Joined, Reject> {
        if g.size() >= self.settings.members_max {
            return Err(ResponseError::GroupMaxSizeReached);
        }
        let (tx, rx) = oneshot::channel();
        if let Some(instance) = &req.instance_id {
            g.instances.insert(instance.clone(), id.clone());
        }
        if g.protocol_type.is_none() {
            g.protocol_type = Some(req.protocol_type.clone());
        }
        g.members.insert(
            id.clone(),
            Member {
                id,
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                last_seen: Instant::now(),
                join_waiter: Some(tx),
                sync_waiter: None,
            },
        );
        let now = Instant::now();
        if g.state == GroupState::PreparingRebalance {
            g.extend_initial_delay(now, self.timing());
        } else {
            g.prepare_rebalance(now, now_ms(), self.timing());
        }
        g.maybe_complete_join(now, now_ms());
        Ok(Joined::Wait(rx))
    }

    /// A known member joins again: it may get the current generation at once (nothing
    /// changed), or start or join a rebalance.
    fn rejoin(&self, g: &mut Group, id: &str, req: JoinReq) -> Joined {
        let leader = g.leader.as_deref() == Some(id);
        let state = g.state;
        let Some(m) = g.members.get_mut(id) else {
            return Joined::Now(JoinResult::error(ResponseError::UnknownMemberId, id));
        };
        let unchanged = m.protocols == req.protocols;
        m.protocols = req.protocols;
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.last_seen = Instant::now();
        let now_settled = match state {
            GroupState::CompletingRebalance => unchanged,
            GroupState::Stable => unchanged && !leader,
            _ => false,
        };
        if now_settled {
            return Joined::Now(g.join_result(id));
        }
        let (tx, rx) = oneshot::channel();
        m.join_waiter = Some(tx);
        let now = Instant::now();
        g.prepare_rebalance(now, now_ms(), self.timing());
        g.maybe_complete_join(now, now_ms());
        Joined::Wait(rx)
    }

    /// A static member comes back with a new member id: the old id is fenced, the member
    /// keeps its place (and, if nothing changed in a stable group, its assignment).
    fn replace_static(&self, g: &mut Group, old: &str, new_id: String, req: JoinReq) -> Joined {
        let Some(mut m) = g.members.remove(old) else {
            return Joined::Now(JoinResult::error(ResponseError::UnknownMemberId, ""));
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(ResponseError::FencedInstanceId, old));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(ResponseError::FencedInstanceId));
        }
        m.id.clone_from(&new_id);
        if g.leader.as_deref() == Some(old) {
            g.leader = Some(new_id.clone());
        }
        if let Some(instance) = &req.instance_id {
            g.instances.insert(instance.clone(), new_id.clone());
        }
        g.members.insert(new_id.clone(), m);
        self.rejoin(g, &new_id, req)
    }

    // --- SyncGroup -------------------------------------------------------------------------

    /// SyncGroup: answers with the member's assignment once the leader's is persisted.
    pub async fn sync(&self, req: SyncReq) -> SyncResult {
        let (rx, persist) = match self.sync_begin(&req) {
            Ok(Ok(now)) => return now,
            Ok(Err(wait)) => wait,
            Err(e) => return SyncResult::error(e),
        };
        if persist {
            self.persist_assignment(&req.group_id, req.generation).await;
        }
        rx.await
            .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress))
    }

    #[allow(clippy::type_complexity)]
    fn sync_begin(
        &self,
        req: &SyncReq,
    ) -> Result<Result<SyncResult, (oneshot::Receiver<SyncResult>, bool)>, Reject> {
        self.check_loaded(&req.group_id)?;
        let mut groups = self.groups.borrow_mut();
        let g = groups
            .get_mut(&req.group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        check_member(g, &req.member_id, req.instance_id.as_deref())?;
        if req.generation != g.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        let mismatch = |mine: &Option<String>, theirs: &Option<String>| {
            theirs.is_some() && mine.as_deref() != theirs.as_deref()
        };
        if mismatch(&g.protocol_type, &req.protocol_type)
            || mismatch(&g.protocol_name, &req.protocol_name)
        {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        match g.state {
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Stable => Ok(Ok(SyncResult {
                error: 0,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol_name.clone(),
                assignment: g
                    .members
                    .get(&req.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
            })),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    m.last_seen = Instant::now();
                    m.sync_waiter = Some(tx);
                }
                if g.leader.as_deref() != Some(req.member_id.as_str()) {
                    return Ok(Err((rx, false)));
                }
                if req
                    .assignments
                    .iter()
                    .any(|(_, a)| a.len() > self.settings.metadata_bytes_max)
                {
                    g.fail_all(ResponseError::MessageTooLarge);
                    g.prepare_rebalance(Instant::now(), now_ms(), self.timing());
                    return Ok(Err((rx, false)));
                }
                for m in g.members.values_mut() {
                    m.assignment = req
                        .assignments
                        .iter()
                        .find(|(id, _)| *id == m.id)
                        .map(|(_, a)| a.clone())
                        .unwrap_or_default();
                }
                Ok(Err((rx, true)))
            }
        }
    }

    async fn persist_assignment(&self, group_id: &str, generation: i32) {
        let value = {
            let groups = self.groups.borrow();
            match groups.get(group_id) {
                Some(g)
                    if g.state == GroupState::CompletingRebalance && g.generation == generation =>
                {
                    g.to_value()
                }
                _ => return,
            }
        };
        let record = StoreRecord::Group {
            group: group_id.to_string(),
            value: Some(value),
        };
        let result = self.append(self.partition(group_id), &[record]).await;
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id) else {
            return;
        };
        if g.state != GroupState::CompletingRebalance || g.generation != generation {
            return;
        }
        match result {
            Ok(_) => g.complete_sync(now_ms()),
            Err(e) => {
                g.fail_all(e);
                g.prepare_rebalance(Instant::now(), now_ms(), self.timing());
            }
        }
    }

    // --- Heartbeat, LeaveGroup -------------------------------------------------------------

    /// Heartbeat: the error code.
    pub fn heartbeat(&self, group_id: &str, member: &MemberRef) -> i16 {
        let r = (|| {
            self.check_loaded(group_id)?;
            let mut groups = self.groups.borrow_mut();
            let g = groups
                .get_mut(group_id)
                .ok_or(ResponseError::UnknownMemberId)?;
            check_member(g, &member.member_id, member.instance_id.as_deref())?;
            if member.generation != g.generation {
                return Err(ResponseError::IllegalGeneration);
            }
            if let Some(m) = g.members.get_mut(&member.member_id) {
                m.last_seen = Instant::now();
            }
            match g.state {
                GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
                GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
                GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
            }
        })();
        r.err().map_or(0, |e| e.code())
    }

    /// LeaveGroup of one or more members (member id, instance id): the top-level error and
    /// one error per member.
    pub async fn leave(
        &self,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> (i16, Vec<(String, Option<String>, i16)>) {
        if let Err(e) = self.check_loaded(group_id) {
            return (e.code(), Vec::new());
        }
        let mut answers = Vec::new();
        let persist = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group_id) else {
                let code = ResponseError::UnknownMemberId.code();
                let answers = members.into_iter().map(|(m, i)| (m, i, code)).collect();
                return (code, answers);
            };
            let mut removed = false;
            for (member_id, instance) in members {
                let id = match &instance {
                    None => Ok(member_id.clone()),
                    Some(i) => match g.instances.get(i) {
                        None => Err(ResponseError::UnknownMemberId),
                        Some(id) if !member_id.is_empty() && *id != member_id => {
                            Err(ResponseError::FencedInstanceId)
                        }
                        Some(id) => Ok(id.clone()),
                    },
                };
                let code = match id {
                    Err(e) => e.code(),
                    Ok(id) if g.pending.remove(&id).is_some() => 0,
                    Ok(id) => {
                        if g.remove_member(&id).is_some() {
                            tracing::info!(group = group_id, member = %id, "member left");
                            removed = true;
                            0
                        } else {
                            ResponseError::UnknownMemberId.code()
                        }
                    }
                };
                answers.push((member_id, instance, code));
            }
            let persist = removed && g.after_removal(Instant::now(), now_ms(), self.timing());
            persist.then(|| g.to_value())
        };
        if let Some(value) = persist {
            let record = StoreRecord::Group {
                group: group_id.to_string(),
                value: Some(value),
            };
            let _ = self.append(self.partition(group_id), &[record]).await;
        }
        let top = if answers.len() == 1 { answers[0].2 } else { 0 };
        (top, answers)
    }

    // --- OffsetCommit, OffsetFetch ---------------------------------------------------------

    /// OffsetCommit: an error code per partition, in request order.
    pub async fn commit(
        &self,
        group_id: &str,
        member: &MemberRef,
        topics: Vec<(String, Vec<CommitPartition>)>,
    ) -> TopicErrors {
        let all = |code: i16, topics: &[(String, Vec<CommitPartition>)]| -> TopicErrors {
            topics
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (p.0, code)).collect()))
                .collect()
        };
        if let Err(e) = self
            .check_loaded(group_id)
            .and_then(|()| self.commit_check(group_id, member))
        {
            return all(e.code(), &topics);
        }
        let catalog = self.shard.catalog();
        let now = now_ms();
        let mut records = Vec::new();
        let mut answers: TopicErrors = Vec::new();
        for (topic, parts) in &topics {
            let mut codes = Vec::new();
            for (partition, offset, epoch, metadata) in parts {
                let metadata = metadata.clone().unwrap_or_default();
                let code = if metadata.len() > self.settings.offset_metadata_bytes_max {
                    ResponseError::OffsetMetadataTooLarge.code()
                } else if catalog.owner(topic, *partition).is_none() {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    records.push(StoreRecord::Offset {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                        value: Some(OffsetValue {
                            offset: *offset,
                            leader_epoch: *epoch,
                            commit_ms: now,
                            metadata,
                        }),
                    });
                    0
                };
                codes.push((*partition, code));
            }
            answers.push((topic.clone(), codes));
        }
        if records.is_empty() {
            return answers;
        }
        match self.append(self.partition(group_id), &records).await {
            Ok(base) => self.apply_records(&records, base),
            Err(e) => {
                for (_, codes) in &mut answers {
                    for (_, code) in codes.iter_mut().filter(|(_, c)| *c == 0) {
                        *code = e.code();
                    }
                }
            }
        }
        answers
    }

    /// Whether this member may commit for the group now (Kafka's order of checks).
    fn commit_check(&self, group_id: &str, member: &MemberRef) -> Result<(), Reject> {
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id) else {
            if member.generation >= 0 {
                return Err(ResponseError::IllegalGeneration);
            }
            // A group that does not use the coordinator for membership (assign() plus
            // commits): created on its first commit.
            self.reserve_group()?;
            groups.insert(group_id.to_string(), Group::new(group_id, now_ms()));
            return Ok(());
        };
        if g.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(instance) = &member.instance_id {
            if g.instances
                .get(instance)
                .is_some_and(|id| *id != member.member_id)
            {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        if member.generation < 0 && g.state == GroupState::Empty {
            return Ok(());
        }
        if g.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        let Some(m) = g.members.get_mut(&member.member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if member.generation != g.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        m.last_seen = Instant::now();
        Ok(())
    }

    /// Applies stored records to memory; `base` is the log offset of the first.
    fn apply_records(&self, records: &[StoreRecord], base: i64) {
        let mut groups = self.groups.borrow_mut();
        for (record, log_offset) in records.iter().zip(base..) {
            if let StoreRecord::Offset {
                group,
                topic,
                partition,
                value,
            } = record
            {
                let Some(g) = groups.get_mut(group) else {
                    continue;
                };
                let key = (topic.clone(), *partition);
                if g.offsets
                    .get(&key)
                    .is_some_and(|c| c.log_offset > log_offset)
                {
                    continue;
                }
                match value {
                    Some(v) => {
                        g.offsets.insert(key, committed(v, log_offset));
                    }
                    None => {
                        g.offsets.remove(&key);
                    }
                }
            }
        }
    }

    /// OffsetFetch: per topic, per partition, the committed offset if any. `None` topics
    /// means every offset the group has.
    ///
    /// # Errors
    /// The group's partition is still loading.
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<(i32, Option<Committed>)>)>, i16> {
        self.check_loaded(group_id).map_err(|e| e.code())?;
        let groups = self.groups.borrow();
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        let Some(topics) = topics else {
            let mut by_topic: HashMap<String, Vec<(i32, Option<Committed>)>> = HashMap::new();
            for ((t, p), c) in offsets.into_iter().flatten() {
                by_topic
                    .entry(t.clone())
                    .or_default()
                    .push((*p, Some(c.clone())));
            }
            let mut out: Vec<_> = by_topic.into_iter().collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, ps) in &mut out {
                ps.sort_by_key(|p| p.0);
            }
            return Ok(out);
        };
        Ok(topics
            .into_iter()
            .map(|(t, ps)| {
                let found = ps
                    .into_iter()
                    .map(|p| {
                        let c = offsets.and_then(|o| o.get(&(t.clone(), p))).cloned();
                        (p, c)
                    })
                    .collect();
                (t, found)
            })
            .collect())
    }

    // --- ListGroups, DescribeGroups, DeleteGroups, OffsetDelete ----------------------------

    /// This shard's groups: (id, protocol type, state).
    #[must_use]
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        self.groups
            .borrow()
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect()
    }

    /// DescribeGroups of one group.
    #[must_use]
    pub fn describe(&self, group_id: &str) -> Described {
        if let Err(e) = self.check_loaded(group_id) {
            return (e.code(), "", String::new(), String::new(), Vec::new());
        }
        let groups = self.groups.borrow();
        let Some(g) = groups.get(group_id) else {
            return (0, "Dead", String::new(), String::new(), Vec::new());
        };
        let members = g
            .members
            .values()
            .map(|m| DescribedMember {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata_for(g.protocol_name.as_deref()),
                assignment: m.assignment.clone(),
            })
            .collect();
        (
            0,
            g.state.name(),
            g.protocol_type.clone().unwrap_or_default(),
            g.protocol_name.clone().unwrap_or_default(),
            members,
        )
    }

    /// DeleteGroups of one group: its metadata and offsets are tombstoned.
    pub async fn delete(&self, group_id: &str) -> i16 {
        if let Err(e) = self.check_loaded(group_id) {
            return e.code();
        }
        let records = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group_id) else {
                return ResponseError::GroupIdNotFound.code();
            };
            if g.state != GroupState::Empty {
                return ResponseError::NonEmptyGroup.code();
            }
            g.state = GroupState::Dead;
            tombstones(g)
        };
        let result = self.append(self.partition(group_id), &records).await;
        let mut groups = self.groups.borrow_mut();
        match result {
            Ok(_) => {
                if groups.remove(group_id).is_some() {
                    self.release_group();
                }
                0
            }
            Err(e) => {
                if let Some(g) = groups.get_mut(group_id) {
                    g.state = GroupState::Empty;
                }
                e.code()
            }
        }
    }

    /// OffsetDelete: the top-level error and one error per partition.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        topics: Vec<(String, Vec<i32>)>,
    ) -> (i16, TopicErrors) {
        if let Err(e) = self.check_loaded(group_id) {
            return (e.code(), Vec::new());
        }
        let (records, answers) = {
            let groups = self.groups.borrow();
            let Some(g) = groups.get(group_id) else {
                return (ResponseError::GroupIdNotFound.code(), Vec::new());
            };
            let subscribed = subscribed_topics(g);
            let mut records = Vec::new();
            let answers: TopicErrors = topics
                .into_iter()
                .map(|(t, ps)| {
                    let busy = subscribed.as_ref().is_none_or(|s| s.contains(&t));
                    let codes = ps
                        .into_iter()
                        .map(|p| {
                            if busy && g.state != GroupState::Empty {
                                return (p, ResponseError::GroupSubscribedToTopic.code());
                            }
                            records.push(StoreRecord::Offset {
                                group: group_id.to_string(),
                                topic: t.clone(),
                                partition: p,
                                value: None,
                            });
                            (p, 0)
                        })
                        .collect();
                    (t, codes)
                })
                .collect();
            (records, answers)
        };
        if records.is_empty() {
            return (0, answers);
        }
        match self.append(self.partition(group_id), &records).await {
            Ok(base) => {
                self.apply_records(&records, base);
                (0, answers)
            }
            Err(e) => (e.code(), answers),
        }
    }

    // --- Timers, load, shutdown ------------------------------------------------------------

    /// One pass of the timers: expired sessions, rebalance deadlines and initial delays; with
    /// `retention`, also expired offsets of empty groups and empty groups without offsets.
    pub async fn tick(&self, retention: bool) {
        let now = Instant::now();
        let now_ms = now_ms();
        let mut by_partition: HashMap<i32, Vec<StoreRecord>> = HashMap::new();
        let mut dropped = Vec::new();
        {
            let mut groups = self.groups.borrow_mut();
            for g in groups.values_mut() {
                let mut persist = false;
                if g.expire(now) {
                    persist |= g.after_removal(now, now_ms, self.timing());
                }
                persist |= g.maybe_complete_join(now, now_ms);
                let mut records = Vec::new();
                if persist {
                    records.push(StoreRecord::Group {
                        group: g.id.clone(),
                        value: Some(g.to_value()),
                    });
                }
                if retention && g.state == GroupState::Empty {
                    records.extend(self.expire_offsets(g, now_ms));
                    if g.offsets.is_empty() && g.members.is_empty() && g.pending.is_empty() {
                        g.state = GroupState::Dead;
                        records.extend(tombstones(g));
                        dropped.push(g.id.clone());
                    }
                }
                if !records.is_empty() {
                    by_partition
                        .entry(partition_for(&g.id, self.partition_count))
                        .or_default()
                        .extend(records);
                }
            }
        }
        for (partition, records) in by_partition {
            if let Ok(base) = self.append(partition, &records).await {
                self.apply_records(&records, base);
            }
        }
        let mut groups = self.groups.borrow_mut();
        for id in dropped {
            if groups.get(&id).is_some_and(|g| g.state == GroupState::Dead) {
                tracing::info!(group = %id, "empty group without offsets removed");
                groups.remove(&id);
                self.release_group();
            }
        }
    }

    /// Compaction: each partition past `offsets_snapshot_bytes` since its last snapshot, and
    /// with no append under way, gets a snapshot (every live record of its groups, appended
    /// again) and loses the closed segments before it. Replay then starts at most one
    /// snapshot and `offsets_snapshot_bytes` back, whatever the number of commits ever made.
    pub async fn compact(&self) {
        let due: Vec<i32> = self
            .since_snapshot
            .borrow()
            .iter()
            .filter(|(p, bytes)| {
                **bytes > self.settings.snapshot_bytes
                    && self.in_flight.borrow().get(p).copied().unwrap_or(0) == 0
            })
            .map(|(p, _)| *p)
            .collect();
        for partition in due {
            if let Err(e) = self.snapshot(partition).await {
                tracing::warn!(partition, error = %e, "__consumer_offsets snapshot failed");
            }
        }
    }

    async fn snapshot(&self, partition: i32) -> Result<(), EngineError> {
        let records: Vec<StoreRecord> = {
            let groups = self.groups.borrow();
            groups
                .values()
                .filter(|g| g.state != GroupState::Dead)
                .filter(|g| partition_for(&g.id, self.partition_count) == partition)
                .flat_map(|g| {
                    let meta =
                        (g.generation > 0 || !g.members.is_empty()).then(|| StoreRecord::Group {
                            group: g.id.clone(),
                            value: Some(g.to_value()),
                        });
                    let offsets = g.offsets.iter().map(|((t, p), c)| StoreRecord::Offset {
                        group: g.id.clone(),
                        topic: t.clone(),
                        partition: *p,
                        value: Some(OffsetValue {
                            offset: c.offset,
                            leader_epoch: c.leader_epoch,
                            commit_ms: c.commit_ms,
                            metadata: c.metadata.clone(),
                        }),
                    });
                    meta.into_iter().chain(offsets)
                })
                .collect()
        };
        self.since_snapshot.borrow_mut().insert(partition, 0);
        if records.is_empty() {
            return Ok(());
        }
        let mut start = None;
        for chunk in records.chunks(SNAPSHOT_RECORDS_PER_BATCH) {
            match self.append(partition, chunk).await {
                Ok(base) => {
                    start.get_or_insert(base);
                }
                Err(_) => return Ok(()),
            }
        }
        if let Some(start) = start {
            let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
            let deleted = self.shard.delete_before(&tp, Offset(start)).await?;
            tracing::info!(
                partition,
                records = records.len(),
                start,
                deleted,
                "__consumer_offsets snapshot"
            );
        }
        Ok(())
    }

    fn expire_offsets(&self, g: &Group, now_ms: i64) -> Vec<StoreRecord> {
        let retention = i64::try_from(self.settings.retention_ms).unwrap_or(i64::MAX);
        g.offsets
            .iter()
            .filter(|(_, c)| c.commit_ms.max(g.state_ms).saturating_add(retention) <= now_ms)
            .map(|((t, p), _)| StoreRecord::Offset {
                group: g.id.clone(),
                topic: t.clone(),
                partition: *p,
                value: None,
            })
            .collect()
    }

    /// Answers every waiting request (the broker is stopping): clients look for the
    /// coordinator again.
    pub fn fail_waiters(&self) {
        for g in self.groups.borrow_mut().values_mut() {
            g.fail_all(ResponseError::NotCoordinator);
        }
    }

    /// Replays one partition of `__consumer_offsets` from its log start.
    ///
    /// # Errors
    /// The engine's, reading the partition.
    pub async fn load(&self, partition: i32) -> Result<(), EngineError> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
        let offsets = self.shard.offsets(&tp).await?;
        let mut pos = offsets.log_start;
        let (mut records, mut bad) = (0u64, 0u64);
        while pos < offsets.high_watermark {
            let read = self.shard.read(&tp, pos, 1 << 20).await?;
            if read.batches.is_empty() {
                break;
            }
            for batch in read.batches {
                let next = batch_end(&batch).unwrap_or(pos.0 + 1);
                let sets = RecordBatchDecoder::decode_all(&mut batch.clone());
                for r in sets.into_iter().flatten().flat_map(|s| s.records) {
                    let Some(key) = &r.key else { continue };
                    match StoreRecord::decode(key, r.value.as_deref()) {
                        Ok(rec) => self.replay(rec, r.offset),
                        Err(e) => {
                            bad += 1;
                            tracing::warn!(partition, offset = r.offset, error = %e, "skipping record");
                        }
                    }
                    records += 1;
                }
                pos = Offset(next.max(pos.0 + 1));
            }
        }
        self.loaded.borrow_mut().insert(partition);
        self.since_snapshot
            .borrow_mut()
            .insert(partition, offsets.size_bytes);
        let groups = self
            .groups
            .borrow()
            .keys()
            .filter(|g| partition_for(g, self.partition_count) == partition)
            .count();
        self.broker.group_count.fetch_add(groups, Ordering::AcqRel);
        tracing::debug!(
            partition,
            records,
            bad,
            groups,
            "loaded __consumer_offsets partition"
        );
        Ok(())
    }

    fn replay(&self, record: StoreRecord, log_offset: i64) {
        let mut groups = self.groups.borrow_mut();
        match record {
            StoreRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                let g = groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now_ms()));
                match value {
                    Some(v) => {
                        g.offsets
                            .insert((topic, partition), committed(&v, log_offset));
                    }
                    None => {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            }
            StoreRecord::Group { group, value } => match value {
                Some(v) => groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now_ms()))
                    .restore(v, Instant::now()),
                None => {
                    groups.remove(&group);
                }
            },
        }
    }
}

fn committed(v: &OffsetValue, log_offset: i64) -> Committed {
    Committed {
        offset: v.offset,
        leader_epoch: v.leader_epoch,
        metadata: v.metadata.clone(),
        commit_ms: v.commit_ms,
        log_offset,
    }
}

/// The offset after a stored batch: baseOffset (bytes 0..8) + lastOffsetDelta (23..27) + 1.
fn batch_end(batch: &[u8]) -> Option<i64> {
    let base = i64::from_be_bytes(batch.get(0..8)?.try_into().ok()?);
    let delta = i32::from_be_bytes(batch.get(23..27)?.try_into().ok()?);
    Some(base + i64::from(delta) + 1)
}

fn check_member(g: &Group, member_id: &str, instance_id: Option<&str>) -> Result<(), Reject> {
    if let Some(instance) = instance_id {
        if g.instances.get(instance).is_some_and(|id| id != member_id) {
            return Err(ResponseError::FencedInstanceId);
        }
    }
    if g.members.contains_key(member_id) {
        Ok(())
    } else {
        Err(ResponseError::UnknownMemberId)
    }
}

/// Records that delete a group and all its offsets.
fn tombstones(g: &Group) -> Vec<StoreRecord> {
    let mut records: Vec<StoreRecord> = g
        .offsets
        .keys()
        .map(|(t, p)| StoreRecord::Offset {
            group: g.id.clone(),
            topic: t.clone(),
            partition: *p,
            value: None,
        })
        .collect();
    records.push(StoreRecord::Group {
        group: g.id.clone(),
        value: None,
    });
    records
}

/// The topics a consumer group's members subscribe to; `None` when they cannot be read
/// (another protocol type, or metadata that does not decode): then every topic counts.
fn subscribed_topics(g: &Group) -> Option<HashSet<String>> {
    use kafka_protocol::{messages::ConsumerProtocolSubscription, protocol::Decodable};
    if g.members.is_empty() {
        return Some(HashSet::new());
    }
    if g.protocol_type.as_deref() != Some("consumer") {
        return None;
    }
    let mut topics = HashSet::new();
    for m in g.members.values() {
        let mut meta = m.metadata_for(g.protocol_name.as_deref());
        if meta.len() < 2 {
            return None;
        }
        let version = i16::from_be_bytes([meta[0], meta[1]]);
        let _ = bytes::Buf::get_i16(&mut meta);
        let sub = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)).ok()?;
        topics.extend(sub.topics.iter().map(|t| t.to_string()));
    }
    Some(topics)
}
