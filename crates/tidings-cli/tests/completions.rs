//! `tidings completions`: scripts for the shells.

use std::process::Command;

#[test]
fn completion_scripts_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = tidings_testkit::process::output(
            Command::new(env!("CARGO_BIN_EXE_tidings")).args(["completions", shell]),
            std::time::Duration::from_secs(30),
        );
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for command in ["publish", "serve", "dlq", "topology"] {
            assert!(script.contains(command), "{shell} completes `{command}`");
        }
    }
}
