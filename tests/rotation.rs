//! The rotation runner on a real stack with a controlled clock: a scheduled rotation
//! starts once when it falls due, even with two runners racing; each step's outcome is
//! recorded once; a failing step is retried after its delay and then ends the run,
//! leaving AWSCURRENT where it was. The handler is a plain NATS service connected as
//! the `rotation` user. (boto3 and AWS's template drive rotation end to end in
//! `aws_clients.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use domain::principal::Actor;
use domain::secret::version::Stage;
use domain::secret::{SecretEvent, SecretState, evolve};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::{TestClock, TestStack, eventually, raw_command};

const WAIT: Duration = Duration::from_secs(15);

/// A handler that refuses every step, counting the requests it gets.
async fn refusing_handler(t: &TestStack, name: &str) -> Arc<AtomicUsize> {
    let password = std::fs::read_to_string(t.dir.path().join("nats-rotation.key")).unwrap();
    let nats = async_nats::ConnectOptions::with_user_and_password("rotation".into(), password)
        .connect(&t.stack.client_url)
        .await
        .expect("the rotation user connects");
    let subject = format!("keyledger.rotate.{name}");
    let mut requests = nats
        .queue_subscribe(subject.clone(), subject)
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let event: Value = serde_json::from_slice(&request.payload).unwrap();
            assert!(
                event["SecretId"]
                    .as_str()
                    .unwrap()
                    .starts_with("arn:aws:secretsmanager:")
            );
            count.fetch_add(1, Ordering::SeqCst);
            let reply = json!({"errorType": "ValueError", "errorMessage": format!("{} refused", event["Step"].as_str().unwrap())});
            if let Some(to) = request.reply {
                nats.publish(to, reply.to_string().into()).await.unwrap();
            }
        }
    });
    asked
}

#[tokio::test]
async fn a_scheduled_rotation_starts_once_with_two_runners_and_fails_after_its_retries() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| c.clock = clock.clock()).await;
    // A second command component: a second rotation runner racing the first.
    let extra = tokio_util::sync::CancellationToken::new();
    let _second = keyledger::stack::start_commands(
        &t.stack.service_url,
        &t.stack.keys,
        &t.config.log,
        keyledger::stack::CommandSettings {
            intake_url: t.stack.intake_url.clone(),
            handler: t.config.handler.clone(),
            database_url: t.stack.database_url.clone(),
            scheduler_interval: Duration::from_millis(50),
            rotation: t.config.rotation,
            orders: Default::default(),
            checkpoints: t.config.checkpoints.clone().unwrap(),
            log_tap: None,
        },
        t.config.clock.clone(),
        &Default::default(),
        extra.clone(),
    )
    .await
    .unwrap();
    let asked = refusing_handler(&t, "nightly").await;

    let token = t.token("alice", "p1");
    let id = t.create_text(&token, "db-password", "first").await;
    let nats = t.client_nats_as(&token).await;
    let reply = raw_command(
        &nats,
        "secret.rotate",
        Some(&token),
        &json!({"id": id, "handler": "nightly", "automatically_after_days": 1,
                "rotate_immediately": false}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(
        reply.get("version_id").is_none(),
        "nothing started yet: {reply}"
    );

    // A day later the rotation is due; then each poll moves the clock a second, so
    // the failed step's retry (300 ms in these tests) falls due too.
    clock.advance(Duration::from_secs(86_400));
    let failures = eventually("the rotation to fail for good", WAIT, || async {
        clock.advance(Duration::from_secs(1));
        let failed: Vec<_> = t
            .commits_of(&id)
            .await
            .into_iter()
            .flat_map(|c| c.body.events)
            .filter_map(|e| match e {
                SecretEvent::RotationStepFailed(f) => Some(f),
                _ => None,
            })
            .collect();
        failed
            .iter()
            .any(|f| f.retry_at.is_none())
            .then_some(failed)
    })
    .await;
    // Two attempts, each recorded once, the first with its retry.
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].retry_at.is_some());
    assert!(
        failures
            .iter()
            .all(|f| f.reason == "ValueError: createSecret refused")
    );
    let commits = t.commits_of(&id).await;
    let started: Vec<_> = commits
        .iter()
        .filter(|c| {
            c.body
                .events
                .iter()
                .any(|e| matches!(e, SecretEvent::RotationStarted(_)))
        })
        .collect();
    assert_eq!(started.len(), 1, "started once");
    assert_eq!(started[0].body.actor, Actor::rotator());
    // The handler was asked at least once per attempt; a racing runner may ask again,
    // which AWS's contract lets a handler take.
    assert!((2..=4).contains(&asked.load(Ordering::SeqCst)));

    // AWSCURRENT stayed; AWSPENDING is on the run's version, which has no value.
    let state = t
        .commits_of(&id)
        .await
        .into_iter()
        .flat_map(|c| c.body.events)
        .fold(SecretState::Absent, |s, e| evolve(s, &e));
    let SecretState::Live(secret) = state else {
        panic!("the secret is live")
    };
    let current = secret.staged(Stage::Current).expect("a current version");
    assert_eq!(secret.versions.len(), 1);
    assert_ne!(secret.stages.get(&Stage::Pending), Some(&current.id));
    let rotation = secret.rotation.expect("rotation is configured");
    assert!(rotation.run.is_none() && rotation.enabled);
    assert_eq!(
        rotation.last_failure.as_deref(),
        Some("createSecret: ValueError: createSecret refused")
    );
    // The next scheduled rotation is a day after this one started.
    assert!(rotation.next.is_some_and(|n| n > clock.clock()()));
    extra.cancel();
    t.stop().await;
}
