//! Tests of the progress renderer, fed with made-up status messages shaped
//! like the daemon's: deltas out of order, log chunks that split lines,
//! cached and failed vertices, re-runs.

use futures_util::stream;

use super::*;

/// A time in the build: `ms` milliseconds after a fixed start.
fn at(ms: i64) -> Option<Timestamp> {
    const START: i64 = 1_796_000_000;
    Some(Timestamp {
        seconds: START + ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

fn vertex(
    digest: &str,
    name: &str,
    started: Option<i64>,
    completed: Option<i64>,
) -> control::Vertex {
    control::Vertex {
        digest: digest.into(),
        name: name.into(),
        started: started.and_then(at),
        completed: completed.and_then(at),
        ..Default::default()
    }
}

fn log(digest: &str, ms: i64, text: &str) -> control::VertexLog {
    control::VertexLog {
        vertex: digest.into(),
        timestamp: at(ms),
        stream: 1,
        msg: text.as_bytes().to_vec(),
    }
}

fn vertices(list: Vec<control::Vertex>) -> control::StatusResponse {
    control::StatusResponse {
        vertexes: list,
        ..Default::default()
    }
}

fn logs(list: Vec<control::VertexLog>) -> control::StatusResponse {
    control::StatusResponse {
        logs: list,
        ..Default::default()
    }
}

fn render(style: Style, messages: &[control::StatusResponse]) -> String {
    let mut renderer = Renderer::new(style, Vec::new());
    for message in messages {
        renderer.update(message);
    }
    renderer.finish();
    String::from_utf8(renderer.into_inner()).unwrap()
}

fn plain(messages: &[control::StatusResponse]) -> String {
    render(Style::Plain, messages)
}

const UPDATE: &str = "sha256:update";
const INSTALL: &str = "sha256:install";
const IMAGE: &str = "sha256:image";

#[test]
fn plain_shows_a_vertex_its_log_lines_and_its_time() {
    let out = plain(&[
        vertices(vec![vertex(
            UPDATE,
            "Updating package database",
            Some(0),
            None,
        )]),
        logs(vec![log(
            UPDATE,
            532,
            "Get:1 http://127.0.0.1 bookworm InRelease\nRead",
        )]),
        logs(vec![log(UPDATE, 900, "ing package lists...\n")]),
        vertices(vec![vertex(
            UPDATE,
            "Updating package database",
            Some(0),
            Some(1234),
        )]),
    ]);
    assert_eq!(
        out,
        "#1 [Updating package database]\n\
         #1 0.532 Get:1 http://127.0.0.1 bookworm InRelease\n\
         #1 0.532 Reading package lists...\n\
         #1 DONE 1.2s\n"
    );
}

#[test]
fn a_line_is_timed_from_the_chunk_it_started_in() {
    let out = plain(&[
        vertices(vec![vertex(
            UPDATE,
            "Updating package database",
            Some(0),
            None,
        )]),
        logs(vec![log(UPDATE, 100, "Unpacking copa-hello ")]),
        logs(vec![log(UPDATE, 250, "(1.0-2) ")]),
        logs(vec![log(UPDATE, 400, "over (1.0-1) ...\nSetting up")]),
        logs(vec![log(UPDATE, 700, " copa-hello (1.0-2) ...\n")]),
        vertices(vec![vertex(
            UPDATE,
            "Updating package database",
            Some(0),
            Some(800),
        )]),
    ]);
    assert_eq!(
        out,
        "#1 [Updating package database]\n\
         #1 0.100 Unpacking copa-hello (1.0-2) over (1.0-1) ...\n\
         #1 0.400 Setting up copa-hello (1.0-2) ...\n\
         #1 DONE 0.8s\n"
    );
}

#[test]
fn carriage_returns_leave_what_a_terminal_would_show() {
    let out = plain(&[
        vertices(vec![vertex(
            INSTALL,
            "Installing 2 security updates",
            Some(0),
            None,
        )]),
        logs(vec![log(
            INSTALL,
            10,
            "(Reading database ... 5%\r(Reading database ... 100%\r\r\n",
        )]),
        vertices(vec![vertex(
            INSTALL,
            "Installing 2 security updates",
            Some(0),
            Some(20),
        )]),
    ]);
    assert_eq!(
        out,
        "#1 [Installing 2 security updates]\n\
         #1 0.010 (Reading database ... 100%\n\
         #1 DONE 0.0s\n"
    );
}

#[test]
fn a_cached_vertex_says_cached_and_no_time() {
    let mut cached = vertex(IMAGE, "docker-image://127.0.0.1:5000/a:1", Some(5), Some(5));
    cached.cached = true;
    assert_eq!(
        plain(&[vertices(vec![cached])]),
        "#1 [docker-image://127.0.0.1:5000/a:1]\n#1 CACHED\n"
    );
}

#[test]
fn a_failed_vertex_shows_its_output_then_its_error() {
    let mut failed = vertex(
        INSTALL,
        "Installing 2 security updates",
        Some(0),
        Some(1500),
    );
    failed.error =
        "process \"/bin/sh -c apt-get install\" did not complete successfully: exit code: 100"
            .into();
    let out = plain(&[
        vertices(vec![vertex(
            INSTALL,
            "Installing 2 security updates",
            Some(0),
            None,
        )]),
        logs(vec![log(
            INSTALL,
            1200,
            "E: Unable to locate package copa-nope",
        )]),
        vertices(vec![failed]),
    ]);
    assert_eq!(
        out,
        "#1 [Installing 2 security updates]\n\
         #1 1.200 E: Unable to locate package copa-nope\n\
         #1 ERROR: process \"/bin/sh -c apt-get install\" did not complete successfully: exit code: 100\n"
    );
}

#[test]
fn deltas_out_of_order_are_merged_and_numbered_as_first_shown() {
    let out = plain(&[
        // Announced, never started: never numbered.
        vertices(vec![
            vertex(IMAGE, "docker-image://x", None, None),
            vertex("sha256:unused", "Squashing the patch layers", None, None),
        ]),
        // Output before the vertex is known: held until it is named.
        logs(vec![log(UPDATE, 300, "Hit:1 http://127.0.0.1 bookworm\n")]),
        vertices(vec![vertex(IMAGE, "", Some(0), None)]),
        vertices(vec![vertex(
            UPDATE,
            "Updating package database",
            Some(100),
            None,
        )]),
        // Completion, then a late message without it: the vertex stays done.
        vertices(vec![vertex(IMAGE, "docker-image://x", Some(0), Some(2000))]),
        vertices(vec![vertex(IMAGE, "docker-image://x", Some(0), None)]),
        logs(vec![log(UPDATE, 2100, "Reading package lists...\n")]),
        vertices(vec![vertex(UPDATE, "", Some(100), Some(2600))]),
    ]);
    assert_eq!(
        out,
        "#1 [docker-image://x]\n\
         \n\
         #2 [Updating package database]\n\
         #2 0.200 Hit:1 http://127.0.0.1 bookworm\n\
         \n\
         #1 DONE 2.0s\n\
         \n\
         #2 2.000 Reading package lists...\n\
         #2 DONE 2.5s\n"
    );
}

#[test]
fn layer_pulls_are_shown_once_when_done() {
    let pull = |current, completed: Option<i64>| control::VertexStatus {
        id: "sha256:5b5a".into(),
        vertex: IMAGE.into(),
        current,
        total: 29_123_456,
        started: at(0),
        completed: completed.and_then(at),
        ..Default::default()
    };
    let statuses = |list| control::StatusResponse {
        statuses: list,
        ..Default::default()
    };
    let out = plain(&[
        vertices(vec![vertex(IMAGE, "docker-image://x", Some(0), None)]),
        statuses(vec![pull(1_000_000, None)]),
        statuses(vec![pull(20_000_000, None)]),
        statuses(vec![pull(29_123_456, Some(900))]),
        statuses(vec![pull(29_123_456, Some(900))]),
        vertices(vec![vertex(IMAGE, "docker-image://x", Some(0), Some(1000))]),
    ]);
    assert_eq!(
        out,
        "#1 [docker-image://x]\n\
         #1 sha256:5b5a 29.12MB/29.12MB done\n\
         #1 DONE 1.0s\n"
    );
}

#[test]
fn a_partial_line_is_shown_when_its_vertex_ends() {
    let out = plain(&[
        vertices(vec![vertex(
            UPDATE,
            "Generating package manifest",
            Some(0),
            None,
        )]),
        logs(vec![log(UPDATE, 50, "no newline at the end")]),
        vertices(vec![vertex(
            UPDATE,
            "Generating package manifest",
            Some(0),
            Some(60),
        )]),
    ]);
    assert_eq!(
        out,
        "#1 [Generating package manifest]\n\
         #1 0.050 no newline at the end\n\
         #1 DONE 0.1s\n"
    );
}

#[test]
fn a_vertex_cut_short_is_shown_as_canceled_at_the_end() {
    let out = plain(&[
        vertices(vec![vertex(
            INSTALL,
            "Installing 2 security updates",
            Some(0),
            None,
        )]),
        logs(vec![log(INSTALL, 40, "Unpacking copa-tool")]),
        // Output of a vertex the stream never named.
        logs(vec![log("sha256:orphan", 90, "stray\n")]),
    ]);
    assert_eq!(
        out,
        "#1 [Installing 2 security updates]\n\
         #1 0.040 Unpacking copa-tool\n\
         #1 CANCELED\n\
         \n\
         #2 [sha256:orphan]\n\
         #2 0.000 stray\n"
    );
}

#[test]
fn a_vertex_run_again_is_shown_again_under_its_number() {
    let mut again = vertex(UPDATE, "Updating package database", Some(5000), Some(5000));
    again.cached = true;
    let out = plain(&[
        vertices(vec![vertex(
            UPDATE,
            "Updating package database",
            Some(0),
            Some(1000),
        )]),
        vertices(vec![vertex(
            INSTALL,
            "Installing 2 security updates",
            Some(1000),
            Some(4000),
        )]),
        vertices(vec![again.clone()]),
        vertices(vec![vertex(
            UPDATE,
            "Updating package database",
            Some(6000),
            Some(6500),
        )]),
    ]);
    assert_eq!(
        out,
        "#1 [Updating package database]\n\
         #1 DONE 1.0s\n\
         \n\
         #2 [Installing 2 security updates]\n\
         #2 DONE 3.0s\n\
         \n\
         #1 [Updating package database]\n\
         #1 CACHED\n\
         #1 [Updating package database]\n\
         #1 DONE 0.5s\n"
    );
}

#[test]
fn bracketed_daemon_names_are_not_bracketed_again() {
    let out = plain(&[vertices(vec![vertex(
        "sha256:meta",
        "[internal] load metadata for 127.0.0.1:5000/a:1",
        Some(0),
        Some(300),
    )])]);
    assert_eq!(
        out,
        "#1 [internal] load metadata for 127.0.0.1:5000/a:1\n#1 DONE 0.3s\n"
    );
}

#[test]
fn warnings_are_shown_under_their_vertex() {
    let out = plain(&[
        vertices(vec![vertex(
            UPDATE,
            "Updating package database",
            Some(0),
            None,
        )]),
        control::StatusResponse {
            warnings: vec![control::VertexWarning {
                vertex: UPDATE.into(),
                level: 1,
                short: b"something odd\n".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        },
    ]);
    assert_eq!(
        out,
        "#1 [Updating package database]\n#1 WARN: something odd\n#1 CANCELED\n"
    );
}

#[test]
fn rawjson_writes_one_object_per_message_with_buildkit_keys() {
    let mut cached = vertex(IMAGE, "docker-image://x", Some(0), Some(1500));
    cached.cached = true;
    cached.inputs = vec!["sha256:input".into()];
    let message = control::StatusResponse {
        vertexes: vec![
            cached,
            vertex(UPDATE, "Updating package database", None, None),
        ],
        statuses: vec![control::VertexStatus {
            id: "sha256:5b5a".into(),
            vertex: IMAGE.into(),
            current: 10,
            total: 20,
            timestamp: at(1),
            ..Default::default()
        }],
        logs: vec![log(UPDATE, 532, "hi\n")],
        warnings: Vec::new(),
    };
    let out = render(
        Style::RawJson,
        &[message, control::StatusResponse::default()],
    );
    assert_eq!(
        out,
        concat!(
            r#"{"logs":[{"data":"aGkK","stream":1,"timestamp":"2026-11-30T00:53:20.532Z","vertex":"sha256:update"}],"#,
            r#""statuses":[{"current":10,"id":"sha256:5b5a","timestamp":"2026-11-30T00:53:20.001Z","total":20,"vertex":"sha256:image"}],"#,
            r#""vertexes":[{"cached":true,"completed":"2026-11-30T00:53:21.5Z","digest":"sha256:image","inputs":["sha256:input"],"name":"docker-image://x","started":"2026-11-30T00:53:20Z"},"#,
            r#"{"digest":"sha256:update","name":"Updating package database"}],"warnings":[]}"#,
            "\n",
            r#"{"logs":[],"statuses":[],"vertexes":[],"warnings":[]}"#,
            "\n",
        )
    );
}

#[test]
fn times_are_written_as_go_writes_rfc3339_nano() {
    let t = |seconds, nanos| rfc3339(&Timestamp { seconds, nanos });
    assert_eq!(t(0, 0), "1970-01-01T00:00:00Z");
    assert_eq!(t(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
    assert_eq!(t(1_796_000_000, 120_000_000), "2026-11-30T00:53:20.12Z");
}

#[test]
fn sizes_use_decimal_units() {
    assert_eq!(human_bytes(999), "999B");
    assert_eq!(human_bytes(1000), "1.00kB");
    assert_eq!(human_bytes(29_123_456), "29.12MB");
    assert_eq!(human_bytes(3_400_000_000), "3.40GB");
}

#[test]
fn documented_defaults_hold() {
    assert_eq!(DRAIN_TIMEOUT, Duration::from_secs(2));
    assert_eq!(TTY_REFRESH, Duration::from_millis(100));
}

#[test]
fn auto_and_tty_are_live_only_on_a_terminal() {
    assert_eq!(Mode::Auto.style(true), Some(Style::Tty));
    assert_eq!(Mode::Auto.style(false), Some(Style::Plain));
    assert_eq!(Mode::Tty.style(true), Some(Style::Tty));
    assert_eq!(Mode::Tty.style(false), Some(Style::Plain));
    assert_eq!(Mode::Plain.style(true), Some(Style::Plain));
    assert_eq!(Mode::RawJson.style(true), Some(Style::RawJson));
    assert_eq!(Mode::Quiet.style(true), None);
}

#[test]
fn tty_keeps_finished_steps_and_redraws_the_running_ones_in_place() {
    let mut failed = vertex(INSTALL, "Installing 2 security updates", Some(0), Some(900));
    failed.error = "exit code: 100".into();
    let mut renderer = Renderer::new(Style::Tty, Vec::new());
    renderer.update(&vertices(vec![
        vertex(UPDATE, "Updating package database", Some(0), Some(1200)),
        vertex(INSTALL, "Installing 2 security updates", Some(0), None),
    ]));
    renderer.update(&logs(vec![log(INSTALL, 10, "Unpacking copa-tool\n")]));
    renderer.refresh();
    renderer.update(&vertices(vec![failed]));
    renderer.finish();
    renderer.update(&logs(vec![log(INSTALL, 10, "after the end\n")]));
    let out = String::from_utf8(renderer.into_inner()).unwrap();

    assert!(
        out.contains("\x1b[2K => [Updating package database] 1.2s\n"),
        "{out:?}"
    );
    assert!(
        out.contains(" => [Installing 2 security updates] "),
        "{out:?}"
    );
    assert!(out.contains("    Unpacking copa-tool"), "{out:?}");
    assert!(
        out.contains(
            "\x1b[2K => ERROR [Installing 2 security updates]: exit code: 100\n\
             \x1b[2K    > Unpacking copa-tool\n"
        ),
        "{out:?}"
    );
    // The live part is erased at the end and wrapping is back on.
    assert!(out.ends_with("\x1b[J\x1b[?7h"), "{out:?}");
    assert!(!out.contains("after the end"), "{out:?}");
}

/// A writer the test can read while a follower owns it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

type Items = Vec<Result<control::StatusResponse, tonic::Status>>;

#[tokio::test]
async fn follower_renders_the_whole_stream_before_finish_returns() {
    let out = Shared::default();
    let progress = Progress::new(Mode::Plain, Box::new(out.clone()), false);
    let items: Items = vec![
        Ok(vertices(vec![vertex(
            UPDATE,
            "Updating package database",
            Some(0),
            None,
        )])),
        Ok(logs(vec![log(UPDATE, 250, "Reading package lists...")])),
        Ok(vertices(vec![vertex(
            UPDATE,
            "Updating package database",
            Some(0),
            Some(500),
        )])),
    ];
    let follower = progress.follow(async move { Ok(stream::iter(items)) });
    follower.finish().await;
    assert_eq!(
        out.text(),
        "#1 [Updating package database]\n\
         #1 0.250 Reading package lists...\n\
         #1 DONE 0.5s\n"
    );
}

#[tokio::test]
async fn a_dropped_follower_still_completes_the_output() {
    let out = Shared::default();
    let progress = Progress::new(Mode::Plain, Box::new(out.clone()), false);
    let items: Items = vec![Ok(vertices(vec![vertex(
        INSTALL,
        "Installing 2 security updates",
        Some(0),
        None,
    )]))];
    let endless = stream::iter(items).chain(stream::pending());
    let follower = progress.follow(async move { Ok(endless) });
    while out.text().is_empty() {
        tokio::task::yield_now().await;
    }
    drop(follower);
    assert_eq!(
        out.text(),
        "#1 [Installing 2 security updates]\n#1 CANCELED\n"
    );
}

#[tokio::test]
async fn a_stream_that_fails_to_open_shows_nothing_and_fails_nothing() {
    let out = Shared::default();
    let progress = Progress::new(Mode::Plain, Box::new(out.clone()), false);
    let follower = progress.follow(async {
        Err::<stream::Iter<std::vec::IntoIter<_>>, _>(BuildkitError::call(
            "Control.Status",
            tonic::Status::unimplemented("no"),
        ))
    });
    follower.finish().await;
    assert_eq!(out.text(), "");
}

#[tokio::test]
async fn quiet_never_opens_the_stream() {
    let follower = Progress::quiet().follow(async {
        panic!("quiet opened the progress stream");
        #[allow(unreachable_code)]
        Ok::<stream::Iter<std::vec::IntoIter<_>>, BuildkitError>(stream::iter(Vec::new()))
    });
    follower.finish().await;
}
