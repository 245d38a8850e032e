//! Test support: the real distribution registry (Debian `docker-registry`) started on a free loopback port,
//! a small client that pushes images through its API, and helpers to run the `rehydrate` binary.

#![allow(dead_code)]

pub mod fault_proxy;
pub mod harbor;
pub mod harbor_target;
pub mod images;
pub mod servers;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A port nobody listens on now (the OS picks it; the registry binds it a moment later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The registry binary; `scripts/test.sh` installs it from Debian's `docker-registry` package.
fn registry_binary() -> PathBuf {
    let path =
        PathBuf::from(std::env::var("REHYDRATE_REGISTRY_BIN").unwrap_or_else(|_| "/usr/bin/docker-registry".into()));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, which installs Debian's docker-registry",
        path.display()
    );
    path
}

/// A running `docker-registry serve` over a filesystem storage root; stopped (by its pid) on drop.
pub struct Registry {
    child: Child,
    pub url: String,
    pub root: PathBuf,
    client: Client,
    _config_dir: tempfile::TempDir,
}

impl Registry {
    /// Starts the registry with filesystem storage at `root` (deletes enabled, as the fixtures need).
    pub fn start(root: &Path) -> Registry {
        Registry::start_with_storage(
            &format!("filesystem: {{rootdirectory: {}}}", root.display()),
            root,
            "",
            "",
            "http",
        )
    }

    /// Starts the registry on `root` with more configuration (e.g. token auth) and the public URL it
    /// should put in `Location` headers.
    pub fn start_behind(root: &Path, extra: &str, public_url: &str) -> Registry {
        let http = format!(", host: \"{public_url}\"");
        Registry::start_with_storage(
            &format!("filesystem: {{rootdirectory: {}}}", root.display()),
            root,
            extra,
            &http,
            "http",
        )
    }

    /// Starts the registry serving HTTPS with this certificate and key (PEM files).
    pub fn start_tls(root: &Path, certificate: &Path, key: &Path) -> Registry {
        let http = format!(", tls: {{certificate: {}, key: {}}}", certificate.display(), key.display());
        Registry::start_with_storage(
            &format!("filesystem: {{rootdirectory: {}}}", root.display()),
            root,
            "",
            &http,
            "https",
        )
    }

    /// The registry's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the registry on an S3-compatible server, through its own S3 driver.
    pub fn start_on_s3(endpoint: &str, bucket: &str) -> Registry {
        Registry::start_on_s3_with(endpoint, bucket, "us-east-1", (servers::S3_ACCESS_KEY, servers::S3_SECRET_KEY))
    }

    /// The registry on its S3 driver, with the store's region and a key (access key ID, secret).
    pub fn start_on_s3_with(endpoint: &str, bucket: &str, region: &str, key: (&str, &str)) -> Registry {
        let (access, secret) = key;
        let s3 = format!(
            "s3: {{region: {region}, bucket: {bucket}, accesskey: {access}, secretkey: {secret}, regionendpoint: \"{endpoint}\", secure: false, v4auth: true, forcepathstyle: true, rootdirectory: /}}\n  redirect: {{disable: true}}"
        );
        Registry::start_with_storage(&s3, Path::new("/nonexistent"), "", "", "http")
    }

