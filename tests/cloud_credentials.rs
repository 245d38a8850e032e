//! Storage credentials found as each cloud's own tools find them: an AWS profile in the shared files, a
//! profile's `credential_process`, Google's application-default credentials file, the Azure CLI's login;
//! and, when nothing is found, one line saying what was looked for. A recording proxy in front of each
//! real server shows which credential signed the requests.

mod support;

use std::path::Path;

use support::fault_proxy::FaultProxy;
use support::servers::{Azurite, FakeGcs, Moto};
use support::*;

const PROFILE_KEY_ID: &str = "AKIAPROFILEEXAMPLE01";
const PROCESS_KEY_ID: &str = "AKIAPROCESSEXAMPLE02";
const REPOSITORIES: usize = 3;

/// A small registry tree in a temporary folder.
fn registry_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spec = rehydrate::synth::SynthSpec { repositories: REPOSITORIES, ..Default::default() };
    rehydrate::synth::generate(dir.path(), &spec, 1).unwrap();
    dir
}

/// A proxy in front of `upstream` that keeps every request's `Authorization` header.
fn recording_proxy(upstream: &str) -> FaultProxy {
    let proxy = FaultProxy::start(upstream, "/", 0, vec![]);
    proxy.state.lock().unwrap().authorizations = Some(Vec::new());
    proxy
}

fn authorizations(proxy: &FaultProxy) -> Vec<Option<String>> {
    proxy.state.lock().unwrap().authorizations.clone().unwrap()
}

/// Scans `url` with only `env` set (and HOME, so that no file of the machine's user is read) and
/// checks that every repository was found.
fn scan_finds_every_repository(url: &str, args: &[&str], env: &[(&str, String)]) {
    let mut command = vec!["scan", url];
    command.extend(args);
    let output = rehydrate_with_env(&command, env);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let repositories: std::collections::BTreeSet<String> = inventory_lines(&output.stdout)
        .iter()
        .filter_map(|line| line.get("repository").and_then(|r| r.as_str()).map(str::to_string))
        .collect();
    assert_eq!(repositories.len(), REPOSITORIES, "{}", String::from_utf8_lossy(&output.stdout));
}

