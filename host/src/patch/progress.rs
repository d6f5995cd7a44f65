//! Progress of the patch build for `copa patch --progress`: the daemon's
//! `Control.Status` messages, merged as deltas and rendered BuildKit-style
//! (`plain`), as a live view on a terminal (`tty`), or passed through as one
//! JSON object per message (`rawjson`).
//!
//! This module only renders: it is handed the status stream and a writer (the
//! CLI gives it stderr), and it never decides whether the build succeeded. A
//! progress stream that fails is logged at debug level and ignored; progress
//! never fails a patch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt;
use prost_types::Timestamp;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use crate::buildkit::error::BuildkitError;
use crate::buildkit::proto::moby::buildkit::v1 as control;

/// How long the renderer waits, once the build is over, for the daemon to
/// end the status stream (it does so when the job is discarded). BuildKit's
/// Go client gives up after 5 s without a message; the tail of a build is
/// short, so copa waits less.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the `tty` view is redrawn.
pub const TTY_REFRESH: Duration = Duration::from_millis(100);

/// The most log lines of a vertex the `tty` view keeps, to show under a
/// vertex that failed.
const TTY_TAIL: usize = 6;

/// The progress output asked for with `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `tty` on a terminal, `plain` otherwise.
    Auto,
    /// A live view of the running steps; `plain` when not on a terminal.
    Tty,
    /// BuildKit's plain lines: `#N [name]`, `#N 0.532 <log>`, `#N DONE 1.2s`.
    Plain,
    /// Nothing.
    Quiet,
    /// One JSON object per status message; see [`raw_json`].
    RawJson,
}

/// How the progress is rendered once `auto` and `tty` are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Finished steps as lines, running steps redrawn in place.
    Tty,
    /// One line per event, BuildKit's `plain`.
    Plain,
    /// One JSON object per status message.
    RawJson,
}

impl Mode {
    /// The style for this mode, or `None` for `quiet`. `auto` and `tty` are
    /// `tty` only when the output is a terminal.
    pub fn style(self, is_terminal: bool) -> Option<Style> {
        match self {
            Mode::Auto | Mode::Tty if is_terminal => Some(Style::Tty),
            Mode::Auto | Mode::Tty | Mode::Plain => Some(Style::Plain),
            Mode::Quiet => None,
            Mode::RawJson => Some(Style::RawJson),
        }
    }
}

/// Where and how the progress of one build is shown.
pub struct Progress {
    renderer: Option<Renderer<Box<dyn Write + Send>>>,
}

impl Progress {
    /// Progress on stderr. A terminal whose `TERM` is `dumb` counts as no
    /// terminal, as it cannot move the cursor.
    pub fn stderr(mode: Mode) -> Progress {
        let dumb = std::env::var("TERM").is_ok_and(|term| term == "dumb");
        let is_terminal = std::io::stderr().is_terminal() && !dumb;
        Progress::new(mode, Box::new(std::io::stderr()), is_terminal)
    }

    /// Progress written to `out`.
    pub fn new(mode: Mode, out: Box<dyn Write + Send>, is_terminal: bool) -> Progress {
        Progress {
            renderer: mode
                .style(is_terminal)
                .map(|style| Renderer::new(style, out)),
        }
    }

    /// No progress at all.
    pub fn quiet() -> Progress {
        Progress { renderer: None }
    }

    /// Follows the status stream `status` opens, in a task of its own, until
    /// [`Follower::finish`]. With `quiet`, the stream is never opened.
    pub fn follow<F, S>(self, status: F) -> Follower
    where
        F: Future<Output = Result<S, BuildkitError>> + Send + 'static,
        S: futures_util::Stream<Item = Result<control::StatusResponse, tonic::Status>>
            + Send
            + Unpin
            + 'static,
    {
        let Some(renderer) = self.renderer else {
            return Follower {
                renderer: None,
                task: None,
            };
        };
        let live = renderer.style == Style::Tty;
        let renderer = Arc::new(Mutex::new(renderer));
        let task = tokio::spawn(follow(status, renderer.clone(), live));
        Follower {
            renderer: Some(renderer),
            task: Some(task),
        }
    }
}

type Shared = Arc<Mutex<Renderer<Box<dyn Write + Send>>>>;

