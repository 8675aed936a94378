//! Real NATS servers with JetStream on loopback, clustered by routes, for the
//! cluster tests: each a `nats-server` process with its own store directory and
//! `sync_interval: always` (an ack means fsynced), killed and restarted at will.
#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary: `ANNAL_NATS_SERVER`, else the one `.ci/setup.sh` installs
/// under `target/venv-nats`, else `nats-server` on the PATH.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ANNAL_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/venv-nats/bin/nats-server");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("nats-server")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A cluster of `nats-server` processes.
pub struct Nats {
    dir: tempfile::TempDir,
    client_ports: Vec<u16>,
    monitor_ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl Nats {
    /// Start `n` servers routed to each other, and wait until each accepts clients.
    pub fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let monitor_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes: Vec<String> = route_ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        for i in 0..n {
            let store = dir.path().join(format!("js{i}"));
            let cluster = if n > 1 {
                format!(
                    "cluster {{ name: annal, listen: 127.0.0.1:{}, routes: [{}] }}",
                    route_ports[i],
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let config = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\nmax_payload: 8MB\n\
                 jetstream {{ store_dir: \"{}\", sync_interval: always }}\n{cluster}\n",
                client_ports[i],
                monitor_ports[i],
                store.display()
            );
            std::fs::write(dir.path().join(format!("n{i}.conf")), config).unwrap();
        }
        let mut nats = Nats { dir, client_ports, monitor_ports, children: (0..n).map(|_| None).collect() };
        for i in 0..n {
            nats.start_node(i);
        }
        nats
    }

    /// Start server `i` (again), on its port and store.
    pub fn start_node(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "server {i} runs already");
        let log = std::fs::File::create(self.dir.path().join(format!("n{i}.log"))).unwrap();
        let child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.path().join(format!("n{i}.conf")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): run .ci/setup.sh, or set ANNAL_NATS_SERVER",
                    binary().display()
                )
            });
        self.children[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.client_ports[i])).is_err() {
            assert!(Instant::now() < deadline, "nats server {i} never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Send `signal` (`STOP`, `CONT`) to server `i`: a stopped server holds its
    /// connections open and answers nothing, as a partitioned one does.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.children[i].as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
    }

    /// Which server leads `stream`'s Raft group now, asked of a running server's
    /// monitoring endpoint (`/jsz`); `None` if no running server knows.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
        for i in (0..self.children.len()).filter(|&i| self.children[i].is_some()) {
            let url = format!("http://127.0.0.1:{}/jsz?streams=true", self.monitor_ports[i]);
            let Ok(mut answer) = agent.get(&url).call() else { continue };
            let Ok(text) = answer.body_mut().read_to_string() else { continue };
            let Ok(jsz) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let accounts = jsz["account_details"].as_array().cloned().unwrap_or_default();
            for detail in
                accounts.iter().flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            {
                if detail["name"] == stream {
                    if let Some(leader) = detail["cluster"]["leader"].as_str() {
                        return leader.strip_prefix('n')?.parse().ok();
                    }
                }
            }
        }
        None
    }

    /// Every server's client address, comma-separated (what `--cluster` takes).
    pub fn url(&self) -> String {
        (0..self.client_ports.len()).map(|i| self.url_of(i)).collect::<Vec<_>>().join(",")
    }

    /// Server `i`'s client address.
    pub fn url_of(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.client_ports[i])
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
