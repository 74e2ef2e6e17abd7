//! `tidings topology` with `--url aws://`: against the moto server of `AWS_ENDPOINT_URL`
//! (`.ci/run` starts one) when built with `--features aws`; a clear refusal without.

use std::process::Output;

fn tidings(args: &[&str]) -> Output {
    tidings_testkit::process::output(
        std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(args)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing"),
        std::time::Duration::from_secs(60),
    )
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[cfg(not(feature = "aws"))]
#[test]
fn without_the_aws_feature_an_aws_url_is_refused_with_the_way_to_get_it() {
    let out = tidings(&["topology", "plan", "--url", "aws://", "--file", "/dev/null"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--features aws"), "{}", text(&out));
}

#[cfg(feature = "aws")]
#[test]
fn applying_on_aws_creates_then_changes_nothing() {
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") else {
        tidings_testkit::service::unavailable("a moto server", &"AWS_ENDPOINT_URL is not set");
        return;
    };
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "only a local moto server: {endpoint}"
    );
    let ns = tidings_testkit::Namespace::new();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("aws.toml");
    std::fs::write(
        &path,
        format!(
            r##"
            topic = "{ns}-events"
            queue_prefix = "{ns}-"

            [[subscription]]
            name = "notification"
            patterns = ["order.*", "payment.*"]

            [[subscription]]
            name = "analytics"
            patterns = ["#"]
            "##,
            ns = ns.as_str()
        ),
    )
    .expect("write");
    let file = path.display().to_string();
    let url = format!("aws://?endpoint={endpoint}");

    let plan = tidings(&["topology", "plan", "--url", &url, "--file", &file]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(text(&plan).contains("9 to create"), "{}", text(&plan));
    let apply = tidings(&["topology", "apply", "--url", &url, "--file", &file]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert!(text(&apply).contains("applied to AWS"), "{}", text(&apply));
    let again = tidings(&["topology", "apply", "--url", &url, "--file", &file]);
    assert!(
        text(&again).contains("0 to create, 0 to update, 9 unchanged"),
        "{}",
        text(&again)
    );
}
