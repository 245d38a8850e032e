//! Memory and time on images like the ones real registries hold (run by hand): layers of hundreds of MiB
//! and a single layer of GiBs, where memory must not grow with the blobs.
//!
//! Two cases, each a storage tree on disk (written once, kept in `target/bench-data/memory`):
//!   - `layers`: 16 tags, each an image of 4 distinct layers of 100 MiB (6.25 GiB of blobs);
//!   - `huge`: one tag whose image has a single 2 GiB layer.
//!
//! For each case, each copy into its own empty registry (distribution v3.0.0 built with the current Go,
//! `common::use_current_registry`, plain HTTP):
//!   (a) skopeo (Debian), 8 copies at once, from a registry serving the tree;
//!   (b) `rehydrate sync` from the tree on disk, default flags;
//!   (c) `rehydrate sync` from the same tree as an S3 bucket (s3s-fs, a real S3 server over a folder:
//!       `cargo install s3s-fs@0.14.1 --features binary`, found at `REHYDRATE_BENCH_S3S_FS` or on the
//!       PATH; the row is left out otherwise), default flags; beside it (a') skopeo, 8 at once, from a
//!       registry on that same bucket (its S3 driver), so that the S3 rows compare copies that wait on
//!       the same store.
//!
//! Each row: time, peak resident memory of the copying process (rehydrate's `VmHWM`; skopeo's is not
//! summed over its processes), and the time against skopeo. Every target is checked to hold every tag.
//!
//! `cargo bench --bench memory` (sizes: `REHYDRATE_BENCH_MEMORY_LAYER_MIB`, default 100;
//! `REHYDRATE_BENCH_MEMORY_HUGE_MIB`, default 2048; `REHYDRATE_BENCH_MEMORY_CASES`, default
//! `layers,huge`).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rehydrate::layout::{self, Digest};
use rehydrate::synth::TruthRecord;
use sha2::Digest as _;
use support::Registry;

const PARALLEL: usize = 8;
const MIB: u64 = 1 << 20;

/// Writes `size` bytes of noise drawn from `seed` as a blob of the tree at `root`, streamed (never whole
/// in memory); returns its digest.
fn write_noise_blob(root: &Path, seed: u64, size: u64) -> Digest {
    let temporary = root.join(format!("incoming-{seed}"));
    let mut file = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&temporary).unwrap());
    let mut hasher = sha2::Sha256::new();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut piece = vec![0u8; 8 << 20];
    let mut left = size;
    while left > 0 {
        for word in piece.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let take = left.min(piece.len() as u64) as usize;
        hasher.update(&piece[..take]);
        file.write_all(&piece[..take]).unwrap();
        left -= take as u64;
    }
    file.flush().unwrap();
    let digest = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize()))).unwrap();
    let path = root.join(layout::blob_data_key(&digest));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::rename(&temporary, path).unwrap();
    digest
}

fn write_file(root: &Path, key: &str, bytes: &[u8]) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn write_small_blob(root: &Path, bytes: &[u8]) -> Digest {
    let digest = Digest::sha256_of(bytes);
    write_file(root, &layout::blob_data_key(&digest), bytes);
    digest
}

