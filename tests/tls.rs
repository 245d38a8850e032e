//! The target's TLS is verified: a registry whose certificate comes from a private CA is refused with an
//! error that says how to trust it, and accepted with `--ca-cert`.

mod support;

use support::*;

#[test]
fn an_untrusted_certificate_is_refused_until_its_ca_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert_pem, key_pem) = test_ca(dir.path());

    let source_dir = tempfile::tempdir().unwrap();
    rehydrate::synth::generate(
        source_dir.path(),
        &rehydrate::synth::SynthSpec { repositories: 3, ..Default::default() },
        1,
    )
    .unwrap();
    let root = source_dir.path().to_str().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start_tls(target_dir.path(), &cert_pem, &key_pem);
    assert!(target.url.starts_with("https://"));

    let refused = rehydrate(&["sync", root, &target.url]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not trusted") && stderr.contains("--ca-cert"), "{stderr}");
    assert!(target.catalog().is_empty(), "nothing was pushed");

    let accepted = rehydrate(&["sync", root, &target.url, "--ca-cert", ca_pem.to_str().unwrap()]);
    assert!(accepted.status.success(), "{}", String::from_utf8_lossy(&accepted.stderr));
    assert_eq!(target.catalog().len(), 3);

    // Plain HTTP is refused unless asked for.
    let plain = rehydrate(&["sync", root, "http://127.0.0.1:1"]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("--plain-http"));
}
