//! A real S3-compatible server for tests: moto's server mode (`pip install
//! "moto[server]"`, which `.ci/setup.sh` does), started on a free loopback port.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `moto_server` with one bucket.
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
    pub bucket: String,
}

impl MotoServer {
    /// Start one and create `bucket`; `Err` with the reason when moto is not installed,
    /// so that the caller can skip and say why.
    pub fn start(bucket: &str) -> Result<Self, String> {
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "moto_server could not be started ({e}); install it with pip install \"moto[server]\""
                )
            })?;
        let server = Self { child, endpoint: format!("http://127.0.0.1:{port}"), bucket: bucket.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(status) = server.raw("PUT", &format!("/{bucket}")) {
                if status == 200 {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err("moto_server did not answer within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An unsigned request (moto accepts them), returning the status code.
    fn raw(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {response:?}")))
    }

    /// The bucket configuration for it, credentials in a 0600 secrets file in `dir`.
    pub fn config_toml(&self, name: &str, dir: &std::path::Path, prefix: Option<&str>) -> String {
        use std::os::unix::fs::PermissionsExt;
        let secrets = dir.join(format!("{name}-secrets.toml"));
        std::fs::write(&secrets, "access_key_id = \"testing\"\nsecret_access_key = \"moto-s3cr3t\"\n")
            .unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let prefix = prefix.map(|p| format!("prefix = \"{p}\"\n")).unwrap_or_default();
        format!(
            "[buckets.{name}]\nbackend = \"s3\"\nendpoint = \"{}\"\nbucket = \"{}\"\nallow_http = true\n{prefix}secrets_file = \"{}\"\n",
            self.endpoint,
            self.bucket,
            secrets.display()
        )
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
