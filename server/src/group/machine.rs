//! One group and its classic state machine, without I/O: the coordinator
//! ([`super::coordinator`]) calls these transitions and persists what they produce.
//!
//! ```text
//!            first join                     all members joined / rebalance timeout
//!  Empty ────────────────▶ PreparingRebalance ───────────────────────▶ CompletingRebalance
//!    ▲                        ▲   ▲   │ no member left                     │ leader's SyncGroup
//!    │ last member leaves     │   │   └──────────────▶ Empty               ▼ (persisted)
//!    └────────────────────────┼───┼───────────────────────────────────── Stable
//!                  join/leave/│   └── join with new metadata, leave, session expiry
//!                  expiry     │
//!  Dead: deleted (DeleteGroups, offset retention); never reused.
//! ```
//! Waiting JoinGroup and SyncGroup requests are oneshot senders kept on their member; a
//! transition answers them. A member waiting in a JoinGroup (or a SyncGroup) is alive by
//! definition; otherwise it expires `session_timeout_ms` after its last request.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::error::ResponseError;

use super::store::{GroupValue, MemberValue};

/// The classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for the members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment handed out.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    /// Kafka error code.
    pub error: i16,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader: every member's (id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    /// An error answer (with the member id where the client needs it).
    #[must_use]
    pub fn error(e: ResponseError, member_id: &str) -> Self {
        JoinResult {
            error: e.code(),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinResult::default()
        }
    }
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    /// Kafka error code.
    pub error: i16,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    /// An error answer.
    #[must_use]
    pub fn error(e: ResponseError) -> Self {
        SyncResult {
            error: e.code(),
            ..SyncResult::default()
        }
    }
}

/// A member of a group.
#[derive(Debug)]
pub struct Member {
    /// Member id.
    pub id: String,
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
    /// Protocols in the member's order of preference, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Assignment of the current generation.
    pub assignment: Bytes,
    /// Last request from this member.
    pub last_seen: Instant,
    /// A JoinGroup waiting for the rebalance to complete.
    pub join_waiter: Option<oneshot::Sender<JoinResult>>,
    /// A SyncGroup waiting for the leader's assignment.
    pub sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    /// The member's metadata for `protocol`.
    #[must_use]
    pub fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| Some(n.as_str()) == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn expired(&self, now: Instant) -> bool {
        let waiting = self.join_waiter.is_some() || self.sync_waiter.is_some();
        let session = Duration::from_millis(u64::try_from(self.session_timeout_ms).unwrap_or(0));
        !waiting && now.duration_since(self.last_seen) >= session
    }
}

/// A committed offset in memory.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The offset.
    pub offset: i64,
    /// Leader epoch (-1: none).
    pub leader_epoch: i32,
    /// Metadata string.
    pub metadata: String,
    /// When committed (ms since the epoch).
    pub commit_ms: i64,
    /// Where its record is in `__consumer_offsets`: a later record for the same key wins,
    /// whichever append finished first.
    pub log_offset: i64,
}

/// One consumer group.
#[derive(Debug)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// State.
    pub state: GroupState,
    /// When the state was entered (ms since the epoch).
    pub state_ms: i64,
    /// Generation.
    pub generation: i32,
    /// Protocol type of the members.
    pub protocol_type: Option<String>,
    /// The protocol chosen for the generation.
    pub protocol_name: Option<String>,
    /// Leader of the generation.
    pub leader: Option<String>,
    /// Members by id (ordered, so that leader choice is deterministic).
    pub members: BTreeMap<String, Member>,
    /// Static members: instance id to member id.
    pub instances: HashMap<String, String>,
    /// Member ids given out with MEMBER_ID_REQUIRED, with when they lapse.
    pub pending: HashMap<String, Instant>,
    /// When the current rebalance completes at the latest.
    pub rebalance_deadline: Option<Instant>,
    /// During the first rebalance of an empty group: the join is held until then.
    pub initial_delay_until: Option<Instant>,
    /// Committed offsets by (topic, partition).
    pub offsets: HashMap<(String, i32), Committed>,
}

/// When a rebalance starts and how it waits.
#[derive(Debug, Clone, Copy)]
pub struct RebalanceTiming {
    /// group_initial_rebalance_delay_ms.
    pub initial_delay: Duration,
}

