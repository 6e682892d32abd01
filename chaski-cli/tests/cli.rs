//! The `chaski` binary end to end: serve, call, status, pub/sub, and clear errors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn chaski() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chaski"))
}

/// A child process killed when the test ends, even by a panic.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a long-running subcommand and returns it with the address from its first line.
fn spawn(args: &[&str]) -> (Guard, String) {
    let mut child = Guard(
        chaski()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child_ref = &mut child.0;
    let mut line = String::new();
    BufReader::new(child_ref.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| {
            w.split('@')
                .nth(1)
                .or(Some(w))
                .filter(|a| a.starts_with("127.0.0.1:"))
                .map(|a| a.trim_end_matches(';').to_string())
        })
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = chaski().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_call_status() {
    let (server, addr) = spawn(&["serve", "--bind", "127.0.0.1:0"]);
    let (ok, out, err) = run(&["call", &addr, "demo.add", "[2, 3]"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "5.0");
    let (ok, out, _) = run(&["call", &addr, "demo.version", "--get"]);
    assert!(ok);
    assert_eq!(out.trim(), format!("\"{}\"", env!("CARGO_PKG_VERSION")));
    let (ok, _, err) = run(&["call", &addr, "demo.fail", "\"boom\""]);
    assert!(!ok);
    assert!(err.contains("remote failure: boom"), "{err}");
    let (ok, _, err) = run(&["call", &addr, "nosuch.thing"]);
    assert!(!ok);
    assert!(
        err.contains("no connected peer offers the service"),
        "{err}"
    );
    let (ok, out, err) = run(&["status", &addr]);
    assert!(ok, "{err}");
    assert!(
        out.contains("name:         ChaskiRemote") && out.contains("service:      demo"),
        "{out}"
    );
    drop(server);
}

#[test]
fn pub_reaches_sub_through_a_root() {
    let (root, addr) = spawn(&["root", "--bind", "127.0.0.1:0"]);
    let mut sub = Guard(
        chaski()
            .args(["sub", &addr, "news", "--count", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait until the subscriber announced itself (its stderr line), then publish.
    let mut line = String::new();
    BufReader::new(sub.0.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("subscribed to news"), "{line}");
    let start = Instant::now();
    let (ok, _, err) = run(&["pub", &addr, "news", "hello there"]);
    assert!(ok, "{err}");
    let mut out = String::new();
    let mut stdout = sub.0.stdout.take().unwrap();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    assert!(sub.0.wait().unwrap().success());
    assert_eq!(out.trim(), "[news] hello there (hops 2)");
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(root);
}

#[test]
fn bad_arguments_get_clear_errors() {
    let (ok, _, err) = run(&["call", "127.0.0.1", "demo.add"]);
    assert!(!ok);
    assert!(err.contains("has no port"), "{err}");
    let (ok, _, err) = run(&["call", "127.0.0.1:9", "demo.add", "[1,"]);
    assert!(!ok);
    assert!(err.contains("JSON_ARGS is not valid JSON"), "{err}");
    let (ok, _, err) = run(&["status", "127.0.0.1:9", "--timeout", "0.2"]);
    assert!(!ok);
    assert!(err.contains("timed out"), "{err}");
    let (ok, _, err) = run(&["sub", "127.0.0.1:1"]);
    assert!(!ok);
    assert!(err.contains("required"), "{err}");
    let (ok, _, err) = run(&["pub", "localhost:1", "t", "m"]);
    assert!(!ok);
    assert!(
        err.contains("refused") || err.contains("dial failed"),
        "{err}"
    );
}
