//! `bro doctor`'s cluster checks, run when `config.toml` has a `[cluster]` table: the secret
//! file, this node's `bind` and `node`, the members' fabric ports, and the Restate quorum the
//! running daemon sees. It reads the table itself, leniently (unknown keys pass), so it keeps
//! working whichever keys the daemon's `Config` learns.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Check, fail, pass, warn};
use crate::cli::DaemonArgs;
use crate::client::{ClientError, DaemonClient};
use crate::node::secret::ClusterSecret;
use crate::protocol::cluster::ClusterStatus;

/// The fabric port of a `[cluster]` that names none.
pub const DEFAULT_FABRIC_PORT: u16 = 5122;
/// How long a member's fabric port has to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The part of `config.toml` these checks read.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    bind: Option<IpAddr>,
    node: Option<String>,
    port: Option<u16>,
    cluster: Option<ClusterTable>,
}

/// `[cluster]` as these checks read it.
#[derive(Debug, Deserialize)]
struct ClusterTable {
    name: Option<String>,
    members: Vec<IpAddr>,
    secret_file: PathBuf,
    fabric_port: Option<u16>,
}

/// This node's cluster setup: the file's `[cluster]`, with `bind`, `node` and `port` from the
/// flags and `BRO_*` variables first, as the daemon resolves them.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub name: String,
    pub members: Vec<IpAddr>,
    pub secret_file: PathBuf,
    pub fabric_port: u16,
    pub bind: IpAddr,
    pub node: Option<String>,
    pub port: u16,
}

/// The cluster setup of the config file at `path`: `Ok(None)` when the file is missing or has
/// no `[cluster]`; `Err` (the parser's message) when it does not parse.
pub fn setup(path: &Path, args: &DaemonArgs) -> Result<Option<Setup>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let file: FileConfig = toml::from_str(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim()))?;
    let Some(cluster) = file.cluster else {
        return Ok(None);
    };
    Ok(Some(Setup {
        name: cluster.name.unwrap_or_else(|| "bro".into()),
        members: cluster.members,
        secret_file: cluster.secret_file,
        fabric_port: cluster.fabric_port.unwrap_or(DEFAULT_FABRIC_PORT),
        bind: args
            .bind
            .or(file.bind)
            .unwrap_or(crate::config::DEFAULT_BIND),
        node: args.node.clone().or(file.node),
        port: args
            .port
            .or(file.port)
            .unwrap_or(crate::config::DEFAULT_PORT),
    }))
}

/// Every cluster check, in order; the quorum one asks `daemon` when one runs.
pub async fn checks(setup: &Setup, daemon: Option<&DaemonClient>) -> Vec<Check> {
    let mut out = check_secret(&setup.secret_file);
    out.push(check_bind(setup));
    out.push(check_private(&setup.members));
    out.push(check_node(setup.node.as_deref()));
    let probes = probe_members(&setup.members, setup.fabric_port).await;
    out.push(fabric_verdict(setup.fabric_port, &probes));
    out.push(match daemon {
        Some(client) => quorum_verdict(setup, client.cluster_status().await),
        None => warn(
            "cluster quorum",
            "no daemon runs here: this node is not in the cluster",
            "bro daemon start, then bro doctor again",
        ),
    });
    out
}

/// The secret file: there, a regular file, 0600 or stricter, at least 32 bytes.
fn check_secret(path: &Path) -> Vec<Check> {
    let shown = path.display();
    let mut out = vec![match ClusterSecret::load(path) {
        Ok(_) => pass(
            "cluster secret",
            format!("{shown}: private to its owner and long enough"),
        ),
        Err(e) => {
            let fix = if e.contains("chmod") {
                format!("chmod 600 {shown}")
            } else {
                format!(
                    "copy the cluster's secret file from another member to {shown} (the same \
                     file on every node); for a new cluster make one: head -c 48 /dev/urandom \
                     | base64 > {shown} && chmod 600 {shown}"
                )
            };
            fail("cluster secret", e, fix)
        }
    }];
    if path.is_relative() {
        out.push(warn(
            "cluster secret",
            format!("secret_file {shown} is relative: it is read from the daemon's current dir"),
            "write secret_file in [cluster] as an absolute path",
        ));
    }
    out
}

/// `bind` is one of `members`: the other nodes reach this one there.
fn check_bind(setup: &Setup) -> Check {
    if setup.members.contains(&setup.bind) {
        return pass(
            "cluster bind",
            format!(
                "{} is a member (API on {}, fabric on port {})",
                setup.bind,
                SocketAddr::new(setup.bind, setup.port),
                setup.fabric_port
            ),
        );
    }
    fail(
        "cluster bind",
        format!(
            "bind {} is not one of the members ({})",
            setup.bind,
            list(&setup.members)
        ),
        "set bind in config.toml (or --bind) to this machine's address among the members, or \
         add this address to members on every node",
    )
}

