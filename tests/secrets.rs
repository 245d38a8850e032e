//! Secrets never leave the environment they came from: not on the command line, not in any output
//! (debug request logs included: secret headers are redacted), not in the journal, and not to another
//! host after a redirect.

mod support;

use std::sync::{Arc, Mutex};

use support::fault_proxy::{full, serve};
use support::harbor_target::TestHarbor;
use support::servers::{Moto, S3_SECRET_KEY};
use support::*;

#[test]
fn passwords_and_keys_appear_in_no_output_and_no_journal() {
    let source_dir = tempfile::tempdir().unwrap();
    rehydrate::synth::generate(
        source_dir.path(),
        &rehydrate::synth::SynthSpec { repositories: 4, ..Default::default() },
        1,
    )
    .unwrap();
    let root = source_dir.path().to_str().unwrap();
    let harbor_dir = tempfile::tempdir().unwrap();
    // Not "secrets": the project name would hold the S3 secret key's text ("rehydrate-test-secret").
    let harbor = TestHarbor::start(harbor_dir.path(), "no_leaks");
    let (admin, password) = harbor.admin();
    let journal_dir = tempfile::tempdir().unwrap();
    let journal = journal_dir.path().join("journal.redb");
    let with_mapping = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["sync", root, &harbor.url, "--plain-http"].map(String::from).to_vec();
        args.extend(harbor.mapping_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: Vec<String>, env: &[(&str, String)]| {
        rehydrate_with_env(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
    };
    let args = with_mapping(&["--verbose", "--journal", journal.to_str().unwrap()]);
    assert!(!args.iter().any(|a| a.contains(&password)), "the password is not an argument");

    let output = run(args, &harbor.env_admin());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut everything = output.stdout.clone();
    everything.extend(&output.stderr);
    everything.extend(std::fs::read(&journal).unwrap());
    // Failures print more: a project name Harbor refuses, and a wrong password (under another user
    // name: Harbor refuses a name for a moment after a failed login).
    let refused = run(
        vec![
            "sync".into(),
            root.into(),
            harbor.url.clone(),
            "--plain-http".into(),
            "--dest-namespace".into(),
            "Bad--Name".into(),
        ],
        &harbor.env_admin(),
    );
    everything.extend(refused.stderr);
    let wrong = [
        ("REHYDRATE_TARGET_USERNAME", "rehydrate-nobody".to_string()),
        ("REHYDRATE_TARGET_PASSWORD", format!("{password}-typo")),
    ];
    everything.extend(run(with_mapping(&[]), &wrong).stderr);

    // The storage side: an S3 secret key, with every request logged.
    let moto = Moto::start();
    moto.create_bucket("registry");
    moto.put_tree("registry", source_dir.path());
    let scan = rehydrate_with_env(&["scan", "s3://registry", "--verbose", "--log-format", "json"], &moto.env());
    assert!(scan.status.success(), "{}", String::from_utf8_lossy(&scan.stderr));
    everything.extend(&scan.stderr);

    let text = String::from_utf8_lossy(&everything);
    assert!(text.contains("authorization: <redacted>"), "debug logs show request headers, redacted");
    assert!(text.contains("\"level\":\"debug\""), "the JSON run logged its requests");
    assert!(!text.contains(S3_SECRET_KEY), "the S3 secret key leaked");
    assert!(!text.contains("Signature="), "no SigV4 signature is printed");
    assert!(!text.contains(&password), "the password leaked: {text}");
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{admin}:{password}"));
    assert!(!text.contains(&basic), "basic credentials leaked");
    assert!(!text.contains("eyJ"), "no token (JWT) is printed");
}

/// A registry that redirects manifest requests to another host: the credentials it was given go to
/// the registry, never to the host it redirects to.
#[test]
fn credentials_are_not_sent_to_another_host_after_a_redirect() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let elsewhere_seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let registry_seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let (registry_listener, elsewhere_listener) = runtime.block_on(async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
    });
    // "localhost" is another host name than the registry's 127.0.0.1, as a CDN would be.
    let elsewhere = format!("http://localhost:{}", elsewhere_listener.local_addr().unwrap().port());
    let registry = format!("http://{}", registry_listener.local_addr().unwrap());
    let seen = elsewhere_seen.clone();
    runtime.spawn(serve(elsewhere_listener, move |request: hyper::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(request.headers().get("authorization").map(|v| v.to_str().unwrap().to_string()));
            Ok(full(hyper::StatusCode::NOT_FOUND, "application/json", "{}"))
        }
    }));
    let seen = registry_seen.clone();
    runtime.spawn(serve(registry_listener, move |request: hyper::Request<hyper::body::Incoming>| {
        let (seen, elsewhere) = (seen.clone(), elsewhere.clone());
        async move {
            let authorization = request.headers().get("authorization").map(|v| v.to_str().unwrap().to_string());
            seen.lock().unwrap().push(authorization.clone());
            let path = request.uri().path().to_string();
            let mut response = if authorization.is_none() && path.starts_with("/v2/") {
                let mut response = full(hyper::StatusCode::UNAUTHORIZED, "application/json", "{}");
                response.headers_mut().insert("www-authenticate", "Basic realm=\"registry\"".parse().unwrap());
                response
            } else if path.contains("/manifests/") {
                let mut response = full(hyper::StatusCode::TEMPORARY_REDIRECT, "text/plain", "");
                response.headers_mut().insert("location", format!("{elsewhere}{path}").parse().unwrap());
                response
            } else if path.starts_with("/v2/") {
                full(hyper::StatusCode::OK, "application/json", "{}")
            } else {
                full(hyper::StatusCode::NOT_FOUND, "application/json", "{}")
            };
            response.headers_mut().insert("docker-distribution-api-version", "registry/2.0".parse().unwrap());
            Ok(response)
        }
    }));

    let source_dir = tempfile::tempdir().unwrap();
    rehydrate::synth::generate(
        source_dir.path(),
        &rehydrate::synth::SynthSpec { repositories: 2, tags_per_repository: 1, ..Default::default() },
        1,
    )
    .unwrap();
    let env = [
        ("REHYDRATE_TARGET_USERNAME", "someone".to_string()),
        ("REHYDRATE_TARGET_PASSWORD", "redirect-secret".to_string()),
    ];
    let output = rehydrate_with_env(&["verify", source_dir.path().to_str().unwrap(), &registry, "--plain-http"], &env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("redirect-secret"), "{stderr}");

    let registry_seen = registry_seen.lock().unwrap();
    assert!(
        registry_seen.iter().any(|a| a.as_deref().is_some_and(|a| a.starts_with("Basic "))),
        "the registry got the credentials: {registry_seen:?}"
    );
    let elsewhere_seen = elsewhere_seen.lock().unwrap();
    assert!(!elsewhere_seen.is_empty(), "the redirects were followed: {stderr}");
    assert!(elsewhere_seen.iter().all(Option::is_none), "credentials went to the other host: {elsewhere_seen:?}");
}
