//! Delivery of a patched image: the exporter's tarball, streamed as it comes,
//! into Docker Engine's image store (the Engine API's image load), into
//! Podman (`podman load`), or unpacked into an OCI image layout directory.
//!
//! copa never holds the image in memory or in a temp file of its own, never
//! runs a shell, and never tags anything itself (the archive names the
//! image). A failed delivery leaves nothing behind: Docker and Podman read
//! the whole archive before they commit it, copa kills `podman load` rather
//! than let it see a cut archive end, and an OCI directory appears only once
//! it is complete.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Frame;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tokio_util::io::{StreamReader, SyncIoBridge};
use tokio_util::sync::CancellationToken;

use crate::dial::{self, CONNECT_TIMEOUT, DialError};

/// The Engine API call that loads an image archive. `quiet=1` leaves out
/// the per-layer progress, so the answer is a few JSON messages.
const LOAD_PATH: &str = "/images/load?quiet=1";
const LOAD_REQUEST: &str = "POST /images/load";

/// The most of the engine's answer to a load that is read.
const LOAD_REPLY_LIMIT: usize = 1 << 20;

/// The Podman CLI, found through `PATH`.
pub const PODMAN: &str = "podman";

/// The most of `podman load`'s stdout and stderr that is kept.
const PODMAN_OUTPUT_LIMIT: usize = 64 * 1024;

/// The files every OCI image layout has at its root.
const OCI_LAYOUT_FILES: &[&str] = &["oci-layout", "index.json"];

