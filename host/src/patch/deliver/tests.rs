//! Tests of delivery.
//!
//! The archives are made here, a few KiB each: a docker-archive with one
//! layer and an OCI layout, plus hostile variants. Live tests load them into
//! the real Docker Engine (`/var/run/docker.sock`) and Podman, under fresh
//! `copa-test/deliver-*` tags that they remove again, and one streams a real
//! BuildKit export straight into Docker. Without Docker or Podman those tests
//! fail: they never pass silently.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use futures_util::stream;
use sha2::{Digest, Sha256};

use super::*;

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

// ---- archives -------------------------------------------------------------

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn append_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, data).unwrap();
}

/// A docker-archive of a one-layer image (one file, `/hello.txt`) tagged
/// `tag`, as `docker save` writes it.
fn docker_archive(tag: &str) -> Vec<u8> {
    let mut layer = tar::Builder::new(Vec::new());
    append_file(&mut layer, "hello.txt", b"hello from copa\n");
    let layer = layer.into_inner().unwrap();
    let diff_id = sha256_hex(&layer);

    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/hello"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created_by": "copa deliver test" }],
    })
    .to_string();
    let config_name = format!("{}.json", sha256_hex(config.as_bytes()));
    let layer_name = format!("{diff_id}/layer.tar");
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [layer_name],
    }])
    .to_string();

    let mut archive = tar::Builder::new(Vec::new());
    append_file(&mut archive, &config_name, config.as_bytes());
    append_file(&mut archive, &layer_name, &layer);
    append_file(&mut archive, "manifest.json", manifest.as_bytes());
    archive.into_inner().unwrap()
}

/// An OCI layout archive; `extra` adds entries after the layout's own.
fn oci_archive(extra: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let blob = br#"{"schemaVersion":2}"#;
    let digest = sha256_hex(blob);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{digest}"),
            "size": blob.len(),
        }],
    })
    .to_string();

    let mut archive = tar::Builder::new(Vec::new());
    append_file(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    append_file(&mut archive, "index.json", index.as_bytes());
    append_file(&mut archive, &format!("blobs/sha256/{digest}"), blob);
    extra(&mut archive);
    archive.into_inner().unwrap()
}

/// Appends an entry whose name is written raw, bypassing the checks the tar
/// crate's builder makes (which refuse `..` and absolute paths).
fn append_raw(
    archive: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: Option<&str>,
    data: &[u8],
) {
    let mut header = tar::Header::new_old();
    let raw = header.as_old_mut();
    raw.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    archive.append(&header, data).unwrap();
}

/// `bytes` as a stream of `chunk`-byte pieces.
fn chunks(bytes: Vec<u8>, chunk: usize) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let pieces: Vec<_> = Bytes::from(bytes)
        .chunks(chunk)
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    stream::iter(pieces)
}

/// The first `keep` bytes of `bytes`, then the export's failure.
fn broken(bytes: Vec<u8>, keep: usize) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let head = Bytes::from(bytes).slice(..keep);
    let failure = io::Error::other("copa test: the daemon went away");
    stream::iter([Ok(head), Err(failure)])
}

fn fresh_tag(kind: &str) -> String {
    format!("copa-test/deliver-{kind}:{:08x}", rand::random::<u32>())
}

// ---- docker ---------------------------------------------------------------

fn docker_endpoint() -> String {
    assert!(
        Path::new(DOCKER_SOCKET).exists(),
        "no Docker Engine at {DOCKER_SOCKET}: run scripts/up.sh"
    );
    format!("unix://{DOCKER_SOCKET}")
}

/// `docker image inspect`'s answer for `image`, or `None` if there is none.
fn docker_image_id(image: &str) -> Option<String> {
    let output = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .expect("the docker CLI runs");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Removes `tag` when dropped, whatever the test did.
struct RemoveImage {
    cli: &'static str,
    tag: String,
}

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new(self.cli)
            .args(["image", "rm", "--force", &self.tag])
            .output();
    }
}