    /// Starts the registry with `storage` (one YAML flow mapping of a driver) plus deletes enabled,
    /// `extra` top-level configuration and `http` more entries of the `http` mapping.
    fn start_with_storage(storage: &str, root: &Path, extra: &str, http: &str, scheme: &str) -> Registry {
        let config_dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  {storage}\n  delete: {{enabled: true}}\n  maintenance: {{uploadpurging: {{enabled: false}}}}\nhttp: {{addr: 127.0.0.1:{port}{http}}}\n{extra}\n"
        );
        let config_path = config_dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        // The registry logs every 404 it answers at level error: keep its log in a file, shown if it fails.
        let log = std::fs::File::create(config_dir.path().join("registry.log")).unwrap();
        let child = Command::new(registry_binary())
            .arg("serve")
            .arg(&config_path)
            .env_remove("AWS_CA_BUNDLE")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let registry = Registry {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            root: root.to_path_buf(),
            // The tests' own client trusts any certificate: it only sets up and inspects fixtures.
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap(),
            _config_dir: config_dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = self.client.get(format!("{}/v2/", self.url)).send() {
                // 401 when token auth is on: it answers.
                if response.status() == StatusCode::OK || response.status() == StatusCode::UNAUTHORIZED {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self._config_dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry did not answer on {} within 30 s; its log:\n{log}", self.url);
    }

    /// Uploads a blob (POST, then one monolithic PUT) and returns its digest.
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let response = self.client.post(format!("{}/v2/{repository}/blobs/uploads/", self.url)).send().unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "starting an upload to {repository}");
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') { format!("{}{location}", self.url) } else { location };
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = self
            .client
            .put(format!("{location}{separator}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "finishing the upload of {digest} to {repository}");
        digest
    }

    /// PUTs a manifest by tag or digest; returns its digest.
    pub fn push_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
        let response = self
            .client
            .put(format!("{}/v2/{repository}/manifests/{reference}", self.url))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .unwrap();
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "pushing {repository}:{reference}: {}",
            response.text().unwrap_or_default()
        );
        sha256(bytes)
    }

    pub fn delete_manifest(&self, repository: &str, digest: &str) {
        let response = self.client.delete(format!("{}/v2/{repository}/manifests/{digest}", self.url)).send().unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "deleting {repository}@{digest}");
    }

    /// Every repository, through `_catalog` pages (following `Link`), as Harbor's replication reads them.
    pub fn catalog(&self) -> Vec<String> {
        self.catalog_with_page_size(100)
    }

    pub fn catalog_with_page_size(&self, page_size: usize) -> Vec<String> {
        self.catalog_until(page_size, None).0
    }

    /// The catalog in pages of `page_size`, read until it is complete or `deadline` passes (each page
    /// may then take as long as is left: a late page of a large catalog re-walks the storage for
    /// minutes). Returns the names read and whether the catalog is complete.
    pub fn catalog_until(&self, page_size: usize, deadline: Option<Instant>) -> (Vec<String>, bool) {
        let mut repositories = Vec::new();
        let mut next = Some(format!("{}/v2/_catalog?n={page_size}", self.url));
        while let Some(url) = next.take() {
            let mut request = self.client.get(&url);
            if let Some(deadline) = deadline {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else { return (repositories, false) };
                request = request.timeout(left);
            }
            let response = match request.send() {
                Ok(response) => response,
                Err(error) if error.is_timeout() => return (repositories, false),
                Err(error) => panic!("{url}: {error}"),
            };
            assert_eq!(response.status(), StatusCode::OK);
            if let Some(link) = response.headers().get("link") {
                let link = link.to_str().unwrap();
                let path = link.trim_start_matches('<').split('>').next().unwrap();
                next = Some(format!("{}{path}", self.url));
            }
            let body: Value = response.json().unwrap();
            repositories
                .extend(body["repositories"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()));
        }
        (repositories, true)
    }

    /// The tags of a repository (empty when the registry knows none).
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let response = self.client.get(format!("{}/v2/{repository}/tags/list", self.url)).send().unwrap();
        if response.status() == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let body: Value = response.json().unwrap();
        body["tags"]
            .as_array()
            .map(|tags| tags.iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }

    /// The `Docker-Content-Digest` of a manifest HEAD, or `None` when the registry answers 404.
    pub fn head_manifest(&self, repository: &str, reference: &str) -> Option<String> {
        let response = self
            .client
            .head(format!("{}/v2/{repository}/manifests/{reference}", self.url))
            .header("accept", ACCEPT_ALL)
            .send()
            .unwrap();
        if response.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(response.status(), StatusCode::OK, "HEAD {repository}:{reference}");
        Some(response.headers()["docker-content-digest"].to_str().unwrap().to_string())
    }

    /// True when a manifest GET by this reference succeeds (the registry may answer 404 or 500 otherwise).
    pub fn serves_manifest(&self, repository: &str, reference: &str) -> bool {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.url);
        self.client.get(url).header("accept", ACCEPT_ALL).send().unwrap().status() == StatusCode::OK
    }

    /// A manifest, parsed.
    pub fn get_manifest_json(&self, repository: &str, reference: &str) -> Value {
        let response = self
            .client
            .get(format!("{}/v2/{repository}/manifests/{reference}", self.url))
            .header("accept", ACCEPT_ALL)
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {repository}:{reference}");
        response.json().unwrap()
    }

    /// True when the registry has the blob in this repository.
    pub fn blob_exists(&self, repository: &str, digest: &str) -> bool {
        let response = self.client.head(format!("{}/v2/{repository}/blobs/{digest}", self.url)).send().unwrap();
        response.status() == StatusCode::OK
    }

    /// The registry's own answer, as (repository, tag, digest): catalog, then tags/list, then a HEAD per tag.
    pub fn inventory(&self) -> BTreeSet<(String, String, String)> {
        self.enumerate(100, 1).0
    }

    /// Harbor's enumeration path: `_catalog` pages of `page_size` (serial by nature: each page starts
    /// after the last name), then `tags/list` per repository and a manifest HEAD per tag, `concurrency`
    /// repositories at once. Returns what it found and the time the catalog alone took.
    pub fn enumerate(&self, page_size: usize, concurrency: usize) -> (BTreeSet<(String, String, String)>, Duration) {
        let started = Instant::now();
        let repositories = self.catalog_with_page_size(page_size);
        let catalog_time = started.elapsed();
        (self.tags_of(&repositories, concurrency), catalog_time)
    }

    /// The tags of `repositories` with their digests: `tags/list` per repository and a manifest HEAD
    /// per tag, `concurrency` repositories at once.
    pub fn tags_of(&self, repositories: &[String], concurrency: usize) -> BTreeSet<(String, String, String)> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let found = std::sync::Mutex::new(BTreeSet::new());
        std::thread::scope(|scope| {
            for _ in 0..concurrency.max(1) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(repository) = repositories.get(i) else { break };
                    for tag in self.tags(repository) {
                        if let Some(digest) = self.head_manifest(repository, &tag) {
                            found.lock().unwrap().insert((repository.clone(), tag, digest));
                        }
                    }
                });
            }
        });
        found.into_inner().unwrap()
    }
}

