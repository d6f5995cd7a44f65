//! A spawned transport program (`buildctl dial-stdio` through docker, ssh,
//! kubectl, ...) whose stdin and stdout are joined into one stream.
//!
//! The program gets its argv exactly as given and never goes through a shell.
//! Its stderr is kept in a [`StderrTail`] for the error message, never
//! printed. The child must never outlive its stream: dropping the stream kills
//! and reaps it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tracing::{debug, trace};

use super::{Connection, DialError, StderrTail};

/// How long end of stream on stdout waits for the rest of stderr, so that the
/// tail is complete when the caller sees the end (a grandchild may hold stderr
/// open for longer).
const STDERR_DRAIN_WAIT: Duration = Duration::from_secs(1);

/// Start `program` with `args` and the extra `env`, and join its stdio.
pub(super) fn spawn(
    program: &str,
    args: &[String],
    env: &[(String, String)],
) -> Result<Connection, DialError> {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| spawn_error(program, source))?;
    debug!(program, pid = child.id(), "spawned transport program");

    let (stdin, stdout, stderr) =
        match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(stdin), Some(stdout), Some(stderr)) => (stdin, stdout, stderr),
            _ => unreachable!("stdin, stdout and stderr are all piped"),
        };

    let (tail, writer) = StderrTail::new();
    let (stderr_drained, stderr_done) = oneshot::channel::<()>();
    let pid = child.id();
    tokio::spawn(async move {
        let _drained = stderr_drained;
        let mut stderr = stderr;
        let mut chunk = [0u8; 4096];
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    trace!(pid, stderr = %String::from_utf8_lossy(&chunk[..n]), "transport stderr");
                    writer.push(&chunk[..n]);
                }
                Err(err) => {
                    debug!(pid, %err, "failed to read transport stderr");
                    break;
                }
            }
        }
    });

    let stream = ProcessStream {
        stdin: Some(stdin),
        stdout,
        stderr_done: Some(stderr_done),
        drain_deadline: None,
        child: Some(child),
    };
    Ok(Connection {
        stream: Box::new(stream),
        stderr: Some(tail),
    })
}

fn spawn_error(program: &str, source: io::Error) -> DialError {
    let program = program.to_owned();
    if source.kind() == io::ErrorKind::NotFound && !program.contains('/') {
        DialError::NotInPath { program, source }
    } else {
        DialError::Spawn { program, source }
    }
}

/// Writes go to the child's stdin, reads come from its stdout; shutdown
/// closes stdin.
struct ProcessStream {
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    /// Resolves when the stderr reader has stopped; `None` once waited for.
    stderr_done: Option<oneshot::Receiver<()>>,
    /// Started at end of stdout: how long to wait for `stderr_done`.
    drain_deadline: Option<Pin<Box<Sleep>>>,
    child: Option<Child>,
}

impl AsyncRead for ProcessStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stdout).poll_read(cx, buf))?;
        if buf.filled().len() > before || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }

        // End of stdout: hold it back until stderr is read to its end too.
        if let Some(done) = &mut this.stderr_done {
            let deadline = this
                .drain_deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(STDERR_DRAIN_WAIT)));
            if Pin::new(done).poll(cx).is_pending() && deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.stderr_done = None;
            this.drain_deadline = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ProcessStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.stdin {
            Some(stdin) => Pin::new(stdin).poll_write(cx, buf),
            None => Poll::Ready(Err(stdin_closed())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stdin {
            Some(stdin) => Pin::new(stdin).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(stdin) = &mut self.stdin {
            std::task::ready!(Pin::new(stdin).poll_flush(cx))?;
        }
        self.stdin = None;
        Poll::Ready(Ok(()))
    }
}

fn stdin_closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the transport program's stdin is already closed",
    )
}

impl Drop for ProcessStream {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        self.stdin = None;