/// The renderer; one that panicked mid-line is still fine to finish.
fn lock(renderer: &Shared) -> MutexGuard<'_, Renderer<Box<dyn Write + Send>>> {
    renderer.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn follow<F, S>(status: F, renderer: Shared, live: bool)
where
    F: Future<Output = Result<S, BuildkitError>>,
    S: futures_util::Stream<Item = Result<control::StatusResponse, tonic::Status>> + Unpin,
{
    let mut stream = match status.await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(error = %error, "no progress from the daemon");
            return;
        }
    };
    let mut refresh = tokio::time::interval(TTY_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(message)) => lock(&renderer).update(&message),
                Some(Err(status)) => {
                    tracing::debug!(error = %status, "the progress stream failed");
                    break;
                }
                None => break,
            },
            _ = refresh.tick(), if live => lock(&renderer).refresh(),
        }
    }
}

/// The rendering of one build's progress, running beside the build. Call
/// [`finish`](Follower::finish) once the build is over; dropping it (a
/// cancelled patch) stops following at once and still completes the output.
pub struct Follower {
    renderer: Option<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Follower {
    /// Lets the daemon end the stream (up to [`DRAIN_TIMEOUT`]), then
    /// completes the output: partial log lines, steps cut short, the cursor
    /// below a live view.
    pub async fn finish(mut self) {
        if let Some(task) = self.task.as_mut()
            && tokio::time::timeout(DRAIN_TIMEOUT, task).await.is_err()
        {
            tracing::debug!("the progress stream did not end; stopped following it");
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(renderer) = self.renderer.take() {
            lock(&renderer).finish();
        }
    }
}

/// Turns status messages into output in one [`Style`].
pub struct Renderer<W: Write> {
    style: Style,
    out: W,
    tracker: Tracker,
    /// Plain: the vertex of the last line written, to separate groups.
    last_vertex: Option<usize>,
    tty: TtyView,
    finished: bool,
}

impl<W: Write> Renderer<W> {
    pub fn new(style: Style, out: W) -> Renderer<W> {
        Renderer {
            style,
            out,
            tracker: Tracker::default(),
            last_vertex: None,
            tty: TtyView::default(),
            finished: false,
        }
    }

    /// Merges one status message and writes what it completes.
    pub fn update(&mut self, message: &control::StatusResponse) {
        if self.finished {
            return;
        }
        if self.style == Style::RawJson {
            let mut line = raw_json(message).to_string();
            line.push('\n');
            self.write(&line);
            return;
        }
        self.tracker.update(message);
        self.render(false);
    }

    /// Redraws the live view (elapsed times move on without messages).
    pub fn refresh(&mut self) {
        if !self.finished && self.style == Style::Tty {
            self.render(true);
        }
    }

    /// Writes what is left: partial lines, steps that never ended. Nothing
    /// is written after this.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        if self.style != Style::RawJson {
            self.tracker.finish();
            self.render(true);
            if self.style == Style::Tty {
                let text = self.tty.draw(true);
                self.write(&text);
            }
        }
        self.finished = true;
    }

    /// The writer, for tests.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn render(&mut self, redraw: bool) {
        let events = std::mem::take(&mut self.tracker.events);
        let text = match self.style {
            Style::Plain => {
                let mut text = String::new();
                for event in &events {
                    self.plain_line(&mut text, event);
                }
                text
            }
            Style::Tty => {
                for event in events {
                    self.tty.apply(event, &self.tracker.names);
                }
                // Between refreshes, draw only to move finished steps up.
                if redraw || !self.tty.done.is_empty() {
                    self.tty.draw(false)
                } else {
                    String::new()
                }
            }
            Style::RawJson => String::new(),
        };
        self.write(&text);
    }

    fn plain_line(&mut self, text: &mut String, event: &Event) {
        let index = event.index();
        if self.last_vertex.is_some_and(|last| last != index) {
            text.push('\n');
        }
        self.last_vertex = Some(index);
        let name = &self.tracker.names[index - 1];
        let _ = match event {
            Event::Start { .. } => writeln!(text, "#{index} {}", bracketed(name)),
            Event::Log { secs, line, .. } if line.is_empty() => {
                writeln!(text, "#{index} {secs:.3}")
            }
            Event::Log { secs, line, .. } => writeln!(text, "#{index} {secs:.3} {line}"),
            Event::Status { line, .. } => writeln!(text, "#{index} {line}"),
            Event::Warning { line, .. } => writeln!(text, "#{index} WARN: {line}"),
            Event::Cached { .. } => writeln!(text, "#{index} CACHED"),
            Event::Done { secs, .. } => writeln!(text, "#{index} DONE {secs:.1}s"),
            Event::Error { message, .. } => writeln!(text, "#{index} ERROR: {message}"),
            Event::Canceled { .. } => writeln!(text, "#{index} CANCELED"),
        };
    }

    /// Progress is best effort: a closed stderr must not fail the patch.
    fn write(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

/// `[name]`, unless the daemon's name is bracketed already
/// (`[internal] load metadata for …`).
fn bracketed(name: &str) -> String {
    if name.starts_with('[') {
        name.to_string()
    } else {
        format!("[{name}]")
    }
}

/// What a vertex did, in the order it is shown. `index` counts vertices from
/// 1 in the order they are first shown.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Start {
        index: usize,
    },
    Log {
        index: usize,
        secs: f64,
        line: String,
    },
    Status {
        index: usize,
        line: String,
    },
    Warning {
        index: usize,
        line: String,
    },
    Cached {
        index: usize,
    },
    Done {
        index: usize,
        secs: f64,
    },
    Error {
        index: usize,
        message: String,
    },
    Canceled {
        index: usize,
    },
}

