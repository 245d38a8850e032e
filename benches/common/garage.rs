//! Garage (the crate `garage` 2.5.0), a real S3 server that holds millions of keys, run single-node on
//! loopback for the benchmarks at scale. Its data stays in one folder between runs (loading a bucket
//! takes minutes), and it counts the requests it answers by S3 operation on its admin API's
//! `/metrics`, so that a benchmark counts at the server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// The key the benchmarks use, imported into Garage (its key IDs are `GK` and 24 hex digits).
const ACCESS_KEY: &str = "GK0123456789abcdef01234567";
const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const REGION: &str = "garage";

pub struct Garage {
    child: Child,
    dir: PathBuf,
    pub url: String,
    admin_url: String,
}

/// The Garage binary: `REHYDRATE_BENCH_GARAGE`, else `garage` on the PATH or in `~/.cargo/bin`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REHYDRATE_BENCH_GARAGE") {
        return PathBuf::from(path);
    }
    let in_cargo = std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo/bin/garage"));
    match in_cargo {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("garage"),
    }
}

impl Garage {
    /// Starts Garage on the data in `dir` (created and set up on first use: a layout of one node and the
    /// benchmark's key).
    pub fn start(dir: &Path) -> Garage {
        std::fs::create_dir_all(dir).unwrap();
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let config = format!(
            "metadata_dir = \"{dir}/meta\"\ndata_dir = \"{dir}/data\"\ndb_engine = \"lmdb\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc_port}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
             root_domain = \".s3.garage.localhost\"\n[admin]\napi_bind_addr = \"127.0.0.1:{admin_port}\"\n",
            dir = dir.display(),
            secret = "ab".repeat(32),
        );
        std::fs::write(dir.join("garage.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("garage.log")).unwrap();
        let child = Command::new(binary())
            .arg("-c")
            .arg(dir.join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting garage: run scripts/bench-s3-scale.sh, which installs it");
        let garage = Garage {
            child,
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{s3_port}"),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
        };
        garage.wait_for_port(s3_port);
        if !dir.join("set-up").exists() {
            garage.set_up();
            std::fs::write(dir.join("set-up"), "").unwrap();
        }
        garage
    }

    fn wait_for_port(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "garage did not start: see {}/garage.log", self.dir.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `garage <args>` against this server; returns what it printed.
    fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(binary()).arg("-c").arg(self.dir.join("garage.toml")).args(args).output().unwrap();
        assert!(output.status.success(), "garage {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A layout of this one node, and the benchmark's key.
    fn set_up(&self) {
        let node = self.cli(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().unwrap().to_string();
        self.cli(&["layout", "assign", "-z", "dc1", "-c", "10G", &node]);
        self.cli(&["layout", "apply", "--version", "1"]);
        self.cli(&["key", "import", "--yes", "-n", "bench-key", ACCESS_KEY, SECRET_KEY]);
    }

    /// Creates `bucket` (once) and lets the benchmark's key read and write it.
    pub fn create_bucket(&self, bucket: &str) {
        if !self.cli(&["bucket", "list"]).split_whitespace().any(|word| word == bucket) {
            self.cli(&["bucket", "create", bucket]);
        }
        self.cli(&["bucket", "allow", "--read", "--write", "--owner", bucket, "--key", "bench-key"]);
    }

    /// The environment rehydrate reads its S3 settings from, for `endpoint` (Garage, or a proxy to it).
    pub fn env(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", endpoint.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    pub fn credentials(&self) -> (&'static str, &'static str) {
        (ACCESS_KEY, SECRET_KEY)
    }

    /// An object_store client for `bucket`, straight to Garage.
    pub fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.url)
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_region(REGION)
            .build()
            .unwrap()
    }

    /// CPU time the server has used so far.
    pub fn cpu_time(&self) -> Duration {
        super::cpu_time(self.child.id())
    }

    /// Requests answered so far, by S3 operation (`ListObjectsV2`, `GetObject`, ...), from the server's
    /// own counters.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        let text = reqwest::blocking::get(format!("{}/metrics", self.admin_url)).unwrap().text().unwrap();
        let mut counts = BTreeMap::new();
        for line in text.lines().filter(|line| line.starts_with("api_s3_request_counter{")) {
            let endpoint = line.split("api_endpoint=\"").nth(1).and_then(|rest| rest.split('"').next());
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(endpoint), Some(value)) = (endpoint, value) {
                *counts.entry(endpoint.to_string()).or_default() += value as u64;
            }
        }
        counts
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