/// Reads every tag back from `host` with skopeo (which checks every blob's digest as it copies; `--all`
/// takes every child of an index) and checks each manifest kept its digest.
pub fn skopeo_reads_back(host: &str, inventory: &BTreeSet<(String, String, String)>, credentials: Option<&str>) {
    let copies = tempfile::tempdir().unwrap();
    for (i, (repository, tag, digest)) in inventory.iter().enumerate() {
        let destination = copies.path().join(i.to_string());
        let mut command = Command::new("skopeo");
        command.args(["copy", "--all", "--src-tls-verify=false", "--preserve-digests"]);
        if let Some(credentials) = credentials {
            command.args(["--src-creds", credentials]);
        }
        let output = command
            .arg(format!("docker://{host}/{repository}:{tag}"))
            .arg(format!("dir:{}", destination.display()))
            .output()
            .expect("running skopeo (scripts/install-servers.sh installs it)");
        assert!(output.status.success(), "skopeo copy {repository}:{tag}: {}", String::from_utf8_lossy(&output.stderr));
        let manifest = std::fs::read(destination.join("manifest.json")).unwrap();
        assert_eq!(&sha256(&manifest), digest, "{repository}:{tag} kept its digest");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `rehydrate` binary with `args` (in a clean environment, see `rehydrate_with_env`).
pub fn rehydrate(args: &[&str]) -> Output {
    rehydrate_with_env(args, &[])
}

/// The `rehydrate` binary cargo built for this test or benchmark. Examples that share this support code
/// do not run rehydrate, and cargo sets no path for them (hence no `env!`, which would not compile there).
pub fn rehydrate_binary() -> &'static str {
    match option_env!("CARGO_BIN_EXE_rehydrate") {
        Some(path) => path,
        None => panic!("only tests and benchmarks run rehydrate"),
    }
}

/// Writes an executable script (a stand-in `az`, a Docker credential helper) at `path`.
pub fn write_script(path: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the `rehydrate` binary with `args` in a clean environment holding only `env` (and PATH), so
/// that no cloud variable of the machine leaks into a test.
pub fn rehydrate_with_env(args: &[&str], env: &[(&str, String)]) -> Output {
    rehydrate_command(args, env).output().expect("running rehydrate")
}

/// The `rehydrate` command with `args`, in a clean environment holding only `env` (and PATH).
pub fn rehydrate_command(args: &[&str], env: &[(&str, String)]) -> Command {
    // Journals of test runs go to a folder of this test process, never into the user's state folder.
    let state = std::env::temp_dir().join(format!("rehydrate-test-state-{}", std::process::id()));
    let mut command = Command::new(rehydrate_binary());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XDG_STATE_HOME", state)
        .envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// The storage request counts of a scan summary: (listings, link reads).
pub fn request_counts(stderr: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("storage requests:"))
        .unwrap_or_else(|| panic!("no request counts in {text}"));
    let numbers: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).map(|w| w.parse().unwrap()).collect();
    (numbers[0], numbers[1])
}

/// The number just before `word` on the first line of `stderr` that starts with `line_start` (a summary
/// figure such as "... 12 retries").
pub fn number_before(stderr: &str, line_start: &str, word: &str) -> u64 {
    let line =
        stderr.lines().find(|l| l.starts_with(line_start)).unwrap_or_else(|| panic!("no {line_start}: {stderr}"));
    let before = &line[..line.find(word).unwrap_or_else(|| panic!("no {word} in {line}"))];
    before.split_whitespace().last().unwrap().trim_start_matches('(').parse().unwrap()
}

/// One parsed line of a JSON Lines inventory.
pub fn inventory_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout).lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

