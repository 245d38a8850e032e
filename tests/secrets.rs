//! Secrets never leave the environment they came from: not on the command line, not in any output,
//! not in the journal.

mod support;

use support::harbor::*;
use support::*;

#[test]
fn passwords_and_keys_appear_in_no_output_and_no_journal() {
    let source_dir = tempfile::tempdir().unwrap();
    rehydrate::synth::generate(source_dir.path(), &rehydrate::synth::SynthSpec { repositories: 4, ..Default::default() }, 1).unwrap();
    let root = source_dir.path().to_str().unwrap();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = HarborEmulator::start(harbor_dir.path());
    let journal_dir = tempfile::tempdir().unwrap();
    let journal = journal_dir.path().join("journal.redb");
    let args = ["sync", root, &harbor.url, "--plain-http", "--journal", journal.to_str().unwrap()];
    assert!(!args.iter().any(|a| a.contains(ADMIN_PASSWORD)), "the password is not an argument");

    let output = rehydrate_with_env(&args, &harbor.env_admin());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut everything = output.stdout.clone();
    everything.extend(&output.stderr);
    everything.extend(std::fs::read(&journal).unwrap());
    // Failures print more: a project name Harbor refuses, and a wrong password.
    let refused = rehydrate_with_env(&["sync", root, &harbor.url, "--plain-http", "--dest-namespace", "Bad--Name"], &harbor.env_admin());
    everything.extend(refused.stderr);
    let wrong = [("REHYDRATE_TARGET_USERNAME", ADMIN.to_string()), ("REHYDRATE_TARGET_PASSWORD", format!("{ADMIN_PASSWORD}-typo"))];
    everything.extend(rehydrate_with_env(&["sync", root, &harbor.url, "--plain-http"], &wrong).stderr);

    let text = String::from_utf8_lossy(&everything);
    assert!(!text.contains(ADMIN_PASSWORD), "the password leaked: {text}");
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{ADMIN}:{ADMIN_PASSWORD}"));
    assert!(!text.contains(&basic), "basic credentials leaked");
    assert!(!text.contains("eyJ"), "no token (JWT) is printed");
}
