//! The components run as separate processes against an external NATS, as in a real
//! deployment: `keyledger serve commands`, `serve projector` (and a standby) and
//! `serve api`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use infra::server::ManagedNats;
use serde_json::{Value, json};

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

/// A component process, killed when dropped. Its stderr is copied to the test's
/// output (where errors then show) and kept for [`Component::line_with`].
struct Component {
    child: Child,
    lines: Option<std::sync::mpsc::Receiver<String>>,
    /// Lines read while waiting for others, for a later [`Component::line_with`].
    passed: Vec<String>,
}

impl Drop for Component {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Component {
    /// Waits for a line of stderr that contains `needle`, and returns it.
    async fn line_with(&mut self, needle: &'static str) -> String {
        if let Some(i) = self.passed.iter().position(|l| l.contains(needle)) {
            return self.passed.remove(i);
        }
        let lines = self.lines.take().unwrap();
        let (line, lines, passed) = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let mut passed = Vec::new();
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match lines.recv_timeout(left) {
                    Ok(line) if line.contains(needle) => return (line, lines, passed),
                    Ok(line) => passed.push(line),
                    Err(_) => panic!("no line with {needle:?} within 20 s"),
                }
            }
        })
        .await
        .unwrap();
        self.lines = Some(lines);
        self.passed.extend(passed);
        line
    }

    /// The `http://…` base of its `/metrics`, `/healthz` and `/readyz`.
    async fn ops(&mut self) -> String {
        let line = self.line_with("keyledger metrics and health on ").await;
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .to_owned()
    }
}