        // Kill now and reap in the background. Without a runtime (it is
        // shutting down), `kill_on_drop` still kills and tokio reaps on a
        // best-effort basis.
        let pid = child.id();
        if let Err(err) = child.start_kill() {
            debug!(pid, %err, "failed to kill transport program");
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                match child.wait().await {
                    Ok(status) => debug!(pid, %status, "transport program ended"),
                    Err(err) => debug!(pid, %err, "failed to reap transport program"),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::dial::{DialOptions, DialSpec, dial};

    fn spawn_spec(program: &str, args: &[&str]) -> DialSpec {
        DialSpec::Spawn {
            program: program.to_owned(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            env: Vec::new(),
        }
    }

    #[tokio::test]
    async fn spawned_program_stdin_and_stdout_form_one_stream() {
        let spec = spawn_spec("cat", &[]);
        let mut connection = dial(&spec, &DialOptions::default()).await.unwrap();

        connection.stream.write_all(b"ping").await.unwrap();
        connection.stream.shutdown().await.unwrap();
        let mut back = Vec::new();
        connection.stream.read_to_end(&mut back).await.unwrap();

        assert_eq!(back, b"ping");
    }

    #[tokio::test]
    async fn arguments_and_environment_reach_the_program_untouched() {
        // No shell is involved: `$HOME` and `;` arrive as written.
        let spec = DialSpec::Spawn {
            program: "printenv".to_owned(),
            args: vec!["COPA_DIAL_TEST".to_owned()],
            env: vec![("COPA_DIAL_TEST".to_owned(), "$HOME; x".to_owned())],
        };
        let mut connection = dial(&spec, &DialOptions::default()).await.unwrap();

        let mut out = String::new();
        connection.stream.read_to_string(&mut out).await.unwrap();

        assert_eq!(out, "$HOME; x\n");
    }

    #[tokio::test]
    async fn missing_program_is_reported_as_not_in_path() {
        let spec = spawn_spec("copa-no-such-transport", &["dial-stdio"]);

        let err = dial(&spec, &DialOptions::default()).await.unwrap_err();

        assert!(matches!(err, DialError::NotInPath { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "failed to start `copa-no-such-transport`: it is not in PATH"
        );
    }

    #[tokio::test]
    async fn missing_program_path_is_reported_as_a_failed_start() {
        let spec = spawn_spec("/nonexistent/copa-transport", &[]);

        let err = dial(&spec, &DialOptions::default()).await.unwrap_err();

        assert!(matches!(err, DialError::Spawn { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn early_exit_reads_as_end_of_stream_with_stderr_complete() {
        // `sh` is only the test's program here; the product never runs one.
        let spec = spawn_spec("sh", &["-c", "echo boom >&2; exit 3"]);
        let mut connection = dial(&spec, &DialOptions::default()).await.unwrap();

        let mut out = Vec::new();
        connection.stream.read_to_end(&mut out).await.unwrap();

        assert!(out.is_empty());
        assert_eq!(connection.stderr.unwrap().text(), "boom\n");
    }

    #[tokio::test]
    async fn end_of_stdout_waits_only_a_bounded_time_for_stderr() {
        assert_eq!(STDERR_DRAIN_WAIT, Duration::from_secs(1));
        // stdout closes while `sleep` keeps stderr open.
        let spec = spawn_spec("sh", &["-c", "echo boom >&2; exec >&-; exec sleep 600"]);
        let mut connection = dial(&spec, &DialOptions::default()).await.unwrap();

        let mut out = Vec::new();
        let read = connection.stream.read_to_end(&mut out);
        tokio::time::timeout(STDERR_DRAIN_WAIT * 5, read)
            .await
            .unwrap()
            .unwrap();

        assert_eq!(connection.stderr.unwrap().text(), "boom\n");
    }

    #[tokio::test]
    async fn dropping_the_stream_kills_and_reaps_the_program() {
        let spec = spawn_spec("sh", &["-c", "echo $$; exec sleep 600"]);
        let connection = dial(&spec, &DialOptions::default()).await.unwrap();
        let mut lines = BufReader::new(connection.stream);
        let mut pid = String::new();
        lines.read_line(&mut pid).await.unwrap();
        let proc_dir = format!("/proc/{}", pid.trim());
        assert!(std::path::Path::new(&proc_dir).exists());

        drop(lines);

        // A zombie keeps its /proc entry, so this also checks the reaping.
        let gone = async {
            while std::path::Path::new(&proc_dir).exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .unwrap_or_else(|_| panic!("{proc_dir} still exists after the drop"));
    }
}
