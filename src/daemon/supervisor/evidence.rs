//! What the reaper may do with a dir under the sessions dir: the evidence rules. Pure (facts
//! in, a verdict out), so every rule has a test.
//!
//! A dir holds a session's profile and its files (uploads, downloads): deleting it is for
//! good. So a dir is deleted only on **evidence** that nothing in it is still wanted, and
//! the only evidence is what Restate's state *says*, never what it does not say:
//!
//! - **Reap** (kill its browser, delete the dir) when the session the dir serves has a
//!   record that parses and is final (`released` or `failed`): the session is over and its
//!   teardown should have removed the dir; or when the dir is a warm browser that no session
//!   ever claimed (its `worker.json` says so; a claim rewrites it before any client sees the
//!   browser) and the `Warm` state, which parses, no longer holds it: nothing in it was ever
//!   a client's.
//! - **Keep** when an open record names it (its own id, or the warm browser's dir it took),
//!   the warm pool holds it (ready, or launching), a launch or stop of it runs in this daemon,
//!   or it changed within the grace period (its record may not be visible yet). Keep, too,
//!   when the record of its session exists but does not parse (another bro version's format,
//!   say), or when the `Warm` state does not parse and the dir is an unclaimed warm browser:
//!   an unreadable record is not a missing one, and its browser may serve a live session.
//! - **Quarantine** (kill its browser, move the dir into the quarantine dir, tell the human)
//!   in every other case, chiefly a dir whose session has no record at all: the Restate store
//!   was wiped, lost or reset (records empty while dirs exist), or the record was never
//!   written. Absence of a record is no evidence that the session is over.
//!
//! A failed query never gets here: the reconciliation stops, and nothing is touched.

use std::collections::{HashMap, HashSet};

use crate::host::DirOwner;
use crate::orchestrator::ingress::UnreadableRecord;
use crate::orchestrator::warm::WarmStatus;
use crate::protocol::session::SessionRecord;

/// What Restate's state says, reduced to what the rules need.
#[derive(Debug, Default, Clone)]
pub struct Evidence {
    /// Session id → whether its record is final. Only records that parse.
    pub sessions: HashMap<String, bool>,
    /// Names of the dirs open sessions run in: their own, or the warm browser's they took.
    pub open_dirs: HashSet<String>,
    /// Ids of session records that exist but do not parse.
    pub unreadable: HashSet<String>,
    /// The warm pool's dirs (ready and launching); `None` when its state does not parse.
    pub warm: Option<HashSet<String>>,
}

impl Evidence {
    /// The evidence in a listing of records and the node's warm pool (`None` when the `Warm`
    /// state does not parse).
    pub fn new(
        records: &[SessionRecord],
        unreadable: &[UnreadableRecord],
        warm: Option<&WarmStatus>,
    ) -> Self {
        let mut ev = Evidence::default();
        for rec in records {
            let done = rec.status.is_final();
            ev.sessions.insert(rec.id.to_string(), done);
            if !done {
                ev.open_dirs.insert(rec.id.to_string());
                if let Some(name) = rec.worker.as_ref().and_then(|w| w.dir.file_name()) {
                    ev.open_dirs.insert(name.to_string_lossy().into_owned());
                }
            }
        }
        ev.unreadable = unreadable.iter().map(|u| u.key.clone()).collect();
        ev.warm = warm.map(|w| {
            w.ready
                .iter()
                .map(|e| e.id.clone())
                .chain(w.filling.iter().cloned())
                .collect()
        });
        ev
    }

    /// Every dir name whose browser must be left alone even when its dir is gone: the dirs
    /// open sessions and the warm pool run in, and the ids of records that do not parse.
    pub fn kept(&self) -> Vec<String> {
        let warm = self.warm.iter().flatten();
        self.open_dirs
            .iter()
            .chain(warm)
            .chain(&self.unreadable)
            .cloned()
            .collect()
    }

    /// True when `name` is spoken for by an open session or the warm pool. (Used for stray
    /// browsers too: a browser whose dir is gone but whose session is open is left alone.)
    pub fn owns(&self, name: &str) -> bool {
        self.open_dirs.contains(name) || self.warm.as_ref().is_some_and(|w| w.contains(name))
    }
}

/// One dir under the sessions dir, as the reaper sees it.
#[derive(Debug, Clone)]
pub struct DirFacts<'a> {
    /// Its name (a session id or a warm browser id).
    pub name: &'a str,
    /// Whom its `worker.json` says it serves.
    pub owner: DirOwner,
    /// A launch or stop of it runs in this daemon, or it changed within the grace period.
    pub busy: bool,
}

