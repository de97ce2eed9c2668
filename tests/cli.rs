//! The `keyledger` command line, run as a process.

use std::process::{Command, Output};

use crate::support::TestStack;

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

async fn run(args: Vec<String>, stdin: Option<Vec<u8>>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(KEYLEDGER);
        command
            .args(&args)
            .env_remove("KEYLEDGER_TOKEN")
            .env_remove("KEYLEDGER_URL");
        match stdin {
            None => command.output().unwrap(),
            Some(bytes) => {
                use std::io::Write;
                let mut child = command
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(&bytes).unwrap();
                child.wait_with_output().unwrap()
            }
        }
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn every_command_has_help() {
    for path in [
        &[][..],
        &["up"],
        &["cluster"],
        &["serve"],
        &["serve", "commands"],
        &["serve", "projector"],
        &["serve", "api"],
        &["token"],
        &["token", "issue"],
        &["secret"],
        &["secret", "create"],
        &["secret", "get"],
        &["secret", "list"],
        &["secret", "delete"],
        &["secret", "restore"],
        &["secret", "put-value"],
        &["secret", "versions"],
        &["secret", "stage"],
        &["container"],
        &["container", "get"],
        &["container", "check"],
        &["audit"],
        &["audit", "log"],
        &["audit", "export"],
        &["audit", "access"],
        &["audit", "state"],
        &["audit", "verify"],
        &["acl"],
        &["acl", "get"],
        &["acl", "set"],
        &["acl", "delete"],
        &["whoami"],
        &["projections"],
        &["projections", "rebuild"],
        &["bench"],
    ] {
        let mut a = args(path);
        a.push("--help".into());
        let out = run(a, None).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{path:?} --help failed");
        assert!(text.contains("Usage: keyledger"), "{path:?}: {text}");
    }
}

#[tokio::test]
async fn up_and_cluster_refuse_each_others_data_directory() {
    // One read model must never fold two logs: `up`'s store is nats/jetstream, a
    // cluster's nats/n1…; each refuses the other's before starting anything.
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    std::fs::create_dir_all(single.join("nats/jetstream")).unwrap();
    let cluster = dir.path().join("cluster");
    std::fs::create_dir_all(cluster.join("nats/n1")).unwrap();
    for (command, data, says) in [
        (
            "cluster",
            &single,
            "holds the store of a single nats-server",
        ),
        ("up", &cluster, "holds the stores of a local cluster"),
    ] {
        let out = run(
            args(&[
                command,
                "--nats-port",
                "0",
                "--data-dir",
                data.to_str().unwrap(),
            ]),
            None,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command} started");
        assert!(stderr.contains(says), "{command}: {stderr}");
    }
}

#[tokio::test]
async fn tokens_from_the_cli_work_against_the_api() {
    let t = TestStack::start().await;
    let data = t.dir.path().to_str().unwrap();
    let out = run(
        args(&[
            "token",
            "issue",
            "--data-dir",
            data,
            "--user",
            "carol",
            "--project",
            "p9",
            "--roles",
            "admin,creator",
            "--ttl",
            "5m",
        ]),
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let r = t.get("/v1/secrets", &token).await;
    assert_eq!(r.status(), 200);

    let bad = run(
        args(&[
            "token",
            "issue",
            "--data-dir",
            data,
            "--user",
            "c",
            "--project",
            "p.1",
        ]),
        None,
    )
    .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("project id \"p.1\" is not valid"));
    t.stop().await;
}

#[tokio::test]
async fn secrets_round_trip_through_the_cli() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let url = t.url("");
    let base = |rest: &[&str]| {
        let mut a = args(rest);
        a.extend(args(&["--url", &url, "--token", &token]));
        a
    };

    // Text from --payload.
    let out = run(
        base(&[
            "secret",
            "create",
            "--name",
            "cli-text",
            "--payload",
            "cli secret",
            "--metadata",
            "team=ops",
        ]),
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text_id = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    // Binary from stdin.
    let bytes = vec![0u8, 1, 2, 200, 255];
    let out = run(
        base(&[
            "secret",
            "create",
            "--name",
            "cli-binary",
            "--secret-type",
            "symmetric",
            "--payload-file",
            "-",
        ]),
        Some(bytes.clone()),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary_id = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let get = run(base(&["secret", "get", &text_id]), None).await;
    let shown = String::from_utf8(get.stdout).unwrap();
    assert!(
        shown.contains("cli-text") && shown.contains("text/plain"),
        "{shown}"
    );
    let payload = run(base(&["secret", "get", &text_id, "--payload"]), None).await;
    assert_eq!(payload.stdout, b"cli secret");
    let payload = run(
        base(&[
            "secret",
            "get",
            &format!("{url}/v1/secrets/{binary_id}"),
            "--payload",
        ]),
        None,
    )
    .await;
    assert_eq!(payload.stdout, bytes);

    let list = run(base(&["secret", "list"]), None).await;
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(
        listed.contains(&text_id) && listed.contains(&binary_id),
        "{listed}"
    );
    let filtered = run(
        base(&["secret", "list", "--secret-type", "symmetric", "--json"]),
        None,
    )
    .await;
    let filtered: serde_json::Value = serde_json::from_slice(&filtered.stdout).unwrap();
    assert_eq!(filtered["total"], 1);

    let delete = run(base(&["secret", "delete", &text_id]), None).await;
    assert!(delete.status.success());
    let gone = run(base(&["secret", "get", &text_id]), None).await;
    assert!(!gone.status.success());
    let err = String::from_utf8(gone.stderr).unwrap();
    assert!(
        err.contains("404 Not Found") && err.contains("Secret not found: no secret"),
        "{err}"
    );

    let invalid = run(base(&["secret", "create", "--bit-length", "0"]), None).await;
    assert!(!invalid.status.success());
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("bit_length 0 is out of range"));
    t.stop().await;
}

#[tokio::test]
async fn whoami_and_acls_through_the_cli() {
    let t = TestStack::start().await;
    let owner = t.token_with("owner", "p1", &["member"]);
    let carol = t.token_with("carol", "p2", &["observer"]);
    let url = t.url("");
    let as_user = |token: &str, rest: &[&str]| {
        let mut a = args(rest);
        a.extend(args(&["--url", &url, "--token", token]));
        a
    };
    let me = run(as_user(&owner, &["whoami"]), None).await;
    let shown = String::from_utf8(me.stdout).unwrap();
    assert!(
        shown.contains("owner")
            && shown.contains("[\"member\"]")
            && shown.contains("effective_roles"),
        "{shown}"
    );

    let id = t.create_text(&owner, "shared", "for carol").await;
    let denied = run(as_user(&carol, &["secret", "get", &id, "--payload"]), None).await;
    assert!(!denied.status.success());
    let err = String::from_utf8(denied.stderr).unwrap();
    assert!(
        err.contains("403 Forbidden")
            && err.contains("or being on its ACL; your token is for project p2"),
        "{err}"
    );
    let set = run(
        as_user(
            &owner,
            &[
                "acl",
                "set",
                &id,
                "--users",
                "carol",
                "--project-access",
                "false",
                "--source-cidr",
                "127.0.0.0/8",
            ],
        ),
        None,
    )
    .await;
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let acl = run(as_user(&owner, &["acl", "get", &id]), None).await;
    let acl: serde_json::Value = serde_json::from_slice(&acl.stdout).unwrap();
    assert_eq!(
        crate::access_control::untimed(acl),
        serde_json::json!({"read": {"project-access": false, "users": ["carol"],
            "conditions": {"source_cidrs": ["127.0.0.0/8"]}}})
    );
    let payload = run(as_user(&carol, &["secret", "get", &id, "--payload"]), None).await;
    assert_eq!(payload.stdout, b"for carol");
    let shared = run(as_user(&carol, &["secret", "list", "--acl-only"]), None).await;
    assert!(String::from_utf8(shared.stdout).unwrap().contains(&id));
    let reset = run(as_user(&owner, &["acl", "delete", &id]), None).await;
    assert!(reset.status.success());
    let again = run(as_user(&carol, &["secret", "get", &id, "--payload"]), None).await;
    assert!(!again.status.success());
    t.stop().await;
}

#[tokio::test]
async fn versions_names_and_recoverable_deletion_through_the_cli() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let url = t.url("");
    let cli = |rest: &[&str]| {
        let mut a = args(rest);
        a.extend(args(&["--url", &url, "--token", &token]));
        a
    };
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // A name with a slash stays one path segment.
    let id = t.create_text(&token, "prod/db", "one").await;
    let v2 = ok(&run(
        cli(&["secret", "put-value", "prod/db", "--payload", "two"]),
        None,
    )
    .await);
    let pending = ok(&run(
        cli(&[
            "secret",
            "put-value",
            "prod/db",
            "--payload",
            "three",
            "--stage",
            "pending",
        ]),
        None,
    )
    .await);
    assert_ne!(pending, v2);
    let versions = ok(&run(cli(&["secret", "versions", "prod/db"]), None).await);
    assert!(
        versions.contains("pending") && versions.contains(&v2),
        "{versions}"
    );
    let current = run(cli(&["secret", "get", "prod/db", "--payload"]), None).await;
    assert_eq!(current.stdout, b"two");
    ok(&run(
        cli(&[
            "secret", "stage", "prod/db", "current", "--to", &pending, "--from", &v2,
        ]),
        None,
    )
    .await);
    let previous = run(
        cli(&[
            "secret",
            "get",
            "prod/db",
            "--version",
            "previous",
            "--payload",
        ]),
        None,
    )
    .await;
    assert_eq!(previous.stdout, b"two");

    ok(&run(
        cli(&["secret", "delete", "prod/db", "--recovery-window-days", "7"]),
        None,
    )
    .await);
    let hidden = run(cli(&["secret", "get", "prod/db"]), None).await;
    assert!(!hidden.status.success());
    // While scheduled, the name no longer resolves; the id does, and restores it.
    ok(&run(cli(&["secret", "restore", &id]), None).await);
    let back = run(cli(&["secret", "get", "prod/db", "--payload"]), None).await;
    assert_eq!(back.stdout, b"three");
    t.stop().await;
}

