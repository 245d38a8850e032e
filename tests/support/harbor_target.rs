//! The Harbor a Harbor suite runs against: the emulator (`support::harbor`) by default, or a real Harbor
//! when `REHYDRATE_TEST_HARBOR_URL` is set (with an administrator's `REHYDRATE_TEST_HARBOR_USERNAME`,
//! default `admin`, and `REHYDRATE_TEST_HARBOR_PASSWORD`; `scripts/test-against-harbor.sh URL` sets
//! them). Either way a counting proxy (`fault_proxy`, no faults) stands in front, so that a test counts
//! the requests that reach Harbor's `/v2/` the same way.
//!
//! Against a real Harbor, each test works in a project of its own: every repository goes under the
//! namespace `rehydrate-test-<test>-<pid>` (`--dest-namespace`, `mapping_args`), and that project,
//! its repositories and the robots the test made are removed at the end. What can only be arranged in
//! the emulator is said by `needs_emulator`, which a test calls before that one assertion.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::blocking::Client;
use serde_json::Value;

use super::fault_proxy::FaultProxy;
use super::harbor::{v2_kind, HarborEmulator, ADMIN, ADMIN_PASSWORD, ROBOT, ROBOT_PASSWORD};

/// A real Harbor reached through its REST API as an administrator.
pub struct RealHarbor {
    pub url: String,
    username: String,
    password: String,
    api: Client,
    /// Robots and registry endpoints made by the test (their ids), deleted at the end.
    robots: std::sync::Mutex<Vec<i64>>,
    registries: std::sync::Mutex<Vec<i64>>,
}

pub struct TestHarbor {
    /// What rehydrate is pointed at: the counting proxy in front of the Harbor.
    pub url: String,
    pub proxy: FaultProxy,
    pub emulator: Option<HarborEmulator>,
    pub real: Option<RealHarbor>,
    /// Against a real Harbor: the project every repository of the test goes into.
    pub namespace: Option<String>,
    /// Other projects the test made on a real Harbor, removed at the end.
    extra_projects: std::sync::Mutex<Vec<String>>,
    /// The storage the emulator's registry writes (a real Harbor's is `REHYDRATE_TEST_HARBOR_STORAGE`).
    emulator_storage: std::path::PathBuf,
}

impl TestHarbor {
    /// The emulator on `storage_root`, or the real Harbor the environment names; `test` names the test's
    /// project there.
    pub fn start(storage_root: &Path, test: &str) -> TestHarbor {
        match std::env::var("REHYDRATE_TEST_HARBOR_URL").ok().filter(|url| !url.is_empty()) {
            Some(url) => {
                let real = RealHarbor {
                    url: url.trim_end_matches('/').to_string(),
                    username: std::env::var("REHYDRATE_TEST_HARBOR_USERNAME").unwrap_or_else(|_| "admin".into()),
                    password: std::env::var("REHYDRATE_TEST_HARBOR_PASSWORD")
                        .expect("REHYDRATE_TEST_HARBOR_PASSWORD: the administrator's password of that Harbor"),
                    api: Client::new(),
                    robots: Default::default(),
                    registries: Default::default(),
                };
                let namespace = format!("rehydrate-test-{}-{}", test.replace('_', "-"), std::process::id());
                real.delete_project(&namespace);
                let proxy = counting_proxy(&real.url);
                TestHarbor {
                    url: proxy.url.clone(),
                    proxy,
                    emulator: None,
                    real: Some(real),
                    namespace: Some(namespace),
                    extra_projects: Default::default(),
                    emulator_storage: storage_root.to_path_buf(),
                }
            }
            None => {
                let emulator = HarborEmulator::start(storage_root);
                let proxy = counting_proxy(&emulator.url);
                TestHarbor {
                    url: proxy.url.clone(),
                    proxy,
                    emulator: Some(emulator),
                    real: None,
                    namespace: None,
                    extra_projects: Default::default(),
                    emulator_storage: storage_root.to_path_buf(),
                }
            }
        }
    }

    pub fn is_real(&self) -> bool {
        self.real.is_some()
    }

    /// Says that an assertion can only be arranged in the emulator: true (go on) against the emulator;
    /// against a real Harbor, prints why that one assertion is left out and gives false.
    pub fn needs_emulator(&self, what: &str) -> bool {
        if self.is_real() {
            eprintln!("against a real Harbor, left out: {what} (only the emulator can arrange it)");
        }
        !self.is_real()
    }