impl Group {
    /// A new empty group.
    #[must_use]
    pub fn new(id: &str, now_ms: i64) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            state_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            instances: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            offsets: HashMap::new(),
        }
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_ms = now_ms;
    }

    /// Members joined or awaiting their member id.
    #[must_use]
    pub fn size(&self) -> usize {
        self.members.len() + self.pending.len()
    }

    /// Whether a member's protocols fit the group: same protocol type, and at least one
    /// protocol every other member supports too.
    #[must_use]
    pub fn accepts(
        &self,
        member_id: &str,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if self.state != GroupState::Empty
            && self
                .protocol_type
                .as_deref()
                .is_some_and(|t| t != protocol_type)
        {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.id != member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// Starts (or keeps) a rebalance: every member must rejoin.
    pub fn prepare_rebalance(&mut self, now: Instant, now_ms: i64, timing: RebalanceTiming) {
        if self.state == GroupState::CompletingRebalance {
            self.fail_syncs(ResponseError::RebalanceInProgress);
        }
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        let rebalance_max = self.rebalance_timeout();
        let was_empty = self.state == GroupState::Empty;
        tracing::info!(
            group = %self.id,
            state = self.state.name(),
            generation = self.generation,
            members = self.members.len(),
            "preparing to rebalance"
        );
        self.set_state(GroupState::PreparingRebalance, now_ms);
        self.rebalance_deadline = Some(now + rebalance_max);
        self.initial_delay_until = was_empty.then(|| now + timing.initial_delay.min(rebalance_max));
    }

    /// A new member joined during the initial delay: wait a little longer for others.
    pub fn extend_initial_delay(&mut self, now: Instant, timing: RebalanceTiming) {
        if let (Some(until), Some(deadline)) = (self.initial_delay_until, self.rebalance_deadline) {
            let later = (now + timing.initial_delay).min(deadline);
            self.initial_delay_until = Some(until.max(later));
        }
    }

    fn rebalance_timeout(&self) -> Duration {
        let ms = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    fn fail_syncs(&mut self, e: ResponseError) {
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(e));
            }
        }
    }

    /// Completes the join phase if every member has rejoined (after the initial delay), or
    /// if the deadline passed. Returns true when the group changed state and its metadata
    /// should be persisted (it became empty).
    pub fn maybe_complete_join(&mut self, now: Instant, now_ms: i64) -> bool {
        if self.state != GroupState::PreparingRebalance {
            return false;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        let delayed = self.initial_delay_until.is_some_and(|t| now < t);
        let late = self.rebalance_deadline.is_some_and(|t| now >= t);
        if !(late || (all_joined && !delayed)) {
            return false;
        }
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.id, member = %id, "member removed: it did not rejoin before the rebalance deadline");
            self.remove_member(&id);
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            "rebalance joined"
        );
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        if self.members.is_empty() {
            self.set_state(GroupState::Empty, now_ms);
            self.protocol_name = None;
            self.leader = None;
            return true;
        }
        self.protocol_name = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_seen = now;
                m.assignment = Bytes::new();
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(result);
                }
            }
        }
        false
    }

    /// The JoinGroup answer of the current generation for `member_id`: the leader gets the
    /// members' metadata for the chosen protocol.
    #[must_use]
    pub fn join_result(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.metadata_for(self.protocol_name.as_deref()),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// The protocol every member supports with the most first-choice votes (ties go to the
    /// earlier one in the leader's, else the first member's, order of preference).
    fn select_protocol(&self) -> Option<String> {
        let first = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next())?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(p, _)| candidates.iter().position(|c| *c == p))
            {
                votes[i] += 1;
            }
        }
        let best = votes.iter().max().copied().unwrap_or(0);
        votes
            .iter()
            .position(|v| *v == best)
            .and_then(|i| candidates.get(i))
            .map(|s| (*s).clone())
    }

    /// Removes a member, answering its waiting requests with UNKNOWN_MEMBER_ID.
    pub fn remove_member(&mut self, id: &str) -> Option<Member> {
        let mut m = self.members.remove(id)?;
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(ResponseError::UnknownMemberId, id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(ResponseError::UnknownMemberId));
        }
        if let Some(instance) = &m.instance_id {
            if self.instances.get(instance).is_some_and(|mid| mid == id) {
                self.instances.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        if self.members.is_empty() {
            self.protocol_type = None;
        }
        Some(m)
    }

    /// Members gone: a rebalance if the group had settled, or a check whether the running one
    /// can complete now. Returns true when the group's metadata should be persisted.
    pub fn after_removal(&mut self, now: Instant, now_ms: i64, timing: RebalanceTiming) -> bool {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, now_ms, timing);
                self.maybe_complete_join(now, now_ms)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, now_ms),
            GroupState::Empty | GroupState::Dead => false,
        }
    }

    /// Removes members whose session expired and pending ids that lapsed. Returns whether
    /// anyone was removed.
    pub fn expire(&mut self, now: Instant) -> bool {
        self.pending.retain(|_, until| *until > now);
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expired(now))
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            tracing::info!(group = %self.id, member = %id, "member's session expired");
            self.remove_member(id);
        }
        !gone.is_empty()
    }

    /// The leader's assignment is in: hand it to every member waiting in SyncGroup.
    pub fn complete_sync(&mut self, now_ms: i64) {
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), "group stable");
        self.set_state(GroupState::Stable, now_ms);
        let (pt, pn) = (self.protocol_type.clone(), self.protocol_name.clone());
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult {
                    error: 0,
                    protocol_type: pt.clone(),
                    protocol_name: pn.clone(),
                    assignment: m.assignment.clone(),
                });
            }
        }
    }

    /// Answers every waiting request (shutdown, deletion).
    pub fn fail_all(&mut self, e: ResponseError) {
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(e, &m.id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(e));
            }
        }
    }

    /// The group's metadata record.
    #[must_use]
    pub fn to_value(&self) -> GroupValue {
        GroupValue {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_ms: self.state_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    metadata: m.metadata_for(self.protocol_name.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Restores a group from its stored metadata: members come back Stable (or Empty) with
    /// a fresh session, as after a coordinator move in Kafka.
    pub fn restore(&mut self, v: GroupValue, now: Instant) {
        self.generation = v.generation;
        self.protocol_type = v.protocol_type;
        self.protocol_name = v.protocol_name;
        self.leader = v.leader;
        self.state_ms = v.state_ms;
        self.members.clear();
        self.instances.clear();
        for m in v.members {
            if let Some(i) = &m.instance_id {
                self.instances.insert(i.clone(), m.id.clone());
            }
            let protocol = self.protocol_name.clone().unwrap_or_default();
            self.members.insert(
                m.id.clone(),
                Member {
                    id: m.id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: vec![(protocol, m.metadata)],
                    assignment: m.assignment,
                    last_seen: now,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            id: id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocols: protocols
                .iter()
                .map(|p| ((*p).to_string(), Bytes::new()))
                .collect(),
            assignment: Bytes::new(),
            last_seen: Instant::now(),
            join_waiter: None,
            sync_waiter: None,
        }
    }

    #[test]
    fn protocol_with_most_votes_among_common_ones() {
        let mut g = Group::new("g", 0);
        g.members
            .insert("a".into(), member("a", &["range", "roundrobin"]));
        g.members
            .insert("b".into(), member("b", &["roundrobin", "range"]));
        g.members
            .insert("c".into(), member("c", &["roundrobin", "sticky"]));
        assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
        assert!(g.accepts("d", "consumer", &[("roundrobin".into(), Bytes::new())]));
        assert!(!g.accepts("d", "consumer", &[("range".into(), Bytes::new())]));
    }

    #[test]
    fn join_completes_when_all_rejoined_and_drops_the_rest() {
        let timing = RebalanceTiming {
            initial_delay: Duration::ZERO,
        };
        let mut g = Group::new("g", 0);
        let now = Instant::now();
        let (tx, mut rx) = oneshot::channel();
        let mut a = member("a", &["range"]);
        a.join_waiter = Some(tx);
        g.members.insert("a".into(), a);
        g.members.insert("b".into(), member("b", &["range"]));
        // The members are in before the rebalance starts: its deadline is their largest
        // rebalance timeout (10 s).
        g.prepare_rebalance(now, 0, timing);
        assert!(!g.maybe_complete_join(now, 0), "b has not rejoined");
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(!g.maybe_complete_join(now + Duration::from_secs(11), 0));
        assert_eq!(g.state, GroupState::CompletingRebalance);
        assert_eq!(g.members.len(), 1, "b timed out of the rebalance");
        let r = rx
            .try_recv()
            .ok()
            .flatten()
            .map(|r| (r.generation, r.leader));
        assert_eq!(r, Some((1, "a".to_string())));
    }
}
