//! Running keyledger as an operator does: Prometheus metrics scraped and parsed with a
//! real parser while load runs, readiness that follows NATS, and `keyledger status`.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_parse::Value;
use serde_json::json;

use crate::support::metrics::{observations, scrape, value};
use crate::support::up::Up;
use crate::support::{TestStack, eventually, id_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_and_parsed_during_a_load_run() {
    let up = Up::spawn(|_| {}).await;
    let http = crate::support::http();
    let owner = up.token("owner", "p1", "creator");
    let auditor = up.token("audrey", "p1", "audit");
    let before = scrape(&http, &up.ops).await;
    // Series alerts compare against are there from the start.
    assert_eq!(
        value(
            &before,
            "keyledger_payload_reads_total",
            &[("outcome", "denied")]
        ),
        0.0
    );
    assert_eq!(value(&before, "keyledger_build_info", &[]), 1.0);
    assert!(
        before.docs.contains_key("keyledger_payload_reads_total"),
        "{:?}",
        before.docs
    );

    // 8 writers each create 10 secrets and read each back, while the test scrapes.
    const WRITERS: usize = 8;
    const EACH: usize = 10;
    let payload = "metrics-canary-7f3a";
    let load = tokio::spawn({
        let (http, api, owner) = (http.clone(), up.http.clone(), owner.clone());
        async move {
            let mut writers = Vec::new();
            for w in 0..WRITERS {
                let (http, api, owner) = (http.clone(), api.clone(), owner.clone());
                writers.push(tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for n in 0..EACH {
                        let r = http
                            .post(format!("{api}/v1/secrets"))
                            .bearer_auth(&owner)
                            .json(&json!({"name": format!("load-{w}-{n}"), "payload": payload, "payload_content_type": "text/plain"}))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 201);
                        let id = id_of(&r.json().await.unwrap());
                        let read = http
                            .get(format!("{api}/v1/secrets/{id}/payload"))
                            .bearer_auth(&owner)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(read.status(), 200);
                        ids.push(id);
                    }
                    ids
                }));
            }
            let mut ids = Vec::new();
            for w in writers {
                ids.extend(w.await.unwrap());
            }
            ids
        }
    });
    // Scrapes while the load runs parse, and counters only grow.
    let mut last = 0.0;
    let mut scrapes_during = 0;
    while !load.is_finished() {
        let during = scrape(&http, &up.ops).await;
        let created = value(
            &during,
            "keyledger_commands_total",
            &[("command", "secret.create")],
        );
        assert!(
            created >= last,
            "a counter went down: {last} then {created}"
        );
        last = created;
        scrapes_during += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(scrapes_during > 0);
    let ids = load.await.unwrap();
    // A refused payload read.
    let r = http
        .get(format!("{}/v1/secrets/{}/payload", up.http, ids[0]))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let total = (WRITERS * EACH) as f64;
    let after = scrape(&http, &up.ops).await;
    let accepted = [("command", "secret.create"), ("outcome", "accepted")];
    assert_eq!(value(&after, "keyledger_commands_total", &accepted), total);
    assert_eq!(
        observations(
            &after,
            "keyledger_command_duration_seconds",
            &[("command", "secret.create")]
        ),
        total
    );
    // Every commit went through the group commit, alone or batched (the parser keeps
    // a histogram's buckets, not its sum: read the sum from the text).
    let text = http
        .get(format!("{}/metrics", up.ops))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Each create writes one commit on the log and one wrapped key on the key bucket,
    // each through its own group-commit writer.
    for stream in ["events", "keys"] {
        let written: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "keyledger_group_commit_batch_size_sum{{stream=\"{stream}\"}} "
                ))
            })
            .unwrap_or_else(|| panic!("the batch-size histogram of {stream}"))
            .parse()
            .unwrap();
        assert_eq!(written, total, "{stream}");
        let batches = observations(
            &after,
            "keyledger_group_commit_batch_size",
            &[("stream", stream)],
        );
        assert!((1.0..=total).contains(&batches), "{stream}: {batches}");
        // And each of those writes waited for its writer once.
        let waits = observations(
            &after,
            "keyledger_group_commit_wait_seconds",
            &[("stream", stream)],
        );
        assert_eq!(waits, total, "{stream}");
    }
    assert_eq!(
        value(
            &after,
            "keyledger_payload_reads_total",
            &[("outcome", "allowed")]
        ),
        total
    );
    assert_eq!(
        value(
            &after,
            "keyledger_payload_reads_total",
            &[("outcome", "denied")]
        ),
        1.0
    );
    // Each read's record, and the refusal's, is stored; none failed.
    assert_eq!(
        value(
            &after,
            "keyledger_access_records_total",
            &[("outcome", "ok")]
        ),
        total + 1.0
    );
    assert_eq!(
        value(
            &after,
            "keyledger_access_records_total",
            &[("outcome", "failed")]
        ),
        0.0
    );
    let batches = value(
        &after,
        "keyledger_access_record_batches_total",
        &[("outcome", "ok")],
    );
    assert!((1.0..=total + 1.0).contains(&batches), "{batches}");
    let route = [
        ("method", "POST"),
        ("route", "/v1/secrets"),
        ("status", "201"),
    ];
    assert_eq!(
        value(&after, "keyledger_http_requests_total", &route),
        total
    );
    // (prometheus-parse misreads braces inside a label value: from the text.)
    let reads = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"keyledger_http_requests_total{method="GET",route="/v1/secrets/{id}/payload",status="200"} "#,
            )
        })
        .expect("payload reads by route");
    assert_eq!(reads.parse::<f64>().unwrap(), total);
    // Each payload read looked in the caches.
    let lookups = value(
        &after,
        "keyledger_cache_requests_total",
        &[("cache", "payload_rows")],
    );
    assert!(lookups >= total, "{lookups}");
    // The projector applies everything: 80 commits, lag 0.
    let caught_up = eventually("the projector's gauges", Duration::from_secs(20), || {
        let http = http.clone();
        let ops = up.ops.clone();
        async move {
            let s = scrape(&http, &ops).await;
            (value(&s, "keyledger_projector_applied_sequence", &[]) >= total).then_some(s)
        }
    })
    .await;
    assert_eq!(
        value(&caught_up, "keyledger_projector_lag_commits", &[]),
        0.0
    );
    assert_eq!(
        value(&caught_up, "keyledger_projector_lag_seconds", &[]),
        0.0
    );
    assert_eq!(
        value(
            &caught_up,
            "keyledger_nats_reconnects_total",
            &[("connection", "keyledger-api")]
        ),
        0.0
    );
    // The scheduler has looked for due work, and the checkpointer signs.
    let signed = eventually(
        "a checkpoint and a scheduler pass",
        Duration::from_secs(30),
        || {
            let http = http.clone();
            let ops = up.ops.clone();
            async move {
                let s = scrape(&http, &ops).await;
                (value(&s, "keyledger_checkpoint_tree_size", &[]) >= total
                    && value(&s, "keyledger_scheduler_last_run_timestamp_seconds", &[]) > 0.0)
                    .then_some(s)
            }
        },
    )
    .await;
    assert!(value(&signed, "keyledger_checkpoint_age_seconds", &[]) < 60.0);

    // Names follow Prometheus's conventions; labels hold no caller's strings: no
    // payload, secret name or id, user or project (project labels are off).
    let text = http
        .get(format!("{}/metrics", up.ops))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        payload,
        "load-0-0",
        ids[0].as_str(),
        "owner",
        "audrey",
        "p1",
    ] {
        assert!(!text.contains(needle), "/metrics shows {needle:?}");
    }
    for sample in &signed.samples {
        assert!(sample.metric.starts_with("keyledger_"), "{}", sample.metric);
        if matches!(sample.value, Value::Counter(_)) {
            assert!(sample.metric.ends_with("_total"), "{}", sample.metric);
        }
    }
    let labels: HashMap<&str, usize> = signed
        .samples
        .iter()
        .flat_map(|s| s.labels.keys().map(String::as_str).collect::<Vec<_>>())
        .fold(HashMap::new(), |mut m, k| {
            *m.entry(k).or_default() += 1;
            m
        });
    assert!(!labels.contains_key("project"), "{labels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_labels_are_there_only_when_the_operator_turns_them_on() {
    let up = Up::spawn(|c| {
        c.arg("--metrics-project-labels");
    })
    .await;
    let http = crate::support::http();
    let token = up.token("owner", "tenant-a", "creator");
    let r = http
        .post(format!("{}/v1/secrets", up.http))
        .bearer_auth(&token)
        .json(&json!({"name": "labelled", "payload": "x", "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s = scrape(&http, &up.ops).await;
    let labelled = [
        ("command", "secret.create"),
        ("outcome", "accepted"),
        ("project", "tenant-a"),
    ];
    assert_eq!(value(&s, "keyledger_commands_total", &labelled), 1.0);
}

/// Readiness follows NATS: a hung nats-server (SIGSTOP: its connections stay open and
/// nothing answers) makes `/readyz` answer 503 naming what failed, within the checks'
/// timeout; once it continues, ready again. Liveness never depends on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_flips_when_nats_stops_and_recovers() {
    let t = TestStack::start().await;
    let ready = || async {
        let r = t.http.get(t.url("/readyz")).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };
    let (status, report) = ready().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ready"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for check in [
        "commands.nats",
        "commands.api.nats",
        "commands.kek",
        "commands.scheduler",
        "projector.read_model",
        "api.nats",
        "api.read_model",
        "api.read_model_reachable",
    ] {
        assert!(names.contains(&check), "{check} missing from {names:?}");
    }

    let pid = t.stack.nats_pid().expect("a managed nats-server");
    assert!(!all_threads_stopped(pid), "nats-server {pid} runs");
    let hung = Hung(pid);
    // SAFETY: kill(2) on the stack's own child.
    let stopped = unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    assert_eq!(
        stopped,
        0,
        "SIGSTOP to nats-server {pid}: {}",
        std::io::Error::last_os_error()
    );
    // The stop reaches each of the server's threads as it is next scheduled, after
    // kill(2) has returned: in CI (both cores busy with other tests) the server once
    // answered the report right after. Once every thread shows stopped, nothing sent
    // later is answered.
    eventually(
        "every thread of nats-server stopped",
        Duration::from_secs(10),
        || async { all_threads_stopped(pid).then_some(()) },
    )
    .await;
    let (status, report) = ready().await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["ready"], false);
    let failing = crate::support::failing_checks(&report);
    assert!(failing.contains(&"api.read_model"), "{report}");
    let alive = t.http.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), 200);

    drop(hung);
    eventually("ready again", Duration::from_secs(30), || async {
        let (status, _) = ready().await;
        (status == 200).then_some(())
    })
    .await;

    // A log that refuses new messages (its limit reached, discard new) is not ready:
    // writes would fail.
    t.create_text(&t.token("alice", "p1"), "one", "x").await;
    let js = async_nats::jetstream::new(
        infra::nats::connect(&t.stack.service_url, "test")
            .await
            .unwrap(),
    );
    let mut stream = js.get_stream("KEYLEDGER").await.unwrap();
    let info = stream.info().await.unwrap().clone();
    let mut config = info.config.clone();
    config.max_messages = i64::try_from(info.state.messages).unwrap();
    config.discard = async_nats::jetstream::stream::DiscardPolicy::New;
    js.update_stream(config).await.unwrap();
    let (status, report) = ready().await;
    assert_eq!(status, 503, "{report}");
    let failing = crate::support::failing_checks(&report);
    assert_eq!(failing, ["commands.stream.KEYLEDGER"], "{report}");
}