/// Every member is on a private network: a private, loopback or link-local IPv4 address, or
/// a loopback, link-local or unique-local (ULA) IPv6 one. Others pass with a warning: the
/// fabric is mutual TLS, but bro's own node-to-node HTTP is signed, not encrypted.
fn check_private(members: &[IpAddr]) -> Check {
    let public: Vec<IpAddr> = members
        .iter()
        .copied()
        .filter(|ip| !is_private(*ip))
        .collect();
    if public.is_empty() {
        return pass(
            "cluster network",
            "every member has a private, loopback or link-local address",
        );
    }
    warn(
        "cluster network",
        format!(
            "{} not a private, loopback or link-local address: bro's node-to-node calls are \
             signed but not encrypted: keep the members on a private network",
            match public.as_slice() {
                [one] => format!("member {one} is"),
                many => format!("members {} are", list(many)),
            }
        ),
        "give the members addresses on a private network (10/8, 172.16/12, 192.168/16, \
         fc00::/7, or a VPN such as WireGuard), or firewall bro's port to the members",
    )
}

/// A private (RFC 1918), loopback or link-local IPv4 address, or a loopback, link-local or
/// unique-local IPv6 one; IPv4-mapped IPv6 addresses are judged as IPv4.
fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unicast_link_local() || v6.is_unique_local(),
    }
}

/// `node` is set, valid, and not the single-machine default `local`.
fn check_node(node: Option<&str>) -> Check {
    let fix = "set node = \"NAME\" in config.toml (or --node), a different name on each member, \
               e.g. node = \"node-a\"";
    match node {
        None => fail(
            "cluster node",
            "node is not set (it defaults to local), but each member needs its own name",
            fix,
        ),
        Some(crate::config::DEFAULT_NODE) => fail(
            "cluster node",
            "node is local, the single-machine default; each member needs its own name",
            fix,
        ),
        Some(name) => match crate::config::check_node(name) {
            Ok(()) => pass("cluster node", format!("this node is {name}")),
            Err(e) => fail("cluster node", e, fix),
        },
    }
}

/// Connects to each member's fabric port, all at once, each within [`CONNECT_TIMEOUT`].
async fn probe_members(members: &[IpAddr], port: u16) -> Vec<(IpAddr, Result<(), String>)> {
    let probes = members.iter().map(|ip| async move {
        let addr = SocketAddr::new(*ip, port);
        let result =
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
            };
        (*ip, result)
    });
    futures_util::future::join_all(probes).await
}

/// The fewest nodes of `members` that make a majority (Restate's quorum).
fn majority(members: usize) -> usize {
    members / 2 + 1
}

/// Every member answering passes; a majority answering warns (the cluster works, one node is
/// missing); fewer fails (Restate has no quorum).
fn fabric_verdict(port: u16, probes: &[(IpAddr, Result<(), String>)]) -> Check {
    let silent: Vec<String> = probes
        .iter()
        .filter_map(|(ip, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("{} ({e})", SocketAddr::new(*ip, port)))
        })
        .collect();
    let (all, answered) = (probes.len(), probes.len() - silent.len());
    if silent.is_empty() {
        return pass(
            "cluster fabric",
            format!("all {all} members answer on port {port}"),
        );
    }
    let detail = format!(
        "{answered} of {all} members answer on port {port}; not: {}",
        silent.join(", ")
    );
    let fix = format!(
        "start bro on those members (bro daemon start) and let TCP port {port} through between \
         members (firewall)"
    );
    if answered >= majority(all) {
        warn("cluster fabric", detail, fix)
    } else {
        fail("cluster fabric", detail, fix)
    }
}

