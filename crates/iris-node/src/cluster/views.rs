//! Cluster-wide views: `sessions list` and `stats` made at one node gather every node's part
//! and merge them. A node that does not answer is named in `unavailable_nodes`, never dropped
//! silently.

use std::collections::BTreeMap;

use iris_api::{
    ApiError, ClusterSession, ClusterSessionsReply, Reply, StatsReply, UnavailableNode,
};

/// One node's part of a view: its reply, or why there is none.
pub(super) type Part = (String, Result<Reply, ApiError>);

/// The sessions of every node that answered, newest use first (ties by id, as one store lists
/// them), at most `limit`.
pub(super) fn merge_sessions(parts: Vec<Part>, limit: Option<usize>) -> Reply {
    let mut listed = ClusterSessionsReply {
        sessions: Vec::new(),
        nodes: Vec::new(),
        unavailable_nodes: Vec::new(),
    };
    for (node, part) in parts {
        match part {
            Ok(Reply::Sessions(records)) => {
                listed
                    .sessions
                    .extend(records.into_iter().map(|record| ClusterSession {
                        node: node.clone(),
                        record,
                    }));
                listed.nodes.push(node);
            }
            other => listed.unavailable_nodes.push(unavailable(node, other)),
        }
    }
    listed.sessions.sort_by(newest_first);
    if let Some(limit) = limit {
        listed.sessions.truncate(limit);
    }
    Reply::ClusterSessions(listed)
}

/// The store's order: newest `last_used_at` first, then by id.
fn newest_first(a: &ClusterSession, b: &ClusterSession) -> std::cmp::Ordering {
    let (a, b) = (&a.record, &b.record);
    b.last_used_at
        .cmp(&a.last_used_at)
        .then_with(|| a.session_id.cmp(&b.session_id))
}

/// The figures of every node that answered, summed; this node's (the first part) describes how
/// its agents are contained and whose counters they are.
pub(super) fn merge_stats(parts: Vec<Part>) -> Result<Reply, ApiError> {
    let mut merged: Option<StatsReply> = None;
    let (mut nodes, mut unavailable_nodes) = (Vec::new(), Vec::new());
    for (node, part) in parts {
        let stats = match part {
            Ok(Reply::Stats(stats)) => stats,
            other => {
                unavailable_nodes.push(unavailable(node, other));
                continue;
            }
        };
        nodes.push(node);
        match &mut merged {
            None => merged = Some(stats),
            Some(total) => add_stats(total, stats),
        }
    }
    // With no node answering (this one included), there is nothing to show: say why.
    let Some(mut total) = merged else {
        let reasons: Vec<String> = unavailable_nodes
            .iter()
            .map(|n| format!("{}: {}", n.node, n.reason))
            .collect();
        return Err(ApiError::new(
            iris_api::ApiCode::NodeUnavailable,
            format!("no node of the cluster answered ({})", reasons.join("; ")),
        ));
    };
    total.nodes = Some(nodes);
    total.unavailable_nodes = Some(unavailable_nodes);
    Ok(Reply::Stats(total))
}

fn add_stats(total: &mut StatsReply, more: StatsReply) {
    let sessions = &mut total.sessions;
    sessions.total += more.sessions.total;
    sessions.active += more.sessions.active;
    sessions.archived += more.sessions.archived;
    sessions.total_messages += more.sessions.total_messages;
    add_counts(&mut sessions.by_status, more.sessions.by_status);
    add_counts(
        &mut sessions.by_process_state,
        more.sessions.by_process_state,
    );
    total.live_actors += more.live_actors;
    total.live_processes += more.live_processes;
    add_counts(&mut total.counters, more.counters);
    // A pair runs on one node, so its key is never in two parts.
    total.agent_cpu_seconds.extend(more.agent_cpu_seconds);
}

fn add_counts<K: Ord>(total: &mut BTreeMap<K, u64>, more: BTreeMap<K, u64>) {
    for (key, n) in more {
        *total.entry(key).or_default() += n;
    }
}