/// Why an image could not be delivered. Each variant names the destination.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The tarball broke off (or never came): the export failed.
    #[error("the image export broke off")]
    Export(#[source] io::Error),

    #[error("failed to reach the docker engine")]
    DockerConnect(#[source] DialError),
    #[error("timed out after {after:?} connecting to the docker engine at `{endpoint}`")]
    DockerTimeout {
        endpoint: String,
        after: std::time::Duration,
    },
    #[error("failed to load the image into the docker engine at `{endpoint}`")]
    DockerSend {
        endpoint: String,
        #[source]
        source: hyper::Error,
    },
    #[error("the docker engine at `{endpoint}` refused the image: {message}")]
    DockerRefused { endpoint: String, message: String },

    #[error("failed to start `{program} load`")]
    PodmanSpawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to run `{program} load`")]
    PodmanIo {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("`{program} load` refused the image: {message}")]
    PodmanRefused { program: String, message: String },

    #[error("`{}` already exists and is not empty", .dir.display())]
    OciDirNotEmpty { dir: PathBuf },
    #[error("`{}` cannot hold an OCI layout: it has no file name", .dir.display())]
    OciDirUnnamed { dir: PathBuf },
    #[error("failed to write the OCI layout to `{}`", .dir.display())]
    OciWrite {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read the OCI layout archive for `{}`", .dir.display())]
    OciRead {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing `{entry}` in the OCI layout archive for `{}`: {reason}", .dir.display())]
    OciUnsafeEntry {
        dir: PathBuf,
        entry: String,
        reason: &'static str,
    },
    #[error("the archive for `{}` is not an OCI layout: it has no `{missing}`", .dir.display())]
    NotOciLayout { dir: PathBuf, missing: &'static str },
    #[error("writing the OCI layout to `{}` was cancelled", .dir.display())]
    OciCancelled { dir: PathBuf },
}

/// Loads the docker-archive `image` into the Docker Engine at `endpoint`
/// (`unix://…` or `tcp://…`) with `POST /images/load`, streaming it as the
/// request body. Returns what the engine says it loaded: image names, or an
/// image id for an archive without one.
pub async fn load_into_docker<S>(endpoint: &str, image: S) -> Result<Vec<String>, DeliveryError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let connect = dial::engine_http1(endpoint, LOAD_REQUEST);
    let mut sender = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| DeliveryError::DockerTimeout {
            endpoint: endpoint.to_owned(),
            after: CONNECT_TIMEOUT,
        })?
        .map_err(DeliveryError::DockerConnect)?;

    let (image, broke) = watch_export(image);
    let body = StreamBody::new(image.map(|chunk| chunk.map(Frame::data)));
    let request = Request::post(LOAD_PATH)
        .header(header::HOST, "docker")
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(body)
        .expect("a static request is valid");

    let send_error = |source| match broke.take() {
        Some(err) => DeliveryError::Export(err),
        None => DeliveryError::DockerSend {
            endpoint: endpoint.to_owned(),
            source,
        },
    };
    let response = sender.send_request(request).await.map_err(send_error)?;
    let refused = |message| DeliveryError::DockerRefused {
        endpoint: endpoint.to_owned(),
        message,
    };

    let status = response.status();
    if status != StatusCode::OK {
        let message = dial::engine_error_message(response).await;
        return Err(broke
            .take()
            .map_or_else(|| refused(one_line(&message)), DeliveryError::Export));
    }
    let reply = match Limited::new(response.into_body(), LOAD_REPLY_LIMIT)
        .collect()
        .await
    {
        Ok(reply) => reply.to_bytes(),
        Err(err) => {
            let message = format!("failed to read its answer: {err}");
            return Err(broke
                .take()
                .map_or_else(|| refused(message), DeliveryError::Export));
        }
    };
    if let Some(err) = broke.take() {
        return Err(DeliveryError::Export(err));
    }

    let loaded = docker_load_reply(&reply).map_err(refused)?;
    tracing::debug!(endpoint, images = ?loaded, "image loaded into docker");
    Ok(loaded)
}

/// The image names (or ids) in the engine's answer to a load, or its error.
fn docker_load_reply(reply: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Message {
        stream: Option<String>,
        error: Option<String>,
        #[serde(rename = "errorDetail")]
        error_detail: Option<ErrorDetail>,
    }
    #[derive(Deserialize)]
    struct ErrorDetail {
        message: Option<String>,
    }

    let mut loaded = Vec::new();
    for message in serde_json::Deserializer::from_slice(reply).into_iter::<Message>() {
        let message = message.map_err(|err| format!("unreadable answer: {err}"))?;
        let detail = message.error_detail.and_then(|detail| detail.message);
        if let Some(error) = detail.or(message.error) {
            return Err(one_line(&error));
        }
        let Some(text) = message.stream else {
            continue;
        };
        for line in text.lines() {
            let image = line
                .strip_prefix("Loaded image: ")
                .or_else(|| line.strip_prefix("Loaded image ID: "));
            loaded.extend(image.map(|image| image.trim().to_owned()));
        }
    }

    if loaded.is_empty() {
        return Err("it reported no loaded image".to_owned());
    }
    Ok(loaded)
}

/// Loads the archive `image` (docker-archive or OCI) into Podman with
/// `podman load`, the archive on its stdin. Returns the names Podman
/// reports.
pub async fn load_into_podman<S>(image: S) -> Result<Vec<String>, DeliveryError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    podman_load(PODMAN, image).await
}

async fn podman_load<S>(program: &str, image: S) -> Result<Vec<String>, DeliveryError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let mut child = Command::new(program)
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| DeliveryError::PodmanSpawn {
            program: program.to_owned(),
            source,
        })?;
    let io_error = |source| DeliveryError::PodmanIo {
        program: program.to_owned(),
        source,
    };

    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = tokio::spawn(read_limited(child.stdout.take().expect("stdout is piped")));
    let stderr = tokio::spawn(read_limited(child.stderr.take().expect("stderr is piped")));

    match feed(image, &mut stdin).await {
        Ok(()) => {}
        Err(Feed::Export(err)) => {
            // Killed before its stdin closes, Podman never sees a cut
            // archive end and load what it got.
            let _ = child.kill().await;
            return Err(DeliveryError::Export(err));
        }
        // Podman stopped reading: its exit status and stderr say why.
        Err(Feed::Write(err)) => tracing::debug!(%err, "podman load stopped reading"),
    }
    drop(stdin);

    let status = child.wait().await.map_err(io_error)?;
    let stdout = stdout.await.unwrap_or_default();
    let stderr = stderr.await.unwrap_or_default();
    if !status.success() {
        let message = podman_error(&stderr).unwrap_or_else(|| format!("it exited with {status}"));
        return Err(DeliveryError::PodmanRefused {
            program: program.to_owned(),
            message,
        });
    }

    let loaded = podman_loaded(&stdout);
    if loaded.is_empty() {
        return Err(DeliveryError::PodmanRefused {
            program: program.to_owned(),
            message: "it reported no loaded image".to_owned(),
        });
    }
    tracing::debug!(images = ?loaded, "image loaded into podman");
    Ok(loaded)
}

