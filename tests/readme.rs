//! The README's first screen cannot rot: its migration commands run, as written, against moto (the
//! bucket `old-registry`) and the Harbor emulator (standing in for `https://harbor.example.com`, the one
//! substitution), with the bucket's credentials in an AWS profile as the README's settings give them.
//! Its two first commands and its links name files that exist.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use support::harbor::HarborEmulator;
use support::servers::{Moto, S3_ACCESS_KEY, S3_SECRET_KEY};

const README: &str = "README.md";
const TESTED_BLOCK_MARK: &str = "<!-- tests/readme.rs runs this block";
const HARBOR_IN_README: &str = "https://harbor.example.com";

/// The commands of the fenced block after the mark, as they are written.
fn tested_block(readme: &str) -> Vec<String> {
    let after_mark = &readme[readme.find(TESTED_BLOCK_MARK).expect("the README marks its tested block")..];
    let block = after_mark.split("```").nth(1).expect("a fenced block after the mark");
    block.lines().skip(1).filter(|line| !line.trim().is_empty()).map(str::to_string).collect()
}

/// A folder holding a shared credentials file with the README's profile, for moto.
fn aws_home(profile: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        format!("[{profile}]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n"),
    )
    .unwrap();
    home
}

/// The value the README's settings block exports for `variable`.
fn exported(readme: &str, variable: &str) -> String {
    let line = readme.lines().find(|l| l.starts_with(&format!("export {variable}="))).expect(variable);
    let value = line.split_once('=').unwrap().1.split_whitespace().next().unwrap();
    value.trim_matches('\'').trim_matches('"').to_string()
}

#[test]
fn the_migration_on_the_first_screen_runs_as_written() {
    let readme = std::fs::read_to_string(README).unwrap();
    let commands = tested_block(&readme);
    let verbs: Vec<&str> = commands.iter().filter_map(|c| c.split_whitespace().nth(1)).collect();
    assert_eq!(verbs, ["plan", "sync", "verify"], "{commands:?}");
    let first_screen: String = readme.lines().take(70).collect::<Vec<_>>().join("\n");
    assert!(first_screen.contains(TESTED_BLOCK_MARK), "the migration is on the first screen");

    let source = tempfile::tempdir().unwrap();
    let spec = rehydrate::synth::SynthSpec { repositories: 4, ..Default::default() };
    let truth = rehydrate::synth::generate(source.path(), &spec, 1).unwrap();
    let moto = Moto::start();
    moto.create_bucket("old-registry");
    moto.put_tree("old-registry", source.path());
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = HarborEmulator::start(harbor_dir.path());
    let profile = exported(&readme, "AWS_PROFILE");
    let home = aws_home(&profile);
    let state = tempfile::tempdir().unwrap();
    let binaries = Path::new(env!("CARGO_BIN_EXE_rehydrate")).parent().unwrap().to_path_buf();

    for command in &commands {
        let local = command.replace(HARBOR_IN_README, &format!("{} --plain-http", harbor.url));
        let output = Command::new("bash")
            .args(["-euc", &local])
            .env_clear()
            .env("PATH", format!("{}:{}", binaries.display(), std::env::var("PATH").unwrap()))
            .env("HOME", home.path())
            .env("XDG_STATE_HOME", state.path())
            .env("AWS_PROFILE", &profile)
            .env("AWS_REGION", exported(&readme, "AWS_REGION"))
            .env("AWS_ENDPOINT_URL", &moto.url)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(harbor.env_admin())
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{command}\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let expected: BTreeSet<(String, String, String)> =
        truth.into_iter().map(|t| (t.repository, t.tag, t.digest)).collect();
    let in_harbor: BTreeSet<(String, String, String)> = harbor
        .state
        .lock()
        .unwrap()
        .tags
        .iter()
        .map(|((repository, tag), digest)| (repository.clone(), tag.clone(), digest.clone()))
        .collect();
    assert_eq!(in_harbor, expected, "every tag of the bucket is in Harbor");
}

#[test]
fn the_first_commands_and_every_link_name_files_that_exist() {
    let readme = std::fs::read_to_string(README).unwrap();
    assert!(readme.lines().take(10).any(|l| l.starts_with("scripts/demo.sh")));
    assert!(readme.lines().take(10).any(|l| l.starts_with("scripts/test.sh")));
    for script in ["scripts/demo.sh", "scripts/test.sh"] {
        assert!(Path::new(script).is_file(), "{script}");
    }
    let links: Vec<&str> = readme.split("](").skip(1).filter_map(|rest| rest.split(')').next()).collect();
    assert!(links.len() >= 8, "{links:?}");
    for link in links {
        assert!(Path::new(link.trim_end_matches('/')).exists(), "the README links {link}, which is not there");
    }
    let docs_named: BTreeSet<&str> =
        readme.split("docs/").skip(1).filter_map(|rest| rest.split(".md").next()).collect();
    for doc in std::fs::read_dir("docs").unwrap() {
        let name = doc.unwrap().file_name().into_string().unwrap();
        let stem = name.trim_end_matches(".md");
        assert!(docs_named.contains(stem), "docs/{name} is linked from the README");
    }
}
