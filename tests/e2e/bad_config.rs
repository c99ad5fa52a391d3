//! Bad configuration exits non-zero with one clear sentence, not a backtrace.

use roster_testkit::app;
use std::net::TcpListener;

fn run_fails(args: &[&str], expect: &str) {
    let out = app::roster().args(args).output().expect("run roster");
    assert!(!out.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Log lines may precede it; the verdict is the last line, one sentence.
    let last = stderr
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.starts_with("roster: "),
        "last line is not the error: {stderr}"
    );
    assert!(
        last.contains(expect),
        "{last:?} does not mention {expect:?}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "{stderr}"
    );
}

#[test]
fn port_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = app::temp_dir("port");
    let data = data.to_str().unwrap();
    let args = [
        "serve",
        "--data-dir",
        data,
        "--grpc-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "off",
        "--http-addr",
        &addr,
    ];
    run_fails(&args, "cannot listen on");
}

#[test]
fn unreachable_database() {
    // Port 1 is never a PostgreSQL server.
    run_fails(
        &[
            "migrate",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/roster",
        ],
        "cannot connect to PostgreSQL",
    );
}

#[test]
fn malformed_database_url() {
    run_fails(
        &["migrate", "--database-url", "mysql://nope"],
        "malformed DATABASE_URL",
    );
}

#[test]
fn unusable_data_directory() {
    let dir = app::temp_dir("file");
    let file = dir.join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    run_fails(
        &["migrate", "--data-dir", file.to_str().unwrap()],
        "data directory",
    );
}

#[test]
fn malformed_directory_endpoint() {
    run_fails(
        &["watch", "--endpoint", "not a url"],
        "malformed directory endpoint",
    );
}

#[test]
fn incomplete_or_unreadable_tls_files() {
    run_fails(
        &[
            "directory",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/roster",
            "--tls-cert",
            "/nonexistent/tls.crt",
        ],
        "mutual TLS needs all of --tls-cert, --tls-key and --tls-client-ca",
    );
    // A gateway that must speak TLS to its directory service.
    let gateway = [
        "gateway",
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "off",
        "--directory-endpoint",
        "https://roster-directory:50051",
    ];
    let unreadable = [
        "--directory-tls-cert",
        "/nonexistent/tls.crt",
        "--directory-tls-key",
        "/nonexistent/tls.key",
        "--directory-tls-ca",
        "/nonexistent/ca.crt",
    ];
    run_fails(
        &[&gateway[..], &unreadable[..]].concat(),
        "cannot read /nonexistent/tls.crt",
    );
    run_fails(
        &gateway,
        "an https:// endpoint needs the directory TLS certificate",
    );
}

#[test]
fn a_lone_directory_service_needs_postgresql() {
    // `app::roster()` clears DATABASE_URL: a split deployment's directory
    // service must not silently start on a private SQLite file.
    run_fails(
        &[
            "directory",
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "off",
        ],
        "`roster directory` needs PostgreSQL",
    );
}

#[test]
fn unreadable_or_empty_webhook_ca() {
    let data = app::temp_dir("webhook_ca");
    let empty = data.join("empty.crt");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(&empty, "").unwrap();
    let serve = |ca: &str| {
        let data = data.to_str().unwrap().to_owned();
        [
            "serve",
            "--data-dir",
            &data,
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "off",
            "--webhook-ca",
            ca,
        ]
        .map(str::to_owned)
    };
    let args = serve("/nonexistent/ca.crt");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_fails(
        &args,
        "--webhook-ca / ROSTER_WEBHOOK_CA: cannot read /nonexistent/ca.crt",
    );
    let args = serve(empty.to_str().unwrap());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_fails(&args, "no CERTIFICATE block");
}