impl Event {
    fn index(&self) -> usize {
        match self {
            Event::Start { index }
            | Event::Log { index, .. }
            | Event::Status { index, .. }
            | Event::Warning { index, .. }
            | Event::Cached { index }
            | Event::Done { index, .. }
            | Event::Error { index, .. }
            | Event::Canceled { index } => *index,
        }
    }
}

/// Output of a vertex that waits for its header (it came before the vertex
/// was named or started).
#[derive(Debug)]
enum Pending {
    Log { at: Option<i64>, line: String },
    Status(String),
    Warning(String),
}

/// The merged state of one vertex. Times are unix nanoseconds.
#[derive(Debug, Default)]
struct VertexState {
    name: String,
    index: Option<usize>,
    started: Option<i64>,
    completed: Option<i64>,
    cached: bool,
    error: String,
    /// The start the header was shown for (`Some(None)`: shown before the
    /// start was known).
    header_for: Option<Option<i64>>,
    /// The completion whose end line was shown.
    ended_for: Option<i64>,
    /// Per stream: bytes after the last newline, and when they arrived.
    partial: BTreeMap<i64, (Vec<u8>, Option<i64>)>,
    pending: Vec<Pending>,
    statuses_shown: HashSet<String>,
}

/// Merges status messages as deltas keyed by vertex digest (and status id),
/// and turns them into [`Event`]s once they can be shown.
#[derive(Debug, Default)]
struct Tracker {
    vertices: HashMap<String, VertexState>,
    /// Digests in the order they were first mentioned.
    order: Vec<String>,
    /// Names by index - 1.
    names: Vec<String>,
    events: Vec<Event>,
}

impl Tracker {
    fn vertex(&mut self, digest: &str) -> &mut VertexState {
        if !self.vertices.contains_key(digest) {
            self.order.push(digest.to_string());
        }
        self.vertices.entry(digest.to_string()).or_default()
    }