/// What to do with one dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it and its browser alone.
    Keep,
    /// Provably orphaned: kill its browser and delete it. Why.
    Reap(&'static str),
    /// No evidence either way: kill its browser and move it aside. Why.
    Quarantine(String),
}

/// The verdict on one dir (see the module docs for the rules).
pub fn decide(ev: &Evidence, dir: &DirFacts<'_>) -> Verdict {
    if dir.busy || ev.owns(dir.name) {
        return Verdict::Keep;
    }
    let session = match &dir.owner {
        DirOwner::Session(id) => id.as_str(),
        DirOwner::Unknown => dir.name,
        DirOwner::Warm => {
            return match ev.warm {
                Some(_) => Verdict::Reap("an unclaimed warm browser the warm pool no longer holds"),
                None => Verdict::Keep,
            };
        }
    };
    if ev.unreadable.contains(session) {
        return Verdict::Keep;
    }
    match ev.sessions.get(session) {
        Some(true) => Verdict::Reap("its session has ended"),
        Some(false) => Verdict::Keep,
        None if ev.sessions.is_empty() && ev.unreadable.is_empty() => Verdict::Quarantine(format!(
            "Restate holds no session records at all (its store was wiped or reset?), so \
             nothing says session {session} is over"
        )),
        None => Verdict::Quarantine(format!(
            "Restate holds no record of session {session}, so nothing says it is over"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::warm::WarmEntry;
    use crate::protocol::session::{SessionOptions, SessionStatus, WorkerInfo};

    const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
    const W: &str = "cccccccc-0000-4000-8000-000000000003";

    fn worker(dir: &str) -> WorkerInfo {
        WorkerInfo {
            pid: 1,
            start_time: 1,
            port: 1,
            ws_path: String::new(),
            dir: std::path::PathBuf::from("/s").join(dir),
        }
    }

    fn record(id: &str, status: SessionStatus, dir: Option<&str>) -> SessionRecord {
        SessionRecord {
            id: crate::protocol::session::SessionId::parse(id).unwrap(),
            status,
            node: "local".into(),
            created_at_ms: 0,
            ended_at_ms: None,
            options: SessionOptions::default(),
            worker: dir.map(worker),
            reason: None,
            proxy_bytes: None,
            refused: false,
        }
    }

    fn unreadable(key: &str) -> UnreadableRecord {
        UnreadableRecord {
            key: key.into(),
            error: "unknown variant".into(),
        }
    }

    fn warm(ready: &[&str], filling: &[&str]) -> WarmStatus {
        WarmStatus {
            target: 1,
            ready: ready
                .iter()
                .map(|id| WarmEntry {
                    id: id.to_string(),
                    worker: worker(id),
                })
                .collect(),
            filling: filling.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn dir(name: &str, owner: DirOwner) -> DirFacts<'_> {
        DirFacts {
            name,
            owner,
            busy: false,
        }
    }

    fn session(id: &str) -> DirOwner {
        DirOwner::Session(id.into())
    }

    fn is_quarantine(v: &Verdict) -> bool {
        matches!(v, Verdict::Quarantine(_))
    }

    #[test]
    fn a_final_record_is_evidence() {
        for status in [SessionStatus::Released, SessionStatus::Failed] {
            let ev = Evidence::new(&[record(A, status, Some(A))], &[], Some(&warm(&[], &[])));
            assert_eq!(
                decide(&ev, &dir(A, session(A))),
                Verdict::Reap("its session has ended")
            );
            // An older dir that does not say whose it is: the session of its name.
            assert!(matches!(
                decide(&ev, &dir(A, DirOwner::Unknown)),
                Verdict::Reap(_)
            ));
        }
    }

    #[test]
    fn open_sessions_keep_their_dirs() {
        for status in [
            SessionStatus::Starting,
            SessionStatus::Live,
            SessionStatus::Releasing,
        ] {
            let ev = Evidence::new(&[record(A, status, Some(A))], &[], Some(&warm(&[], &[])));
            assert_eq!(decide(&ev, &dir(A, session(A))), Verdict::Keep);
        }
        // A live session in a warm browser's dir keeps that dir, whatever the dir says.
        let ev = Evidence::new(
            &[record(A, SessionStatus::Live, Some(W))],
            &[],
            Some(&warm(&[], &[])),
        );
        assert_eq!(decide(&ev, &dir(W, DirOwner::Warm)), Verdict::Keep);
        // A starting session that claimed a warm browser (its record names no worker yet).
        let ev = Evidence::new(
            &[record(A, SessionStatus::Starting, None)],
            &[],
            Some(&warm(&[], &[])),
        );
        assert_eq!(decide(&ev, &dir(W, session(A))), Verdict::Keep);
    }

    #[test]
    fn no_record_is_no_evidence() {
        // The store was wiped: no records at all, while dirs exist.
        let ev = Evidence::new(&[], &[], Some(&warm(&[], &[])));
        let v = decide(&ev, &dir(A, session(A)));
        assert!(is_quarantine(&v), "{v:?}");
        assert!(
            format!("{v:?}").contains("no session records at all"),
            "{v:?}"
        );
        assert!(is_quarantine(&decide(&ev, &dir(A, DirOwner::Unknown))));
        // Other records exist, this one is missing.
        let ev = Evidence::new(
            &[record(B, SessionStatus::Released, None)],
            &[],
            Some(&warm(&[], &[])),
        );
        let v = decide(&ev, &dir(A, session(A)));
        assert!(is_quarantine(&v), "{v:?}");
        // A claimed warm browser whose session has no record: the session's files may be in it.
        assert!(is_quarantine(&decide(&ev, &dir(W, session(A)))));
    }

    #[test]
    fn an_unreadable_record_is_not_a_missing_one() {
        let ev = Evidence::new(
            &[record(B, SessionStatus::Released, Some(B))],
            &[unreadable(A)],
            Some(&warm(&[], &[])),
        );
        assert_eq!(decide(&ev, &dir(A, session(A))), Verdict::Keep);
        assert_eq!(decide(&ev, &dir(W, session(A))), Verdict::Keep);
        // Other dirs are judged as usual.
        assert!(matches!(decide(&ev, &dir(B, session(B))), Verdict::Reap(_)));
        // Every record unreadable (a format change across an upgrade): nothing is reaped.
        let ev = Evidence::new(&[], &[unreadable(A), unreadable(B)], Some(&warm(&[], &[])));
        assert_eq!(decide(&ev, &dir(A, session(A))), Verdict::Keep);
        assert_eq!(decide(&ev, &dir(B, DirOwner::Unknown)), Verdict::Keep);
        let v = decide(
            &ev,
            &dir(W, session("dddddddd-0000-4000-8000-000000000004")),
        );
        assert!(is_quarantine(&v), "{v:?}");
        assert!(!format!("{v:?}").contains("at all"), "{v:?}");
    }

    #[test]
    fn unclaimed_warm_browsers_go_once_the_pool_drops_them() {
        let records = [record(B, SessionStatus::Live, Some(B))];
        let ev = Evidence::new(&records, &[], Some(&warm(&[], &[])));
        assert!(matches!(
            decide(&ev, &dir(W, DirOwner::Warm)),
            Verdict::Reap(_)
        ));
        // Even with the store wiped: nothing in it was ever a client's.
        let ev = Evidence::new(&[], &[], Some(&warm(&[], &[])));
        assert!(matches!(
            decide(&ev, &dir(W, DirOwner::Warm)),
            Verdict::Reap(_)
        ));
        // Ready or launching: kept.
        let ev = Evidence::new(&records, &[], Some(&warm(&[W], &[])));
        assert_eq!(decide(&ev, &dir(W, DirOwner::Warm)), Verdict::Keep);
        let ev = Evidence::new(&records, &[], Some(&warm(&[], &[W])));
        assert_eq!(decide(&ev, &dir(W, DirOwner::Warm)), Verdict::Keep);
        // The pool's state does not parse: kept.
        let ev = Evidence::new(&records, &[], None);
        assert_eq!(decide(&ev, &dir(W, DirOwner::Warm)), Verdict::Keep);
    }

    #[test]
    fn busy_dirs_are_kept_whatever_the_records_say() {
        let ev = Evidence::new(&[], &[], Some(&warm(&[], &[])));
        let mut facts = dir(A, session(A));
        facts.busy = true;
        assert_eq!(decide(&ev, &facts), Verdict::Keep);
        let ev = Evidence::new(
            &[record(A, SessionStatus::Failed, Some(A))],
            &[],
            Some(&warm(&[], &[])),
        );
        assert_eq!(decide(&ev, &facts), Verdict::Keep);
    }
}