enum Feed {
    Export(io::Error),
    Write(io::Error),
}

async fn feed<S>(image: S, stdin: &mut ChildStdin) -> Result<(), Feed>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    let mut image = std::pin::pin!(image);
    while let Some(chunk) = image.next().await {
        let chunk = chunk.map_err(Feed::Export)?;
        stdin.write_all(&chunk).await.map_err(Feed::Write)?;
    }
    stdin.flush().await.map_err(Feed::Write)
}

/// Up to [`PODMAN_OUTPUT_LIMIT`] bytes of `pipe` as text; the rest is read
/// and dropped so the child never blocks on a full pipe.
async fn read_limited<R: AsyncRead + Unpin>(mut pipe: R) -> String {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let room = PODMAN_OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// `Loaded image: a` or `Loaded image(s): a,b` lines, as Podman prints them.
fn podman_loaded(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| {
            line.strip_prefix("Loaded image: ")
                .or_else(|| line.strip_prefix("Loaded image(s): "))
        })
        .flat_map(|images| images.split(','))
        .map(|image| image.trim().to_owned())
        .filter(|image| !image.is_empty())
        .collect()
}

/// Podman's `Error: …` message on one line (a list under it joined with
/// `; `), else its last line.
fn podman_error(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let Some(start) = lines.iter().position(|line| line.starts_with("Error: ")) else {
        return lines.last().map(|line| (*line).to_owned());
    };

    let head = &lines[start]["Error: ".len()..];
    let details: Vec<&str> = lines[start + 1..]
        .iter()
        .map(|line| line.trim_start_matches("* "))
        .collect();
    if details.is_empty() {
        return Some(head.to_owned());
    }
    Some(format!("{head} {}", details.join("; ")))
}

/// Unpacks the OCI image layout archive `image` into `dir`. The archive is
/// unpacked into a fresh directory beside `dir`, checked, then renamed to
/// `dir`, so `dir` either appears complete or not at all. `dir` must not
/// exist or be an empty directory.
///
/// Only files, directories and links that stay inside the layout are
/// accepted: absolute paths, `..`, links pointing out and device files
/// fail the whole write.
pub async fn write_oci_layout<S>(dir: &Path, image: S) -> Result<(), DeliveryError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    refuse_non_empty(dir)?;
    let name = dir
        .file_name()
        .ok_or_else(|| DeliveryError::OciDirUnnamed {
            dir: dir.to_owned(),
        })?
        .to_owned();
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };

    // Dropping this future cancels the unpacking, which then cleans up.
    let cancel = CancellationToken::new();
    let _cancel_on_drop = cancel.clone().drop_guard();
    let (image, broke) = watch_export(image);
    let image = Box::pin(image.take_until(cancel.clone().cancelled_owned()));
    let reader = SyncIoBridge::new(StreamReader::new(image));

    let target = dir.to_owned();
    let unpack = tokio::task::spawn_blocking(move || {
        let staging = Staging::create(&parent, &name, &target)?;
        unpack_oci_layout(reader, staging.path(), &target)?;
        if cancel.is_cancelled() {
            return Err(DeliveryError::OciCancelled { dir: target });
        }
        staging.commit(&target)
    });

    let result = match unpack.await {
        Ok(result) => result,
        Err(join) => Err(DeliveryError::OciWrite {
            dir: dir.to_owned(),
            source: io::Error::other(join),
        }),
    };
    match (result, broke.take()) {
        (Err(_), Some(err)) => Err(DeliveryError::Export(err)),
        (result, _) => result,
    }
}

fn refuse_non_empty(dir: &Path) -> Result<(), DeliveryError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(DeliveryError::OciDirNotEmpty {
                dir: dir.to_owned(),
            }),
            None => Ok(()),
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DeliveryError::OciWrite {
            dir: dir.to_owned(),
            source,
        }),
    }
}