    fn update(&mut self, message: &control::StatusResponse) {
        for vertex in &message.vertexes {
            let state = self.vertex(&vertex.digest);
            merge(state, vertex);
            self.advance(&vertex.digest);
        }
        for status in &message.statuses {
            let state = self.vertex(&status.vertex);
            if status.completed.is_some() && state.statuses_shown.insert(status.id.clone()) {
                state.pending.push(Pending::Status(status_line(status)));
            }
            self.advance(&status.vertex);
        }
        for log in &message.logs {
            let state = self.vertex(&log.vertex);
            let (buffer, at) = state.partial.entry(log.stream).or_default();
            if buffer.is_empty() {
                *at = log.timestamp.as_ref().map(nanos);
            }
            buffer.extend_from_slice(&log.msg);
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line = screen_line(&buffer[..end]);
                buffer.drain(..=end);
                state.pending.push(Pending::Log { at: *at, line });
                // The rest of this chunk starts the next line.
                *at = log.timestamp.as_ref().map(nanos);
            }
            self.advance(&log.vertex);
        }
        for warning in &message.warnings {
            let state = self.vertex(&warning.vertex);
            let line = String::from_utf8_lossy(&warning.short)
                .trim_end()
                .to_string();
            state.pending.push(Pending::Warning(line));
            self.advance(&warning.vertex);
        }
    }

    /// Shows what a vertex can show: its header once it is named and has
    /// started (or has output), its output, its end once completed.
    fn advance(&mut self, digest: &str) {
        let Some(state) = self.vertices.get_mut(digest) else {
            return;
        };
        if state.name.is_empty() {
            return;
        }
        let active = state.started.is_some() || state.completed.is_some();
        if !active && state.pending.is_empty() {
            return;
        }

        let header_needed = match state.header_for {
            None => true,
            Some(None) => {
                state.header_for = Some(state.started);
                false
            }
            Some(Some(shown)) => state.started.is_some_and(|started| started != shown),
        };
        let index = match state.index {
            Some(index) => index,
            None => {
                self.names.push(state.name.clone());
                let index = self.names.len();
                state.index = Some(index);
                index
            }
        };
        if header_needed {
            state.header_for = Some(state.started);
            self.events.push(Event::Start { index });
        }

        if let Some(completed) = state.completed
            && state.ended_for != Some(completed)
        {
            for (buffer, at) in std::mem::take(&mut state.partial).into_values() {
                if !buffer.is_empty() {
                    let line = screen_line(&buffer);
                    state.pending.push(Pending::Log { at, line });
                }
            }
        }
        for pending in state.pending.drain(..) {
            self.events.push(match pending {
                Pending::Log { at, line } => Event::Log {
                    index,
                    secs: seconds_between(state.started, at),
                    line,
                },
                Pending::Status(line) => Event::Status { index, line },
                Pending::Warning(line) => Event::Warning { index, line },
            });
        }

        if let Some(completed) = state.completed
            && state.ended_for != Some(completed)
        {
            state.ended_for = Some(completed);
            self.events.push(if !state.error.is_empty() {
                Event::Error {
                    index,
                    message: state.error.clone(),
                }
            } else if state.cached {
                Event::Cached { index }
            } else {
                Event::Done {
                    index,
                    secs: seconds_between(state.started, Some(completed)),
                }
            });
        }
    }

    /// Shows everything left: output of vertices never named (under their
    /// digest), partial lines, and vertices that started but never ended.
    fn finish(&mut self) {
        for digest in self.order.clone() {
            let state = self
                .vertices
                .get_mut(&digest)
                .expect("ordered digests exist");
            for (buffer, at) in std::mem::take(&mut state.partial).into_values() {
                if !buffer.is_empty() {
                    let line = screen_line(&buffer);
                    state.pending.push(Pending::Log { at, line });
                }
            }
            if state.name.is_empty() {
                state.name = digest.clone();
            }
            self.advance(&digest);

            let state = &self.vertices[&digest];
            if let Some(index) = state.index
                && state.started.is_some()
                && state.completed.is_none()
            {
                self.events.push(Event::Canceled { index });
            }
        }
    }
}

/// Merges a vertex message into what is known. Messages may arrive late: one
/// without a completion does not undo a completion, unless it starts the
/// vertex again after it completed (a re-run).
fn merge(state: &mut VertexState, vertex: &control::Vertex) {
    let started = vertex.started.as_ref().map(nanos);
    let completed = vertex.completed.as_ref().map(nanos);
    let rerun = matches!((started, state.completed), (Some(s), Some(c)) if s > c);
    if rerun {
        state.started = started;
        state.completed = None;
        state.cached = false;
        state.error.clear();
    }

    if !vertex.name.is_empty() {
        state.name = vertex.name.clone();
    }
    if started.is_some() && state.started.is_none() {
        state.started = started;
    }
    if completed.is_some() {
        state.completed = completed;
    }
    state.cached |= vertex.cached;
    if !vertex.error.is_empty() {
        state.error = vertex.error.clone();
    }
}

/// `<id> <current>/<total> done` for a finished sub-step (a layer pull).
fn status_line(status: &control::VertexStatus) -> String {
    let id = if status.id.is_empty() {
        &status.name
    } else {
        &status.id
    };
    if status.total > 0 {
        format!(
            "{id} {}/{} done",
            human_bytes(status.current),
            human_bytes(status.total)
        )
    } else {
        format!("{id} done")
    }
}