#[tokio::test]
async fn docker_loads_a_streamed_archive_under_its_tag() {
    let endpoint = docker_endpoint();
    let tag = fresh_tag("docker");
    let _cleanup = RemoveImage {
        cli: "docker",
        tag: tag.clone(),
    };

    let loaded = load_into_docker(&endpoint, chunks(docker_archive(&tag), 1000))
        .await
        .unwrap();

    assert_eq!(loaded, std::slice::from_ref(&tag));
    let id = docker_image_id(&tag).expect("the image is in docker");
    assert!(id.starts_with("sha256:"), "{id}");
}

#[tokio::test]
async fn docker_refuses_garbage_in_one_line_and_loads_nothing() {
    let endpoint = docker_endpoint();
    let garbage = b"this is not a tar archive at all\n".repeat(100);

    let err = load_into_docker(&endpoint, chunks(garbage, 512))
        .await
        .unwrap_err();

    let message = err.to_string();
    eprintln!("garbage: {message}");
    assert!(
        matches!(err, DeliveryError::DockerRefused { .. }),
        "{err:?}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains(DOCKER_SOCKET), "{message}");
}

#[tokio::test]
async fn docker_refuses_a_truncated_archive_and_tags_nothing() {
    let endpoint = docker_endpoint();
    let tag = fresh_tag("docker-cut");
    let _cleanup = RemoveImage {
        cli: "docker",
        tag: tag.clone(),
    };
    let mut archive = docker_archive(&tag);
    archive.truncate(archive.len() - 2048);

    let err = load_into_docker(&endpoint, chunks(archive, 700))
        .await
        .unwrap_err();

    eprintln!("truncated: {err}");
    assert!(!err.to_string().contains('\n'), "{err}");
    assert_eq!(docker_image_id(&tag), None);
}

#[tokio::test]
async fn a_broken_export_is_reported_as_such_and_docker_tags_nothing() {
    let endpoint = docker_endpoint();
    let tag = fresh_tag("docker-broken");
    let _cleanup = RemoveImage {
        cli: "docker",
        tag: tag.clone(),
    };
    let archive = docker_archive(&tag);
    let keep = archive.len() / 2;

    let err = load_into_docker(&endpoint, broken(archive, keep))
        .await
        .unwrap_err();

    assert!(matches!(err, DeliveryError::Export(_)), "{err:?}");
    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(text.contains("the daemon went away"), "{text}");
    assert_eq!(docker_image_id(&tag), None);
}

#[tokio::test]
async fn an_unreachable_docker_engine_names_its_socket() {
    let err = load_into_docker("unix:///nonexistent/docker.sock", chunks(Vec::new(), 1))
        .await
        .unwrap_err();

    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(
        text.starts_with("failed to reach the docker engine: "),
        "{text}"
    );
    assert!(text.contains("/nonexistent/docker.sock"), "{text}");
}

#[test]
fn docker_load_answers_give_the_loaded_names_or_the_error() {
    let loaded = br#"{"stream":"Loaded image: a/b:1\n"}{"stream":"Loaded image ID: sha256:ab\n"}"#;
    let failed = br#"{"errorDetail":{"message":"unexpected EOF\nmore"},"error":"unexpected EOF"}"#;

    assert_eq!(docker_load_reply(loaded).unwrap(), ["a/b:1", "sha256:ab"]);
    assert_eq!(
        docker_load_reply(failed).unwrap_err(),
        "unexpected EOF; more"
    );
    assert_eq!(
        docker_load_reply(b"").unwrap_err(),
        "it reported no loaded image"
    );
}

// ---- podman ---------------------------------------------------------------

fn podman_image_id(image: &str) -> Option<String> {
    let output = Command::new(PODMAN)
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .expect("podman runs: install it or run scripts/up.sh");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[tokio::test]
async fn podman_loads_a_streamed_archive_under_its_tag() {
    let tag = fresh_tag("podman");
    let _cleanup = RemoveImage {
        cli: PODMAN,
        tag: tag.clone(),
    };

    let loaded = load_into_podman(chunks(docker_archive(&tag), 1000))
        .await
        .unwrap();

    eprintln!("podman loaded {loaded:?}");
    assert!(
        loaded.iter().any(|name| name.ends_with(&tag)),
        "{loaded:?} should name {tag}"
    );
    assert!(podman_image_id(&tag).is_some(), "the image is in podman");
}

#[tokio::test]
async fn podman_refuses_garbage_in_one_line() {
    let garbage = b"this is not a tar archive at all\n".repeat(100);

    let err = load_into_podman(chunks(garbage, 512)).await.unwrap_err();

    let message = err.to_string();
    eprintln!("podman garbage: {message}");
    assert!(
        matches!(err, DeliveryError::PodmanRefused { .. }),
        "{err:?}"
    );
    assert!(!message.contains('\n'), "{message}");
}

#[tokio::test]
async fn a_broken_export_kills_podman_load_and_tags_nothing() {
    let tag = fresh_tag("podman-broken");
    let _cleanup = RemoveImage {
        cli: PODMAN,
        tag: tag.clone(),
    };
    let archive = docker_archive(&tag);
    let keep = archive.len() / 2;

    let err = load_into_podman(broken(archive, keep)).await.unwrap_err();

    assert!(matches!(err, DeliveryError::Export(_)), "{err:?}");
    assert_eq!(podman_image_id(&tag), None);
}

#[tokio::test]
async fn a_missing_podman_is_named() {
    let err = podman_load("copa-no-such-podman", chunks(Vec::new(), 1))
        .await
        .unwrap_err();

    assert_eq!(
        err.to_string(),
        "failed to start `copa-no-such-podman load`"
    );
}

#[test]
fn podman_output_gives_the_loaded_names_and_a_one_line_error() {
    assert_eq!(
        podman_loaded("Getting image source signatures\nLoaded image: localhost/a:1\n"),
        ["localhost/a:1"]
    );
    assert_eq!(podman_loaded("Loaded image(s): a:1,b:2\n"), ["a:1", "b:2"]);
    let stderr = "Error: payload does not match any of the supported image formats:\n \
                  * oci: bad\n * docker-archive: worse\n";
    assert_eq!(
        podman_error(stderr).unwrap(),
        "payload does not match any of the supported image formats: oci: bad; docker-archive: worse"
    );
    assert_eq!(
        podman_error("Error: no space left\n").unwrap(),
        "no space left"
    );
    assert_eq!(podman_error("warning\nlast words\n").unwrap(), "last words");
    assert_eq!(podman_error("").as_deref(), None);
}

// ---- OCI layout -----------------------------------------------------------

/// The names in `dir`, to check that nothing was left behind.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn an_oci_layout_is_unpacked_into_the_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("layout");
    let archive = oci_archive(|archive| {
        append_raw(
            archive,
            "latest",
            tar::EntryType::Symlink,
            Some("index.json"),
            b"",
        );
    });

    write_oci_layout(&dir, chunks(archive, 100)).await.unwrap();

    assert_eq!(listing(parent.path()), BTreeSet::from(["layout".into()]));
    assert_eq!(
        listing(&dir),
        BTreeSet::from([
            "blobs".into(),
            "index.json".into(),
            "latest".into(),
            "oci-layout".into()
        ])
    );
    let index = std::fs::read_to_string(dir.join("index.json")).unwrap();
    assert!(index.contains("schemaVersion"), "{index}");
}

#[tokio::test]
async fn an_empty_directory_is_replaced_and_a_full_one_refused() {
    let parent = tempfile::tempdir().unwrap();
    let empty = parent.path().join("empty");
    let full = parent.path().join("full");
    std::fs::create_dir(&empty).unwrap();
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();

    write_oci_layout(&empty, chunks(oci_archive(|_| {}), 4096))
        .await
        .unwrap();
    let err = write_oci_layout(&full, chunks(oci_archive(|_| {}), 4096))
        .await
        .unwrap_err();

    assert!(empty.join("oci-layout").is_file());
    assert!(
        matches!(err, DeliveryError::OciDirNotEmpty { .. }),
        "{err:?}"
    );
    assert_eq!(listing(&full), BTreeSet::from(["keep.txt".into()]));
    assert_eq!(
        listing(parent.path()),
        BTreeSet::from(["empty".into(), "full".into()])
    );
}

#[tokio::test]
async fn hostile_entries_are_refused_and_leave_nothing_behind() {
    type Hostile = (&'static str, tar::EntryType, Option<&'static str>);
    let cases: [Hostile; 6] = [
        ("../escaped.txt", tar::EntryType::Regular, None),
        ("blobs/../../escaped.txt", tar::EntryType::Regular, None),
        ("/tmp/copa-escaped.txt", tar::EntryType::Regular, None),
        ("blobs/out", tar::EntryType::Symlink, Some("../../outside")),
        ("abs", tar::EntryType::Symlink, Some("/etc/passwd")),
        ("dev", tar::EntryType::Char, None),
    ];

    for (name, kind, link) in cases {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("layout");
        let archive = oci_archive(|archive| append_raw(archive, name, kind, link, b"x"));

        let err = write_oci_layout(&dir, chunks(archive, 333))
            .await
            .unwrap_err();

        eprintln!("{name}: {err}");
        assert!(
            matches!(err, DeliveryError::OciUnsafeEntry { .. }),
            "{name}: {err:?}"
        );
        assert!(listing(parent.path()).is_empty(), "{name}: left behind");
        assert!(!Path::new("/tmp/copa-escaped.txt").exists());
    }
}

#[tokio::test]
async fn a_truncated_or_empty_archive_leaves_nothing_behind() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("layout");
    let mut cut = oci_archive(|_| {});
    cut.truncate(700);

    let truncated = write_oci_layout(&dir, chunks(cut, 100)).await.unwrap_err();
    let empty = write_oci_layout(&dir, chunks(Vec::new(), 1))
        .await
        .unwrap_err();
    let garbage = write_oci_layout(&dir, chunks(vec![b'x'; 4096], 1000))
        .await
        .unwrap_err();

    eprintln!("truncated: {truncated:?}\nempty: {empty}\ngarbage: {garbage:?}");
    assert!(
        matches!(truncated, DeliveryError::OciRead { .. }),
        "{truncated:?}"
    );
    assert!(
        matches!(
            empty,
            DeliveryError::NotOciLayout {
                missing: "oci-layout",
                ..
            }
        ),
        "{empty:?}"
    );
    assert!(
        matches!(garbage, DeliveryError::OciRead { .. }),
        "{garbage:?}"
    );
    assert!(listing(parent.path()).is_empty());
}