/// Writes an OCI image of layers of `layer_bytes` bytes each (seeded), tagged `repository:tag`, as the
/// registry's filesystem driver lays it out; returns its truth record.
fn write_image(root: &Path, repository: &str, tag: &str, seed: u64, layer_bytes: &[u64]) -> TruthRecord {
    let layers: Vec<(Digest, u64)> = layer_bytes
        .iter()
        .enumerate()
        .map(|(l, &size)| (write_noise_blob(root, seed * 1000 + l as u64, size), size))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_digest = write_small_blob(root, &config);
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": config.len()},
        "layers": layers.iter().map(|(d, size)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.as_str(), "size": size,
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let digest = write_small_blob(root, &manifest);
    let link = |key: String, digest: &Digest| write_file(root, &key, digest.as_str().as_bytes());
    for blob in layers.iter().map(|(d, _)| d).chain([&config_digest]) {
        link(layout::layer_link_key(repository, blob), blob);
    }
    link(layout::revision_link_key(repository, &digest), &digest);
    link(layout::tag_current_link_key(repository, tag), &digest);
    let index = format!(
        "{}{repository}/_manifests/tags/{tag}/index/sha256/{}/link",
        layout::repositories_prefix(),
        digest.hex()
    );
    link(index, &digest);
    TruthRecord { repository: repository.to_string(), tag: tag.to_string(), digest: digest.to_string() }
}

/// One case's tree, written once: (name, root, truth, blob bytes).
struct Case {
    name: &'static str,
    root: PathBuf,
    truth: Vec<TruthRecord>,
    bytes: u64,
}

fn case(name: &'static str, images: &[(String, Vec<u64>)]) -> Case {
    let root = common::bench_dir().join("memory").join(name);
    let marker = root.join("truth.json");
    let bytes = images.iter().flat_map(|(_, layers)| layers).sum();
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let truth: Vec<(String, String, String)> = serde_json::from_str(&text).unwrap();
        let truth =
            truth.into_iter().map(|(repository, tag, digest)| TruthRecord { repository, tag, digest }).collect();
        return Case { name, root, truth, bytes };
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    eprintln!("writing the {name} tree ({:.2} GiB) under {} ...", bytes as f64 / (1u64 << 30) as f64, root.display());
    let truth: Vec<TruthRecord> = std::thread::scope(|scope| {
        let workers: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, (repository, layers))| {
                let root = &root;
                scope.spawn(move || write_image(root, repository, "v1", i as u64 + 1, layers))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let kept: Vec<(&str, &str, &str)> =
        truth.iter().map(|t| (t.repository.as_str(), t.tag.as_str(), t.digest.as_str())).collect();
    std::fs::write(&marker, serde_json::to_string(&kept).unwrap()).unwrap();
    Case { name, root, truth, bytes }
}

/// One measured copy.
struct Row {
    name: String,
    wall: Duration,
    peak_mib: Option<f64>,
    /// CPU time of the receiving registry: with one large blob it, not the copier, sets the pace.
    receiver_cpu: Duration,
    /// The row (skopeo from the same kind of source) this one is measured against.
    against: usize,
}

fn assert_complete(target: &Registry, truth: &[TruthRecord], tool: &str) {
    for record in truth {
        let found = target.head_manifest(&record.repository, &record.tag);
        assert_eq!(found.as_deref(), Some(record.digest.as_str()), "{tool}: {}:{}", record.repository, record.tag);
    }
}

fn rehydrate_sync(source: &str, target: &Registry, env: &[(&str, String)]) -> (Duration, f64) {
    let run = common::run_measured(&mut support::rehydrate_command(
        &["sync", source, &target.url, "--plain-http", "--no-journal"],
        env,
    ));
    assert!(run.status.success(), "{}", run.stderr);
    eprintln!("{}", run.stderr.lines().find(|l| l.starts_with("sync finished")).unwrap_or_default());
    (run.wall, run.peak_kib as f64 / 1024.0)
}

/// s3s-fs, if built: serves each folder of `root` as a bucket.
struct S3sFs {
    child: std::process::Child,
    url: String,
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs(root: &Path) -> Option<S3sFs> {
    store_etags(root);
    let binary = std::env::var_os("REHYDRATE_BENCH_S3S_FS").map(PathBuf::from).unwrap_or_else(|| "s3s-fs".into());
    let port = support::free_port();
    let child = Command::new(&binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "AK", "--secret-key", "SK"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("http://127.0.0.1:{port}");
    let server = S3sFs { child, url };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Writes, for every object of every bucket under `root`, the ETag that s3s-fs keeps beside an object it
/// was sent (`.bucket-B.object-K.internal.json`, `{"e_tag": MD5}`), as any S3 server keeps it from the
/// upload. The trees here are written to disk, not through s3s-fs, and without it s3s-fs computes the MD5
/// of the whole object again on every GET and HEAD, even for a range of it: for a 2 GiB blob read as
/// ranges, the whole blob hashed per range. Skipped for an object whose ETag file is newer.
fn store_etags(root: &Path) {
    use base64::Engine;
    use md5::Digest;
    let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    for bucket in std::fs::read_dir(root).unwrap().flatten().filter(|e| e.path().is_dir()) {
        let bucket_name = bucket.file_name().to_string_lossy().to_string();
        for path in support::servers::walk_files(&bucket.path()) {
            let key = path.strip_prefix(bucket.path()).unwrap().to_string_lossy().to_string();
            let etag_file =
                root.join(format!(".bucket-{}.object-{}.internal.json", encode(&bucket_name), encode(&key)));
            if modified(&etag_file) >= modified(&path) {
                continue;
            }
            let mut md5 = md5::Md5::new();
            std::io::copy(&mut std::fs::File::open(&path).unwrap(), &mut md5).unwrap();
            let etag = hex::encode(md5.finalize());
            std::fs::write(&etag_file, serde_json::json!({ "e_tag": etag }).to_string()).unwrap();
        }
    }
}

/// skopeo copying every tag of `case` from `source` into the empty `target`, 8 at once, checked whole.
fn skopeo_row(name: &str, source: &Registry, target: Registry, case: &Case, against: usize) -> Row {
    let started = Instant::now();
    common::skopeo_copy_all(
        source.url.trim_start_matches("http://"),
        target.url.trim_start_matches("http://"),
        &case.truth,
        PARALLEL,
    );
    let wall = started.elapsed();
    let receiver_cpu = common::cpu_time(target.pid());
    assert_complete(&target, &case.truth, name);
    Row { name: name.into(), wall, peak_mib: None, receiver_cpu, against }
}

fn measure(case: &Case, work: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    let target_root = work.join("target");
    let fresh_target = || {
        let _ = std::fs::remove_dir_all(&target_root);
        std::fs::create_dir_all(&target_root).unwrap();
        Registry::start(&target_root)
    };

    let source = Registry::start(&case.root);
    rows.push(skopeo_row("(a) skopeo, 8 at once", &source, fresh_target(), case, 0));
    drop(source);

    let target = fresh_target();
    let (wall, peak) = rehydrate_sync(case.root.to_str().unwrap(), &target, &[]);
    assert_complete(&target, &case.truth, "rehydrate from disk");
    let receiver_cpu = common::cpu_time(target.pid());
    rows.push(Row {
        name: "(b) rehydrate sync from disk".into(),
        wall,
        peak_mib: Some(peak),
        receiver_cpu,
        against: 0,
    });
    drop(target);

    match s3s_fs(case.root.parent().unwrap()) {
        Some(s3) => {
            // skopeo from a registry on the same bucket (its S3 driver): the same store's pace for both.
            let source = Registry::start_on_s3_with(&s3.url, case.name, "us-east-1", ("AK", "SK"));
            let against = rows.len();
            let name = "(a') skopeo, 8 at once, from a registry on the same S3 bucket";
            rows.push(skopeo_row(name, &source, fresh_target(), case, against));
            drop(source);

            let target = fresh_target();
            let env = [
                ("AWS_ACCESS_KEY_ID", "AK".to_string()),
                ("AWS_SECRET_ACCESS_KEY", "SK".to_string()),
                ("AWS_REGION", "us-east-1".to_string()),
                ("AWS_ENDPOINT_URL", s3.url.clone()),
            ];
            let (wall, peak) = rehydrate_sync(&format!("s3://{}", case.name), &target, &env);
            assert_complete(&target, &case.truth, "rehydrate from S3");
            let receiver_cpu = common::cpu_time(target.pid());
            let name = "(c) rehydrate sync from S3 (s3s-fs)".into();
            rows.push(Row { name, wall, peak_mib: Some(peak), receiver_cpu, against });
        }
        None => eprintln!("s3s-fs not found (REHYDRATE_BENCH_S3S_FS): the S3 row is left out"),
    }
    let _ = std::fs::remove_dir_all(&target_root);
    rows
}

fn print_table(case: &Case, rows: &[Row]) {
    let gib = case.bytes as f64 / (1u64 << 30) as f64;
    println!("\n{}: {} tags, {gib:.2} GiB of layers\n", case.name, case.truth.len());
    println!("| copy | time | throughput | peak memory | receiving registry's CPU | against skopeo (8 at once), same source |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {:.1} s | {:.0} MiB/s | {} | {:.1} s | {:.2}x |",
            row.name,
            row.wall.as_secs_f64(),
            case.bytes as f64 / MIB as f64 / row.wall.as_secs_f64(),
            row.peak_mib.map(|mib| format!("{mib:.1} MiB")).unwrap_or_else(|| "-".into()),
            row.receiver_cpu.as_secs_f64(),
            rows[row.against].wall.as_secs_f64() / row.wall.as_secs_f64()
        );
    }
}

fn main() {
    common::use_current_registry();
    let layer = common::sizes_from_env("REHYDRATE_BENCH_MEMORY_LAYER_MIB", "100")[0] as u64 * MIB;
    let huge = common::sizes_from_env("REHYDRATE_BENCH_MEMORY_HUGE_MIB", "2048")[0] as u64 * MIB;
    let cases = std::env::var("REHYDRATE_BENCH_MEMORY_CASES").unwrap_or_else(|_| "layers,huge".into());
    let work = common::bench_dir().join("memory-work");
    for name in cases.split(',') {
        let case = match name {
            "layers" => case("layers", &(0..16).map(|i| (format!("big/app-{i}"), vec![layer; 4])).collect::<Vec<_>>()),
            "huge" => case("huge", &[("big/huge".to_string(), vec![huge])]),
            other => panic!("unknown case {other}: layers or huge"),
        };
        let rows = measure(&case, &work);
        print_table(&case, &rows);
    }
    let _ = std::fs::remove_dir_all(&work);
}