/// Sizes as BuildKit shows them: decimal units, two decimals.
fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// A log line as a terminal would leave it: carriage returns overwrite (the
/// last non-empty segment wins), trailing whitespace goes.
fn screen_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let shown = text
        .split('\r')
        .rfind(|segment| !segment.trim().is_empty())
        .unwrap_or("");
    shown.trim_end().to_string()
}

fn nanos(timestamp: &Timestamp) -> i64 {
    timestamp
        .seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(timestamp.nanos))
}

/// Seconds from `from` to `to`; 0 when either is unknown or time runs back.
fn seconds_between(from: Option<i64>, to: Option<i64>) -> f64 {
    match (from, to) {
        (Some(from), Some(to)) if to > from => (to - from) as f64 / 1e9,
        _ => 0.0,
    }
}

/// The `tty` view: finished steps scroll up as lines of their own; running
/// steps are redrawn in place below them with their elapsed time and last
/// log line. Uses plain ANSI escapes; line wrapping is turned off while the
/// live part is drawn, so long lines are clipped instead of breaking the
/// cursor arithmetic.
#[derive(Debug, Default)]
struct TtyView {
    started: Option<Instant>,
    /// Lines that scroll up, not yet written.
    done: Vec<String>,
    /// Running vertices by index: since when, their name, their last line.
    running: BTreeMap<usize, (Instant, String, String)>,
    /// The last log lines of each vertex, shown when it fails.
    tails: HashMap<usize, Vec<String>>,
    finished_steps: usize,
    /// Lines of the live part currently on screen.
    drawn: usize,
}

impl TtyView {
    fn apply(&mut self, event: Event, names: &[String]) {
        let now = Instant::now();
        self.started.get_or_insert(now);
        let index = event.index();
        let name = bracketed(&names[index - 1]);
        match event {
            Event::Start { .. } => {
                self.running.insert(index, (now, name, String::new()));
            }
            Event::Log { line, .. } | Event::Status { line, .. } => {
                if let Some((_, _, last)) = self.running.get_mut(&index) {
                    last.clone_from(&line);
                }
                let tail = self.tails.entry(index).or_default();
                tail.push(line);
                if tail.len() > TTY_TAIL {
                    tail.remove(0);
                }
            }
            Event::Warning { line, .. } => self.done.push(format!(" => WARN {name}: {line}")),
            Event::Cached { .. } => self.end(index, format!(" => CACHED {name}")),
            Event::Done { secs, .. } => self.end(index, format!(" => {name} {secs:.1}s")),
            Event::Error { message, .. } => {
                let tail = self.tails.remove(&index).unwrap_or_default();
                self.end(index, format!(" => ERROR {name}: {message}"));
                for line in tail {
                    self.done.push(format!("    > {line}"));
                }
            }
            Event::Canceled { .. } => self.end(index, format!(" => CANCELED {name}")),
        }
    }

    fn end(&mut self, index: usize, line: String) {
        self.running.remove(&index);
        self.tails.remove(&index);
        self.finished_steps += 1;
        self.done.push(line);
    }

    /// The escapes and lines that replace the live part; `last` draws no
    /// live part and leaves the cursor below everything.
    fn draw(&mut self, last: bool) -> String {
        let Some(started) = self.started else {
            return String::new();
        };
        let mut text = String::new();
        if self.drawn > 0 {
            let _ = write!(text, "\x1b[{}A", self.drawn);
        }
        text.push_str("\x1b[?7l");
        for line in self.done.drain(..) {
            let _ = writeln!(text, "\x1b[2K{line}");
        }

        let mut live = Vec::new();
        if !last {
            let now = Instant::now();
            live.push(format!(
                "[+] Patching {:.1}s ({} done, {} running)",
                (now - started).as_secs_f64(),
                self.finished_steps,
                self.running.len()
            ));
            for (since, name, last_line) in self.running.values() {
                let elapsed = (now - *since).as_secs_f64();
                live.push(format!(" => {name} {elapsed:.1}s"));
                if !last_line.is_empty() {
                    live.push(format!("\x1b[2m    {last_line}\x1b[0m"));
                }
            }
        }
        for line in &live {
            let _ = writeln!(text, "\x1b[2K{line}");
        }
        text.push_str("\x1b[J\x1b[?7h");
        self.drawn = live.len();
        text
    }
}