#[tokio::test]
async fn a_broken_export_is_reported_as_such_and_leaves_no_layout() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("layout");
    let archive = oci_archive(|_| {});
    let keep = archive.len() / 2;

    let err = write_oci_layout(&dir, broken(archive, keep))
        .await
        .unwrap_err();

    assert!(matches!(err, DeliveryError::Export(_)), "{err:?}");
    assert!(listing(parent.path()).is_empty());
}

#[tokio::test]
async fn a_cancelled_write_leaves_nothing_behind() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("layout");
    let mut archive = oci_archive(|_| {});
    archive.truncate(1024);
    // Some bytes, then an export that never ends.
    let image = chunks(archive, 512).chain(stream::pending());

    let write = write_oci_layout(&dir, image);
    let outcome = tokio::time::timeout(Duration::from_millis(200), write).await;

    assert!(outcome.is_err(), "the write cannot finish");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !listing(parent.path()).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind: {:?}",
            listing(parent.path())
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn links_may_point_anywhere_inside_the_layout_only() {
    let symlink = |path: &str, target: &str| check_link(Path::new(path), Path::new(target), true);
    let hardlink = |path: &str, target: &str| check_link(Path::new(path), Path::new(target), false);

    assert!(symlink("latest", "index.json").is_ok());
    assert!(symlink("blobs/sha256/a", "../../index.json").is_ok());
    assert!(symlink("blobs/sha256/a", "../../../etc").is_err());
    assert!(symlink("a", "/etc/passwd").is_err());
    assert!(hardlink("a", "blobs/sha256/b").is_ok());
    assert!(hardlink("blobs/a", "../b").is_err());
}