    /// The mapping flags that put the test's repositories where they belong.
    pub fn mapping_args(&self) -> Vec<String> {
        match &self.namespace {
            Some(namespace) => vec!["--dest-namespace".into(), namespace.clone()],
            None => vec![],
        }
    }

    /// The target repository a source repository is copied to.
    pub fn target_repository(&self, source: &str) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}/{source}"),
            None => source.to_string(),
        }
    }

    /// The target project a source repository's first component becomes.
    pub fn target_project(&self, source_project: &str) -> String {
        self.namespace.clone().unwrap_or_else(|| source_project.to_string())
    }

    pub fn admin(&self) -> (String, String) {
        match &self.real {
            Some(real) => (real.username.clone(), real.password.clone()),
            None => (ADMIN.into(), ADMIN_PASSWORD.into()),
        }
    }

    pub fn env_admin(&self) -> Vec<(&'static str, String)> {
        let (username, password) = self.admin();
        vec![("REHYDRATE_TARGET_USERNAME", username), ("REHYDRATE_TARGET_PASSWORD", password)]
    }

    /// A system robot with push and pull on every project (made through the API on a real Harbor).
    pub fn system_robot(&self) -> (String, String) {
        match &self.real {
            Some(real) => real.create_robot(self.namespace.as_deref().unwrap_or("rehydrate"), &[], true),
            None => (ROBOT.into(), ROBOT_PASSWORD.into()),
        }
    }

    /// The name of the test's project `short`: itself on the emulator; on a real Harbor, under the
    /// test's namespace (and removed at the end, whoever creates it).
    pub fn project_name(&self, short: &str) -> String {
        match &self.namespace {
            Some(namespace) => {
                let project = format!("{namespace}-{short}");
                let mut extra = self.extra_projects.lock().unwrap();
                if !extra.contains(&project) {
                    extra.push(project.clone());
                }
                project
            }
            None => short.to_string(),
        }
    }

    /// Sets a project's storage quota (the project exists on a real Harbor first).
    pub fn set_quota(&self, project: &str, bytes: u64) {
        match (&self.real, &self.emulator) {
            (Some(real), _) => real.set_quota(project, bytes),
            (None, Some(emulator)) => {
                emulator.add_project(project);
                emulator.state.lock().unwrap().quotas.insert(project.to_string(), bytes);
            }
            _ => unreachable!(),
        }
    }

    /// Makes a project's storage quota unlimited again.
    pub fn lift_quota(&self, project: &str) {
        match (&self.real, &self.emulator) {
            (Some(real), _) => real.set_quota_value(project, serde_json::json!(-1)),
            (None, Some(emulator)) => {
                emulator.state.lock().unwrap().quotas.remove(project);
            }
            _ => unreachable!(),
        }
    }

    /// Storage a project uses, as its quota counts it.
    pub fn usage(&self, project: &str) -> u64 {
        match (&self.real, &self.emulator) {
            (Some(real), _) => {
                let summary: Value = real.get(&format!("projects/{project}/summary")).json().unwrap();
                summary["quota"]["used"]["storage"].as_u64().unwrap_or(0)
            }
            (None, Some(emulator)) => emulator.state.lock().unwrap().usage(project),
            _ => unreachable!(),
        }
    }

    /// An immutable tag rule on every repository of `project`, for tags matching `pattern`.
    pub fn immutable_rule(&self, project: &str, pattern: &str) {
        match (&self.real, &self.emulator) {
            (Some(real), _) => real.add_immutable_rule(project, pattern),
            (None, Some(emulator)) => {
                let mut state = emulator.state.lock().unwrap();
                state.immutable.insert(project.to_string(), vec![pattern.to_string()]);
            }
            _ => unreachable!(),
        }
    }

    /// Makes `project` a proxy-cache project of the registry at `upstream` (Harbor checks that it
    /// answers when the endpoint is made).
    pub fn proxy_cache_project(&self, project: &str, upstream: &str) {
        match (&self.real, &self.emulator) {
            (Some(real), _) => real.create_proxy_cache_project(project, upstream),
            (None, Some(emulator)) => {
                emulator.add_project(project);
                emulator.state.lock().unwrap().proxy_cache.insert(project.to_string());
            }
            _ => unreachable!(),
        }
    }

    /// Switches on cosign content trust in `project`: pulls (and manifest HEADs) of unsigned artifacts
    /// are refused.
    pub fn content_trust(&self, project: &str) {
        match (&self.real, &self.emulator) {
            (Some(real), _) => real.set_metadata(project, "enable_content_trust_cosign", "true"),
            (None, Some(emulator)) => {
                emulator.state.lock().unwrap().content_trust.insert(project.to_string());
            }
            _ => unreachable!(),
        }
    }

    /// A system robot whose rights cover only `projects` (pull and push), which exist first on a real
    /// Harbor.
    pub fn limited_robot(&self, projects: &[String]) -> (String, String) {
        match (&self.real, &self.emulator) {
            (Some(real), _) => {
                let namespace = self.namespace.as_deref().unwrap();
                real.create_robot(&format!("{namespace}-limited"), projects, false)
            }
            (None, Some(emulator)) => {
                emulator.state.lock().unwrap().limited_robot_projects.extend(projects.iter().cloned());
                (super::harbor::LIMITED_ROBOT.into(), super::harbor::LIMITED_ROBOT_PASSWORD.into())
            }
            _ => unreachable!(),
        }
    }

    /// On a real Harbor, creates `project` (a robot's rights can only name existing projects); on the
    /// emulator, nothing: the sync creates it.
    pub fn ensure_project_for_robot(&self, project: &str) {
        if let Some(real) = &self.real {
            real.create_project(project);
        }
    }

    /// Answers Harbor gave through the proxy to `/v2/` requests, by "METHOD path STATUS".
    pub fn answers(&self) -> std::collections::BTreeMap<String, u64> {
        self.proxy.state.lock().unwrap().answers.clone().unwrap_or_default()
    }

    /// Makes a project of the test (its name under the test's namespace on a real Harbor); returns it.
    pub fn add_project(&self, name: &str) -> String {
        match (&self.real, &self.emulator) {
            (Some(real), _) => {
                let project = format!("{}-{name}", self.namespace.as_deref().unwrap());
                real.create_project(&project);
                self.extra_projects.lock().unwrap().push(project.clone());
                project
            }
            (None, Some(emulator)) => {
                emulator.add_project(name);
                name.to_string()
            }
            _ => unreachable!(),
        }
    }

    /// The projects that hold the test's repositories.
    pub fn projects(&self) -> BTreeSet<String> {
        match (&self.real, &self.emulator) {
            (Some(real), _) => {
                let namespace = self.namespace.as_deref().unwrap();
                real.project_exists(namespace).then(|| namespace.to_string()).into_iter().collect()
            }
            (None, Some(emulator)) => emulator.state.lock().unwrap().projects.iter().cloned().collect(),
            _ => unreachable!(),
        }
    }

    /// Every tag Harbor lists for the test, as (repository, tag, digest).
    pub fn tags(&self) -> BTreeSet<(String, String, String)> {
        match (&self.real, &self.emulator) {
            (Some(real), _) => {
                let extra = self.extra_projects.lock().unwrap().clone();
                let mut projects = vec![self.namespace.clone().unwrap()];
                projects.extend(extra);
                projects.iter().flat_map(|project| real.tags(project)).collect()
            }
            (None, Some(emulator)) => {
                let state = emulator.state.lock().unwrap();
                state.tags.iter().map(|((r, t), d)| (r.clone(), t.clone(), d.clone())).collect()
            }
            _ => unreachable!(),
        }
    }

    /// `expected` (source repository, tag, digest) as the target names them.
    pub fn mapped(&self, expected: &BTreeSet<(String, String, String)>) -> BTreeSet<(String, String, String)> {
        expected.iter().map(|(r, t, d)| (self.target_repository(r), t.clone(), d.clone())).collect()
    }

    /// Requests that reached Harbor's `/v2/` through the proxy, by "METHOD kind" as the emulator counts
    /// them (kinds: manifest, upload, blob).
    pub fn count(&self, kind: &str) -> u64 {
        let (method, kind) = kind.split_once(' ').expect("METHOD kind");
        let state = self.proxy.state.lock().unwrap();
        let paths = state.paths.as_ref().expect("counted");
        paths
            .iter()
            .filter(|(request, _)| {
                let (m, path) = request.split_once(' ').unwrap_or_default();
                m == method && v2_kind(path) == kind
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// Switches Harbor's read-only mode (a real Harbor's `read_only` configuration, a whole-instance
    /// setting: a test that uses it holds `exclusive()`).
    pub fn set_read_only(&self, on: bool) {
        match (&self.real, &self.emulator) {
            (Some(real), _) => {
                let body = serde_json::json!({"read_only": on});
                let response = real.call(reqwest::Method::PUT, "configurations", Some(&body));
                assert!(response.status().is_success(), "read-only {on}: {}", response.status());
            }
            (None, Some(emulator)) => emulator.state.lock().unwrap().read_only = on,
            _ => unreachable!(),
        }
    }

    /// Manifest PUTs Harbor accepted (201), by path: how many times each manifest was pushed.
    pub fn manifests_accepted(&self) -> std::collections::BTreeMap<String, u64> {
        self.answers()
            .into_iter()
            .filter_map(|(answer, n)| {
                let path = answer.strip_prefix("PUT ")?.strip_suffix(" 201")?;
                (v2_kind(path) == "manifest").then(|| (path.to_string(), n))
            })
            .collect()
    }

    /// Requests that reached Harbor through the proxy on a path ending with `suffix`.
    pub fn requests_ending(&self, suffix: &str) -> u64 {
        let state = self.proxy.state.lock().unwrap();
        let paths = state.paths.as_ref().expect("counted");
        paths.iter().filter(|(request, _)| request.ends_with(suffix)).map(|(_, n)| n).sum()
    }

    /// Tags deleted through Harbor's tag API (answered 200), as (repository, tag), each with the number
    /// of deletions.
    pub fn tags_deleted(&self) -> std::collections::BTreeMap<(String, String), u64> {
        let mut deleted = std::collections::BTreeMap::new();
        for (answer, n) in self.answers() {
            let Some(path) = answer.strip_prefix("DELETE /api/v2.0/projects/").and_then(|a| a.strip_suffix(" 200"))
            else {
                continue;
            };
            // {project}/repositories/{name, "/" as %252F}/artifacts/{digest}/tags/{tag}
            let parts: Vec<&str> = path.split('/').collect();
            if let [project, "repositories", name, "artifacts", _, "tags", tag] = parts[..] {
                let repository = format!("{project}/{}", name.replace("%252F", "/"));
                *deleted.entry((repository, tag.to_string())).or_default() += n;
            }
        }
        deleted
    }

    /// Every request that reached Harbor through the proxy.
    pub fn requests(&self) -> u64 {
        self.proxy.state.lock().unwrap().requests
    }

    /// Answers with `status` to writes (PUT, POST, PATCH, DELETE) under `/v2/`.
    pub fn refused_writes(&self, status: u16) -> u64 {
        let suffix = format!(" {status}");
        self.answers()
            .iter()
            .filter(|(answer, _)| {
                answer.ends_with(&suffix)
                    && ["PUT ", "POST ", "PATCH ", "DELETE "].iter().any(|m| answer.starts_with(m))
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// The storage root Harbor's registry writes: the emulator's, or on a real Harbor the one
    /// `REHYDRATE_TEST_HARBOR_STORAGE` names (a path or a bucket URL; `None` when not given).
    pub fn storage(&self) -> Option<String> {
        match &self.real {
            Some(_) => std::env::var("REHYDRATE_TEST_HARBOR_STORAGE").ok().filter(|s| !s.is_empty()),
            None => Some(self.emulator_storage.to_str().unwrap().to_string()),
        }
    }

    /// Every artifact Harbor holds for the test (tagged or not, index children and accessories too), as
    /// (repository, digest).
    pub fn artifacts(&self) -> BTreeSet<(String, String)> {
        match (&self.real, &self.emulator) {
            (Some(real), _) => {
                let mut projects = vec![self.namespace.clone().unwrap()];
                projects.extend(self.extra_projects.lock().unwrap().iter().cloned());
                projects.iter().flat_map(|project| real.artifacts(project)).collect()
            }
            (None, Some(emulator)) => emulator.state.lock().unwrap().artifacts.iter().cloned().collect(),
            _ => unreachable!(),
        }
    }

    /// Harbor loses its database: a fresh empty one, core restarted on it, the storage kept. On a real
    /// Harbor, by the command `REHYDRATE_TEST_HARBOR_RESET_DB` names (it returns once core answers);
    /// false when none is given. A whole-instance change: the test holds `exclusive()`.
    pub fn lose_database(&self) -> bool {
        match &self.emulator {
            Some(emulator) => {
                let mut state = emulator.state.lock().unwrap();
                state.projects.clear();
                state.blobs.clear();
                state.artifacts.clear();
                state.tags.clear();
                state.project_blobs.clear();
                state.quota_used.clear();
                state.session_bytes.clear();
                true
            }
            None => run_hook("REHYDRATE_TEST_HARBOR_RESET_DB", "losing Harbor's database"),
        }
    }

    /// Harbor's core restarts (killed, started again): on a real Harbor by the command
    /// `REHYDRATE_TEST_HARBOR_RESTART_CORE` names; on the emulator, 3 s in which every request is
    /// answered 503, as the proxy in front of a restarting core answers. False when no command is given.
    pub fn restart_core(&self) -> bool {
        self.restart("REHYDRATE_TEST_HARBOR_RESTART_CORE", "restarting Harbor's core")
    }

    /// Harbor's PostgreSQL restarts: `REHYDRATE_TEST_HARBOR_RESTART_DB` on a real Harbor; on the
    /// emulator, 3 s of 503s (what core answers while its database is away).
    pub fn restart_database(&self) -> bool {
        self.restart("REHYDRATE_TEST_HARBOR_RESTART_DB", "restarting Harbor's database")
    }

    fn restart(&self, hook: &str, what: &str) -> bool {
        match &self.real {
            Some(_) => run_hook(hook, what),
            None => {
                let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
                self.proxy.state.lock().unwrap().outage_until = Some(until);
                true
            }
        }
    }

    /// The host (and port) a registry client such as skopeo reaches the Harbor at.
    pub fn host(&self) -> &str {
        self.url.trim_start_matches("http://").trim_start_matches("https://")
    }
}

/// Tests of one binary run at once; a test that changes the whole Harbor (read-only mode) holds this
/// exclusively, every other test shares it (`shared()`), so that none runs into the other's setting.
static WHOLE_HARBOR: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    WHOLE_HARBOR.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    WHOLE_HARBOR.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for TestHarbor {
    fn drop(&mut self) {
        if let (Some(real), Some(namespace)) = (&self.real, &self.namespace) {
            real.delete_project(namespace);
            for project in self.extra_projects.lock().unwrap().iter() {
                real.delete_project(project);
            }
            real.delete_robots();
        }
    }
}

/// Runs the shell command the environment variable `hook` names (the harness's way to act on a real
/// Harbor's processes); false, with a line saying what is left out, when none is given.
fn run_hook(hook: &str, what: &str) -> bool {
    let Some(command) = std::env::var(hook).ok().filter(|c| !c.is_empty()) else {
        eprintln!("against a real Harbor, left out: {what} (set {hook} to a command that does it)");
        return false;
    };
    let status = std::process::Command::new("sh").arg("-c").arg(&command).status().unwrap();
    assert!(status.success(), "{hook} ({command}) failed: {status}");
    true
}

fn counting_proxy(upstream: &str) -> FaultProxy {
    let proxy = FaultProxy::start(upstream, "/", 0, vec![]);
    let mut state = proxy.state.lock().unwrap();
    state.paths = Some(Default::default());
    state.answers = Some(Default::default());
    drop(state);
    proxy
}

/// A repository name as Harbor's REST API takes it in a path: encoded twice (`a/b` is `a%252Fb`).
fn api_repository(name: &str) -> String {
    name.replace('/', "%252F")
}

impl RealHarbor {
    /// A call of the REST API as the administrator (`path` below `/api/v2.0/`).
    fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> reqwest::blocking::Response {
        let request = self.api.request(method, format!("{}/api/v2.0/{path}", self.url));
        let request = request.basic_auth(&self.username, Some(&self.password));
        match body {
            Some(body) => request.json(body),
            None => request,
        }
        .send()
        .unwrap()
    }

    fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.call(reqwest::Method::GET, path, None)
    }

    /// Every page of a list answer (none for a missing resource).
    fn list(&self, path: &str) -> Vec<Value> {
        self.try_list(path).unwrap_or_else(|status| panic!("GET {path}: {status}"))
    }

    /// Every page of a list answer, or the status that refused it.
    fn try_list(&self, path: &str) -> Result<Vec<Value>, reqwest::StatusCode> {
        let mut all = Vec::new();
        for page in 1.. {
            let separator = if path.contains('?') { '&' } else { '?' };
            let response = self.get(&format!("{path}{separator}page={page}&page_size=100"));
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(all);
            }
            if !response.status().is_success() {
                return Err(response.status());
            }
            let items: Vec<Value> = response.json().unwrap();
            let done = items.len() < 100;
            all.extend(items);
            if done {
                break;
            }
        }
        Ok(all)
    }

    pub fn project_exists(&self, project: &str) -> bool {
        self.get(&format!("projects/{project}")).status().is_success()
    }

    /// (repository, tag, digest) of every tagged artifact in `project`.
    pub fn tags(&self, project: &str) -> BTreeSet<(String, String, String)> {
        let mut tags = BTreeSet::new();
        for repository in self.list(&format!("projects/{project}/repositories")) {
            let name = repository["name"].as_str().unwrap().to_string();
            let within = name.strip_prefix(&format!("{project}/")).unwrap();
            let artifacts = self
                .list(&format!("projects/{project}/repositories/{}/artifacts?with_tag=true", api_repository(within)));
            for artifact in artifacts {
                let digest = artifact["digest"].as_str().unwrap().to_string();
                for tag in artifact["tags"].as_array().into_iter().flatten() {
                    tags.insert((name.clone(), tag["name"].as_str().unwrap().to_string(), digest.clone()));
                }
            }
        }
        tags
    }

    /// (repository, digest) of every artifact in `project`, tagged or not.
    pub fn artifacts(&self, project: &str) -> BTreeSet<(String, String)> {
        let mut artifacts = BTreeSet::new();
        for repository in self.try_list(&format!("projects/{project}/repositories")).unwrap_or_default() {
            let name = repository["name"].as_str().unwrap().to_string();
            let within = name.strip_prefix(&format!("{project}/")).unwrap();
            // Harbor lists top-level artifacts; an index's children are its `references`, a signature
            // or an SBOM its `accessories`.
            let path =
                format!("projects/{project}/repositories/{}/artifacts?with_accessory=true", api_repository(within));
            for artifact in self.list(&path) {
                artifacts.insert((name.clone(), artifact["digest"].as_str().unwrap().to_string()));
                for child in artifact["references"].as_array().into_iter().flatten() {
                    artifacts.insert((name.clone(), child["child_digest"].as_str().unwrap().to_string()));
                }
                for accessory in artifact["accessories"].as_array().into_iter().flatten() {
                    artifacts.insert((name.clone(), accessory["digest"].as_str().unwrap().to_string()));
                }
            }
        }
        artifacts
    }

    pub fn create_project(&self, project: &str) {
        let body = serde_json::json!({"project_name": project, "metadata": {"public": "false"}});
        let response = self.call(reqwest::Method::POST, "projects", Some(&body));
        assert!(matches!(response.status().as_u16(), 201 | 409), "creating project {project}: {}", response.status());
    }

    /// Removes a project and everything in it (Harbor deletes only empty projects). Quietly: it also
    /// runs while a failed test unwinds.
    pub fn delete_project(&self, project: &str) {
        for repository in self.try_list(&format!("projects/{project}/repositories")).unwrap_or_default() {
            let name = repository["name"].as_str().unwrap();
            let within = name.strip_prefix(&format!("{project}/")).unwrap();
            let path = format!("projects/{project}/repositories/{}", api_repository(within));
            self.call(reqwest::Method::DELETE, &path, None);
        }
        self.call(reqwest::Method::DELETE, &format!("projects/{project}"), None);
    }

    /// A system robot with pull and push on `projects` (every project when empty), and project creation
    /// when `creates` says so, for as long as the test runs.
    fn create_robot(&self, name: &str, projects: &[String], creates: bool) -> (String, String) {
        // Reading the project (its proxy-cache and quota settings, before any push) and its artifacts
        // (where a pull-side policy blocks the registry API) through the REST API.
        let access = serde_json::json!([
            {"resource": "repository", "action": "pull"}, {"resource": "repository", "action": "push"},
            {"resource": "artifact", "action": "read"}, {"resource": "project", "action": "read"},
        ]);
        let namespaces: Vec<&str> =
            if projects.is_empty() { vec!["*"] } else { projects.iter().map(String::as_str).collect() };
        let mut permissions: Vec<Value> = namespaces
            .iter()
            .map(|namespace| serde_json::json!({"kind": "project", "namespace": namespace, "access": access}))
            .collect();
        if creates {
            let create = serde_json::json!([{"resource": "project", "action": "create"}]);
            permissions.push(serde_json::json!({"kind": "system", "namespace": "/", "access": create}));
        }
        let body = serde_json::json!({
            "name": name, "duration": -1, "level": "system", "disable": false, "permissions": permissions,
        });
        let response = self.call(reqwest::Method::POST, "robots", Some(&body));
        assert_eq!(response.status().as_u16(), 201, "creating robot {name}: {}", response.text().unwrap_or_default());
        let created: Value = response.json().unwrap();
        self.robots.lock().unwrap().push(created["id"].as_i64().unwrap());
        (created["name"].as_str().unwrap().to_string(), created["secret"].as_str().unwrap().to_string())
    }

    fn project_id(&self, project: &str) -> i64 {
        let info: Value = self.get(&format!("projects/{project}")).json().unwrap();
        info["project_id"].as_i64().unwrap_or_else(|| panic!("project {project}: {info}"))
    }

    fn set_quota(&self, project: &str, bytes: u64) {
        self.set_quota_value(project, serde_json::json!(bytes));
    }

    /// Sets a project's storage quota to `hard` (bytes, or -1 for none), creating the project first.
    fn set_quota_value(&self, project: &str, hard: Value) {
        self.create_project(project);
        let id = self.project_id(project);
        let quotas: Vec<Value> = self.get(&format!("quotas?reference=project&reference_id={id}")).json().unwrap();
        let quota = quotas[0]["id"].as_i64().unwrap();
        let body = serde_json::json!({"hard": {"storage": hard}});
        let response = self.call(reqwest::Method::PUT, &format!("quotas/{quota}"), Some(&body));
        assert!(response.status().is_success(), "quota of {project}: {}", response.text().unwrap_or_default());
    }

    fn add_immutable_rule(&self, project: &str, pattern: &str) {
        self.create_project(project);
        let selector = |decoration: &str, pattern: &str| serde_json::json!([{"kind": "doublestar", "decoration": decoration, "pattern": pattern}]);
        let body = serde_json::json!({
            "disabled": false, "action": "immutable", "template": "immutable_template",
            "tag_selectors": selector("matches", pattern),
            "scope_selectors": {"repository": selector("repoMatches", "**")},
        });
        let path = format!("projects/{project}/immutabletagrules");
        let response = self.call(reqwest::Method::POST, &path, Some(&body));
        assert!(response.status().is_success(), "immutable rule: {}", response.text().unwrap_or_default());
    }

    fn set_metadata(&self, project: &str, key: &str, value: &str) {
        self.create_project(project);
        let body = serde_json::json!({"metadata": {key: value}});
        let response = self.call(reqwest::Method::PUT, &format!("projects/{project}"), Some(&body));
        assert!(response.status().is_success(), "metadata of {project}: {}", response.text().unwrap_or_default());
    }

    /// A proxy-cache project, of a registry endpoint made for it.
    fn create_proxy_cache_project(&self, project: &str, upstream: &str) {
        let endpoint = serde_json::json!({
            "name": project, "type": "docker-registry", "url": upstream, "insecure": true,
        });
        let response = self.call(reqwest::Method::POST, "registries", Some(&endpoint));
        assert_eq!(response.status().as_u16(), 201, "endpoint: {}", response.text().unwrap_or_default());
        let registries: Vec<Value> = self.get(&format!("registries?name={project}")).json().unwrap();
        let id = registries[0]["id"].as_i64().unwrap();
        self.registries.lock().unwrap().push(id);
        let body = serde_json::json!({"project_name": project, "registry_id": id, "metadata": {"public": "false"}});
        let response = self.call(reqwest::Method::POST, "projects", Some(&body));
        assert_eq!(response.status().as_u16(), 201, "proxy cache: {}", response.text().unwrap_or_default());
    }

    fn delete_robots(&self) {
        for id in self.robots.lock().unwrap().drain(..) {
            self.call(reqwest::Method::DELETE, &format!("robots/{id}"), None);
        }
        for id in self.registries.lock().unwrap().drain(..) {
            self.call(reqwest::Method::DELETE, &format!("registries/{id}"), None);
        }
    }
}