/// An S3 bucket in moto holding the tree, behind a recording proxy; the environment without any
/// credential, HOME set to `home`.
fn s3_behind_proxy(home: &Path) -> (Moto, FaultProxy, Vec<(&'static str, String)>, tempfile::TempDir) {
    let tree = registry_tree();
    let moto = Moto::start();
    moto.create_bucket("registry");
    moto.put_tree("registry", tree.path());
    let proxy = recording_proxy(&moto.url);
    let env = vec![
        ("AWS_ENDPOINT_URL", proxy.url.clone()),
        ("HOME", home.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    (moto, proxy, env, tree)
}

fn assert_every_request_signed_by(proxy: &FaultProxy, key_id: &str) {
    let seen = authorizations(proxy);
    assert!(!seen.is_empty());
    for authorization in seen {
        let authorization = authorization.expect("every request is signed");
        assert!(authorization.contains(&format!("Credential={key_id}/")), "{authorization}");
    }
}

#[test]
fn an_aws_profile_in_the_shared_files_signs_the_requests() {
    let home = tempfile::tempdir().unwrap();
    let (_moto, proxy, mut env, _tree) = s3_behind_proxy(home.path());
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = AKIADEFAULTNOTUSED00\naws_secret_access_key = wrong\n\n\
             [migration]\naws_access_key_id = {PROFILE_KEY_ID}\naws_secret_access_key = profile-secret-value\n"
        ),
    )
    .unwrap();
    std::fs::write(aws.join("config"), "[profile migration]\nregion = eu-west-1\n").unwrap();
    env.push(("AWS_PROFILE", "migration".to_string()));

    scan_finds_every_repository("s3://registry", &[], &env);
    assert_every_request_signed_by(&proxy, PROFILE_KEY_ID);
    let signed = authorizations(&proxy)[0].clone().unwrap();
    assert!(signed.contains("/eu-west-1/s3/aws4_request"), "the profile's region signs: {signed}");
}

#[test]
fn a_profiles_credential_process_is_run() {
    let home = tempfile::tempdir().unwrap();
    let (_moto, proxy, mut env, _tree) = s3_behind_proxy(home.path());
    let helper = home.path().join("issue-credentials");
    write_script(
        &helper,
        &format!(
            "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"{PROCESS_KEY_ID}\", \
             \"SecretAccessKey\": \"process-secret-value\", \"SessionToken\": \"process-session\"}}'\n"
        ),
    );
    let config = home.path().join("aws-config");
    std::fs::write(&config, format!("[profile sso-like]\ncredential_process = {}\n", helper.display())).unwrap();
    env.push(("AWS_CONFIG_FILE", config.display().to_string()));
    env.push(("AWS_PROFILE", "sso-like".to_string()));

    scan_finds_every_repository("s3://registry", &[], &env);
    assert_every_request_signed_by(&proxy, PROCESS_KEY_ID);
}

#[test]
fn no_aws_credentials_give_one_line_saying_where_they_were_looked_for() {
    let home = tempfile::tempdir().unwrap();
    let (_moto, proxy, env, _tree) = s3_behind_proxy(home.path());
    let output = rehydrate_with_env(&["scan", "s3://registry"], &env);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no AWS credentials found"), "{stderr}");
    assert!(stderr.contains("AWS_PROFILE") && stderr.contains("--anonymous"), "{stderr}");
    assert!(!stderr.contains("169.254"), "no address the operator never configured: {stderr}");
    assert!(authorizations(&proxy).is_empty(), "nothing was sent unsigned");
    // A public bucket needs none.
    scan_finds_every_repository("s3://registry", &["--anonymous"], &env);
}

#[test]
fn googles_application_default_credentials_file_is_read() {
    let tree = registry_tree();
    let gcs = FakeGcs::start();
    gcs.create_bucket("registry");
    let client = reqwest::blocking::Client::new();
    for (key, bytes) in support::servers::tree_objects(tree.path()) {
        gcs.put(&client, "registry", &key, bytes);
    }
    let proxy = recording_proxy(&gcs.url);
    let home = tempfile::tempdir().unwrap();
    let gcloud = home.path().join(".config/gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let email = "migration@project.iam.gserviceaccount.com";
    let adc = serde_json::json!({
        "type": "service_account",
        "project_id": "project",
        "private_key_id": "key-1",
        "private_key": key.serialize_pem(),
        "client_email": email,
    });
    std::fs::write(gcloud.join("application_default_credentials.json"), adc.to_string()).unwrap();
    let env = [("HOME", home.path().display().to_string())];

    scan_finds_every_repository("gs://registry", &["--endpoint", &proxy.url], &env);
    for authorization in authorizations(&proxy) {
        let bearer = authorization.expect("every request carries the token").replace("Bearer ", "");
        let claims = bearer.split('.').nth(1).expect("a JWT");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iss"], email, "signed by the application-default service account");
    }

    // Without the file (and no metadata server here), one line says what was looked for.
    let empty = tempfile::tempdir().unwrap();
    let env = [("HOME", empty.path().display().to_string())];
    let output = rehydrate_with_env(&["scan", "gs://registry", "--endpoint", &proxy.url], &env);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no Google credentials found"), "{stderr}");
    assert!(stderr.contains("gcloud auth application-default login"), "{stderr}");
}

#[test]
fn the_azure_clis_login_is_used_when_nothing_else_is_set() {
    let tree = registry_tree();
    let azurite = Azurite::start();
    azurite.create_container("registry");
    let client = reqwest::blocking::Client::new();
    for (key, bytes) in support::servers::tree_objects(tree.path()) {
        azurite.put(&client, "registry", &key, bytes);
    }
    let account_path = format!("/{}", support::servers::AZURITE_ACCOUNT);
    let proxy = recording_proxy(azurite.url.trim_end_matches(&account_path));
    // An `az` on PATH that answers `az account get-access-token` as the real one does.
    let bin = tempfile::tempdir().unwrap();
    let az = bin.path().join("az");
    write_script(
        &az,
        "#!/bin/sh\ncase \"$*\" in *get-access-token*) ;; *) exit 2;; esac\n\
         expires=$(date -d '+1 hour' '+%Y-%m-%d %H:%M:%S.000000')\n\
         echo \"{\\\"accessToken\\\": \\\"az-cli-token\\\", \\\"expiresOn\\\": \\\"$expires\\\", \\\"tokenType\\\": \\\"Bearer\\\"}\"\n",
    );
    let home = tempfile::tempdir().unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap());
    let env = [
        ("PATH", path),
        ("HOME", home.path().display().to_string()),
        ("AZURE_STORAGE_ACCOUNT_NAME", support::servers::AZURITE_ACCOUNT.to_string()),
    ];
    let endpoint = format!("{}{account_path}", proxy.url);
    // Azurite takes bearer tokens over HTTPS only: what matters here is which credential was sent.
    let _ = rehydrate_with_env(&["scan", "az://registry", "--endpoint", &endpoint], &env);
    let seen = authorizations(&proxy);
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|a| a.as_deref() == Some("Bearer az-cli-token")), "{seen:?}");

    // Without `az` and without any credential: one line saying what was looked for.
    let env = [
        ("PATH", "/usr/bin:/bin".to_string()),
        ("HOME", home.path().display().to_string()),
        ("AZURE_STORAGE_ACCOUNT_NAME", support::servers::AZURITE_ACCOUNT.to_string()),
    ];
    let output = rehydrate_with_env(&["scan", "az://registry", "--endpoint", &endpoint], &env);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no Azure credentials found") && stderr.contains("az login"), "{stderr}");
}