// ---- BuildKit to Docker ---------------------------------------------------

use crate::buildkit::filesend::{TarballExporter, TarballFormat};
use crate::buildkit::gateway::GatewayBuild;
use crate::buildkit::session::SessionServices;
use crate::buildkit::tests::{RssPeak, connect, return_test_image, rss_bytes};

async fn a_buildkit_export_streams_into_docker(var: &str) {
    let endpoint = docker_endpoint();
    let tag = fresh_tag("buildkit");
    let _cleanup = RemoveImage {
        cli: "docker",
        tag: tag.clone(),
    };
    let client = connect(var).await;
    let exporter = TarballExporter::new(TarballFormat::Docker).name(&tag);
    let (mut build, tarball) =
        GatewayBuild::start_export(&client, SessionServices::default(), &exporter);

    let started = std::time::Instant::now();
    let baseline = rss_bytes();
    let rss = RssPeak::start();
    let load = tokio::spawn(async move { load_into_docker(&endpoint, tarball).await });
    return_test_image(&mut build).await;
    build.finish().await.unwrap();
    let loaded = load.await.unwrap().unwrap();
    let growth = rss.peak().saturating_sub(baseline);

    eprintln!(
        "{var}: buildkit to docker took {:?}, rss +{} MiB, loaded {loaded:?}",
        started.elapsed(),
        growth >> 20
    );
    assert!(loaded.iter().any(|name| name == &tag), "{loaded:?}");
    assert!(docker_image_id(&tag).is_some());
    assert!(
        growth < 25 << 20,
        "the delivery grew the process by {growth} bytes"
    );
}

