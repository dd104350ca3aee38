//! Transparent interception (issue 14), black-box: each test builds its own network
//! namespaces (a "pod" with the sidecar, a "server" elsewhere, joined by a veth pair),
//! installs the capture rules with `outrigger iptables` in the pod, runs the sidecar
//! there as the proxy user (UID 1337), and has clients in the pod call the server by
//! its real address with no proxy configured. Everything is removed by Drop guards, on
//! failure too.
//!
//! These tests need root, `ip` (iproute2), `iptables` and `setpriv`; without them they
//! FAIL (they never pass silently). `.ci/run` installs iptables and iproute2.

mod common;
mod pki;

use common::netns::{sh, Netns, Proc};

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_outrigger");
const PROXY_UID: &str = "1337";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Panics (fails the test) unless this machine can run these tests.
fn require_root_and_tools() {
    common::netns::require_root_and_tools(
        "tests/intercept.rs",
        "network namespaces and iptables",
        &["ip", "iptables-save", "ip6tables-save", "setpriv", "curl"],
        "apt-get install -y iptables iproute2 curl util-linux",
    );
}

/// A directory everyone may write (the sidecar runs as UID 1337), removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!(
            "outrigger-intercept-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&p).unwrap();
        sh(&["chmod", "0777", p.to_str().unwrap()]);
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A pod namespace and a server namespace joined by a veth pair, with the capture
/// rules installed in the pod.
struct Net {
    pod: Netns,
    srv: Netns,
    pod_ip: String,
    srv_ip: String,
}

fn net(tag: &str) -> Net {
    require_root_and_tools();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!("{}{n}", std::process::id() % 100_000);
    let pod = Netns::new(format!("orpod{id}{tag}"));
    let srv = Netns::new(format!("orsrv{id}{tag}"));
    let (a, b) = (format!("orp{id}"), format!("ors{id}"));
    sh(&[
        "ip", "link", "add", &a, "netns", &pod.0, "type", "veth", "peer", "name", &b, "netns",
        &srv.0,
    ]);
    // Addresses only inside the test's namespaces; one /24 per test.
    let subnet = 10 + (n % 200);
    let pod_ip = format!("10.251.{subnet}.1");
    let srv_ip = format!("10.251.{subnet}.2");
    pod.exec(&["ip", "addr", "add", &format!("{pod_ip}/24"), "dev", &a]);
    srv.exec(&["ip", "addr", "add", &format!("{srv_ip}/24"), "dev", &b]);
    pod.exec(&["ip", "link", "set", &a, "up"]);
    srv.exec(&["ip", "link", "set", &b, "up"]);
    Net {
        pod,
        srv,
        pod_ip,
        srv_ip,
    }
}

