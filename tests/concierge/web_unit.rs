//! The web code's own tests (`web/test/*.test.js`, for example the widget's Markdown renderer),
//! run with Node's built-in test runner: `node --test`. Without `node` on the PATH the test
//! says so and passes, except in CI (`CI=true`), where a missing runner is a failure.

use std::{path::PathBuf, process::Command};

#[test]
fn web_unit_tests_pass_under_node() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("web/test"))
        .expect("web/test exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".test.js"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no web/test/*.test.js found");

    // Files, not the folder: Node 20 reads a folder argument as "search here", newer ones as a
    // glob pattern.
    let output =
        match Command::new("node").args(["--test", "--test-reporter=tap"]).args(files).current_dir(root).output() {
            Ok(output) => output,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let ci = std::env::var("CI").is_ok_and(|value| value == "true");
                assert!(!ci, "`node` is not installed, and CI=true: the web unit tests must run in CI");
                eprintln!(
                    "SKIPPED: web unit tests (web/test/): `node` is not on the PATH; install Node.js to run them"
                );
                return;
            }
            Err(error) => panic!("cannot run node: {error}"),
        };
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "node --test failed ({}):\n{report}", output.status);
    assert!(report.contains("\n# pass ") && !report.contains("\n# pass 0\n"), "node --test ran no test:\n{report}");
}