/// `keyledger bench` runs all three phases against a real stack and reports each
/// without a failure (its figures are for people; this checks that it measures). Two
/// principals' tokens, used in turn: each on a connection of its own, since keyledger
/// answers a command only in its principal's inbox space.
#[tokio::test]
async fn bench_measures_creates_reads_and_visibility() {
    let t = TestStack::start().await;
    let token = format!("{},{}", t.token("bench", "p1"), t.token("bench-2", "p1"));
    let out = run(
        args(&[
            "bench",
            "--nats-url",
            &t.stack.client_url,
            "--url",
            &t.url(""),
            "--token",
            &token,
            "--nats-clients",
            "2",
            "--http-clients",
            "2",
            "--visibility-rate",
            "50",
            "--duration",
            "1s",
        ]),
        None,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Creates are reported twice: by the first phase, and by the visibility phase for
    // the commands it sends at its rate.
    for (phase, times) in [
        ("commands (NATS secret.create)", 2),
        ("reads (HTTP GET payload)", 1),
        ("acknowledged -> visible to HTTP reads", 1),
    ] {
        let lines: Vec<_> = text.lines().filter(|l| l.contains(phase)).collect();
        assert_eq!(lines.len(), times, "{phase} in:\n{text}");
        for line in lines {
            assert!(line.contains(" 0 failed"), "{line}");
            assert!(!line.contains(": 0 ok"), "{line}");
        }
    }
    t.stop().await;
}
