//! The durable queue: a full node parks creates in its `Pool` (FIFO, bounded in length and
//! time), a client that hangs up leaves, and past the bounds the answer is 429.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helper::{TestDaemon, http, http_head, kill, wait_for};

fn api(d: &TestDaemon) -> String {
    d.status["api_url"].as_str().unwrap().to_string()
}

fn queued(d: &TestDaemon) -> Vec<String> {
    let st = d.json(&["daemon", "status", "--json"]);
    st["pool"]["queued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn create_body(id: &str) -> String {
    format!(r#"{{"sessionId":"{id}"}}"#)
}

/// A create on its own thread: its status and body once it is answered.
fn create_in_background(api: &str, id: &str) -> thread::JoinHandle<(u16, Value)> {
    let (api, body) = (api.to_string(), create_body(id));
    thread::spawn(move || {
        let (status, body) = http(&api, "POST", "/v1/sessions", &body);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    })
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[test]
fn a_full_node_queues_creates_first_come_first_served_within_bounds() {
    let d = TestDaemon::start_with(&["--max-sessions", "1", "--max-queue", "2"]);
    let api = api(&d);
    let host = api.trim_start_matches("http://").to_string();
    let first = d.create(&[]);
    let first = first["id"].as_str().unwrap().to_string();

    let (b, c) = (new_id(), new_id());
    let b_done = create_in_background(&api, &b);
    assert!(wait_for(|| queued(&d) == [b.clone()]), "{:?}", queued(&d));
    let c_done = create_in_background(&api, &c);
    assert!(wait_for(|| queued(&d) == [b.clone(), c.clone()]));

    // The queue is full: 429 at once, with the headers the SDKs' retry logic reads.
    let started = Instant::now();
    let (status, head, body) = http_head(
        &api,
        "POST",
        "/v1/sessions",
        &[("Host", &host)],
        create_body(&new_id()).as_bytes(),
    );
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("retry-after: 5"), "{head}");
    assert!(head.contains("x-should-retry: true"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("2 creates are waiting"));
    assert!(started.elapsed() < Duration::from_secs(10));

    // Slots go to the waiters in arrival order.
    d.ok(&["session", "kill", &first]);
    let (status, b_session) = b_done.join().unwrap();
    assert_eq!(status, 200, "{b_session}");
    assert_eq!(b_session["id"], b.as_str());
    assert_eq!(b_session["status"], "live");
    assert_eq!(queued(&d), std::slice::from_ref(&c));
    d.ok(&["session", "kill", &b]);
    let (status, c_session) = c_done.join().unwrap();
    assert_eq!(status, 200, "{c_session}");
    assert!(queued(&d).is_empty());

    // `x-bro-no-wait: 1` (and `bro session create --no-wait`) ask for 429 rather than a wait.
    let (status, _, _) = http_head(
        &api,
        "POST",
        "/v1/sessions",
        &[("Host", &host), ("x-bro-no-wait", "1")],
        create_body(&new_id()).as_bytes(),
    );
    assert_eq!(status, 429);
    let out = d.bro(&["session", "create", "--no-wait"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at capacity"));
    assert!(queued(&d).is_empty());
    d.ok(&["session", "kill", &c]);
    d.stop();
}

#[test]
fn a_wait_ends_with_429_at_the_queue_timeout() {
    let d = TestDaemon::start_with(&["--max-sessions", "1", "--queue-timeout", "2s"]);
    let api = api(&d);
    let first = d.create(&[]);
    let first = first["id"].as_str().unwrap().to_string();

    let started = Instant::now();
    let (status, body) = http(&api, "POST", "/v1/sessions", &create_body(&new_id()));
    let waited = started.elapsed();
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("queue timeout"));
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(queued(&d).is_empty());
    d.ok(&["session", "kill", &first]);
    d.stop();
}

#[test]
fn a_client_that_hangs_up_leaves_the_queue() {
    // The wait would last an hour: only the hang-up can end it.
    let d = TestDaemon::start_with(&["--max-sessions", "1", "--queue-timeout", "1h"]);
    let api = api(&d);
    let first = d.create(&[]);
    let first = first["id"].as_str().unwrap().to_string();

    // A client that sends its create and hangs up while it waits.
    let gone = new_id();
    let body = create_body(&gone);
    let mut tcp = std::net::TcpStream::connect(api.trim_start_matches("http://")).unwrap();
    write!(
        tcp,
        "POST /v1/sessions HTTP/1.1\r\nHost: {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        api.trim_start_matches("http://"),
        body.len()
    )
    .unwrap();
    assert!(wait_for(|| queued(&d) == [gone.clone()]));
    drop(tcp);
    assert!(
        wait_for(|| queued(&d).is_empty()),
        "the gone client still waits"
    );

    // Its session is never created, even once a slot is free.
    d.ok(&["session", "kill", &first]);
    thread::sleep(Duration::from_secs(1));
    let out = d.bro(&["session", "get", &gone]);
    assert!(!out.status.success(), "the gone client's session exists");
    let live = d.json(&["session", "list", "--status", "live", "--json"]);
    assert_eq!(live["sessions"].as_array().unwrap().len(), 0, "{live}");
    d.stop();
}

#[test]
fn a_restarted_daemon_ends_the_waits_of_its_predecessors_clients() {
    let mut d = TestDaemon::start_with(&["--max-sessions", "1", "--queue-timeout", "1h"]);
    let first = d.create(&[]);
    let first = first["id"].as_str().unwrap().to_string();
    let waiting = new_id();
    let waiter = create_in_background(&api(&d), &waiting);
    assert!(wait_for(|| queued(&d) == [waiting.clone()]));

    kill(d.daemon_pid(), "KILL");
    let (status, _) = waiter.join().unwrap();
    assert_eq!(status, 0, "the waiting client saw its connection die");
    d.restart_with(&["--max-sessions", "1", "--queue-timeout", "1h"]);
    assert!(queued(&d).is_empty(), "{:?}", queued(&d));
    assert_eq!(d.get(&first)["status"], "live");

    // The freed slot goes to nobody: the waiter's client is gone.
    d.ok(&["session", "kill", &first]);
    thread::sleep(Duration::from_secs(1));
    assert!(!d.bro(&["session", "get", &waiting]).status.success());
    d.stop();
}