fn unpack_oci_layout(reader: impl Read, staging: &Path, dir: &Path) -> Result<(), DeliveryError> {
    let read_error = |source| DeliveryError::OciRead {
        dir: dir.to_owned(),
        source,
    };
    let write_error = |source| DeliveryError::OciWrite {
        dir: dir.to_owned(),
        source,
    };

    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);

    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let path = entry.path().map_err(read_error)?.into_owned();
        let unsafe_entry = |reason| DeliveryError::OciUnsafeEntry {
            dir: dir.to_owned(),
            entry: path.display().to_string(),
            reason,
        };

        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        check_entry_path(&path).map_err(unsafe_entry)?;
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name().map_err(read_error)?;
            let target = target.ok_or_else(|| unsafe_entry("a link without a target"))?;
            check_link(&path, &target, kind.is_symlink()).map_err(unsafe_entry)?;
        } else if !(kind.is_file() || kind.is_dir() || kind.is_contiguous()) {
            return Err(unsafe_entry("not a file, directory or link"));
        }

        if !entry.unpack_in(staging).map_err(write_error)? {
            return Err(unsafe_entry("it would land outside the layout"));
        }
    }

    for &file in OCI_LAYOUT_FILES {
        if !staging.join(file).is_file() {
            let dir = dir.to_owned();
            return Err(DeliveryError::NotOciLayout { dir, missing: file });
        }
    }
    Ok(())
}

/// A path inside the archive may only go down.
fn check_entry_path(path: &Path) -> Result<(), &'static str> {
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("its path contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("its path is absolute"),
        }
    }
    Ok(())
}

/// A symlink's target, taken from the link's directory, and a hard link's,
/// taken from the root, must stay inside the layout.
fn check_link(path: &Path, target: &Path, symbolic: bool) -> Result<(), &'static str> {
    let mut depth: usize = 0;
    if symbolic {
        let parent = path.parent().unwrap_or(Path::new(""));
        depth = parent
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
    }

    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or("it links to outside the layout")?;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("it links to an absolute path");
            }
        }
    }
    Ok(())
}

/// The directory an OCI layout is unpacked into, beside its destination;
/// removed with everything in it unless committed.
struct Staging {
    path: Option<PathBuf>,
}

impl Staging {
    fn create(parent: &Path, name: &std::ffi::OsStr, dir: &Path) -> Result<Staging, DeliveryError> {
        let suffix: u32 = rand::random();
        let mut staging_name = std::ffi::OsString::from(".");
        staging_name.push(name);
        staging_name.push(format!(".copa-{suffix:08x}"));
        let path = parent.join(staging_name);

        std::fs::DirBuilder::new()
            .create(&path)
            .map_err(|source| DeliveryError::OciWrite {
                dir: dir.to_owned(),
                source,
            })?;
        Ok(Staging { path: Some(path) })
    }

    fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("staging is live until committed")
    }

    /// Moves the unpacked layout to `dir`, which may be an empty directory.
    fn commit(mut self, dir: &Path) -> Result<(), DeliveryError> {
        let path = self.path.take().expect("staging is live until committed");
        if let Err(source) = std::fs::rename(&path, dir) {
            self.path = Some(path);
            let error = match source.kind() {
                // Something appeared there meanwhile.
                io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists => {
                    DeliveryError::OciDirNotEmpty {
                        dir: dir.to_owned(),
                    }
                }
                _ => DeliveryError::OciWrite {
                    dir: dir.to_owned(),
                    source,
                },
            };
            return Err(error);
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(error) = std::fs::remove_dir_all(&path)
        {
            tracing::debug!(path = %path.display(), %error, "failed to remove a staging directory");
        }
    }
}

/// The first error of the export stream, kept when it aborts a delivery, so
/// the delivery can report it instead of its own consequence of it.
#[derive(Clone, Default)]
struct ExportError(Arc<Mutex<Option<io::Error>>>);

impl ExportError {
    fn take(&self) -> Option<io::Error> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// `image`, with its first error also recorded in the returned slot.
fn watch_export<S>(image: S) -> (impl Stream<Item = io::Result<Bytes>> + Send, ExportError)
where
    S: Stream<Item = io::Result<Bytes>> + Send,
{
    let slot = ExportError::default();
    let recorder = slot.clone();
    let image = image.map(move |chunk| {
        chunk.map_err(|err| {
            let copy = io::Error::new(err.kind(), err.to_string());
            let mut slot = recorder.0.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(err);
            copy
        })
    });
    (image, slot)
}

/// A message on one line: line breaks become `; `.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines.join("; ")
}

#[cfg(test)]
mod tests;
