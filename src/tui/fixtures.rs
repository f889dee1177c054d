//! Dashboards for the TUI's tests: fixed data, no clock.

use crate::protocol::cluster::{ClusterStatus, NodeStatus};
use crate::protocol::control::{
    DaemonStatus, Dashboard, InvocationRow, InvocationStatus, PoolUsage, RestateStatus, SessionRow,
    WorkerRow,
};
use crate::protocol::session::{SessionOptions, SessionRecord, SessionStatus};
use crate::protocol::steel::SessionDetails;

/// A daemon with sessions in every status and a retrying invocation.
pub fn busy() -> Dashboard {
    let statuses = [
        (
            "1b2f6a0e-7d2f-4a51-9b0e-3f1d2c4b5a01",
            SessionStatus::Live,
            300_000,
        ),
        (
            "2c3d4e5f-7d2f-4a51-9b0e-3f1d2c4b5a02",
            SessionStatus::Live,
            0,
        ),
        (
            "3d4e5f60-7d2f-4a51-9b0e-3f1d2c4b5a03",
            SessionStatus::Starting,
            300_000,
        ),
        (
            "4e5f6071-7d2f-4a51-9b0e-3f1d2c4b5a04",
            SessionStatus::Releasing,
            300_000,
        ),
        (
            "5f607182-7d2f-4a51-9b0e-3f1d2c4b5a05",
            SessionStatus::Released,
            300_000,
        ),
        (
            "60718293-7d2f-4a51-9b0e-3f1d2c4b5a06",
            SessionStatus::Failed,
            300_000,
        ),
    ];
    let sessions = statuses
        .iter()
        .enumerate()
        .map(|(i, (id, status, timeout))| {
            let live = *status == SessionStatus::Live;
            let rec = SessionRecord {
                id: crate::protocol::session::SessionId::parse(id).expect("fixture ids are UUIDs"),
                status: *status,
                node: "local".into(),
                created_at_ms: 1_795_768_600_000 + i as u64 * 1000,
                ended_at_ms: status.is_final().then_some(1_795_768_650_000),
                options: SessionOptions {
                    timeout_ms: *timeout,
                    // The first session records its pages.
                    record: i == 0,
                    ..Default::default()
                },
                worker: None,
                reason: (*status == SessionStatus::Failed)
                    .then(|| "browser exited (signal: 9)".into()),
                proxy_bytes: None,
                refused: false,
            };
            SessionRow {
                session: SessionDetails::from_record(
                    &rec,
                    "http://127.0.0.1:3000",
                    1_795_768_660_000,
                ),
                node: "local".into(),
                pid: live.then_some(4100 + i as u32),
                port: live.then_some(40100 + i as u16),
                mem_kib: if live { 180 * 1024 } else { 0 },
                cpu_ticks: 0,
                processes: if live { 9 } else { 0 },
                clients: u32::from(i == 0),
            }
        })
        .collect();
    let invocations = vec![
        InvocationRow {
            id: "inv_1".into(),
            target: "Session/3d4e5f60-7d2f-4a51-9b0e-3f1d2c4b5a03/create".into(),
            status: InvocationStatus::BackingOff,
            retry_count: Some(3),
            last_failure: Some("[500] chromium did not answer on its DevTools port".into()),
            created_at: Some("2026-11-27T08:36:42.000Z".into()),
        },
        InvocationRow {
            id: "inv_2".into(),
            target: "Session/1b2f6a0e-7d2f-4a51-9b0e-3f1d2c4b5a01/expire".into(),
            status: InvocationStatus::Scheduled,
            retry_count: None,
            last_failure: None,
            created_at: Some("2026-11-27T08:36:40.000Z".into()),
        },
        InvocationRow {
            id: "inv_3".into(),
            target: "Pool/local/acquire".into(),
            status: InvocationStatus::Completed,
            retry_count: Some(0),
            last_failure: None,
            created_at: Some("2026-11-27T08:36:39.000Z".into()),
        },
    ];
    let workers = vec![
        worker(4100, Some("1b2f6a0e-7d2f-4a51-9b0e-3f1d2c4b5a01")),
        worker(4101, Some("2c3d4e5f-7d2f-4a51-9b0e-3f1d2c4b5a02")),
        worker(4120, None),
    ];
    Dashboard {
        status: status(2),
        taken_at_ms: 1_795_768_660_000,
        sessions,
        invocations,
        restate_ok: true,
        workers,
    }
}

/// A daemon with nothing to show.
pub fn empty() -> Dashboard {
    Dashboard {
        status: status(0),
        taken_at_ms: 1_795_768_660_000,
        sessions: vec![],
        invocations: vec![],
        restate_ok: true,
        workers: vec![],
    }
}

fn status(used: u32) -> DaemonStatus {
    DaemonStatus {
        limits: None,
        pid: 4000,
        version: "0.1.0".into(),
        protocol: 1,
        api_url: "http://127.0.0.1:3000".into(),
        socket: "/run/bro/bro.sock".into(),
        node: "local".into(),
        max_sessions: 16,
        max_queue: 64,
        queue_timeout_ms: 30_000,
        warm: 0,
        chromium: "/usr/bin/chromium".into(),
        home: "/home/u/.local/share/bro".into(),
        restate: RestateStatus {
            admin_url: "http://127.0.0.1:9070".into(),
            ingress_url: "http://127.0.0.1:8080".into(),
            identity_key: "publickeyv1_test".into(),
            pid: Some(4001),
            supervised: true,
            restarts: 0,
            endpoint_url: "http://127.0.0.1:9080/".into(),
        },
        pool: Some(PoolUsage {
            capacity: 16,
            used,
            sessions: vec![],
            max_queue: 64,
            queued: vec![],
            warm_ready: vec![],
        }),
    }
}

fn worker(pid: u32, session: Option<&str>) -> WorkerRow {
    WorkerRow {
        pid,
        port: (pid + 36000) as u16,
        session: session.map(str::to_string),
        processes: 9,
        mem_kib: if session.is_some() {
            180 * 1024
        } else {
            150 * 1024
        },
        cpu_ticks: 0,
    }
}

/// A cluster of three: this node, a full one with a queue, and one that stopped beating.
pub fn cluster() -> ClusterStatus {
    let node = |name: &str, i: u8, used, queued, seen, healthy: bool| NodeStatus {
        name: name.into(),
        address: format!("http://10.0.0.{i}:3000"),
        healthy,
        capacity: 16,
        used,
        queued,
        last_seen_ms: seen,
        restate: if healthy { "alive" } else { "unreachable" }.into(),
        this: i == 1,
    };
    ClusterStatus {
        clustered: true,
        cluster: "bro".into(),
        node: "node-a".into(),
        members: vec!["10.0.0.1".into(), "10.0.0.2".into(), "10.0.0.3".into()],
        nodes: vec![
            node("node-a", 1, 2, 0, 400, true),
            node("node-b", 2, 16, 3, 900, true),
            node("node-c", 3, 0, 0, 42_000, false),
        ],
    }
}
