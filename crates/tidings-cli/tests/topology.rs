//! `tidings topology plan|apply` against the machine's RabbitMQ: output, exit codes,
//! idempotence, conflicts.

mod common;

use common::{text, tidings};

use tidings_testkit::Namespace;

/// A topology whose names are all inside `ns`, with `ttl_ms` on its plain queue.
fn file(dir: &tempfile::TempDir, ns: &Namespace, ttl_ms: u64) -> String {
    let path = dir.path().join(format!("topology-{ttl_ms}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
            [[subscription]]
            name = "{sub}"
            patterns = ["{ns}.order.*", "{ns}.payment.*"]

            [[queue]]
            name = "{ns}.order.processing"
            arguments = {{ "x-message-ttl" = {ttl_ms}, "x-expires" = 120000 }}
            "#,
            ns = ns.as_str(),
            sub = ns.subscription("notification"),
        ),
    )
    .expect("write topology");
    path.display().to_string()
}

fn broker_reachable() -> bool {
    let probe = tidings(&["topology", "plan", "--file", "/dev/null"]);
    if probe.status.code() == Some(2) && text(&probe).contains("unreachable") {
        tidings_testkit::service::unavailable("RabbitMQ", &text(&probe));
        return false;
    }
    true
}

#[test]
fn plan_then_apply_then_nothing_left_to_do() {
    if !broker_reachable() {
        return;
    }
    let (dir, ns) = (tempfile::tempdir().expect("dir"), Namespace::new());
    let path = file(&dir, &ns, 60_000);

    let plan = tidings(&["topology", "plan", "--file", &path]);
    assert!(plan.status.success(), "{}", text(&plan));
    let shown = text(&plan);
    assert!(
        shown.contains(&format!(
            "+ create   queue `{}`",
            ns.subscription("notification")
        )),
        "{shown}"
    );

    let apply = tidings(&["topology", "apply", "--file", &path]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert!(
        text(&apply).contains("applied to amqp://"),
        "{}",
        text(&apply)
    );

    let again = tidings(&["topology", "plan", "--file", &path]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("0 to create") && text(&again).contains("0 conflicts"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_conflict_is_reported_and_exits_with_one() {
    if !broker_reachable() {
        return;
    }
    let (dir, ns) = (tempfile::tempdir().expect("dir"), Namespace::new());
    let first = tidings(&["topology", "apply", "--file", &file(&dir, &ns, 60_000)]);
    assert!(first.status.success(), "{}", text(&first));

    let changed = file(&dir, &ns, 120_000);
    for command in ["plan", "apply"] {
        let out = tidings(&["topology", command, "--file", &changed]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", text(&out));
        let shown = text(&out);
        assert!(
            shown.contains("! conflict queue") && shown.contains("x-message-ttl"),
            "{command}: {shown}"
        );
    }
}

#[test]
fn errors_are_one_clear_line_without_the_password() {
    let out = tidings(&["topology", "plan", "--file", "/nonexistent/topology.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("/nonexistent/topology.toml"));

    let dir = tempfile::tempdir().expect("dir");
    let path = file(&dir, &Namespace::new(), 1000);
    let out = tidings(&[
        "topology",
        "plan",
        "--file",
        &path,
        "--url",
        "amqp://app:hunter2-s3cret@127.0.0.1:1/%2f",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unreachable") && !err.contains("hunter2-s3cret"),
        "{err}"
    );
}

#[test]
fn the_example_topology_file_plans() {
    if !broker_reachable() {
        return;
    }
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/topology.toml");
    let out = tidings(&["topology", "plan", "--file", example]);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("queue `notification`"),
        "{}",
        text(&out)
    );
}