/// What the running daemon says of the cluster: a quorum of healthy members, or not.
fn quorum_verdict(setup: &Setup, answer: Result<ClusterStatus, ClientError>) -> Check {
    let restart = "bro daemon stop --keep-sessions && bro daemon start";
    let st = match answer {
        Ok(st) => st,
        Err(e) if e.is_not_found() => {
            return fail(
                "cluster quorum",
                "the running daemon does not serve the cluster status (an older bro)",
                restart,
            );
        }
        Err(e) => return fail("cluster quorum", e.to_string(), "bro daemon logs -n 100"),
    };
    if !st.clustered {
        return fail(
            "cluster quorum",
            "the running daemon is a single node: it started before [cluster] was in its config",
            restart,
        );
    }
    let members = setup.members.len().max(st.members.len());
    let healthy: Vec<&str> = st
        .nodes
        .iter()
        .filter(|n| n.healthy)
        .map(|n| n.name.as_str())
        .collect();
    let sick: Vec<&str> = st
        .nodes
        .iter()
        .filter(|n| !n.healthy)
        .map(|n| n.name.as_str())
        .collect();
    let need = majority(members);
    let mut detail = format!(
        "Restate quorum: {} of {members} nodes healthy, a majority ({need}) is needed",
        healthy.len()
    );
    if !sick.is_empty() {
        detail.push_str(&format!("; unhealthy: {}", sick.join(", ")));
    }
    let fix = "start bro on the missing members (bro daemon start); bro cluster status shows \
               which nodes beat";
    match healthy.len() {
        n if n >= members => pass("cluster quorum", detail),
        n if n >= need => warn("cluster quorum", detail, fix),
        _ => fail("cluster quorum", detail, fix),
    }
}

