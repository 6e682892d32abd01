//! The `chaski` binary end to end: serve, call, status, pub/sub, and clear errors.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest any step of these tests may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// Reads from `r` on a helper thread with `f`; fails the test if that takes over `DEADLINE`.
fn within<R: Read + Send + 'static, T: Send + 'static>(
    what: &str,
    r: R,
    f: impl FnOnce(R) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f(r));
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{what}: nothing within {DEADLINE:?}"))
}

/// Everything `r` yields until it closes, within the deadline.
fn read_all<R: Read + Send + 'static>(what: &str, r: R) -> String {
    within(what, r, |mut r| {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// The first line of `r`, within the deadline.
fn first_line<R: Read + Send + 'static>(what: &str, r: R) -> String {
    within(what, r, |r| {
        let mut line = String::new();
        let _ = BufReader::new(r).read_line(&mut line);
        line
    })
}

/// Waits for the child to exit, within the deadline.
fn wait(child: &mut Child) -> ExitStatus {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < end,
            "the process did not exit within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

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
    spawn_with(args, &[])
}

/// [`spawn`] with environment variables.
fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> (Guard, String) {
    let mut child = Guard(
        chaski()
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let line = first_line(&format!("{args:?}"), child.0.stdout.take().unwrap());
    let addr = line
        .split_whitespace()
        .find_map(|w| {
            w.split('@')
                .nth(1)
                .or(Some(w))
                .filter(|a| a.starts_with("127.0.0.1:") || a.starts_with("[::1]:"))
                .map(|a| a.trim_end_matches(';').to_string())
        })
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

/// Runs a command to completion (within the deadline): success, stdout, stderr.
fn run(args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = run_code(args);
    (code == Some(0), out, err)
}

/// Runs a command to completion (within the deadline): exit code, stdout, stderr.
fn run_code(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Guard(
        chaski()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let err = child.0.stderr.take().unwrap();
    // Both pipes are drained while the process runs, so neither can fill and block it.
    let out = std::thread::spawn(move || read_all("stdout", out));
    let err = std::thread::spawn(move || read_all("stderr", err));
    let status = wait(&mut child.0);
    (status.code(), out.join().unwrap(), err.join().unwrap())
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
        err.contains("no server of the service \"nosuch\" found"),
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

/// What a script needs: JSON output, and exit codes that tell failures apart (documented in
/// `--help`); numbers as a user writes them.
#[test]
fn scripts_get_json_exit_codes_and_plain_numbers() {
    let (server, addr) = spawn(&["serve", "--bind", "127.0.0.1:0"]);
    let (code, out, err) = run_code(&["status", &addr, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let status: serde_json::Value = serde_json::from_str(out.trim()).expect("status --json");
    assert_eq!(status["name"], "ChaskiRemote");
    assert_eq!(status["services"][0], "demo");
    assert_eq!(status["id"].as_str().map(str::len), Some(32));
    let (code, out, err) = run_code(&["ping", &addr, "-c", "3", "-i", "0.01", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["count"], 3);
    assert!(lines[3]["p50_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    // Integers where the method takes floats.
    let (code, out, err) = run_code(&["call", &addr, "demo.random.uniform", "[0, 1]"]);
    assert_eq!(code, Some(0), "{err}");
    let x: f64 = out.trim().parse().expect("a number");
    assert!((0.0..=1.0).contains(&x), "{x}");
    // Exit codes: remote error 5, unreachable 3, timeout 4, usage 2.
    assert_eq!(
        run_code(&["call", &addr, "demo.fail", "\"boom\""]).0,
        Some(5)
    );
    assert_eq!(run_code(&["call", &addr, "nosuch.thing"]).0, Some(5));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    assert_eq!(
        run_code(&["call", &closed, "demo.add", "[1, 2]"]).0,
        Some(3)
    );
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    assert_eq!(
        run_code(&["status", &silent_addr, "--timeout", "0.3"]).0,
        Some(4)
    );
    assert_eq!(run_code(&["ping", &addr, "--count", "nope"]).0, Some(2));
    // A subscriber that hears nothing gives up with the timeout code.
    let start = Instant::now();
    assert_eq!(
        run_code(&["sub", &addr, "quiet/topic", "--timeout", "0.5"]).0,
        Some(4)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // The benchmark checks its options before measuring anything.
    let start = Instant::now();
    assert_eq!(run_code(&["bench", "--runtime", "foo"]).0, Some(2));
    assert_eq!(
        run_code(&["bench", "--only", "memory", "--edges", "0"]).0,
        Some(2)
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "measured before refusing"
    );
    // The benchmark feeds a script too: one JSON object per result.
    let (code, out, err) = run_code(&["bench", "--quick", "--json", "--only", "mesh"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[1]["part"], "mesh");
    assert_eq!(rows[1]["converged"], true);
    let (_, help, _) = run_code(&["--help"]);
    assert!(help.contains("Exit codes:"), "{help}");
    // Every subcommand that starts a node lists every setting's variable in its help.
    for sub in [
        "root", "node", "sub", "pub", "status", "ping", "edges", "call", "serve",
    ] {
        let (code, help, _) = run_code(&[sub, "--help"]);
        assert_eq!(code, Some(0));
        for var in [
            "CHASKI_MAX_EDGES",
            "CHASKI_IDLE_TIMEOUT",
            "CHASKI_NAME",
            "Exit codes:",
        ] {
            assert!(help.contains(var), "{sub} --help lacks {var}");
        }
    }
    // A node's edges, as an operator (or a script) sees them: the subscriber's edge is there.
    let (_sub, _) = spawn_sub(&addr, "edges/topic");
    let (code, out, err) = run_code(&["edges", &addr, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("edges --json");
    assert_eq!(report["name"], "ChaskiRemote");
    let edges = report["edges"].as_array().expect("an edge list");
    assert_eq!(edges.len(), 1, "{report}");
    assert_eq!(edges[0]["topics"][0], "edges/topic");
    assert_eq!(edges[0]["direction"], "inbound");
    let (code, out, err) = run_code(&["edges", &addr]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("1 edges") && out.contains("edges/topic"),
        "{out}"
    );
    drop(server);
    // A node with introspection off refuses: a remote error.
    let (server, addr) = spawn_with(
        &["serve", "--bind", "127.0.0.1:0"],
        &[("CHASKI_INTROSPECT", "false")],
    );
    let (code, _, err) = run_code(&["edges", &addr]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("not found"), "{err}");
    drop(server);
}

/// A subscriber process, once it is connected (its stderr says so).
fn spawn_sub(addr: &str, topic: &str) -> (Guard, String) {
    let mut child = Guard(
        chaski()
            .args(["sub", addr, topic])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let line = first_line("sub", child.0.stderr.take().unwrap());
    assert!(line.starts_with("connected to"), "{line}");
    (child, line)
}

/// One configuration: a TOML file under the environment under flags; a wrong setting is named
/// and exits with the usage code.
#[test]
fn settings_come_from_a_file_the_environment_and_flags() {
    let dir = std::env::temp_dir().join(format!("chaski-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(&file, "name = \"from-file\"\nmax_edges = 3\n").unwrap();
    let file = file.to_str().unwrap();
    let (server, addr) = spawn(&["serve", "--bind", "127.0.0.1:0", "--config", file]);
    let (code, out, err) = run_code(&["status", &addr, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"name\":\"from-file\""), "{out}");
    drop(server);
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "max_edgez = 3\n").unwrap();
    let (code, _, err) = run_code(&["status", &addr, "--config", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("max_edgez"), "{err}");
    let (code, _, err) = run_code(&["status", &addr, "--log", "[[["]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--log"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `status` and `call` reach a node on IPv6 too (their own socket takes the target's family).
#[test]
fn status_and_call_reach_an_ipv6_node() {
    let (server, addr) = spawn(&["serve", "--bind", "[::1]:0"]);
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let (ok, out, err) = run(&["status", &addr, "--timeout", "5"]);
    assert!(ok, "{err}");
    assert!(out.contains("service:      demo"), "{out}");
    let (ok, out, err) = run(&["call", &addr, "demo.add", "[2, 3]"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "5.0");
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
    let mut json_sub = Guard(
        chaski()
            .args(["sub", &addr, "news", "--count", "1", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait until the subscribers announced themselves (a stderr line each), then publish.
    for s in [&mut sub, &mut json_sub] {
        let line = first_line("sub", s.0.stderr.take().unwrap());
        assert!(line.contains("subscribed to news"), "{line}");
    }
    let start = Instant::now();
    let (ok, _, err) = run(&["pub", &addr, "news", "hello there"]);
    assert!(ok, "{err}");
    let out = read_all("sub's output", sub.0.stdout.take().unwrap());
    assert!(wait(&mut sub.0).success());
    assert_eq!(out.trim(), "[news] hello there (hops 2)");
    let out = read_all("sub's output", json_sub.0.stdout.take().unwrap());
    assert!(wait(&mut json_sub.0).success());
    let m: serde_json::Value = serde_json::from_str(out.trim()).expect("sub --json");
    assert_eq!(
        (m["topic"].as_str(), m["payload"].as_str()),
        (Some("news"), Some("hello there"))
    );
    assert_eq!(m["hops"], 2);
    assert_eq!(m["origin"].as_str().map(str::len), Some(32));
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(root);
}

/// A `pub` process that exits has delivered its message: its shutdown writes what it queued
/// (and its goodbye) before the process ends. One `pub` per message, as a script does it.
#[test]
fn every_pub_process_delivers_before_it_exits() {
    const N: usize = 30;
    let (root, addr) = spawn(&["root", "--bind", "127.0.0.1:0"]);
    let mut sub = Guard(
        chaski()
            .args(["sub", &addr, "news", "--count", &N.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let line = first_line("sub", sub.0.stderr.take().unwrap());
    assert!(line.contains("subscribed to news"), "{line}");
    for i in 0..N {
        let (ok, _, err) = run(&["pub", &addr, "news", &format!("m{i}")]);
        assert!(ok, "{err}");
    }
    let out = read_all("sub's output", sub.0.stdout.take().unwrap());
    assert!(wait(&mut sub.0).success());
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), N, "{out}");
    for (i, l) in got.iter().enumerate() {
        assert_eq!(*l, format!("[news] m{i} (hops 2)"));
    }
    drop(root);
}

#[test]
fn bad_arguments_get_clear_errors() {
    let (ok, _, err) = run(&["call", "127.0.0.1", "demo.add"]);
    assert!(!ok);
    assert!(err.contains("has no port"), "{err}");
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

/// The README's secure mesh: a CA, a certificate per node, and a root, a subscriber and a
/// publisher on loopback with `--tls-dir`; a node without a certificate gets nowhere, and the
/// keys are readable by their owner only.
#[test]
fn a_secure_mesh_from_the_readme_commands() {
    let dir = std::env::temp_dir().join(format!("chaski-cli-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let (code, _, err) = run_code(&["ca", "init", &path("ca")]);
    assert_eq!(code, Some(0), "{err}");
    for name in ["root", "sub", "pub"] {
        let (code, out, err) = run_code(&[
            "cert",
            "issue",
            name,
            "--ca",
            &path("ca"),
            "--out",
            &path(name),
        ]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("node id"), "{out}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca/ca.key", "root/node.key"] {
            let mode = std::fs::metadata(dir.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{key} is readable by others: {mode:o}");
        }
    }
    // A second CA over the first is refused.
    assert_ne!(run_code(&["ca", "init", &path("ca")]).0, Some(0));
    let (_root, addr) = spawn(&["root", "--bind", "127.0.0.1:0", "--tls-dir", &path("root")]);
    let mut sub = Guard(
        chaski()
            .args([
                "sub",
                &addr,
                "news",
                "--count",
                "1",
                "--tls-dir",
                &path("sub"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let line = first_line("sub", sub.0.stderr.take().unwrap());
    assert!(line.starts_with("connected to"), "{line}");
    let (code, _, err) = run_code(&["pub", &addr, "news", "hello", "--tls-dir", &path("pub")]);
    assert_eq!(code, Some(0), "{err}");
    let out = read_all("sub", sub.0.stdout.take().unwrap());
    assert!(out.contains("[news] hello"), "{out}");
    // Without a certificate: refused, and told why.
    let (code, _, err) = run_code(&["pub", &addr, "news", "plain"]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("TLS only"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The lines a child writes on one of its pipes, read on a helper thread.
struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn of<R: Read + Send + 'static>(r: R) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(l) = line else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Lines(rx)
    }

    /// The first line (skipping others) that satisfies `pred` within `limit`.
    fn find(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.0.recv_timeout(left) {
                Ok(l) if pred(&l) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

/// A long-running subcommand with both pipes read line by line.
fn start(args: &[&str], env: &[(&str, &str)]) -> (Guard, Lines, Lines) {
    let mut child = Guard(
        chaski()
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = Lines::of(child.0.stdout.take().unwrap());
    let err = Lines::of(child.0.stderr.take().unwrap());
    (child, out, err)
}

/// The loopback address in a line such as "root NAME listening on 127.0.0.1:PORT ...".
fn address_in(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .map(|w| w.trim_end_matches([';', ',']).to_string())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// A root on loopback, and a `node` connected to it (with `extra` arguments), once the node
/// says so: the root with its address, and the node with its stderr.
fn root_and_member(extra: &[&str]) -> (Guard, String, Guard, Lines) {
    let (root, root_out, _) = start(&["root", "--bind", "127.0.0.1:0"], &[]);
    let addr = address_in(&root_out.find(DEADLINE, |_| true).unwrap());
    let mut args = vec!["node", "--bind", "127.0.0.1:0", "--connect", &addr];
    args.extend(extra);
    let (member, _, member_err) = start(&args, &[]);
    assert!(member_err
        .find(DEADLINE, |l| l.starts_with("connected to"))
        .is_some());
    (root, addr, member, member_err)
}

fn signal(child: &Guard, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// A malformed address is a usage error at once (exit 2), on every subcommand that takes one;
/// so are JSON arguments that are not JSON, a certificate that would be born expired, and a
/// bind address from the environment that is not one.
#[test]
fn malformed_input_is_a_usage_error_at_once() {
    for bad in ["[::1", "localhost", "1.2.3.4:99999", "Name@"] {
        for args in [
            vec!["sub", bad, "t"],
            vec!["pub", bad, "t", "m"],
            vec!["status", bad],
            vec!["ping", bad],
            vec!["edges", bad],
            vec!["call", bad, "demo.add"],
            vec!["node", "--bind", "127.0.0.1:0", "--connect", bad],
            vec!["root", "--bind", "127.0.0.1:0", "--connect", bad],
            vec!["serve", "--bind", "127.0.0.1:0", "--connect", bad],
            vec!["sub", "127.0.0.1:9", "t", "--advertise", bad],
        ] {
            let t = Instant::now();
            let (code, _, err) = run_code(&args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(err.contains(bad.trim_end_matches(':')), "{args:?}: {err}");
            assert!(t.elapsed() < Duration::from_secs(5), "{args:?} was retried");
        }
    }
    let (code, _, err) = run_code(&["call", "127.0.0.1:9", "demo.add", "[1,"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("JSON_ARGS is not valid JSON"), "{err}");

    let dir = std::env::temp_dir().join(format!("chaski-cli-days-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = dir.join("ca");
    assert_eq!(run_code(&["ca", "init", ca.to_str().unwrap()]).0, Some(0));
    let out = dir.join("n");
    let (code, _, err) = run_code(&[
        "cert",
        "issue",
        "n",
        "--ca",
        ca.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--days",
        "0",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--days"), "{err}");
    assert!(!out.exists(), "an expired certificate was written");
    let _ = std::fs::remove_dir_all(&dir);

    let out = chaski()
        .args(["status", "127.0.0.1:9"])
        .env("CHASKI_BIND", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "CHASKI_BIND is read by status");
}

/// `chaski ... | head`: a closed standard output stops a command quietly, never with a panic;
/// `sub` says goodbye to its peer first.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let (server, addr) = spawn(&["serve", "--bind", "127.0.0.1:0"]);
    for args in [
        vec!["status", addr.as_str()],
        vec!["ping", addr.as_str(), "-c", "3", "-i", "0.05"],
        vec!["edges", addr.as_str()],
        vec!["call", addr.as_str(), "demo.add", "[1, 2]"],
        vec!["demo"],
    ] {
        let mut child = chaski()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the command writes anything: its first line meets a closed pipe.
        drop(child.stdout.take());
        let err = read_all("stderr", child.stderr.take().unwrap());
        let status = wait(&mut child);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
    }
    drop(server);

    let (root, addr, watcher, _) = root_and_member(&["--sub", "x"]);
    let mut sub = Guard(
        chaski()
            .args(["sub", &addr, "news", "--bind", "127.0.0.1:0"])
            .env("CHASKI_NAME", "reader")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = Lines::of(sub.0.stderr.take().unwrap());
    assert!(err.find(DEADLINE, |l| l.contains("subscribed")).is_some());
    drop(sub.0.stdout.take());
    let (ok, _, e) = run(&["pub", &addr, "news", "one"]);
    assert!(ok, "{e}");
    let status = wait(&mut sub.0);
    assert_eq!(status.code(), Some(0));
    assert!(err
        .find(Duration::from_millis(500), |l| l.contains("panicked"))
        .is_none());
    drop((root, watcher));
}

/// `node --help` shows the `--message` placeholders as they are written.
#[test]
fn help_shows_the_message_placeholders() {
    let (ok, out, _) = run(&["node", "--help"]);
    assert!(ok);
    assert!(
        out.contains("`{seq}` becomes the message's number"),
        "{out}"
    );
    assert!(out.contains("[default: \"{name} #{seq}\"]"), "{out}");
}

/// SIGTERM and SIGINT: a goodbye to every peer (the peer hears "shut down", not a lost
/// connection), and exit 0.
#[test]
fn a_signal_ends_a_node_with_goodbyes_and_exit_0() {
    for sig in ["TERM", "INT"] {
        let (mut root, _, _member, member_err) = root_and_member(&["--name", "member"]);
        signal(&root, sig);
        let status = wait(&mut root.0);
        assert_eq!(status.code(), Some(0), "SIG{sig}");
        let lost = member_err
            .find(DEADLINE, |l| l.contains("ChaskiRoot lost"))
            .unwrap_or_else(|| panic!("SIG{sig}: the member never heard"));
        assert!(
            lost.contains("peer shut down (its goodbye)"),
            "SIG{sig}: {lost}"
        );
    }
}

/// A configured peer (`--connect`) that restarts is dialed again: after its goodbye, and once
/// it listens again at the same address.
#[test]
fn a_configured_peer_is_dialed_again_after_it_restarts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (mut root, _, _) = start(&["root", "--bind", &addr], &[]);
    let (_member, _, member_err) =
        start(&["node", "--bind", "127.0.0.1:0", "--connect", &addr], &[]);
    assert!(member_err
        .find(DEADLINE, |l| l.starts_with("connected to ChaskiRoot"))
        .is_some());
    signal(&root, "TERM");
    assert!(wait(&mut root.0).success());
    assert!(member_err
        .find(DEADLINE, |l| l.contains("dialing it again"))
        .is_some());
    let (_again, _, _) = start(&["root", "--bind", &addr, "--name", "Restarted"], &[]);
    assert!(
        member_err
            .find(DEADLINE, |l| l.starts_with("connected to Restarted"))
            .is_some(),
        "the restarted peer was not dialed again"
    );
}

/// Under `on_pair = disconnect`, the configured peer a node lets go as its bootstrap link once
/// it paired stays gone (it used to be dialed again at once).
#[test]
fn a_bootstrap_peer_let_go_after_pairing_is_not_dialed_again() {
    let (_root, root_out, _) = start(&["root", "--bind", "127.0.0.1:0"], &[]);
    let addr = address_in(&root_out.find(DEADLINE, |_| true).unwrap());
    let (_anchor, _, anchor_err) = start(
        &[
            "node",
            "--bind",
            "127.0.0.1:0",
            "--connect",
            &addr,
            "--sub",
            "t",
            "--discover",
            "--name",
            "anchor",
        ],
        &[],
    );
    assert!(anchor_err
        .find(DEADLINE, |l| l.starts_with("paired for t"))
        .is_some());
    let (_joiner, _, joiner_err) = start(
        &[
            "node",
            "--bind",
            "127.0.0.1:0",
            "--connect",
            &addr,
            "--sub",
            "t",
            "--discover",
            "--name",
            "joiner",
        ],
        &[("CHASKI_ON_PAIR", "Disconnect")],
    );
    assert!(joiner_err
        .find(DEADLINE, |l| l
            .contains("ChaskiRoot lost: bootstrap link no longer needed"))
        .is_some());
    assert_eq!(
        joiner_err.find(Duration::from_secs(2), |l| l
            .contains("connected to ChaskiRoot")),
        None,
        "the bootstrap peer was dialed again"
    );
}

/// Settings: flags over the environment over the file.
#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = std::env::temp_dir().join(format!("chaski-cli-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(&file, "name = \"from-file\"\n").unwrap();
    let file = file.to_str().unwrap();
    for (env, flags, want) in [
        (vec![], vec![], "from-file"),
        (vec![("CHASKI_NAME", "from-env")], vec![], "from-env"),
        (
            vec![("CHASKI_NAME", "from-env")],
            vec!["--name", "from-flag"],
            "from-flag",
        ),
    ] {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0", "--config", file];
        args.extend(flags);
        let (server, addr) = spawn_with(&args, &env);
        let (code, out, err) = run_code(&["status", &addr, "--json"]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains(&format!("\"name\":\"{want}\"")), "{out}");
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A peer's name with a line break and a terminal escape is printed escaped: no forged line,
/// no escape sequence reaches the terminal (stderr reports and `edges` output alike).
#[test]
fn a_peers_name_cannot_forge_output() {
    let evil = "evil\nFORGED-LOG-LINE \u{1b}[31mred";
    let (_root, root_out, _) = start(&["root", "--bind", "127.0.0.1:0", "--name", evil], &[]);
    let addr = address_in(&root_out.find(DEADLINE, |_| true).unwrap());
    let (_member, _, member_err) = start(
        &[
            "node",
            "--bind",
            "127.0.0.1:0",
            "--connect",
            &addr,
            "--name",
            "m",
        ],
        &[],
    );
    let line = member_err
        .find(DEADLINE, |l| l.starts_with("connected to"))
        .unwrap();
    assert!(
        line.contains("evil\\nFORGED-LOG-LINE \\u{1b}[31mred"),
        "{line}"
    );
    assert!(member_err
        .find(Duration::from_millis(500), |l| l.starts_with("FORGED"))
        .is_none());
    let (code, out, err) = run_code(&["edges", &addr]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !out.contains('\u{1b}') && !out.lines().any(|l| l.starts_with("FORGED")),
        "{out}"
    );
}

/// `send` and `receive` through a root, in plain and secure meshes: every file arrives with
/// the sender's SHA-256, a second file of one name gets a new name, `--json` gives the path,
/// and a missing file is a usage error.
#[test]
fn files_go_through_a_root_with_send_and_receive() {
    let dir = std::env::temp_dir().join(format!("chaski-cli-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    for d in ["src", "in", "sin"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(dir.join("src/data.bin"), &data).unwrap();
    std::fs::write(dir.join("src/other.bin"), b"other").unwrap();
    let (_root, root_out, _) = start(&["root", "--bind", "127.0.0.1:0"], &[]);
    let addr = address_in(&root_out.find(DEADLINE, |_| true).unwrap());
    let (mut receiver, out, err) = start(
        &[
            "receive",
            &addr,
            "files",
            "--dir",
            &path("in"),
            "--count",
            "2",
            "--json",
        ],
        &[],
    );
    assert!(err
        .find(DEADLINE, |l| l.starts_with("connected to"))
        .is_some());
    let (code, sent, e) = run_code(&[
        "send",
        &addr,
        "files",
        &path("src/data.bin"),
        &path("src/data.bin"),
        "--keep",
        "0",
    ]);
    assert_eq!(code, Some(0), "{e}");
    let hash = sent
        .lines()
        .next()
        .and_then(|l| l.split("sha256 ").nth(1))
        .map(|h| h.trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("no hash in {sent:?}"));
    let mut names = Vec::new();
    for _ in 0..2 {
        let line = out.find(DEADLINE, |_| true).expect("a file received");
        let v: serde_json::Value = serde_json::from_str(&line).expect("receive --json");
        assert_eq!(v["sha256"].as_str(), Some(hash.as_str()), "{line}");
        assert_eq!(v["size"], 3_000_000);
        assert_eq!(std::fs::read(v["path"].as_str().unwrap()).unwrap(), data);
        names.push(v["name"].as_str().unwrap().to_string());
    }
    names.sort();
    assert_eq!(names, ["data (1).bin", "data.bin"]);
    assert!(wait(&mut receiver.0).success());
    // A file that is not there: a usage error before anything is sent.
    let (code, _, e) = run_code(&["send", &addr, "files", &path("src/none"), "--keep", "0"]);
    assert_eq!(code, Some(2), "{e}");

    // The same over TLS.
    assert_eq!(run_code(&["ca", "init", &path("ca")]).0, Some(0));
    for n in ["sroot", "ssend", "srecv"] {
        let (code, _, e) = run_code(&["cert", "issue", n, "--ca", &path("ca"), "--out", &path(n)]);
        assert_eq!(code, Some(0), "{e}");
    }
    let (_sroot, sroot_out, _) = start(
        &["root", "--bind", "127.0.0.1:0", "--tls-dir", &path("sroot")],
        &[],
    );
    let saddr = address_in(&sroot_out.find(DEADLINE, |_| true).unwrap());
    let (mut sreceiver, sout, serr) = start(
        &[
            "receive",
            &saddr,
            "files",
            "--dir",
            &path("sin"),
            "--count",
            "1",
            "--tls-dir",
            &path("srecv"),
        ],
        &[],
    );
    assert!(serr
        .find(DEADLINE, |l| l.starts_with("connected to"))
        .is_some());
    let (code, _, e) = run_code(&[
        "send",
        &saddr,
        "files",
        &path("src/other.bin"),
        "--keep",
        "0",
        "--tls-dir",
        &path("ssend"),
    ]);
    assert_eq!(code, Some(0), "{e}");
    let line = sout
        .find(DEADLINE, |_| true)
        .expect("a file received over TLS");
    assert!(
        line.starts_with("received ") && line.contains("other.bin"),
        "{line}"
    );
    assert!(wait(&mut sreceiver.0).success());
    assert_eq!(std::fs::read(dir.join("sin/other.bin")).unwrap(), b"other");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 GET (or another method) on loopback: the status code and the body.
fn http(method: &str, addr: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}

/// The address of the HTTP endpoint a node reports on stderr.
fn http_addr_in(err: &Lines) -> String {
    let line = err
        .find(DEADLINE, |l| l.starts_with("http:"))
        .expect("the node reports its HTTP endpoint");
    line.split("http://")
        .nth(1)
        .map(|a| a.trim_end_matches('/').to_string())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// The value of the first sample of `name` (with its labels, as printed) in a scrape.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// `chaski graph` walks a mesh into exactly its topology (JSON, text, DOT, SVG), and a
/// root's `--http` serves Prometheus metrics that rise, health, readiness and the live page
/// with every node and link; a node that has no edge to its configured peer is not ready.
#[test]
fn graph_and_the_http_endpoint_show_the_mesh() {
    let (_root, root_out, root_err) = start(
        &["root", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        &[],
    );
    let addr = address_in(&root_out.find(DEADLINE, |_| true).unwrap());
    let web = http_addr_in(&root_err);
    let member = |name: &str, topic: &str, discover: bool| {
        let mut args = vec![
            "node",
            "--bind",
            "127.0.0.1:0",
            "--connect",
            &addr,
            "--name",
            name,
            "--sub",
            topic,
            "--pub",
            topic,
            "--every",
            "0.2",
        ];
        if discover {
            args.push("--discover");
        }
        // Its output is kept open: a node whose stdout closes stops.
        let (g, out, err) = start(&args, &[]);
        assert!(err
            .find(DEADLINE, |l| l.starts_with("connected to"))
            .is_some());
        (g, out, err)
    };
    let _a = member("A", "x", true);
    let _b = member("B", "x", true);
    let _c = member("C", "y", false);
    // The walk, until A and B have paired (their pairing link is the fourth).
    let end = Instant::now() + DEADLINE;
    let mesh: serde_json::Value = loop {
        let (code, out, err) = run_code(&["graph", &addr, "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let mesh: serde_json::Value = serde_json::from_str(&out).unwrap();
        if mesh["links"].as_array().unwrap().len() == 4 || Instant::now() > end {
            break mesh;
        }
    };
    let name_of = |id: &serde_json::Value| {
        mesh["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == *id)
            .map(|n| n["name"].as_str().unwrap().to_string())
            .unwrap()
    };
    let mut names: Vec<String> = mesh["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["A", "B", "C", "ChaskiRoot"], "{mesh}");
    let mut links: Vec<(String, String, String)> = mesh["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let mut ends = [name_of(&l["a"]), name_of(&l["b"])];
            ends.sort();
            let [a, b] = ends;
            (a, b, l["kind"].as_str().unwrap().to_string())
        })
        .collect();
    links.sort();
    assert_eq!(
        links,
        [
            ("A".into(), "B".into(), "pairing".into()),
            ("A".into(), "ChaskiRoot".into(), "root".into()),
            ("B".into(), "ChaskiRoot".into(), "root".into()),
            ("C".into(), "ChaskiRoot".into(), "root".into()),
        ],
        "{mesh}"
    );
    assert_eq!(mesh["complete"], true);
    assert!(mesh["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["asked"] == true));
    // Text, DOT and SVG say the same.
    let (ok, text, _) = run(&["graph", &addr]);
    assert!(ok && text.starts_with("4 nodes, 4 links"), "{text}");
    let svg = std::env::temp_dir().join(format!("chaski-graph-{}.svg", std::process::id()));
    let (ok, dot, _) = run(&["graph", &addr, "--dot", "--svg", svg.to_str().unwrap()]);
    assert!(ok && dot.starts_with("graph chaski {"), "{dot}");
    assert_eq!(dot.matches(" -- ").count(), 4, "{dot}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    let _ = std::fs::remove_file(&svg);
    assert_eq!(drawn.matches("<g class=\"node").count(), 4);
    assert_eq!(drawn.matches("<g class=\"link").count(), 4);

    // The endpoint.
    assert_eq!(http("GET", &web, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http("GET", &web, "/readyz").0, 200);
    let (code, first) = http("GET", &web, "/metrics");
    assert_eq!(code, 200);
    assert!(first.contains("chaski_node_info{"), "{first}");
    assert!(first.contains("name=\"ChaskiRoot\""));
    assert_eq!(sample(&first, "chaski_edges{kind=\"all\"}"), Some(3.0));
    let publishes = "chaski_frames_received_total{kind=\"Publish\"}";
    let before = sample(&first, publishes).expect("publishes counted");
    let end = Instant::now() + DEADLINE;
    loop {
        let (_, now) = http("GET", &web, "/metrics");
        if sample(&now, publishes).unwrap() > before {
            break;
        }
        assert!(Instant::now() < end, "the publish counter does not rise");
    }
    let (code, page) = http("GET", &web, "/");
    assert_eq!(code, 200);
    for name in ["A", "B", "C", "ChaskiRoot"] {
        assert!(
            page.contains(&format!("data-name=\"{name}\"")),
            "{name} on the page"
        );
    }
    assert_eq!(
        page.matches("<g class=\"link").count(),
        4,
        "every link on the page: {page}"
    );
    let (code, json) = http("GET", &web, "/mesh.json");
    assert_eq!(code, 200);
    let seen: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(seen["nodes"].as_array().unwrap().len(), 4);
    assert_eq!(http("POST", &web, "/metrics").0, 405);
    assert_eq!(http("GET", &web, "/nothing").0, 404);

    // A node whose configured peer does not answer runs, but is not ready.
    let (_d, _, d_err) = start(
        &[
            "node",
            "--bind",
            "127.0.0.1:0",
            "--connect",
            "127.0.0.1:1",
            "--http",
            "0",
        ],
        &[],
    );
    let d_web = http_addr_in(&d_err);
    assert!(
        d_web.starts_with("127.0.0.1:"),
        "a port alone is loopback's: {d_web}"
    );
    assert_eq!(http("GET", &d_web, "/healthz").0, 200);
    let (code, why) = http("GET", &d_web, "/readyz");
    assert_eq!(
        (code, why.as_str()),
        (503, "no edge to a configured peer yet\n")
    );
    // A bad address is a usage error at once.
    let (code, _, err) = run_code(&["root", "--bind", "127.0.0.1:0", "--http", "nowhere"]);
    assert_eq!(code, Some(2), "{err}");
}
