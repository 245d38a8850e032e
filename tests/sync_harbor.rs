//! `rehydrate sync` into Harbor: the real registry with token auth behind the Harbor emulator
//! (`support::harbor`, Harbor's control plane written from its spec and `../shared/docs/harbor.md`).

mod support;

use std::collections::BTreeSet;

use support::harbor::*;
use support::harbor_target::TestHarbor;
use support::images::*;
use support::*;

fn run(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    rehydrate_with_env(args, env)
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn sync_creates_projects_pushes_through_tokens_and_verifies() {
    let fixture = written_fixture();
    let expected = fixture.registry.inventory();
    let root = fixture.root();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(harbor_dir.path(), "sync");
    let admin = harbor.env_admin();
    let command = |verb: &str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [verb, root, &harbor.url, "--plain-http"].iter().map(|s| s.to_string()).collect();
        args.extend(harbor.mapping_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run_as =
        |args: Vec<String>, env: &[(&str, String)]| run(&args.iter().map(String::as_str).collect::<Vec<_>>(), env);

    let output = run_as(command("sync", &[]), &admin);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("target is Harbor v2."), "{stderr}");
    assert!(stderr.contains(&format!("{FIXTURE_TAGS} pushed, 0 already there, 0 failed")), "{stderr}");
    let wanted: BTreeSet<String> = ["library", "team-a", "multi", "nest", "my_org", "x0", "sort"]
        .iter()
        .map(|project| harbor.target_project(project))
        .collect();
    assert_eq!(harbor.projects(), wanted, "one project per first name component, created before the first push");
    assert_eq!(harbor.tags(), harbor.mapped(&expected), "Harbor recorded every tag with its source digest");

    let verify = run_as(command("verify", &[]), &admin);
    assert!(verify.status.success(), "{}", stderr_of(&verify));

    // A re-run sends no blob and no manifest: from the journal (the last run finished, so this is a
    // catch-up) every tag is unchanged and skipped without a request; without it, each tag's HEAD finds
    // it there.
    let uploads_before = harbor.count("POST upload") + harbor.count("PUT upload");
    let heads_before = harbor.count("HEAD manifest");
    let again = run_as(command("sync", &[]), &admin);
    assert!(
        stderr_of(&again).contains(&format!("0 new, 0 moved, {FIXTURE_TAGS} unchanged (skipped without a request)")),
        "{}",
        stderr_of(&again)
    );
    assert_eq!(harbor.count("HEAD manifest"), heads_before, "no tag is even checked on the target");
    let again = run_as(command("sync", &["--no-journal"]), &admin);
    assert!(stderr_of(&again).contains(&format!("0 pushed, {FIXTURE_TAGS} already there")), "{}", stderr_of(&again));
    assert_eq!(harbor.count("POST upload") + harbor.count("PUT upload"), uploads_before);

    // A system robot account works as well.
    let (robot, secret) = harbor.system_robot();
    let robot = [("REHYDRATE_TARGET_USERNAME", robot), ("REHYDRATE_TARGET_PASSWORD", secret)];
    let verify = run_as(command("verify", &[]), &robot);
    assert!(verify.status.success(), "{}", stderr_of(&verify));

    // And a real client reads every tag back, checking every blob.
    let (user, password) = harbor.admin();
    skopeo_reads_back(harbor.host(), &harbor.mapped(&expected), Some(&format!("{user}:{password}")));
}

#[test]
fn wrong_credentials_are_reported_plainly_and_never_printed() {
    let source_dir = tempfile::tempdir().unwrap();
    rehydrate::synth::generate(
        source_dir.path(),
        &rehydrate::synth::SynthSpec { repositories: 3, ..Default::default() },
        1,
    )
    .unwrap();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(harbor_dir.path(), "wrong-credentials");
    let secret = "this-password-is-wrong-123";
    // Not the administrator's name: after a failed login Harbor refuses that name for 1.5 s, even with
    // the right password, and the other tests run at the same time.
    let user = "rehydrate-nobody";
    let env = [("REHYDRATE_TARGET_USERNAME", user.to_string()), ("REHYDRATE_TARGET_PASSWORD", secret.to_string())];
    let mut args = vec!["sync", source_dir.path().to_str().unwrap(), &harbor.url, "--plain-http"];
    let mapping = harbor.mapping_args();
    args.extend(mapping.iter().map(String::as_str));
    let output = run(&args, &env);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(stderr.contains(&format!("Harbor refused the credentials of \"{user}\"")), "{stderr}");
    assert!(!stderr.contains(secret) && !String::from_utf8_lossy(&output.stdout).contains(secret));
    assert!(harbor.projects().is_empty(), "nothing was created");
}

#[test]
fn tokens_are_what_the_registry_checks() {
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(harbor_dir.path(), "tokens");
    let project = harbor.add_project("proj");
    let (admin, password) = harbor.admin();
    let client = reqwest::blocking::Client::new();
    let token = |credentials: Option<(&str, &str)>, scope: &str| -> String {
        let mut request = client.get(format!("{}/service/token?service={SERVICE}&scope={scope}", harbor.url));
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        let body: serde_json::Value = request.send().unwrap().json().unwrap();
        body["token"].as_str().unwrap().to_string()
    };
    let push = |token: &str, repository: &str| {
        client
            .post(format!("{}/v2/{repository}/blobs/uploads/", harbor.url))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let (app, other) = (format!("{project}/app"), format!("{project}/other"));
    let scope = format!("repository:{app}:pull,push");
    // The registry accepts the token for an existing project, and Harbor keys its rights by project:
    // the same token pushes to another repository of that project.
    let admin_token = token(Some((&admin, &password)), &scope);
    assert_eq!(push(&admin_token, &app), 202);
    assert_eq!(push(&admin_token, &other), 202, "a token serves its whole project");
    // It refuses an anonymous token, and a wrong password gets an anonymous token, as in Harbor. (Not
    // the administrator's password: Harbor then refuses that name for 1.5 s, to the other tests too.)
    let stranger = "rehydrate-nobody";
    assert_eq!(push(&token(None, &scope), &app), 401);
    assert_eq!(push(&token(Some((stranger, "wrong")), &scope), &app), 401);
    // A project that does not exist: no rights, and Harbor's message.
    let nowhere = format!("{project}-nowhere/app");
    let response = client
        .post(format!("{}/v2/{nowhere}/blobs/uploads/", harbor.url))
        .bearer_auth(token(Some((&admin, &password)), &format!("repository:{nowhere}:pull,push")))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let text = response.text().unwrap();
    assert!(text.contains(&format!("project {project}-nowhere not found")), "{text}");
    // Without a scope, a wrong password is a 401 from the token service itself.
    let status = client
        .get(format!("{}/service/token?service={SERVICE}", harbor.url))
        .basic_auth(stranger, Some("wrong"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
}

#[test]
fn credentials_come_from_the_docker_config_or_a_password_file() {
    let source_dir = tempfile::tempdir().unwrap();
    rehydrate::synth::generate(
        source_dir.path(),
        &rehydrate::synth::SynthSpec { repositories: 3, ..Default::default() },
        1,
    )
    .unwrap();
    let root = source_dir.path().to_str().unwrap();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(harbor_dir.path(), "credentials");
    let mapping = harbor.mapping_args();
    let with_mapping = |args: &[&'static str]| -> Vec<String> {
        let mut all: Vec<String> = vec![args[0].into(), root.into(), harbor.url.clone(), "--plain-http".into()];
        all.extend(mapping.iter().cloned());
        all.extend(args[1..].iter().map(|s| s.to_string()));
        all
    };
    let (admin, password) = harbor.admin();

    // `docker login` leaves base64(user:password) under the registry's host.
    let docker = tempfile::tempdir().unwrap();
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{admin}:{password}"));
    let config = serde_json::json!({"auths": {harbor.host(): {"auth": auth}}});
    std::fs::write(docker.path().join("config.json"), config.to_string()).unwrap();
    let args = with_mapping(&["sync"]);
    let output = run(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("DOCKER_CONFIG", docker.path().display().to_string())],
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("9 pushed"), "{}", stderr_of(&output));

    // A password file, with the user name from the flag.
    let (robot, secret) = harbor.system_robot();
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("password");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let mut args = with_mapping(&["verify"]);
    args.extend(["--username".to_string(), robot, "--password-file".to_string(), file.display().to_string()]);
    let output = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(output.status.success(), "{}", stderr_of(&output));
}

/// Writes `docker-credential-NAME` into `bin`: it answers `get` for `host` with `username`/`secret`, says
/// "credentials not found" for any other server, and appends each call (argument and server) to `calls`.
fn write_credential_helper(bin: &std::path::Path, name: &str, host: &str, username: &str, secret: &str) {
    let calls = bin.join(format!("{name}.calls"));
    let script = format!(
        "#!/bin/sh\nread -r server\necho \"$1 $server\" >> '{calls}'\n\
         if [ \"$1\" = get ] && [ \"$server\" = '{host}' ]; then\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}}' \"$server\" '{username}' '{secret}'\n\
         else echo 'credentials not found in native keychain'; exit 1; fi\n",
        calls = calls.display()
    );
    write_script(&bin.join(format!("docker-credential-{name}")), &script);
}

#[test]
fn docker_credential_helpers_are_asked_as_docker_asks_them() {
    let source_dir = tempfile::tempdir().unwrap();
    let spec = rehydrate::synth::SynthSpec { repositories: 2, ..Default::default() };
    rehydrate::synth::generate(source_dir.path(), &spec, 1).unwrap();
    let root = source_dir.path().to_str().unwrap();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(harbor_dir.path(), "helpers");
    let (admin, password) = harbor.admin();
    let bin = tempfile::tempdir().unwrap();
    write_credential_helper(bin.path(), "store", harbor.host(), &admin, &password);
    write_credential_helper(bin.path(), "other", "elsewhere.example.com", "nobody", "nothing");
    write_script(
        &bin.path().join("docker-credential-broken"),
        "#!/bin/sh\necho 'gpg: decryption failed: No secret key' >&2\nexit 1\n",
    );
    let docker = tempfile::tempdir().unwrap();
    let env = [
        ("DOCKER_CONFIG", docker.path().display().to_string()),
        ("PATH", format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap())),
    ];
    let mut sync: Vec<String> = vec!["sync".into(), root.into(), harbor.url.clone(), "--plain-http".into()];
    sync.extend(harbor.mapping_args());
    sync.push("--verbose".into());
    let sync: Vec<&str> = sync.iter().map(String::as_str).collect();
    let with_config = |config: serde_json::Value| {
        std::fs::write(docker.path().join("config.json"), config.to_string()).unwrap();
        run(&sync, &env)
    };

    // credsStore (Docker Desktop, pass, secretservice): the helper's answer signs in.
    let output = with_config(serde_json::json!({"credsStore": "store"}));
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("6 pushed"), "{}", stderr_of(&output));
    assert!(!stderr_of(&output).contains(&password), "the helper's secret never reaches a log");
    let calls = std::fs::read_to_string(bin.path().join("store.calls")).unwrap();
    assert!(calls.lines().all(|call| call == format!("get {}", harbor.host())), "{calls}");

    // A host's credHelpers entry comes before credsStore (which would fail if asked).
    let output = with_config(serde_json::json!({"credsStore": "broken", "credHelpers": {harbor.host(): "store"}}));
    assert!(output.status.success(), "{}", stderr_of(&output));

    // A helper with nothing for the host: the `auths` entry, as Docker falls back to it.
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{admin}:{password}"));
    let output = with_config(serde_json::json!({"credsStore": "other", "auths": {harbor.host(): {"auth": auth}}}));
    assert!(output.status.success(), "{}", stderr_of(&output));

    // A failing helper, and one that is not installed: one error naming the helper, and no run.
    for (helper, words) in [("broken", "gpg: decryption failed"), ("desktop", "is not on PATH")] {
        let output = with_config(serde_json::json!({"credsStore": helper}));
        assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
        let stderr = stderr_of(&output);
        assert!(stderr.contains(&format!("docker-credential-{helper}")) && stderr.contains(words), "{stderr}");
        assert!(stderr.contains(harbor.host()), "{stderr}");
    }
}