fn unavailable(node: String, part: Result<Reply, ApiError>) -> UnavailableNode {
    let reason = match part {
        Err(error) => error.to_string(),
        Ok(other) => format!("it answered with an unexpected reply ({other:?})"),
    };
    UnavailableNode { node, reason }
}

#[cfg(test)]
mod tests {
    use iris_api::{ApiCode, CountersOf};
    use iris_core::{Pair, SessionRecord, SessionStats, TeamName, Timestamp};

    use super::*;

    fn record(from: &str, to: &str, used_ms: u64) -> SessionRecord {
        let pair = Pair::new(
            TeamName::new(from).unwrap_or_else(|e| panic!("{e}")),
            TeamName::new(to).unwrap_or_else(|e| panic!("{e}")),
        );
        SessionRecord::new(
            pair,
            iris_core::SessionId::new_v4(),
            Timestamp::from_millis(used_ms),
        )
    }

    fn stats(sessions: u64, turns: u64) -> StatsReply {
        StatsReply {
            sessions: SessionStats {
                total: sessions,
                ..SessionStats::default()
            },
            live_actors: sessions,
            live_processes: 1,
            counters: [("turns_completed".to_owned(), turns)].into(),
            containment: None,
            agent_cpu_seconds: BTreeMap::new(),
            counters_of: CountersOf::Node,
            nodes: None,
            unavailable_nodes: None,
        }
    }

    fn down(node: &str) -> Part {
        (
            node.to_owned(),
            Err(ApiError::new(
                ApiCode::NodeUnavailable,
                "node n3 is not connected",
            )),
        )
    }

    #[test]
    fn sessions_of_every_node_merge_newest_first_and_a_silent_node_is_named() {
        let parts = vec![
            (
                "n1".to_owned(),
                Ok(Reply::Sessions(vec![
                    record("a", "b", 30),
                    record("b", "a", 10),
                ])),
            ),
            (
                "n2".to_owned(),
                Ok(Reply::Sessions(vec![record("a", "c", 20)])),
            ),
            down("n3"),
        ];
        let Reply::ClusterSessions(listed) = merge_sessions(parts, Some(2)) else {
            panic!("not a cluster list");
        };
        let used: Vec<u64> = listed
            .sessions
            .iter()
            .map(|s| s.record.last_used_at.as_millis())
            .collect();
        assert_eq!(used, [30, 20]);
        assert_eq!(listed.sessions[1].node, "n2");
        assert_eq!(listed.nodes, ["n1", "n2"]);
        assert_eq!(listed.unavailable_nodes.len(), 1);
        assert_eq!(listed.unavailable_nodes[0].node, "n3");
        assert!(listed.unavailable_nodes[0].reason.contains("not connected"));
    }

    #[test]
    fn stats_of_every_node_add_up_and_a_silent_node_is_named() {
        let parts = vec![
            ("n1".to_owned(), Ok(Reply::Stats(stats(2, 5)))),
            ("n2".to_owned(), Ok(Reply::Stats(stats(3, 7)))),
            down("n3"),
        ];
        let Ok(Reply::Stats(total)) = merge_stats(parts) else {
            panic!("not stats");
        };
        assert_eq!(total.sessions.total, 5);
        assert_eq!(total.live_actors, 5);
        assert_eq!(total.live_processes, 2);
        assert_eq!(total.counters["turns_completed"], 12);
        assert_eq!(total.nodes, Some(vec!["n1".to_owned(), "n2".to_owned()]));
        let missing = total.unavailable_nodes.unwrap_or_default();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].node, "n3");
        // No node at all: an error that says why.
        let none = merge_stats(vec![down("n3")]).unwrap_err();
        assert_eq!(none.code(), ApiCode::NodeUnavailable);
        assert!(none.to_string().contains("n3"), "{none}");
    }
}