/// One status message as a JSON object, with BuildKit's `rawjson` keys:
///
/// - `vertexes`: `[{digest, inputs?, name?, cached?, started?, completed?,
///   error?, progressGroup?: {id, name, weak?}}]`
/// - `statuses`: `[{id, vertex, name?, current, total?, timestamp?,
///   started?, completed?}]`
/// - `logs`: `[{vertex, stream, data, timestamp}]`, `data` the raw bytes in
///   base64, `stream` 1 for stdout and 2 for stderr
/// - `warnings`: `[{vertex, level, short, detail?, url?}]`, `short` and each
///   `detail` in base64
///
/// The four arrays are always present (maybe empty); keys marked `?` are
/// left out when empty, false or zero. Times are RFC 3339 in UTC with up to
/// nanosecond precision, as Go writes them (`2026-12-03T17:45:01.5Z`).
pub fn raw_json(message: &control::StatusResponse) -> Value {
    let vertexes = message.vertexes.iter().map(|v| {
        let mut o = Map::new();
        o.insert("digest".into(), json!(v.digest));
        if !v.inputs.is_empty() {
            o.insert("inputs".into(), json!(v.inputs));
        }
        insert_str(&mut o, "name", &v.name);
        if v.cached {
            o.insert("cached".into(), json!(true));
        }
        insert_time(&mut o, "started", &v.started);
        insert_time(&mut o, "completed", &v.completed);
        insert_str(&mut o, "error", &v.error);
        if let Some(group) = &v.progress_group {
            let mut g = Map::new();
            g.insert("id".into(), json!(group.id));
            g.insert("name".into(), json!(group.name));
            if group.weak {
                g.insert("weak".into(), json!(true));
            }
            o.insert("progressGroup".into(), Value::Object(g));
        }
        Value::Object(o)
    });
    let statuses = message.statuses.iter().map(|s| {
        let mut o = Map::new();
        o.insert("id".into(), json!(s.id));
        o.insert("vertex".into(), json!(s.vertex));
        insert_str(&mut o, "name", &s.name);
        o.insert("current".into(), json!(s.current));
        if s.total != 0 {
            o.insert("total".into(), json!(s.total));
        }
        insert_time(&mut o, "timestamp", &s.timestamp);
        insert_time(&mut o, "started", &s.started);
        insert_time(&mut o, "completed", &s.completed);
        Value::Object(o)
    });
    let logs = message.logs.iter().map(|l| {
        json!({
            "vertex": l.vertex,
            "stream": l.stream,
            "data": BASE64.encode(&l.msg),
            "timestamp": l.timestamp.as_ref().map(rfc3339),
        })
    });
    let warnings = message.warnings.iter().map(|w| {
        let mut o = Map::new();
        o.insert("vertex".into(), json!(w.vertex));
        o.insert("level".into(), json!(w.level));
        o.insert("short".into(), json!(BASE64.encode(&w.short)));
        if !w.detail.is_empty() {
            let detail: Vec<String> = w.detail.iter().map(|d| BASE64.encode(d)).collect();
            o.insert("detail".into(), json!(detail));
        }
        insert_str(&mut o, "url", &w.url);
        Value::Object(o)
    });
    json!({
        "vertexes": vertexes.collect::<Vec<_>>(),
        "statuses": statuses.collect::<Vec<_>>(),
        "logs": logs.collect::<Vec<_>>(),
        "warnings": warnings.collect::<Vec<_>>(),
    })
}

fn insert_str(object: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        object.insert(key.into(), json!(value));
    }
}

fn insert_time(object: &mut Map<String, Value>, key: &str, value: &Option<Timestamp>) {
    if let Some(value) = value {
        object.insert(key.into(), json!(rfc3339(value)));
    }
}

/// RFC 3339 in UTC with the fraction Go's `RFC3339Nano` writes: trailing
/// zeros dropped, no fraction for whole seconds.
fn rfc3339(timestamp: &Timestamp) -> String {
    let total = nanos(timestamp);
    let secs = total.div_euclid(1_000_000_000);
    let frac = total.rem_euclid(1_000_000_000);
    let (year, month, day) = super::build::civil_from_days(secs.div_euclid(86_400));
    let rest = secs.rem_euclid(86_400);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

#[cfg(test)]
mod tests;
