//! `rehydrate sync` into Harbor: the real registry with token auth behind the Harbor emulator
//! (`support::harbor`, Harbor's control plane written from its spec and `../shared/docs/harbor.md`).

mod support;

use std::collections::BTreeSet;

use support::harbor::*;
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
    let harbor = HarborEmulator::start(harbor_dir.path());
    let admin = harbor.env_admin();

    let output = run(&["sync", root, &harbor.url, "--plain-http"], &admin);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("target is Harbor v2.15.2-emulator"), "{stderr}");
    assert!(stderr.contains(&format!("{FIXTURE_TAGS} pushed, 0 already there, 0 failed")), "{stderr}");
    let projects: BTreeSet<String> = harbor.state.lock().unwrap().projects.iter().cloned().collect();
    let wanted: BTreeSet<String> =
        ["library", "team-a", "multi", "nest", "my_org", "x0", "sort"].iter().map(|s| s.to_string()).collect();
    assert_eq!(projects, wanted, "one project per first name component, created before the first push");
    let tags: BTreeSet<(String, String, String)> =
        harbor.state.lock().unwrap().tags.iter().map(|((r, t), d)| (r.clone(), t.clone(), d.clone())).collect();
    assert_eq!(tags, expected, "Harbor recorded every tag with its source digest");

    let verify = run(&["verify", root, &harbor.url, "--plain-http"], &admin);
    assert!(verify.status.success(), "{}", stderr_of(&verify));

    // A re-run sends no blob and no manifest: from the journal (the last run finished, so this is a
    // catch-up) every tag is unchanged and skipped without a request; without it, each tag's HEAD finds
    // it there.
    let uploads_before = harbor.count("POST upload") + harbor.count("PUT upload");
    let heads_before = harbor.count("HEAD manifest");
    let again = run(&["sync", root, &harbor.url, "--plain-http"], &admin);
    assert!(
        stderr_of(&again).contains(&format!("0 new, 0 moved, {FIXTURE_TAGS} unchanged (skipped without a request)")),
        "{}",
        stderr_of(&again)
    );
    assert_eq!(harbor.count("HEAD manifest"), heads_before, "no tag is even checked on the target");
    let again = run(&["sync", root, &harbor.url, "--plain-http", "--no-journal"], &admin);
    assert!(stderr_of(&again).contains(&format!("0 pushed, {FIXTURE_TAGS} already there")), "{}", stderr_of(&again));
    assert_eq!(harbor.count("POST upload") + harbor.count("PUT upload"), uploads_before);

    // A system robot account works as well.
    let robot =
        [("REHYDRATE_TARGET_USERNAME", ROBOT.to_string()), ("REHYDRATE_TARGET_PASSWORD", ROBOT_PASSWORD.to_string())];
    let verify = run(&["verify", root, &harbor.url, "--plain-http"], &robot);
    assert!(verify.status.success(), "{}", stderr_of(&verify));

    // And a real client reads every tag back, checking every blob.
    let host = harbor.url.trim_start_matches("http://");
    skopeo_reads_back(host, &expected, Some(&format!("{ADMIN}:{ADMIN_PASSWORD}")));
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
    let harbor = HarborEmulator::start(harbor_dir.path());
    let secret = "this-password-is-wrong-123";
    let env = [("REHYDRATE_TARGET_USERNAME", ADMIN.to_string()), ("REHYDRATE_TARGET_PASSWORD", secret.to_string())];
    let output = run(&["sync", source_dir.path().to_str().unwrap(), &harbor.url, "--plain-http"], &env);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("Harbor refused the credentials of \"admin\""), "{stderr}");
    assert!(!stderr.contains(secret) && !String::from_utf8_lossy(&output.stdout).contains(secret));
    assert!(harbor.state.lock().unwrap().projects.is_empty());
}

#[test]
fn tokens_are_what_the_registry_checks() {
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = HarborEmulator::start(harbor_dir.path());
    harbor.add_project("proj");
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
    // The real registry accepts the emulator's RS256 token for an existing project...
    assert_eq!(push(&token(Some((ADMIN, ADMIN_PASSWORD)), "repository:proj/app:pull,push"), "proj/app"), 202);
    // ...refuses an anonymous one, and a wrong password gets an anonymous token, as in Harbor.
    assert_eq!(push(&token(None, "repository:proj/app:pull,push"), "proj/app"), 401);
    assert_eq!(push(&token(Some((ADMIN, "wrong")), "repository:proj/app:pull,push"), "proj/app"), 401);
    // A project that does not exist: no rights, and Harbor's message.
    let response = client
        .post(format!("{}/v2/nowhere/app/blobs/uploads/", harbor.url))
        .bearer_auth(token(Some((ADMIN, ADMIN_PASSWORD)), "repository:nowhere/app:pull,push"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.text().unwrap().contains("project nowhere not found"));
    // Without a scope, a wrong password is a 401 from the token service itself.
    let status = client
        .get(format!("{}/service/token?service={SERVICE}", harbor.url))
        .basic_auth(ADMIN, Some("wrong"))
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
    let harbor = HarborEmulator::start(harbor_dir.path());
    let host = harbor.url.trim_start_matches("http://");

    // `docker login` leaves base64(user:password) under the registry's host.
    let docker = tempfile::tempdir().unwrap();
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{ADMIN}:{ADMIN_PASSWORD}"));
    std::fs::write(docker.path().join("config.json"), serde_json::json!({"auths": {host: {"auth": auth}}}).to_string())
        .unwrap();
    let output =
        run(&["sync", root, &harbor.url, "--plain-http"], &[("DOCKER_CONFIG", docker.path().display().to_string())]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("9 pushed"), "{}", stderr_of(&output));

    // A password file, with the user name from the flag.
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("password");
    std::fs::write(&file, format!("{ROBOT_PASSWORD}\n")).unwrap();
    let output = run(
        &["verify", root, &harbor.url, "--plain-http", "--username", ROBOT, "--password-file", file.to_str().unwrap()],
        &[],
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
}