fn serve(component: &str, nats_url: &str, data: &std::path::Path, extra: &[&str]) -> Component {
    let mut child = Command::new(KEYLEDGER)
        .args(["serve", component, "--nats-url", nats_url, "--data-dir"])
        .arg(data)
        .args(extra)
        // Warnings, and the projectors' hand-over of the read model.
        .env("RUST_LOG", "warn,projections::projector=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a component");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = tx.send(line);
        }
    });
    Component {
        child,
        lines: Some(rx),
        passed: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_projector_and_api_run_as_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    // "External" NATS: started here, not by keyledger.
    let nats_host = dir.path().join("nats-host");
    std::fs::create_dir_all(&nats_host).unwrap();
    let nats = ManagedNats::start(
        &keyledger::stack::managed_server_config(&nats_host, None, None, "KEYLEDGER", None)
            .expect("nats-server (scripts/test installs it)"),
    )
    .await
    .unwrap();
    let url = nats.service_url();
    let data = dir.path().join("node");
    std::fs::create_dir_all(&data).unwrap();

    // Components start in any order. Here the projector comes first, before the
    // command service has created the event stream: it waits for the stream and
    // applies the first commit as soon as there is one (it once backed off for
    // seconds, longer than a read waits for its write).
    infra::keyfile::commit_key(&data.join("commit.key")).unwrap();
    // Each serves its metrics and health on a port of its own.
    let ops = ["--metrics-addr", "127.0.0.1:0"];
    let mut projector = serve("projector", &url, &data, &ops);
    projector.line_with("does not exist yet").await;
    let projector_ops = projector.ops().await;
    // Its clients' intake is another user of the same servers (`keyledger
    // nats-config`): here the password of the NATS host's directory, not the node's.
    let intake = nats.intake_url();
    let mut commands = serve(
        "commands",
        &url,
        &data,
        &[&ops[..], &["--nats-intake-url", &intake]].concat(),
    );
    let commands_ops = commands.ops().await;
    // The API is ready only while the read model is at most one commit behind.
    let mut api = serve(
        "api",
        &url,
        &data,
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--ready-max-lag",
            "1",
        ],
    );
    let api_ops = api.ops().await;
    let listening = api.line_with("keyledger API listening on ").await;
    let addr = listening
        .split("keyledger API listening on ")
        .nth(1)
        .unwrap()
        .to_owned();

    let token = String::from_utf8(
        Command::new(KEYLEDGER)
            .args([
                "token",
                "issue",
                "--user",
                "ops",
                "--project",
                "prod",
                "--data-dir",
            ])
            .arg(&data)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();

    // The command service may still be subscribing: retry "unavailable" with a deadline.
    let http = crate::support::http();
    let created = crate::support::eventually("the command service", Duration::from_secs(20), || {
        let request = http
            .post(format!("{addr}/v1/secrets"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "deploy-1")
            .json(&json!({"name": "split", "payload": "across processes", "payload_content_type": "text/plain"}));
        async move {
            let r = request.send().await.ok()?;
            match r.status().as_u16() {
                201 => Some(r),
                503 => None,
                other => panic!("creating failed with {other}: {}", r.text().await.unwrap_or_default()),
            }
        }
    })
    .await;
    let seq = created.headers()["x-keyledger-seq"]
        .to_str()
        .unwrap()
        .to_owned();
    let id = crate::support::id_of(&created.json::<Value>().await.unwrap());
    // The API polls the projector's checkpoint (no projector in its process). The
    // write returns once the read model shows it, or after the consistency timeout
    // on a loaded machine: the read names the write's sequence to be sure.
    let payload = http
        .get(format!("{addr}/v1/secrets/{id}/payload"))
        .bearer_auth(&token)
        .header("X-Keyledger-Min-Seq", seq)
        .send()
        .await
        .unwrap();
    let status = payload.status();
    let text = payload.text().await.unwrap();
    assert_eq!((status.as_u16(), text.as_str()), (200, "across processes"));

    // Every component reports its own work on /metrics, and is ready.
    let metrics = |ops: &String| {
        let request = http.get(format!("{ops}/metrics"));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let command_metrics = metrics(&commands_ops).await;
    assert!(
        command_metrics
            .contains(r#"keyledger_commands_total{command="secret.create",outcome="accepted"} 1"#),
        "{command_metrics}"
    );
    let api_metrics = metrics(&api_ops).await;
    assert!(
        api_metrics.contains(r#"keyledger_payload_reads_total{outcome="allowed"} 1"#),
        "{api_metrics}"
    );
    let projected =
        crate::support::eventually("the projector's gauge", Duration::from_secs(20), || {
            let m = metrics(&projector_ops);
            async move {
                let m = m.await;
                m.contains("keyledger_projector_applied_sequence 1")
                    .then_some(m)
            }
        })
        .await;
    assert!(
        projected.contains("keyledger_projector_lag_commits 0"),
        "{projected}"
    );
    for ops in [&commands_ops, &projector_ops, &api_ops] {
        let ready = http.get(format!("{ops}/readyz")).send().await.unwrap();
        assert_eq!(
            ready.status(),
            200,
            "{ops}: {}",
            ready.text().await.unwrap()
        );
    }
    // `keyledger status` finds the three processes.
    let status = Command::new(KEYLEDGER)
        .args(["status", "--json", "--nats-url", &url])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status.status.success(), "{report}");
    let mut components: Vec<String> = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["components"].as_array().unwrap().iter())
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    components.sort();
    assert_eq!(components, ["api", "commands", "projector"], "{report}");

    // NATS clients are admitted by `serve nats-auth`, signing with the key whose public
    // half the server's configuration names.
    let callout_key = nats_host.join("nats-callout.key");
    let _auth = serve(
        "nats-auth",
        &nats.callout_url(),
        &data,
        &["--callout-key-file", callout_key.to_str().unwrap()],
    );
    let client_url = nats.client_url();
    let client = crate::support::eventually("the auth callout", Duration::from_secs(20), || {
        let (url, token) = (client_url.clone(), token.clone());
        async move {
            infra::nats::connect_as_client(&url, "deployment", &token)
                .await
                .ok()
        }
    })
    .await;
    let reply = crate::support::raw_command(
        &client,
        "secret.metadata.set",
        Some(&token),
        &json!({"id": id, "key": "via", "value": "nats"}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");

    // A second projector, on the same read model through a symbolic link, stands by
    // on its lock; when the first one dies it takes over from the checkpoint.
    let alias = dir.path().join("alias.sqlite");
    std::os::unix::fs::symlink(data.join(keyledger::stack::READ_MODEL_FILE), &alias).unwrap();
    let alias = projections::db::sqlite_url(&alias);
    let mut standby = serve("projector", &url, &data, &["--database", &alias]);
    standby.line_with("standing by").await;
    drop(projector);
    standby.line_with("took over the read model").await;
    let taken_over = crate::support::raw_command(
        &client,
        "secret.metadata.set",
        Some(&token),
        &json!({"id": id, "key": "via", "value": "standby"}),
    )
    .await;
    let seq = taken_over["seq"].as_u64().unwrap();
    let metadata = http
        .get(format!("{addr}/v1/secrets/{id}/metadata"))
        .bearer_auth(&token)
        .header("X-Keyledger-Min-Seq", seq.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), 200);
    assert_eq!(
        metadata.json::<Value>().await.unwrap()["metadata"]["via"],
        "standby"
    );

    // Without a projector the read model stays behind the log: a read naming a
    // later sequence waits out the consistency timeout, then answers 503 with
    // Retry-After, and the write it waited for is still in the log.
    drop(standby);
    let later = crate::support::raw_command(
        &client,
        "secret.metadata.set",
        Some(&token),
        &json!({"id": id, "key": "via", "value": "lagging"}),
    )
    .await;
    assert_eq!(later["ok"], true, "{later}");
    let seq = later["seq"].as_u64().unwrap();
    let lagging = http
        .get(format!("{addr}/v1/secrets/{id}"))
        .bearer_auth(&token)
        .header("X-Keyledger-Min-Seq", seq.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(lagging.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(lagging.headers()["retry-after"], "1");
    let text = lagging.text().await.unwrap();
    assert!(text.contains(&format!("did not reach {seq}")), "{text}");
    // One commit behind, within the lag allowed, but still for longer than 10 s: the
    // projector is gone, and the API says so.
    let stalled =
        crate::support::eventually("a stalled read model", Duration::from_secs(40), || {
            let request = http.get(format!("{api_ops}/readyz"));
            async move {
                let report: Value = request.send().await.ok()?.json().await.ok()?;
                let check = report["checks"]
                    .as_array()?
                    .iter()
                    .find(|c| c["name"] == "api.read_model")?
                    .clone();
                (check["ok"] == false).then_some(check)
            }
        })
        .await;
    let detail = stalled["detail"].as_str().unwrap();
    assert!(
        detail.contains("has not moved") && detail.contains("1 commits behind"),
        "{detail}"
    );
    // Two commits behind, more than the one allowed: the API is not ready, and says
    // why, on its own port and on its operations port.
    let more = crate::support::raw_command(
        &client,
        "secret.metadata.set",
        Some(&token),
        &json!({"id": id, "key": "via", "value": "still lagging"}),
    )
    .await;
    assert_eq!(more["ok"], true, "{more}");
    // The details (sequences) only on the operations port: the API's is public.
    for (base, detail) in [(&addr, None), (&api_ops, Some("2 commits behind"))] {
        let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        let report: Value = ready.json().await.unwrap();
        let failing: Vec<&Value> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .collect();
        assert_eq!(failing.len(), 1, "{report}");
        assert_eq!(failing[0]["name"], "api.read_model");
        match detail {
            Some(detail) => {
                let found = failing[0]["detail"].as_str().unwrap();
                assert!(found.contains(detail), "{found}");
            }
            None => assert!(
                report["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c.get("detail").is_none()),
                "{report}"
            ),
        }
    }
    nats.stop().await;
}

/// A projector that cannot start (here: a database it cannot write) says why and
/// exits with status 1, standby or not: never a panic, never the password.
#[test]
fn a_projector_that_cannot_start_says_why() {
    let dir = tempfile::tempdir().unwrap();
    infra::keyfile::commit_key(&dir.path().join("commit.key")).unwrap();
    let output = Command::new(KEYLEDGER)
        .args(["serve", "projector", "--nats-url", "nats://127.0.0.1:1"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--database", "mysql://app:s3cret@127.0.0.1:1/keyledger"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("use sqlite://<path>") && stderr.contains("or postgres://"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("s3cret"),
        "{stderr}"
    );
}

/// A nats-server without keyledger's accounts takes any user into one account, where
/// both of the command service's intakes would take NATS clients' commands, one of them
/// without the check of their reply subjects: the command service refuses to start
/// there, and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_service_refuses_a_nats_server_without_keyledgers_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let ports = dir.path().join("ports");
    std::fs::create_dir_all(&ports).unwrap();
    // The server picks its own port and writes it down: a port found free beforehand
    // can be taken by another test's server in between.
    let binary = infra::server::find_binary(None).expect("nats-server (scripts/test installs it)");
    let log = dir.path().join("nats-server.log");
    let server = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
        .arg(dir.path().join("jetstream"))
        .arg("--ports_file_dir")
        .arg(&ports)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start nats-server");
    let _server = Component {
        child: server,
        lines: None,
        passed: Vec::new(),
    };
    let url = crate::support::eventually(
        "nats-server's ports file",
        Duration::from_secs(10),
        || async {
            // A server that failed to start says why, rather than the wait timing out.
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!said.contains("[FTL]"), "nats-server failed:\n{said}");
            let file = std::fs::read_dir(&ports).ok()?.flatten().next()?.path();
            let written: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
            written["nats"][0].as_str().map(str::to_owned)
        },
    )
    .await;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let data = dir.path().join("node");
    std::fs::create_dir_all(&data).unwrap();
    let mut commands = tokio::process::Command::new(KEYLEDGER)
        .args(["serve", "commands", "--nats-url"])
        .arg(format!("nats://keyledger:any@127.0.0.1:{port}"))
        .arg("--nats-intake-url")
        .arg(format!("nats://intake:any@127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read beside the wait, so that what it said is shown if it does not give up.
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = commands.stderr.take().unwrap();
    let reading = tokio::spawn({
        let said = said.clone();
        async move {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(&mut stderr, &mut chunk).await {
                said.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        }
    });
    let Ok(status) = tokio::time::timeout(Duration::from_secs(60), commands.wait()).await else {
        panic!(
            "the command service still serves after 60 s; it said:\n{}",
            said.lock().unwrap()
        );
    };
    reading.await.unwrap();
    let stderr = said.lock().unwrap().clone();
    assert!(!status.unwrap().success(), "{stderr}");
    assert!(
        stderr.contains("global account ($G)")
            && stderr.contains("lacks keyledger's accounts")
            && stderr.contains("keyledger nats-config"),
        "{stderr}"
    );
}
