//! A running `annal serve` child process, driven over HTTP.
#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running `annal serve` child process.
pub struct Server {
    child: Child,
    pub base: String,
    pub agent: ureq::Agent,
}

impl Server {
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    /// Start with extra `annal serve` flags, and wait until `/readyz` says the log is
    /// replayed, as a load balancer would.
    pub fn start_with(data: &Path, flags: &[&str]) -> Self {
        let server = Self::start_listening(data, flags);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while server.get("/readyz").0 != 200 {
            assert!(std::time::Instant::now() < deadline, "server never became ready");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        server
    }

    /// Start and return as soon as the listener is up (replay may still run).
    pub fn start_listening(data: &Path, flags: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_annal"))
            .args(["serve", "--data"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .env("ANNAL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "server exited before listening");
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        // A fresh connection per request: a POST sent on a pooled keep-alive connection
        // the server is closing (it closes after answering before reading a body, e.g.
        // a 404 for an unknown index) fails in transport and cannot be sent again blindly.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        Server { child, base: format!("http://{addr}"), agent }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port`.
    pub fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let mut response = match (method, body) {
            // A GET is idempotent: sent again once if the pooled keep-alive connection
            // it went out on was closed by the server meanwhile (after an answer given
            // before reading a body, the server closes the connection; under load the
            // client can reuse it before it sees the close), as browsers and most
            // HTTP clients do.
            ("GET", _) => self.agent.get(&url).call().or_else(|e| match e {
                ureq::Error::Io(_) => self.agent.get(&url).call(),
                other => Err(other),
            }),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("PUT", Some(body)) => self.agent.put(&url).send_json(body),
            ("POST", Some(body)) => self.agent.post(&url).send_json(body),
            ("PATCH", Some(body)) => self.agent.patch(&url).send_json(body),
            _ => unreachable!(),
        }
        .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// POST, or `None` when the transport failed: a server answering before it reads a
    /// body (503 `starting`) may close the connection under the client.
    pub fn try_post(&self, path: &str, body: Value) -> Option<(u16, Value)> {
        let url = format!("{}{}", self.base, path);
        let mut response = self.agent.post(&url).send_json(body).ok()?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// PUT raw bytes; the status and the JSON answer.
    pub fn put_bytes(&self, path: &str, bytes: &[u8]) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let mut response = self.agent.put(&url).content_type("application/octet-stream").send(bytes).unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET raw bytes; the status, the rescue header if any, and the body.
    pub fn get_bytes(&self, path: &str) -> (u16, Option<String>, Vec<u8>) {
        let url = format!("{}{}", self.base, path);
        let mut response = self.agent.get(&url).call().unwrap();
        let status = response.status().as_u16();
        let rescue = response.headers().get("x-annal-rescue-used").map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.body_mut().read_to_vec().unwrap();
        (status, rescue, bytes)
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    pub fn last_seq(&self) -> u64 {
        self.get("/healthz").1["last_seq"].as_u64().unwrap()
    }

    /// The text of `/metrics`.
    pub fn metrics(&self) -> String {
        self.agent.get(format!("{}/metrics", self.base)).call().unwrap().body_mut().read_to_string().unwrap()
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(self.child.wait().unwrap().success(), "graceful shutdown exits 0");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send raw bytes and return the status code, for requests a client library would not
/// make (wrong content type, a declared length over the limit).
pub fn raw_status(host: &str, request: &str) -> u16 {
    let mut stream = TcpStream::connect(host).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}
