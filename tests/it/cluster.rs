//! Three nodes on one Restate cluster, on one machine: loopback addresses 127.0.0.2, .3 and
//! .4 stand in for three machines, each node with its own `BRO_HOME`, 2 slots, and the same
//! `[cluster]` config. Real restate-server nodes, real Chromium.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::files::{Framing, download, upload};
use crate::helper::{
    TestDaemon, bro_in, cdp_browser_version, http, http_with, is_live, kill, leftovers, text,
};
use crate::traces::{Receiver, Span, chain, tree, whole_create};

const ADDRS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const NAMES: [&str; 3] = ["n1", "n2", "n3"];
/// The cluster secret of the test's nodes.
const SECRET: &str = "an-integration-test-secret-of-48-bytes-0123456789";

/// A port free on every node's address and on 127.0.0.1.
fn shared_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if ADDRS
            .iter()
            .all(|a| std::net::TcpListener::bind((*a, port)).is_ok())
        {
            return port;
        }
    }
}

/// The three nodes' homes and their shared secret (kept until the nodes are gone).
struct Cluster {
    nodes: Vec<TestDaemon>,
    /// Every node's fabric port.
    fabric: u16,
    _secret_dir: TempDir,
}

impl Cluster {
    /// Writes every node's config, each exporting its traces to `otlp` (an OTLP endpoint);
    /// starts nothing.
    fn prepare(otlp: &str) -> Self {
        let secret_dir = tempfile::Builder::new()
            .prefix("bro-it-secret-")
            .tempdir()
            .unwrap();
        let secret = secret_dir.path().join("cluster.key");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (fabric, sdk) = (shared_port(), shared_port());
        let members = ADDRS.map(|a| format!("{a:?}")).join(", ");
        let nodes = (0..3)
            .map(|i| {
                let d = TestDaemon::prepare();
                let config = format!(
                    "node = \"{}\"\nbind = \"{}\"\nmax_sessions = 2\nmax_queue = 4\n\
                     otlp_endpoint = \"{otlp}\"\n\n\
                     [cluster]\nmembers = [{members}]\nsecret_file = {:?}\n\
                     fabric_port = {fabric}\nsdk_port = {sdk}\n",
                    NAMES[i],
                    ADDRS[i],
                    secret.display().to_string(),
                );
                let dir = d.home.path().join("config");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("config.toml"), config).unwrap();
                d
            })
            .collect();
        Cluster {
            nodes,
            fabric,
            _secret_dir: secret_dir,
        }
    }

    /// Starts the nodes in `order` at once (each `bro daemon start` waits for its node).
    fn start(&mut self, order: &[usize]) {
        let homes: Vec<_> = order
            .iter()
            .map(|&i| (i, self.nodes[i].home.path().to_path_buf()))
            .collect();
        let starts: Vec<_> = homes
            .into_iter()
            .map(|(i, home)| {
                // In the given order, a moment apart: any order must form the cluster.
                thread::sleep(Duration::from_millis(1500));
                thread::spawn(move || (i, bro_in(&home, &["daemon", "start", "--port", "0"])))
            })
            .collect();
        // Every start is joined before any is judged: none may come up after the test's
        // cleanup ran.
        let outs: Vec<_> = starts.into_iter().map(|s| s.join().unwrap()).collect();
        for (i, out) in outs {
            assert!(
                out.status.success(),
                "node {} did not start:\n{}",
                NAMES[i],
                text(&out)
            );
        }
        for i in order {
            self.refresh(*i);
        }
    }

    fn refresh(&mut self, i: usize) {
        let status = self.nodes[i].json(&["daemon", "status", "--json"]);
        self.nodes[i].status = status;
    }

    fn api(&self, i: usize) -> String {
        self.nodes[i].status["api_url"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn status(&self, i: usize) -> Value {
        self.nodes[i].json(&["cluster", "status", "--json"])
    }

    /// True once every running node's view holds every node's current API address (a node
    /// started again with `--port 0` has a new one; views are read again every second).
    fn addresses_settled(&self) -> bool {
        let own: Vec<(String, String)> = self
            .nodes
            .iter()
            .map(|d| {
                let st = d.json(&["daemon", "status", "--json"]);
                (
                    st["node"].as_str().unwrap().to_string(),
                    st["api_url"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (0..self.nodes.len()).all(|i| {
            let st = self.status(i);
            own.iter().all(|(name, api)| {
                st["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n["name"] == name.as_str() && n["address"] == api.as_str())
            })
        })
    }

    fn healthy(&self, i: usize) -> Vec<String> {
        let st = self.status(i);
        let mut names: Vec<String> = st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["healthy"] == true)
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }
}

/// Polls `cond` every 200 ms for up to `limit`.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(200));
    }
    cond()
}

fn create_through(api: &str, node: Option<&str>) -> (u16, Value) {
    let host = api.trim_start_matches("http://");
    let mut headers = vec![("Host", host)];
    if let Some(node) = node {
        headers.push(("x-bro-node", node));
    }
    let (status, body) = http_with(api, "POST", "/v1/sessions", &headers, b"{}");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn node_of(c: &Cluster, via: usize, id: &str) -> String {
    let rec = c.nodes[via].get(id);
    rec["node"].as_str().unwrap_or_default().to_string()
}

fn index_of(node: &str) -> usize {
    NAMES.iter().position(|n| *n == node).unwrap()
}

/// `Browser.getVersion` through `via`'s CDP proxy.
fn cdp_via(c: &Cluster, via: usize, id: &str) -> String {
    let host = c.api(via).trim_start_matches("http://").to_string();
    cdp_browser_version(&format!("ws://{host}/?sessionId={id}"))
}

/// The first message of the live viewer's cast socket of session `id`, asked of node `via`.
fn cast_via(c: &Cluster, via: usize, id: &str) -> Value {
    use tokio_tungstenite::tungstenite::{Message, connect};
    let host = c.api(via).trim_start_matches("http://").to_string();
    let url = format!("ws://{host}/v1/sessions/cast?sessionId={id}&pageIndex=0");
    let (mut ws, _) = connect(url.as_str()).unwrap_or_else(|e| panic!("connect {url}: {e}"));
    loop {
        if let Message::Text(t) = ws.read().expect("a frame") {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

fn no_leftovers(homes: &[&Path]) {
    for home in homes {
        let ok = within(Duration::from_secs(30), || leftovers(home).is_empty());
        assert!(
            ok,
            "left running for {}: {:?}",
            home.display(),
            leftovers(home)
        );
    }
}

#[test]
fn three_nodes_share_sessions_and_survive_the_loss_of_one() {
    // Dropped after the nodes: their exporters never lose it while they run.
    let receiver = Receiver::start();
    let mut c = Cluster::prepare(&receiver.endpoint());
    // A cold start in an order that does not begin with the node that provisions.
    c.start(&[2, 0, 1]);
    assert!(
        within(Duration::from_secs(60), || c.healthy(1) == NAMES),
        "{}",
        c.status(1)
    );
    let st = c.status(0);
    assert_eq!(st["clustered"], true);
    assert_eq!(st["members"].as_array().unwrap().len(), 3);
    // `bro doctor` checks the cluster: config, secret, bind, each member's fabric, quorum.
    let out = c.nodes[1].bro(&["doctor", "--json"]);
    let checks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cluster_checks: Vec<&Value> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"].as_str().unwrap().starts_with("cluster"))
        .collect();
    assert!(cluster_checks.len() >= 5, "{checks}");
    assert!(cluster_checks.iter().all(|c| c["ok"] == true), "{checks}");
    // A node's `/metrics` carries its own restate-server's metrics, read over the fabric's
    // Unix socket (its TCP port answers members alone: checked below).
    let (status, body) = http(&c.api(1), "GET", "/metrics", "");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.lines()
            .any(|l| l == r#"bro_restate_metrics_up{node="n2"} 1"#),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("restate_") && l.contains(r#"node_name="n2""#)),
        "{text}"
    );

    // Six creates through n2 fill all three nodes.
    let api2 = c.api(1);
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (status, body) = create_through(&api2, None);
        assert_eq!(status, 200, "{body}");
        // `websocketUrl` names the node the client asked, wherever the session runs.
        let host2 = api2.trim_start_matches("http://");
        assert!(
            body["websocketUrl"]
                .as_str()
                .unwrap()
                .starts_with(&format!("ws://{host2}/")),
            "{body}"
        );
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let mut per_node = [0; 3];
    for id in &ids {
        per_node[index_of(&node_of(&c, 1, id))] += 1;
    }
    assert_eq!(per_node, [2, 2, 2]);
    // A create is one trace across the nodes: n2's API span, the restate-servers', the
    // handler's on the daemon beside its partition's leader, and the launch on the owning
    // node under its `node_call`. With two partitions, at most two daemons run handlers,
    // so at least one node's two launches were asked of it by another.
    let mut last = String::new();
    let crossed = within(Duration::from_secs(60), || {
        let spans = receiver.spans();
        let creates: Vec<&Span> = spans
            .iter()
            .filter(|s| s.name == "create_session")
            .collect();
        creates.iter().any(
            |create| match whole_create(&spans, &create.trace, "", "launch") {
                Ok(trace) => {
                    let remote =
                        chain(&trace, "launch").is_some_and(|up| up.contains(&"node_call"));
                    last = tree(&trace);
                    remote
                }
                Err(tree) => {
                    last = tree;
                    false
                }
            },
        )
    });
    assert!(
        crossed,
        "no create's trace reached a launch on another node:\n{last}\nall spans:\n{}",
        tree(&receiver.spans())
    );
    eprintln!("a create's trace across the nodes:\n{last}");
    // `session get --json` names the node, from any node.
    assert!(NAMES.contains(&c.nodes[2].get(&ids[0])["node"].as_str().unwrap()));

    // Each session answers CDP through a node that does not own it, and its files and
    // live details through any node.
    for id in &ids {
        let owner = index_of(&node_of(&c, 0, id));
        let via = (owner + 1) % 3;
        assert!(cdp_via(&c, via, id).contains("Chrome"));
        let (status, body) = http(
            &c.api(via),
            "GET",
            &format!("/v1/sessions/{id}/live-details"),
            "",
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        // The live viewer's socket is spliced to the owning node's screencast.
        let frame = cast_via(&c, via, id);
        assert!(
            frame["data"].as_str().is_some_and(|d| !d.is_empty()),
            "{frame}"
        );
        let (status, body) = http(&c.api(via), "GET", &format!("/v1/sessions/{id}/files"), "");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    // A 7th create queues (on n2, the node that got it) and is served when n2 frees a slot.
    let waiter = thread::spawn({
        let api = api2.clone();
        move || create_through(&api, None)
    });
    thread::sleep(Duration::from_secs(2));
    assert!(!waiter.is_finished(), "the 7th create did not wait");
    let on_n2 = ids
        .iter()
        .find(|id| node_of(&c, 1, id) == "n2")
        .unwrap()
        .clone();
    c.nodes[1].ok(&["session", "kill", &on_n2]);
    let (status, body) = waiter.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let seventh = body["id"].as_str().unwrap().to_string();
    assert_eq!(node_of(&c, 1, &seventh), "n2");
    ids.retain(|id| *id != on_n2);
    ids.push(seventh);

    // Restate's fabric takes TLS with a certificate of the cluster's CA only. A certificate
    // made from the secret gets an answer (the positive control); none, a certificate of
    // another secret's CA, or plain HTTP get none.
    let certs = tempfile::tempdir().unwrap();
    let fabric = format!("https://{}:{}/", ADDRS[2], c.fabric);
    let issue = |secret: &str, dir: &str| {
        let secret = bro::node::secret::ClusterSecret::from_bytes(secret.as_bytes().to_vec());
        bro::daemon::fabric_tls::write(
            &certs.path().join(dir),
            &secret.unwrap(),
            "bro",
            "probe",
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap()
    };
    let ours = issue(SECRET, "ours");
    let theirs = issue("another-secret-of-a-cluster-that-is-not-this-one", "theirs");
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-k",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let with = |tls: &bro::daemon::fabric_tls::FabricTls| {
        curl(&[
            "--cert",
            tls.cert_file.to_str().unwrap(),
            "--key",
            tls.key_file.to_str().unwrap(),
            &fabric,
        ])
    };
    assert_ne!(
        with(&ours),
        "000",
        "a certificate of the cluster's CA got no answer"
    );
    assert_eq!(
        with(&theirs),
        "000",
        "a certificate of another CA was let in"
    );
    assert_eq!(
        curl(&[&fabric]),
        "000",
        "a client without a certificate was let in"
    );
    let plain = format!("http://{}:{}/", ADDRS[2], c.fabric);
    assert_eq!(curl(&[&plain]), "000", "plain HTTP was answered");

    // Node-to-node routes refuse a call without the cluster secret, and a forged one.
    let api3 = c.api(2);
    let (status, _) = http(&api3, "POST", "/bro/node/v1/host/usage", "[]");
    assert_eq!(status, 401);
    let host3 = api3.trim_start_matches("http://");
    // Well formed and current, with a MAC made without the secret.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = format!("{now}.{}.{}", "0123456789abcdef".repeat(2), "ab".repeat(32));
    let (status, _) = http_with(
        &api3,
        "POST",
        "/bro/node/v1/host/usage",
        &[
            ("Host", host3),
            ("x-bro-node-auth", forged.as_str()),
            (
                "x-bro-content-sha256",
                "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
            ),
        ],
        b"[]",
    );
    assert_eq!(status, 401);

    // SIGKILL of n1's daemon: its sessions fail naming it, within the bound; the others stay
    // live and answer CDP; creates go to n2 and n3. Only the daemon is killed: its restate-server dies with it (a cluster node's server
    // never outlives its daemon).
    let (dpid, rpid) = (c.nodes[0].daemon_pid(), c.nodes[0].restate_pid());
    kill(dpid, "KILL");
    assert!(
        within(Duration::from_secs(15), || !is_live(rpid)),
        "n1's restate-server outlived its daemon"
    );
    let lost: Vec<String> = ids
        .iter()
        .filter(|id| node_of(&c, 1, id) == "n1")
        .cloned()
        .collect();
    assert_eq!(lost.len(), 2);
    let killed_at = Instant::now();
    let failed = within(Duration::from_secs(60), || {
        lost.iter()
            .all(|id| c.nodes[1].get(id)["status"] == "failed")
    });
    assert!(
        failed,
        "{:?}",
        lost.iter().map(|id| c.nodes[1].get(id)).collect::<Vec<_>>()
    );
    eprintln!(
        "n1's sessions failed {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    for id in &lost {
        let rec = c.nodes[2].get(id);
        assert!(
            rec["reason"].as_str().unwrap().contains("node n1 lost"),
            "{rec}"
        );
    }
    assert!(within(Duration::from_secs(30), || c.healthy(2) == ["n2", "n3"]));
    for id in ids.iter().filter(|id| !lost.contains(id)) {
        assert_eq!(c.nodes[2].get(id)["status"], "live");
        let owner = index_of(&node_of(&c, 2, id));
        let via = if owner == 1 { 2 } else { 1 };
        assert!(cdp_via(&c, via, id).contains("Chrome"));
    }
    // n2 and n3 are full (2 + 2): free one slot on n3, and the next create goes there.
    let on_n3 = ids
        .iter()
        .find(|id| node_of(&c, 2, id) == "n3")
        .unwrap()
        .clone();
    c.nodes[2].ok(&["session", "kill", &on_n3]);
    ids.retain(|id| *id != on_n3);
    let (status, body) = create_through(&api2, None);
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(node_of(&c, 1, &id), "n3");
    ids.push(id);
    // A create that names the lost node is refused, not queued.
    let (status, body) = create_through(&api2, Some("n1"));
    assert_eq!(status, 503, "{body}");

    // n1 comes back: it rejoins, reaps its failed sessions' browsers, and takes sessions.
    c.nodes[0].restart_with(&[]);
    assert!(
        within(Duration::from_secs(60), || c.healthy(1) == NAMES),
        "{}",
        c.status(1)
    );
    assert!(within(Duration::from_secs(10), || c.addresses_settled()));
    for id in &lost {
        let dir = c.nodes[0].session_dir(id);
        assert!(
            within(Duration::from_secs(30), || !dir.exists()),
            "{} left",
            dir.display()
        );
    }
    let (status, body) = create_through(&api2, Some("n1"));
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(node_of(&c, 1, &id), "n1");
    assert!(cdp_via(&c, 2, &id).contains("Chrome"));
    // A quick action in n1's session, asked of n3: the page is loaded on n1.
    let body =
        format!(r#"{{"url":"data:text/html,<title>far</title><h1>far</h1>","sessionId":"{id}"}}"#);
    let (status, jpeg) = http(&c.api(2), "POST", "/v1/screenshot", &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&jpeg));
    assert_eq!(&jpeg[..3], &[0xff, 0xd8, 0xff], "not a JPEG");
    let (status, scraped) = http(
        &c.api(1),
        "POST",
        "/v1/scrape",
        &format!(r#"{{"url":"data:text/html,<title>far</title>","sessionId":"{id}"}}"#),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&scraped));
    assert!(String::from_utf8_lossy(&scraped).contains("far"));

    // A node restarted at once with its sessions kept is back before it counts as lost: its
    // sessions stay live, their browsers re-adopted.
    let kept: Vec<String> = ids
        .iter()
        .filter(|id| node_of(&c, 1, id) == "n2")
        .cloned()
        .collect();
    assert!(!kept.is_empty());
    let restart = Instant::now();
    c.nodes[1].ok(&["daemon", "stop", "--keep-sessions"]);
    c.nodes[1].restart_with(&[]);
    assert!(within(Duration::from_secs(10), || c.addresses_settled()));
    eprintln!(
        "n2 stopped and started again in {:.1} s",
        restart.elapsed().as_secs_f64()
    );
    // Well past the loss bound (12 s after the last beat before the stop), so a loss would
    // show.
    thread::sleep(Duration::from_secs(20).saturating_sub(restart.elapsed()));
    for id in &kept {
        assert_eq!(c.nodes[0].get(id)["status"], "live", "{id}");
        assert!(cdp_via(&c, 0, id).contains("Chrome"));
    }

    // A file goes up through n3 and comes down through n2, whole, from n1's session.
    let (answer, sent) = upload(&c.api(2), &id, "through.bin", 8 << 20, Framing::Chunked);
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let (status, length, got) =
        download(&c.api(1), &format!("/v1/sessions/{id}/files/through.bin"));
    assert_eq!((status, length), (200, 8 << 20));
    assert_eq!(got.finish(), sent.finish(), "the bytes came back different");

    // A node stopped on purpose releases its own sessions and no other.
    let on_n3: Vec<String> = ids
        .iter()
        .filter(|id| node_of(&c, 1, id) == "n3")
        .cloned()
        .collect();
    let others: Vec<String> = ids
        .iter()
        .chain([&id])
        .filter(|id| !lost.contains(id) && !on_n3.contains(id))
        .cloned()
        .collect();
    assert!(!on_n3.is_empty() && !others.is_empty());
    let n3 = c.nodes.remove(2);
    let n3_home = n3.home.path().to_path_buf();
    n3.stop();
    for id in &on_n3 {
        assert_eq!(c.nodes[1].get(id)["broStatus"], "released");
    }
    for id in &others {
        assert_eq!(c.nodes[1].get(id)["status"], "live", "{id}");
    }
    // A stopped node is no longer healthy; once gone for good it can be forgotten.
    assert!(within(Duration::from_secs(30), || c.healthy(0) == ["n1", "n2"]));
    c.nodes[0].ok(&["cluster", "forget", "n3"]);
    assert!(!c.status(0)["nodes"].to_string().contains("\"n3\""));

    // Everything ends: sessions released from one node, then the nodes stopped.
    c.nodes[1].ok(&["session", "kill", "--all"]);
    let mut homes: Vec<_> = c
        .nodes
        .iter()
        .map(|d| d.home.path().to_path_buf())
        .collect();
    homes.push(n3_home);
    for d in c.nodes.drain(..) {
        d.stop();
    }
    no_leftovers(&homes.iter().map(|h| h.as_path()).collect::<Vec<_>>());
}