#[tokio::test]
async fn a_buildkit_v0_12_export_streams_into_docker() {
    a_buildkit_export_streams_into_docker("COPA_TEST_UNIX_V12").await;
}

#[tokio::test]
async fn a_current_buildkit_export_streams_into_docker() {
    a_buildkit_export_streams_into_docker("COPA_TEST_UNIX_NEW").await;
}

async fn a_buildkit_oci_export_unpacks_into_a_layout(var: &str) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("layout");
    let client = connect(var).await;
    let exporter = TarballExporter::new(TarballFormat::Oci).name("copa.test/oci:1");
    let (mut build, tarball) =
        GatewayBuild::start_export(&client, SessionServices::default(), &exporter);

    let target = dir.clone();
    let write = tokio::spawn(async move { write_oci_layout(&target, tarball).await });
    return_test_image(&mut build).await;
    build.finish().await.unwrap();
    write.await.unwrap().unwrap();

    assert_eq!(listing(parent.path()), BTreeSet::from(["layout".into()]));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    assert!(blob.is_file(), "{index}");
}

#[tokio::test]
async fn a_buildkit_v0_12_oci_export_unpacks_into_a_layout() {
    a_buildkit_oci_export_unpacks_into_a_layout("COPA_TEST_UNIX_V12").await;
}

#[tokio::test]
async fn a_current_buildkit_oci_export_unpacks_into_a_layout() {
    a_buildkit_oci_export_unpacks_into_a_layout("COPA_TEST_UNIX_NEW").await;
}
