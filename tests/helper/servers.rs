//! Real servers the delivery tests talk to: Garage (a production
//! S3-compatible object store, built from crates.io by scripts/test.sh) on
//! free 127.0.0.1 ports, and a webhook receiver that checks signatures with
//! the reference `standardwebhooks` package. Both are checked through
//! independent clients (boto3, the receiver's log), never through batchd.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::wait_for;

pub const KEY_ID: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn garage_bin() -> PathBuf {
    if let Ok(p) = std::env::var("GARAGE_BIN") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    for c in [
        format!("{home}/.cargo/bin/garage"),
        "/usr/local/bin/garage".into(),
        "/usr/bin/garage".into(),
    ] {
        if Path::new(&c).exists() {
            return c.into();
        }
    }
    panic!("garage is not installed: run scripts/test.sh (it builds it with `cargo install garage --locked`)");
}

/// One Garage node with buckets `parts` and `sources` and one key allowed on both.
pub struct Garage {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    config: PathBuf,
    child: Option<Child>,
}

impl Garage {
    pub fn start() -> Garage {
        let dir = tempfile::Builder::new().prefix("batchd-garage-").tempdir().unwrap();
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let d = dir.path();
        let config = d.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{m}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                m = d.join("meta").display(),
                data = d.join("data").display(),
                secret = SECRET,
            ),
        )
        .unwrap();
        let mut g = Garage {
            endpoint: format!("http://127.0.0.1:{s3}"),
            config,
            child: None,
            dir,
        };
        g.run_server();
        let id = g.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap().to_owned();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["key", "import", "--yes", "-n", "batchd", KEY_ID, SECRET]);
        for b in ["parts", "sources", "other"] {
            g.cli(&["bucket", "create", b]);
            g.cli(&["bucket", "allow", "--read", "--write", "--owner", b, "--key", "batchd"]);
        }
        assert!(
            wait_for(|| g.list("parts", "").is_some(), Duration::from_secs(20)),
            "garage did not serve S3 requests"
        );
        g
    }

    fn run_server(&mut self) {
        let log = std::fs::File::create(self.dir.path().join(format!("server-{}.log", std::process::id()))).unwrap();
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port: u16 = self.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            wait_for(
                || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
                Duration::from_secs(20)
            ),
            "garage did not listen"
        );
    }

    fn cli(&self, args: &[&str]) -> String {
        let mut last = String::new();
        // The node needs a moment after start before it takes admin commands.
        for _ in 0..50 {
            let out = Command::new(garage_bin()).arg("-c").arg(&self.config).args(args).output().unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("garage {args:?}: {last}");
    }

    /// Stops the server (SIGKILL), as a crash or an outage would.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same data.
    pub fn resume(&mut self) {
        self.run_server();
    }

    /// The `[s3]` and `[delivery.s3]` TOML for a daemon using this server.
    pub fn toml(&self, delivery: &str) -> String {
        format!(
            "[s3]\nendpoint = \"{}\"\nregion = \"garage\"\npath_style = true\nallowed_buckets = [\"sources\"]\n\n[delivery.s3]\nbucket = \"parts\"\n{delivery}\n",
            self.endpoint
        )
    }

    /// What boto3 finds under `prefix`: each object's key, size, SHA-256 of
    /// its bytes and `sha256` metadata, and unfinished multipart uploads.
    pub fn list(&self, bucket: &str, prefix: &str) -> Option<Value> {
        let out = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helper/s3_oracle.py"))
            .args([&self.endpoint, KEY_ID, SECRET, "list", bucket, prefix])
            .output()
            .unwrap();
        out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Puts a local file into a bucket with boto3.
    pub fn put(&self, bucket: &str, key: &str, file: &Path) {
        let out = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helper/s3_oracle.py"))
            .args([&self.endpoint, KEY_ID, SECRET, "put", bucket, key])
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "boto3 put: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The webhook receiver: answers 500 to the first `fail_first` attempts of
/// each message, then 200; logs every request, with whether its signature
/// verified, to `log`.
pub struct Receiver {
    pub port: u16,
    pub log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub fn start(secret: &str, fail_first: u32) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let (log, portfile) = (dir.path().join("log.jsonl"), dir.path().join("port"));
        let child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helper/webhook_receiver.py"))
            .arg(secret)
            .arg(&log)
            .arg(&portfile)
            .arg(fail_first.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_for(|| portfile.exists(), Duration::from_secs(20)),
            "webhook receiver did not start"
        );
        let port = std::fs::read_to_string(&portfile).unwrap().trim().parse().unwrap();
        Receiver {
            port,
            log,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