/// The tag records of a JSON Lines inventory, as (repository, tag, digest).
pub fn tag_records(lines: &[Value]) -> BTreeSet<(String, String, String)> {
    lines
        .iter()
        .filter(|l| l.get("digest").is_some() && l["tag"].is_string())
        .map(|l| {
            (
                l["repository"].as_str().unwrap().into(),
                l["tag"].as_str().unwrap().into(),
                l["digest"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// The untagged records of a JSON Lines inventory, as (repository, digest).
pub fn untagged_records(lines: &[Value]) -> BTreeSet<(String, String)> {
    lines
        .iter()
        .filter(|l| l.get("digest").is_some() && l["tag"].is_null())
        .map(|l| (l["repository"].as_str().unwrap().into(), l["digest"].as_str().unwrap().into()))
        .collect()
}

/// The error records of a JSON Lines inventory, as (key, message).
pub fn error_records(lines: &[Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| l.get("error").is_some())
        .map(|l| (l["key"].as_str().unwrap().into(), l["error"].as_str().unwrap().into()))
        .collect()
}

/// Runs `command` (output discarded) and SIGKILLs it as soon as `kill_now` says so, or after
/// `deadline`. Returns true when it was killed, false when it had already exited.
pub fn run_and_kill(mut command: Command, deadline: Duration, mut kill_now: impl FnMut() -> bool) -> bool {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("starting rehydrate");
    let give_up = Instant::now() + deadline;
    while !kill_now() && Instant::now() < give_up {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    killed
}

/// Checks every blob a registry stores on disk against its digest (the folder it lies in); returns how
/// many there are. A corrupt blob on the target panics with its path.
pub fn assert_blobs_intact(storage_root: &Path) -> usize {
    let blobs = storage_root.join("docker/registry/v2/blobs/sha256");
    let mut count = 0;
    for data in servers::walk_files(&blobs).into_iter().filter(|p| p.file_name().is_some_and(|n| n == "data")) {
        let hex = data.parent().unwrap().file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(sha256(&std::fs::read(&data).unwrap()), format!("sha256:{hex}"), "{} is corrupt", data.display());
        count += 1;
    }
    count
}

/// A private CA and a certificate it signed for 127.0.0.1 and localhost, written into `dir`: returns
/// the paths of the CA's certificate, the server's certificate and its key (PEM).
pub fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, leaf.pem()).unwrap();
    std::fs::write(&key_pem, leaf_key.serialize_pem()).unwrap();
    (ca_pem, cert_pem, key_pem)
}