/// Whether every thread of process `pid` is stopped (state `T` in
/// `/proc/<pid>/task/<tid>/stat`, after the parenthesised name, which may hold spaces).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.into_iter().all(|thread| {
        thread
            .ok()
            .and_then(|t| std::fs::read_to_string(t.path().join("stat")).ok())
            .and_then(|stat| {
                stat.rsplit_once(") ")
                    .map(|(_, rest)| rest.starts_with('T'))
            })
            .unwrap_or(false)
    })
}

/// A hung process, continued when dropped (also when the test fails meanwhile).
struct Hung(u32);

impl Drop for Hung {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid the test stopped.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

/// `keyledger status` shows the deployment: its streams, consumers, checkpoint and the
/// processes' checks; it exits 0 when all are ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_whole_deployment() {
    let up = Up::spawn(|_| {}).await;
    let http = crate::support::http();
    let token = up.token("owner", "p1", "creator");
    let r = http
        .post(format!("{}/v1/secrets", up.http))
        .bearer_auth(&token)
        .json(&json!({"name": "s", "payload": "x", "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyledger"))
        .args(["status", "--json", "--nats-url", &up.service_url()])
        .args([
            "--expect",
            "commands",
            "--expect",
            "projector",
            "--expect",
            "api",
        ])
        .output()
        .await
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["ready"], true, "{report}");
    let processes = report["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "{report}");
    assert_eq!(
        processes[0]["components"],
        json!(["commands", "projector", "api"]),
        "{report}"
    );
    let streams: Vec<&str> = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["present"] == true)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        streams,
        [
            "KEYLEDGER",
            "KEYLEDGER_ACCESS",
            "KEYLEDGER_CHECKPOINTS",
            "KV_KEYLEDGER_KEYS"
        ]
    );
    let consumers: Vec<&str> = report["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        consumers,
        ["keyledger-key-shredder", "keyledger-order-worker"]
    );

    // As text, for people.
    let text = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyledger"))
        .args(["status", "--nats-url", &up.service_url()])
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(
        out.contains("api.read_model") && out.contains("Ready."),
        "{out}"
    );

    // A second API replica was expected, and none answered: not ready.
    let short = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyledger"))
        .args(["status", "--nats-url", &up.service_url()])
        .args(["--expect", "api", "--expect", "api"])
        .output()
        .await
        .unwrap();
    assert!(!short.status.success());
    let out = String::from_utf8_lossy(&short.stdout);
    assert!(
        out.contains("MISSING api") && out.contains("Not ready."),
        "{out}"
    );

    // The auditor may not read keyledger's streams: told so at once.
    let auditor = format!(
        "nats://{}:{}@{}",
        infra::server::AUDITOR_USER,
        std::fs::read_to_string(up.data_dir().join(infra::server::AUDITOR_PASSWORD_FILE))
            .unwrap()
            .trim(),
        up.nats
    );
    let started = std::time::Instant::now();
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyledger"))
        .args(["status", "--nats-url", &auditor])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("service user"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