/// `a, b, c`.
fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::cluster::NodeStatus;
    use std::os::unix::fs::PermissionsExt;

    fn args(extra: &[&str]) -> DaemonArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct A {
            #[command(flatten)]
            args: DaemonArgs,
        }
        let mut argv = vec!["bro"];
        argv.extend_from_slice(extra);
        A::try_parse_from(argv).unwrap().args
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn setup_of(members: &[&str], bind: &str) -> Setup {
        Setup {
            name: "bro".into(),
            members: members.iter().map(|m| ip(m)).collect(),
            secret_file: "/etc/bro/secret".into(),
            fabric_port: 5122,
            bind: ip(bind),
            node: Some("node-a".into()),
            port: 3000,
        }
    }

    #[test]
    fn the_cluster_table_is_read_with_flags_first() {
        let (_dir, path) = config(
            r#"
            bind = "10.0.0.1"
            node = "node-a"
            max_sessions = 8
            [cluster]
            members = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            secret_file = "/etc/bro/secret"
            sdk_port = 9080
            "#,
        );
        let s = setup(&path, &args(&[])).unwrap().unwrap();
        assert_eq!(s.members.len(), 3);
        assert_eq!(s.fabric_port, DEFAULT_FABRIC_PORT);
        assert_eq!(
            (s.bind, s.node.as_deref(), s.port),
            (ip("10.0.0.1"), Some("node-a"), 3000)
        );
        assert_eq!(s.name, "bro");
        let s = setup(&path, &args(&["--bind", "10.0.0.2", "--node", "b"]))
            .unwrap()
            .unwrap();
        assert_eq!((s.bind, s.node.as_deref()), (ip("10.0.0.2"), Some("b")));

        let (_d, plain) = config("port = 3001\n");
        assert_eq!(setup(&plain, &args(&[])).unwrap(), None);
        assert_eq!(
            setup(&plain.with_file_name("none.toml"), &args(&[])).unwrap(),
            None
        );
        let (_d, bad) = config("[cluster]\nmembers = [\"not an ip\"]\nsecret_file = \"/x\"\n");
        assert!(setup(&bad, &args(&[])).is_err());
    }

    #[test]
    fn the_secret_must_be_private_and_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let missing = check_secret(&path);
        assert!(!missing[0].ok && missing[0].fix.as_deref().unwrap().contains("head -c 48"));
        std::fs::write(&path, "x".repeat(48)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = check_secret(&path);
        assert!(!open[0].ok, "{open:?}");
        assert_eq!(
            open[0].fix.as_deref(),
            Some(format!("chmod 600 {}", path.display()).as_str())
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let good = check_secret(&path);
        assert_eq!(good.len(), 1);
        assert!(good[0].ok && !good[0].warn, "{good:?}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "short").unwrap();
        assert!(check_secret(&path)[0].detail.contains("at least 32"));
        assert!(!check_secret(dir.path())[0].ok, "a dir is no secret file");
        let relative = check_secret(Path::new("secret"));
        assert!(relative[1].warn, "{relative:?}");
    }

    #[test]
    fn bind_must_be_a_member_and_node_named() {
        assert!(check_bind(&setup_of(&["10.0.0.1", "10.0.0.2"], "10.0.0.1")).ok);
        let c = check_bind(&setup_of(&["10.0.0.1", "10.0.0.2"], "127.0.0.1"));
        assert!(!c.ok && c.detail.contains("10.0.0.1, 10.0.0.2"), "{c:?}");
        assert!(check_node(Some("node-a")).ok);
        assert!(!check_node(None).ok);
        assert!(!check_node(Some("local")).ok);
        assert!(!check_node(Some("a b")).ok);
    }

    #[test]
    fn members_off_a_private_network_warn() {
        let private = [
            "10.0.0.1",
            "172.16.0.2",
            "192.168.1.3",
            "127.0.0.1",
            "169.254.0.4",
        ];
        let v6 = ["::1", "fe80::1", "fd12:3456::1", "::ffff:10.0.0.5"];
        let all: Vec<IpAddr> = private.iter().chain(&v6).map(|s| ip(s)).collect();
        let c = check_private(&all);
        assert!(c.ok && !c.warn, "{c:?}");
        let c = check_private(&[ip("10.0.0.1"), ip("203.0.113.7")]);
        assert!(c.ok && c.warn, "{c:?}");
        assert!(
            c.detail.contains(
                "member 203.0.113.7 is not a private, loopback or link-local address: bro's \
                 node-to-node calls are signed but not encrypted: keep the members on a \
                 private network"
            ),
            "{c:?}"
        );
        let c = check_private(&[ip("8.8.8.8"), ip("2001:db8::1"), ip("100.64.0.1")]);
        assert!(c.ok && c.warn, "{c:?}");
        assert!(
            c.detail
                .starts_with("members 8.8.8.8, 2001:db8::1, 100.64.0.1 are"),
            "{c:?}"
        );
    }

    #[test]
    fn fabric_needs_a_majority_of_members() {
        let up = |s: &str| (ip(s), Ok(()));
        let down = |s: &str| (ip(s), Err("connection refused".to_string()));
        let all = fabric_verdict(5122, &[up("10.0.0.1"), up("10.0.0.2"), up("10.0.0.3")]);
        assert!(all.ok && !all.warn);
        let most = fabric_verdict(5122, &[up("10.0.0.1"), up("10.0.0.2"), down("10.0.0.3")]);
        assert!(most.ok && most.warn);
        assert!(
            most.detail.contains(
                "2 of 3 members answer on port 5122; not: 10.0.0.3:5122 (connection refused)"
            ),
            "{most:?}"
        );
        let few = fabric_verdict(5122, &[up("10.0.0.1"), down("10.0.0.2"), down("10.0.0.3")]);
        assert!(!few.ok);
        let half = fabric_verdict(5122, &[up("10.0.0.1"), down("10.0.0.2")]);
        assert!(!half.ok, "1 of 2 is no majority");
    }

    #[tokio::test]
    async fn members_are_probed_on_their_fabric_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let probes = probe_members(&[ip("127.0.0.1")], port).await;
        assert_eq!(probes, vec![(ip("127.0.0.1"), Ok(()))]);
        drop(listener);
        let probes = probe_members(&[ip("127.0.0.1")], port).await;
        assert!(probes[0].1.is_err());
    }

    fn status(healthy: &[bool]) -> ClusterStatus {
        ClusterStatus {
            clustered: true,
            cluster: "bro".into(),
            node: "n0".into(),
            members: vec![],
            nodes: healthy
                .iter()
                .enumerate()
                .map(|(i, h)| NodeStatus {
                    name: format!("n{i}"),
                    address: format!("http://10.0.0.{i}:3000"),
                    healthy: *h,
                    capacity: 16,
                    used: 0,
                    queued: 0,
                    last_seen_ms: 100,
                    restate: "alive".into(),
                    this: i == 0,
                })
                .collect(),
        }
    }

    #[test]
    fn the_quorum_is_a_majority_of_healthy_members() {
        let s = setup_of(&["10.0.0.1", "10.0.0.2", "10.0.0.3"], "10.0.0.1");
        let all = quorum_verdict(&s, Ok(status(&[true, true, true])));
        assert!(all.ok && !all.warn, "{all:?}");
        let two = quorum_verdict(&s, Ok(status(&[true, true, false])));
        assert!(two.ok && two.warn);
        assert_eq!(
            two.detail,
            "Restate quorum: 2 of 3 nodes healthy, a majority (2) is needed; unhealthy: n2"
        );
        let one = quorum_verdict(&s, Ok(status(&[true, false, false])));
        assert!(!one.ok);
        let alone = quorum_verdict(&s, Ok(status(&[true])));
        assert!(
            !alone.ok,
            "members the daemon never heard of count against the quorum"
        );
        let mut single = status(&[true]);
        single.clustered = false;
        assert!(
            quorum_verdict(&s, Ok(single))
                .detail
                .contains("single node")
        );
        let old = ClientError::Api {
            status: 404,
            message: "not found".into(),
        };
        assert!(quorum_verdict(&s, Err(old)).detail.contains("older bro"));
    }
}