const SIDECAR: &str = "admin: { address: 127.0.0.1, port: 15000 }
runtime: { concurrency: 1, drain_timeout: 1s }
listeners:
  - name: virtualOutbound
    address: 0.0.0.0
    port: 15001
    use_original_dst: true
    tcp_proxy: { cluster: PassthroughCluster }
    access_log: { path: @LOG@, format: \"outbound %UPSTREAM_HOST% %RESPONSE_FLAGS%\\n\" }
  - name: outbound_8080
    address: 0.0.0.0
    port: 8080
    bind_to_port: false
    listener_filters: [http_inspector, tls_inspector]
    listener_filters_timeout: @PEEK@
    continue_on_listener_filters_timeout: true
@PROBE@    filter_chains:
      - name: http
        filter_chain_match: { application_protocols: [http/1.1, h2c] }
        route_table: outbound_8080
        access_log: { path: @LOG@, format: \"http %PROTOCOL% %RESPONSE_CODE% %UPSTREAM_HOST%\\n\" }
    default_filter_chain:
      name: tcp
      tcp_proxy: { cluster: PassthroughCluster }
      access_log: { path: @LOG@, format: \"sniffed-tcp %UPSTREAM_HOST%\\n\" }
  - name: outbound_8081
    address: 0.0.0.0
    port: 8081
    bind_to_port: false
    route_table: allow_any
    access_log: { path: @LOG@, format: \"passthrough %PROTOCOL% %RESPONSE_CODE% %UPSTREAM_HOST%\\n\" }
  - name: virtualInbound
    address: 0.0.0.0
    port: 15006
    listener_filters: [original_dst]
    tcp_proxy: { cluster: InboundPassthroughCluster }
    access_log: { path: @LOG@, format: \"inbound %UPSTREAM_HOST%\\n\" }
route_tables:
  - name: outbound_8080
    virtual_hosts:
      - name: all
        domains: ['*']
        routes: [{ match: { prefix: / }, cluster: srv_8080 }]
  - name: allow_any
    virtual_hosts:
      - name: allow_any
        domains: ['*']
        routes: [{ match: { prefix: / }, cluster: PassthroughCluster }]
clusters:
  - { name: PassthroughCluster, type: original_dst }
  - { name: InboundPassthroughCluster, type: original_dst, source_address: 127.0.0.6 }
  - name: srv_8080
    protocol: downstream
    endpoints: [{ address: @SRV@, port: 8080 }]
";

/// The sidecar in the pod, as the proxy user, after `outrigger iptables`.
struct Sidecar {
    _proc: Proc,
    log: PathBuf,
    dir: Dir,
}

/// `outrigger iptables` in the pod: its traffic to the proxy user's 15001/15006.
fn capture_rules(pod: &Netns) {
    pod.exec(&[
        BIN,
        "iptables",
        "--proxy-uid",
        PROXY_UID,
        "--admin-port",
        "15000",
    ]);
}

/// `probe`: the 8080 listener's `server_first_probe`, if any.
fn sidecar(net: &Net, peek: &str, probe: Option<&str>) -> Sidecar {
    capture_rules(&net.pod);
    let dir = Dir::new("pod");
    let log = dir.0.join("access.log");
    let cfg = SIDECAR
        .replace("@LOG@", log.to_str().unwrap())
        .replace("@PEEK@", peek)
        .replace(
            "@PROBE@",
            &probe.map_or(String::new(), |p| format!("    server_first_probe: {p}\n")),
        )
        .replace("@SRV@", &net.srv_ip);
    let cfg_path = dir.0.join("sidecar.yaml");
    fs::write(&cfg_path, cfg).unwrap();
    let stderr = dir.0.join("stderr");
    let cfg = cfg_path.to_str().expect("a UTF-8 temp path");
    let p = net.pod.spawn(
        &[
            "setpriv",
            "--reuid",
            PROXY_UID,
            "--regid",
            PROXY_UID,
            "--clear-groups",
            "--",
            BIN,
            "run",
            "-c",
            cfg,
        ],
        &stderr,
    );
    net.pod.wait_ready("127.0.0.1:15000", "sidecar", &stderr);
    Sidecar { _proc: p, log, dir }
}

/// GET on the sidecar's admin port, from inside the pod: "STATUS BODY".
fn admin(net: &Net, path: &str) -> String {
    net.pod.get("127.0.0.1:15000", path)
}

/// A counter from the sidecar's `/stats` JSON: `kind` is `listeners` or `clusters`.
fn stat(net: &Net, kind: &str, name: &str, field: &str) -> u64 {
    let all = admin(net, "/stats");
    let body = all.split_once(' ').map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v[kind]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["name"] == name))
        .and_then(|o| o[field].as_u64())
        .unwrap_or_else(|| panic!("no {kind} `{name}` `{field}` in\n{all}"))
}

/// Waits (bounded) until the access log has a line containing `what`.
fn logged(s: &Sidecar, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(&s.log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(what)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no `{what}` in the access log:\n{text}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP server in `ns` on `addr`, answering each connection with `serve` on a thread.
fn serve(ns: &Netns, addr: String, serve: fn(TcpStream)) {
    let l = ns.run(move || TcpListener::bind(&addr).expect("bind in netns"));
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            thread::spawn(move || serve(c));
        }
    });
}

fn echo(mut c: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 || c.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// A server-first protocol: the server greets before the client says anything.
fn banner(mut c: TcpStream) {
    let _ = c.write_all(b"220 banner ready\r\n");
    echo(c);
}

/// The server namespace runs an Outrigger of its own as the HTTP/1, h2c and TLS
/// server (direct responses), so the client side is plain curl.
fn http_server(net: &Net) -> (Proc, Dir) {
    let dir = Dir::new("srv");
    let ca = pki::Ca::new("intercept-ca");
    let leaf = ca.leaf(&dir.0, "srv", pki::server(&["srv.test"]));
    let cfg = format!(
        "admin: {{ address: 127.0.0.1, port: 15900 }}
runtime: {{ concurrency: 1 }}
listeners:
  - {{ name: plain, address: {ip}, port: 8080, route_table: t }}
  - {{ name: plain2, address: {ip}, port: 8081, route_table: t }}
  - name: tls
    address: {ip}
    port: 8443
    listener_filters: [tls_inspector]
    filter_chains:
      - name: tls
        route_table: t
        tls:
          certificates: [{{ cert_chain_file: {cert}, private_key_file: {key} }}]
          alpn_protocols: [h2, http/1.1]
route_tables:
  - name: t
    virtual_hosts:
      - name: all
        domains: ['*']
        routes: [{{ match: {{ prefix: / }}, direct_response: {{ status: 200, body: \"from-server\\n\" }} }}]
",
        ip = net.srv_ip,
        cert = leaf.cert.display(),
        key = leaf.key.display()
    );
    let path = dir.0.join("srv.yaml");
    fs::write(&path, cfg).unwrap();
    let stderr = dir.0.join("stderr");
    let p = net.srv.spawn(
        &[BIN, "run", "-c", path.to_str().expect("a UTF-8 temp path")],
        &stderr,
    );
    wait_listening(&net.srv, "127.0.0.1:15900", "server", &stderr);
    (p, dir)
}

/// Waits (20 s at most) until `addr` takes connections in `ns`; `log` is shown if not.
fn wait_listening(ns: &Netns, addr: &'static str, what: &str, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ns.run(|| TcpStream::connect(addr).is_ok()) {
        assert!(
            Instant::now() < deadline,
            "{what} not up: {}",
            fs::read_to_string(log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// curl in the pod, as root (not the proxy user, so it is captured).
fn curl(net: &Net, args: &[&str]) -> String {
    let out = net
        .pod
        .exec(&[&["curl", "-sS", "--max-time", "10"], args].concat());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn http1_h2c_tls_and_raw_tcp_from_the_pod_pass_through_the_sidecar() {
    let net = net("a");
    let (_srv, _srv_dir) = http_server(&net);
    serve(&net.srv, format!("{}:9000", net.srv_ip), echo);
    let s = sidecar(&net, "300ms", None);

    // HTTP/1 to the server's real address: the pod's client has no proxy configured.
    let url = format!("http://{}:8080/x", net.srv_ip);
    assert_eq!(curl(&net, &[&url]), "from-server\n");
    logged(&s, &format!("http HTTP/1.1 200 {}:8080", net.srv_ip));
    // HTTP/2 with prior knowledge (h2c).
    assert_eq!(
        curl(&net, &["--http2-prior-knowledge", &url]),
        "from-server\n"
    );
    logged(&s, &format!("http HTTP/2 200 {}:8080", net.srv_ip));
    assert_eq!(stat(&net, "listeners", "outbound_8080", "cx_total"), 2);
    // TLS passes through untouched (no listener for 8443: the capture listener's
    // passthrough chain, to the original destination).
    let tls = format!("https://{}:8443/y", net.srv_ip);
    assert_eq!(curl(&net, &["-k", "--http2", &tls]), "from-server\n");
    logged(&s, &format!("outbound {}:8443 -", net.srv_ip));
    // Raw TCP.
    let srv = format!("{}:9000", net.srv_ip);
    let mut c = net.pod.run(|| TcpStream::connect(&srv).unwrap());
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    drop(c);
    logged(&s, &format!("outbound {}:9000", net.srv_ip));
    assert!(stat(&net, "listeners", "virtualOutbound", "cx_total") >= 2);
    assert_eq!(stat(&net, "clusters", "PassthroughCluster", "cx_total"), 2);
    drop(s.dir);
}

#[test]
fn a_server_first_protocol_is_not_held_for_the_detection_timeout() {
    let net = net("b");
    // Port 8080 has HTTP detection (the http_inspector, a 200ms peek); the banner
    // server speaks first, so the client sends nothing until it has the banner.
    serve(&net.srv, format!("{}:8080", net.srv_ip), banner);
    let s = sidecar(&net, "200ms", None);
    let srv = format!("{}:8080", net.srv_ip);
    let started = Instant::now();
    let mut c = net.pod.run(|| TcpStream::connect(&srv).unwrap());
    // Envoy's default listener_filters_timeout is 15s, linkerd waits 10s: the banner
    // must arrive long before either (the peek is 200ms).
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 18];
    c.read_exact(&mut got)
        .expect("the banner arrives within the peek, not 15s");
    assert_eq!(&got, b"220 banner ready\r\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    c.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    // A TCP connection is logged when it ends.
    drop(c);
    logged(&s, &format!("sniffed-tcp {srv}"));
    assert_eq!(
        stat(&net, "listeners", "outbound_8080", "pre_cx_timeout"),
        1
    );
}

#[test]
fn http_routed_to_the_passthrough_cluster_goes_to_the_original_destination() {
    let net = net("d");
    let (_srv, _srv_dir) = http_server(&net);
    let s = sidecar(&net, "300ms", None);
    // Port 8081's listener is an HTTP connection manager whose route goes to the
    // ORIGINAL_DST cluster (Istio's allow_any virtual host): the request goes where
    // the client was connecting.
    let url = format!("http://{}:8081/p", net.srv_ip);
    assert_eq!(curl(&net, &[&url]), "from-server\n");
    logged(&s, &format!("passthrough HTTP/1.1 200 {}:8081", net.srv_ip));
    assert_eq!(
        curl(&net, &["--http2-prior-knowledge", &url]),
        "from-server\n"
    );
    logged(&s, &format!("passthrough HTTP/2 200 {}:8081", net.srv_ip));
    // Two requests on one client connection.
    assert_eq!(curl(&net, &[&url, &url]), "from-server\nfrom-server\n");
    let (rq, cx) = (
        stat(&net, "clusters", "PassthroughCluster", "rq_total"),
        stat(&net, "clusters", "PassthroughCluster", "cx_total"),
    );
    assert_eq!(rq, 4);
    // The destination's pooled connection is reused (one core: one pool).
    assert_eq!(cx, 1, "one upstream connection for the destination");
}

#[test]
fn a_server_that_speaks_first_ends_the_detection_wait_at_once() {
    let net = net("e");
    let (_srv, _srv_dir) = http_server(&net);
    // The HTTP server owns srv:8080; the banner server listens on port 8080 of a second
    // server address, so both go through the pod's 8080 listener.
    let banner_ip = format!("{}.3", net.srv_ip.rsplit_once('.').unwrap().0);
    net.srv
        .exec(&["ip", "addr", "add", &format!("{banner_ip}/32"), "dev", "lo"]);
    serve(&net.srv, format!("{banner_ip}:8080"), banner);
    // The peek waits 10s for the client; the probe connects upstream after 5ms of
    // silence and the server's banner ends the wait.
    let s = sidecar(&net, "10s", Some("5ms"));
    let srv = format!("{banner_ip}:8080");
    let mut c = net.pod.run(|| TcpStream::connect(&srv).unwrap());
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 18];
    c.read_exact(&mut got).unwrap_or_else(|e| {
        let stderr = fs::read_to_string(s.dir.0.join("stderr")).unwrap_or_default();
        panic!("the banner arrives at once, not after the 10s peek: {e}; sidecar:\n{stderr}")
    });
    assert_eq!(&got, b"220 banner ready\r\n");
    c.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    drop(c);
    logged(&s, &format!("sniffed-tcp {srv}"));
    assert_eq!(
        stat(&net, "listeners", "outbound_8080", "pre_cx_timeout"),
        0
    );
    // An HTTP client on the same listener is detected as before.
    let url = format!("http://{}:8080/x", net.srv_ip);
    assert_eq!(curl(&net, &[&url]), "from-server\n");
    logged(&s, &format!("http HTTP/1.1 200 {}:8080", net.srv_ip));
    assert_eq!(
        stat(&net, "listeners", "outbound_8080", "pre_cx_timeout"),
        0
    );
}

#[test]
fn inbound_connections_are_captured_and_delivered_to_the_workload() {
    let net = net("c");
    // The workload in the pod listens on its pod IP; a client in the other namespace
    // calls it, and the sidecar's inbound capture port takes the connection.
    serve(&net.pod, format!("{}:7000", net.pod_ip), echo);
    let s = sidecar(&net, "300ms", None);
    let to = format!("{}:7000", net.pod_ip);
    let mut c = net.srv.run(|| TcpStream::connect(&to).unwrap());
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"inbound").unwrap();
    let mut got = [0u8; 7];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"inbound");
    drop(c);
    logged(&s, &format!("inbound {to}"));
    assert_eq!(stat(&net, "listeners", "virtualInbound", "cx_total"), 1);
    assert_eq!(
        stat(&net, "clusters", "InboundPassthroughCluster", "cx_total"),
        1
    );
}

/// The rules of the `nat` table that are not the built-in chains' declarations.
fn nat_rules(ns: &Netns, save: &str) -> Vec<String> {
    let out = ns.exec(&[save, "-t", "nat"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A") || (l.starts_with(':') && l.contains("OUTRIGGER")))
        .map(str::to_string)
        .collect()
}

#[test]
fn iptables_is_idempotent_and_cleanup_leaves_no_rules() {
    require_root_and_tools();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ns = Netns::new(format!("oript{}{n}", std::process::id() % 100_000));
    // A rule of someone else's, which must survive.
    ns.exec(&[
        "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "1", "-j", "RETURN",
    ]);
    let before = (
        nat_rules(&ns, "iptables-save"),
        nat_rules(&ns, "ip6tables-save"),
    );
    ns.exec(&[BIN, "iptables", "--admin-port", "15000"]);
    let once = (
        nat_rules(&ns, "iptables-save"),
        nat_rules(&ns, "ip6tables-save"),
    );
    assert!(
        once.0
            .iter()
            .any(|l| l == "-A OUTPUT -p tcp -j OUTRIGGER_OUTPUT"),
        "{once:?}"
    );
    assert!(
        once.1.iter().any(|l| l.contains("--to-ports 15006")),
        "{once:?}"
    );
    ns.exec(&[BIN, "iptables", "--admin-port", "15000"]);
    let twice = (
        nat_rules(&ns, "iptables-save"),
        nat_rules(&ns, "ip6tables-save"),
    );
    assert_eq!(once, twice, "a second run changes nothing");
    ns.exec(&[BIN, "iptables", "--cleanup"]);
    let after = (
        nat_rules(&ns, "iptables-save"),
        nat_rules(&ns, "ip6tables-save"),
    );
    assert_eq!(before, after, "cleanup removes exactly what was added");
    // Cleaning up a clean namespace is fine too.
    ns.exec(&[BIN, "iptables", "--cleanup"]);
}

#[test]
fn dry_run_prints_the_rules_and_changes_nothing() {
    let out = Command::new(BIN)
        .args([
            "iptables",
            "--dry-run",
            "--proxy-uid",
            "1000",
            "--exclude-inbound-ports",
            "22",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "# ipv4: iptables-restore --noflush",
        "-A OUTRIGGER_OUTPUT -m owner --uid-owner 1000 -j RETURN",
        "-A OUTRIGGER_INBOUND -p tcp --dport 22 -j RETURN",
        "-A OUTRIGGER_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "# ipv6: iptables-restore --noflush",
        "-A OUTRIGGER_OUTPUT -d ::1/128 -j RETURN",
    ] {
        assert!(text.contains(want), "no `{want}` in:\n{text}");
    }
}

/// docs/kubernetes: the manifests parse, the pod has what a pod spec requires and the
/// init container and the proxy agree on the proxy UID, and the sidecar's config loads.
/// (The schema check with kubernetes-validate is in docs/kubernetes/README.md.)
#[test]
fn the_kubernetes_manifest_parses_and_its_config_loads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/kubernetes/sidecar-pod.yaml"
    );
    let text = fs::read_to_string(path).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let pod = kind("Pod");
    assert_eq!(pod["apiVersion"], "v1");
    assert!(pod["metadata"]["name"].is_string());
    let spec = &pod["spec"];
    let containers = spec["containers"].as_sequence().unwrap();
    for c in containers
        .iter()
        .chain(spec["initContainers"].as_sequence().unwrap())
    {
        assert!(c["name"].is_string() && c["image"].is_string(), "{c:?}");
    }
    let init = &spec["initContainers"][0];
    let args: Vec<&str> = init["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args.first(), Some(&"iptables"));
    let caps = &init["securityContext"]["capabilities"]["add"];
    assert!(caps.as_sequence().unwrap().iter().any(|c| c == "NET_ADMIN"));
    let proxy = containers
        .iter()
        .find(|c| c["name"] == "outrigger-proxy")
        .unwrap();
    let uid = proxy["securityContext"]["runAsUser"].as_u64().unwrap();
    assert!(
        args.contains(&format!("--proxy-uid={uid}").as_str()),
        "{args:?}"
    );
    // The dry run accepts the init container's flags.
    let out = Command::new(BIN)
        .args(&args)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The proxy's config, from the ConfigMap.
    let cfg = kind("ConfigMap")["data"]["outrigger.yaml"]
        .as_str()
        .unwrap();
    let dir = Dir::new("k8s");
    let p = dir.0.join("outrigger.yaml");
    fs::write(&p, cfg).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HTTP/1.1 workload: answers each request with whether a connection manager
/// handled it on the way (`x-request-id` present: `hcm`) or not (`raw`).
fn request_id_reporter(mut c: TcpStream) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let body = if head.contains("\r\nx-request-id:") {
        "hcm"
    } else {
        "raw"
    };
    let _ = write!(
        c,
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Envoy 1.40 from the load-test venv (tests/run installs it), if there.
fn envoy_binary() -> Option<PathBuf> {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/.venv/lib");
    fs::read_dir(venv)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.exists())
}

/// `outrigger control` in the server namespace and a sidecar in the pod fed by it in
/// capture mode (Outrigger booted with `run --control --capture`, or Envoy 1.40 with
/// the same node metadata): the control plane's routes apply to the pod's captured
/// outbound calls, and inbound calls to a service port of the workload go through a
/// connection manager to the workload.
#[test]
fn a_capture_mode_sidecar_from_the_control_plane_routes_captured_traffic() {
    capture_mode_case(None, false);
}

#[test]
fn an_envoy_sidecar_in_capture_mode_takes_the_same_listeners_from_the_control_plane() {
    let envoy = envoy_binary().expect("Envoy 1.40 in loadtest/.venv (tests/run installs it)");
    capture_mode_case(Some(envoy), false);
}

/// The same pod with a Sidecar resource: egress scoped to its namespace on 8080,
/// `REGISTRY_ONLY`, and an ingress entry sending port 7070 to the workload on
/// 127.0.0.1:7171; Outrigger and Envoy 1.40 alike.
#[test]
fn a_sidecar_resource_scopes_a_captured_proxys_egress_and_sets_its_ingress() {
    capture_mode_case(None, true);
}

#[test]
fn an_envoy_sidecar_in_capture_mode_follows_the_same_sidecar_resource() {
    let envoy = envoy_binary().expect("Envoy 1.40 in loadtest/.venv (tests/run installs it)");
    capture_mode_case(Some(envoy), true);
}

fn capture_mode_case(envoy: Option<PathBuf>, scoped: bool) {
    let net = net(if envoy.is_some() { "e" } else { "m" });
    let (_srv, _srv_dir) = http_server(&net);
    let mesh = Dir::new("mesh");
    let (pod, srv) = (&net.pod_ip, &net.srv_ip);
    let sidecar = if scoped {
        "---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: demo}
spec:
  workloadSelector: {labels: {app: client}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
  ingress: [{port: {number: 7070, name: http, protocol: HTTP}, defaultEndpoint: '127.0.0.1:7171'}]
  egress: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: [./*]}]
"
    } else {
        ""
    };
    fs::write(
        mesh.0.join("mesh.yaml"),
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: demo}}
spec:
  hosts: [web.demo]
  addresses: [{srv}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {srv}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: demo}}
spec:
  hosts: [web.demo]
  http:
  - match: [{{uri: {{prefix: /teapot}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: web.demo}}}}]
  - route: [{{destination: {{host: web.demo}}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: client, namespace: demo}}
spec: {{address: {pod}, serviceAccount: client, labels: {{app: client}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: client, namespace: demo}}
spec:
  hosts: [client.demo]
  ports: [{{number: 7070, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: client}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: hidden, namespace: other}}
spec:
  hosts: [hidden.other]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {srv}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: hidden, namespace: other}}
spec:
  hosts: [hidden.other]
  http: [{{fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}, route: [{{destination: {{host: hidden.other}}}}]}}]
{sidecar}"
        ),
    )
    .unwrap();
    // The sidecar shows a token; over plaintext xDS from another host it gets no
    // certificate, over the TLS port (the scoped run) it does.
    let state = Dir::new("state");
    let tokens = state.0.join("tokens.yaml");
    fs::write(
        &tokens,
        "- {token: client-token-0123456789, namespace: demo, serviceAccount: client}\n",
    )
    .unwrap();
    let token = state.0.join("client.token");
    fs::write(&token, "client-token-0123456789\n").unwrap();
    let ca_dir = state.0.join("ca");
    let root = ca_dir.join("root-cert.pem");
    let xds = if scoped {
        format!("{srv}:15012")
    } else {
        format!("{srv}:15010")
    };
    let control_log = mesh.0.join("control.log");
    let control = Proc(
        Command::new("ip")
            .args(["netns", "exec", &net.srv.0, BIN, "control", "--dir"])
            .arg(&mesh.0)
            .args([
                "--xds",
                &format!("{srv}:15010"),
                "--xds-tls",
                &format!("{srv}:15012"),
                "--admin",
                "127.0.0.1:15014",
            ])
            .arg("--tokens")
            .arg(&tokens)
            .arg("--ca-dir")
            .arg(&ca_dir)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&control_log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_listening(&net.srv, "127.0.0.1:15014", "control plane", &control_log);
    // The workload in the pod: on its service port, or where the Sidecar's ingress
    // entry sends that port.
    let app = if scoped {
        "127.0.0.1:7171".to_string()
    } else {
        format!("{pod}:7070")
    };
    serve(&net.pod, app, request_id_reporter);
    capture_rules(&net.pod);
    let dir = Dir::new("pod");
    let stderr = dir.0.join("stderr");
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns", "exec", &net.pod.0, "setpriv", "--reuid", PROXY_UID, "--regid",
    ])
    .args([PROXY_UID, "--clear-groups", "--"]);
    match &envoy {
        None => {
            cmd.args([BIN, "run", "--control"])
                .args([&xds, "--workload", "client.demo", "--capture"])
                .arg("--token-file")
                .arg(&token)
                .args(["--admin", "127.0.0.1:15000", "--concurrency", "1"]);
            if scoped {
                cmd.arg("--control-ca").arg(&root)
            } else {
                &mut cmd
            }
        }
        Some(bin) => {
            // The bootstrap `run --control --capture` writes, by hand.
            let boot = dir.0.join("envoy.yaml");
            let port = if scoped { 15012 } else { 15010 };
            let text = format!(
                    "node: {{id: client.demo, cluster: client, metadata: {{INTERCEPTION_MODE: REDIRECT}}}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 15000}}}}}}
dynamic_resources:
  ads_config: {{api_type: DELTA_GRPC, transport_api_version: V3, grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}, initial_metadata: [{{key: authorization, value: Bearer client-token-0123456789}}]}}]}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {srv}, port_value: {port}}}}}}}}}]}}]
"
            );
            // Over TLS: the xds-grpc cluster checks the control plane's certificate,
            // as `run --control-ca` writes it.
            let text = if scoped {
                common::mesh::over_tls(&text, &root, "istiod.istio-system.svc")
            } else {
                text
            };
            fs::write(&boot, text).unwrap();
            cmd.arg(bin).arg("-c").arg(&boot).args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "warning",
            ])
        }
    };
    let _sidecar = Proc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start the sidecar"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !admin(&net, "/ready").starts_with("200") {
        assert!(
            Instant::now() < deadline,
            "sidecar not ready; stderr:\n{}\ncontrol plane:\n{}",
            fs::read_to_string(&stderr).unwrap_or_default(),
            fs::read_to_string(&control_log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
    // Outbound: the VirtualService's fault for /teapot, the service for the rest.
    let code = |path: &str| {
        curl(
            &net,
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{srv}:8080{path}"),
            ],
        )
    };
    assert_eq!(
        code("/teapot"),
        "418",
        "{}",
        fs::read_to_string(&stderr).unwrap_or_default()
    );
    assert_eq!(
        curl(&net, &[&format!("http://{srv}:8080/")]),
        "from-server\n"
    );
    // Another namespace's service on the port: visible (its VirtualService's fault),
    // or out of the Sidecar's scope and refused under REGISTRY_ONLY (istiod's
    // `block_all`: 502).
    let hidden = curl(
        &net,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "host: hidden.other",
            &format!("http://{srv}:8080/"),
        ],
    );
    assert_eq!(hidden, if scoped { "502" } else { "418" });
    // A port no service has passes through to where it was going, or nowhere under
    // REGISTRY_ONLY (the connection is closed with no answer).
    let to = format!("{srv}:8081");
    let answer = net.pod.run(move || {
        let mut c = TcpStream::connect(&to).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    });
    if scoped {
        assert_eq!(answer, "", "REGISTRY_ONLY let a call out");
    } else {
        assert!(answer.ends_with("from-server\n"), "{answer}");
    }
    // Inbound: the workload's service port through a connection manager.
    let to = format!("{pod}:7070");
    let body = net.srv.run(move || {
        let mut c = TcpStream::connect(&to).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nhost: client.demo\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    });
    assert!(body.ends_with("hcm"), "inbound: {body}");
    // The certificate: over TLS only (the peer is not on loopback).
    let proxies = net.srv.run(|| {
        let mut c = TcpStream::connect("127.0.0.1:15014").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /proxies HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    });
    let has_identity = proxies.contains("spiffe://cluster.local/ns/demo/sa/client");
    let log = fs::read_to_string(&control_log).unwrap_or_default();
    if scoped {
        assert!(has_identity, "no certificate over xDS TLS: {proxies}");
    } else {
        assert!(!has_identity, "a certificate over plaintext xDS: {proxies}");
        assert!(
            log.contains("no certificate over plaintext xDS"),
            "control plane:\n{log}"
        );
    }
    drop(control);
}
