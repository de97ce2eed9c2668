//! NATS is a trust boundary, checked on `keyledger up`'s real nats-server: for each
//! identity (no credentials, a token holder, the auditor, a rotation handler,
//! keyledger's own services) and each dangerous action (writing the log, a project's
//! quotas, the key store, the checkpoints, the access records or the change
//! notifications; answering onto them through a reply subject; reading another
//! connection's replies or another project's changes; the JetStream API on keyledger's
//! streams, consumers and key bucket), the server allows or denies what the table
//! says; and the reply-injection attack that once destroyed data leaves the secret,
//! its key and the CA intact.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::audit::succeeded;
use crate::support::{TestStack, args, audit, eventually, raw_command};

const WAIT: Duration = Duration::from_secs(10);

/// Who connects.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    /// A token holder, admitted by the auth callout.
    TokenHolder,
    /// The read-only auditor account.
    Auditor,
    /// keyledger's own components.
    Service,
    /// Rotation handlers (the `rotation` user).
    RotationHandler,
    /// The command service's user in the clients' account (`intake`).
    Intake,
}

/// A connection that records every permission violation the server reports.
struct Probe {
    client: Client,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    async fn connect(t: &TestStack, who: Who, token: &str) -> Probe {
        let data = t.dir.path();
        let password = |file: &str| std::fs::read_to_string(data.join(file)).unwrap();
        let options = match who {
            Who::TokenHolder => ConnectOptions::with_token(token.to_owned())
                .custom_inbox_prefix(infra::nats_auth::token_inbox_prefix(token).unwrap()),
            Who::Auditor => ConnectOptions::with_user_and_password(
                "auditor".into(),
                password("nats-auditor.key"),
            ),
            Who::Service => ConnectOptions::with_user_and_password(
                "keyledger".into(),
                password("nats-service.key"),
            ),
            Who::RotationHandler => ConnectOptions::with_user_and_password(
                "rotation".into(),
                password("nats-rotation.key"),
            ),
            Who::Intake => {
                ConnectOptions::with_user_and_password("intake".into(), password("nats-intake.key"))
            }
        };
        let violations = Arc::new(Mutex::new(Vec::new()));
        let seen = violations.clone();
        let client = options
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let Event::ServerError(e) = event {
                        seen.lock().unwrap().push(e.to_string().to_lowercase());
                    }
                }
            })
            .connect(&t.stack.client_url)
            .await
            .expect("the identity connects");
        Probe { client, violations }
    }

    /// Waits for the server to report a permission violation naming `subject`.
    async fn denied(&self, subject: &str) {
        let subject = subject.to_lowercase();
        let seen = self.violations.clone();
        eventually(
            &format!("a permissions violation for {subject}"),
            WAIT,
            || {
                let seen = seen.clone();
                let subject = subject.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .iter()
                        .any(|v| v.contains("permissions violation") && v.contains(&subject))
                        .then_some(())
                }
            },
        )
        .await;
    }

    /// Whether the server reported any violation naming `subject` so far.
    fn saw_violation(&self, subject: &str) -> bool {
        let subject = subject.to_lowercase();
        self.violations
            .lock()
            .unwrap()
            .iter()
            .any(|v| v.contains(&subject))
    }

    /// Publishes `body` to `subject` (with a reply inbox, as a request would), then a
    /// round trip to the server.
    async fn publish(&self, subject: &str, body: &'static [u8]) {
        self.client
            .publish_with_reply(subject.to_owned(), self.client.new_inbox(), body.into())
            .await
            .unwrap();
        self.client.flush().await.unwrap();
    }

    /// A JetStream API (or any) request; `None` if nothing answered.
    async fn request(&self, subject: &str, body: Value) -> Option<Value> {
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            self.client
                .request(subject.to_owned(), body.to_string().into()),
        )
        .await
        .ok()?
        .ok()?;
        Some(serde_json::from_slice(&reply.payload).unwrap_or(Value::Null))
    }
}

/// The dangerous actions: what each tries.
#[derive(Debug, Clone, Copy)]
enum Action {
    Publish(&'static str),
    Subscribe(&'static str),
    Api(&'static str),
}

/// Subjects named by the actions, once the secret, its key and the other principal
/// are known.
struct Targets {
    event: String,
    key: String,
    change: String,
    other_inbox: String,
}

impl Targets {
    fn subject(&self, template: &str) -> String {
        template
            .replace("{event}", &self.event)
            .replace("{key}", &self.key)
            .replace("{change}", &self.change)
            .replace("{other_inbox}", &self.other_inbox)
    }
}

const ACTIONS: &[(&str, Action)] = &[
    ("publish to the event log", Action::Publish("{event}")),
    ("publish to the key store", Action::Publish("{key}")),
    (
        "publish a checkpoint",
        Action::Publish("keyledger.checkpoints.KEYLEDGER"),
    ),
    (
        "publish an access record",
        Action::Publish("keyledger.access.records"),
    ),
    (
        "subscribe to every inbox of its account",
        Action::Subscribe("_INBOX.>"),
    ),
    (
        "subscribe to another identity's inbox",
        Action::Subscribe("{other_inbox}.>"),
    ),
    ("subscribe to every subject", Action::Subscribe(">")),
    (
        "serve a rotation handler",
        Action::Subscribe("keyledger.rotate.>"),
    ),
    (
        "ask a rotation handler for a step",
        Action::Publish("keyledger.rotate.postgres"),
    ),
    (
        "create a consumer on the log",
        Action::Api("$JS.API.CONSUMER.CREATE.KEYLEDGER"),
    ),
    (
        "delete keyledger's order-worker consumer",
        Action::Api("$JS.API.CONSUMER.DELETE.KEYLEDGER.keyledger-order-worker"),
    ),
    (
        "rewrite the order-worker consumer's filter",
        Action::Api("$JS.API.CONSUMER.CREATE.KEYLEDGER.keyledger-order-worker.keyledger.events.x"),
    ),
    (
        "pull from keyledger's key-shredder consumer",
        Action::Api("$JS.API.CONSUMER.MSG.NEXT.KEYLEDGER.keyledger-key-shredder"),
    ),
    (
        "update the log stream",
        Action::Api("$JS.API.STREAM.UPDATE.KEYLEDGER"),
    ),
    (
        "delete the log stream",
        Action::Api("$JS.API.STREAM.DELETE.KEYLEDGER"),
    ),
    (
        "purge the log stream",
        Action::Api("$JS.API.STREAM.PURGE.KEYLEDGER"),
    ),
    (
        "delete the checkpoint stream",
        Action::Api("$JS.API.STREAM.DELETE.KEYLEDGER_CHECKPOINTS"),
    ),
    (
        "purge the key bucket",
        Action::Api("$JS.API.STREAM.PURGE.KV_KEYLEDGER_KEYS"),
    ),
    (
        "delete the key bucket",
        Action::Api("$JS.API.STREAM.DELETE.KV_KEYLEDGER_KEYS"),
    ),
    (
        "direct-get from the key bucket",
        Action::Api("$JS.API.DIRECT.GET.KV_KEYLEDGER_KEYS"),
    ),
    (
        "read the key bucket's info",
        Action::Api("$JS.API.STREAM.INFO.KV_KEYLEDGER_KEYS"),
    ),
    (
        "answer auth callouts",
        Action::Subscribe("$SYS.REQ.USER.AUTH"),
    ),
    // Rows below name subjects of which an earlier row's is a prefix (the purge of
    // KEYLEDGER before KEYLEDGER_ACCESS): a denial is matched by substring, so the
    // shorter one is tried first.
    (
        "publish to an event subject of its choosing",
        Action::Publish("keyledger.events.p1.secret.forged-by-matrix"),
    ),
    (
        "publish a project's quota limits",
        Action::Publish("keyledger.events.p1.quota.limits"),
    ),
    (
        "publish a project's quota usage",
        Action::Publish("keyledger.events.p1.quota.usage"),
    ),
    ("publish a change notification", Action::Publish("{change}")),
    (
        "subscribe to every change notification",
        Action::Subscribe("keyledger.changes.>"),
    ),
    (
        "subscribe to another project's secret changes",
        Action::Subscribe("keyledger.changes.p1.secret.>"),
    ),
    (
        "subscribe to its own project's secret changes",
        Action::Subscribe("keyledger.changes.p2.secret.>"),
    ),
    (
        "create a stream",
        Action::Api("$JS.API.STREAM.CREATE.MATRIX_SCRATCH"),
    ),
    (
        "update the key bucket",
        Action::Api("$JS.API.STREAM.UPDATE.KV_KEYLEDGER_KEYS"),
    ),
    (
        "create a consumer on the key bucket",
        Action::Api("$JS.API.CONSUMER.CREATE.KV_KEYLEDGER_KEYS"),
    ),
    (
        "create a durable consumer on the key bucket",
        Action::Api("$JS.API.CONSUMER.DURABLE.CREATE.KV_KEYLEDGER_KEYS.matrix-scratch"),
    ),
    (
        "purge the access-record stream",
        Action::Api("$JS.API.STREAM.PURGE.KEYLEDGER_ACCESS"),
    ),
    (
        "delete the access-record stream",
        Action::Api("$JS.API.STREAM.DELETE.KEYLEDGER_ACCESS"),
    ),
    (
        "purge the checkpoint stream",
        Action::Api("$JS.API.STREAM.PURGE.KEYLEDGER_CHECKPOINTS"),
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_is_held_to_its_permissions() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "matrix-canary").await;
    let key_id = t.key_ids(&id).await[0];
    let targets = Targets {
        event: format!("keyledger.events.p1.secret.{id}"),
        key: format!("$KV.KEYLEDGER_KEYS.p1.{id}.{key_id}"),
        change: format!("keyledger.changes.p1.secret.{id}"),
        other_inbox: infra::nats_auth::token_inbox_prefix(&alice).unwrap(),
    };
    let service = Probe::connect(&t, Who::Service, "").await;
    let js = async_nats::jetstream::new(service.client.clone());
    let log_messages = || async { crate::support::log_state(&js).await.messages };
    let before = log_messages().await;

    // Without credentials, or with a token keyledger does not accept, nothing connects.
    for (what, options) in [
        ("no credentials", ConnectOptions::new()),
        (
            "a tampered token",
            ConnectOptions::with_token(format!("{alice}x")),
        ),
        (
            "a made-up password",
            ConnectOptions::with_user_and_password("keyledger".into(), "guess".into()),
        ),
    ] {
        let refused = options.connect(&t.stack.client_url).await;
        let kind = refused.map(|_| ()).map_err(|e| e.kind());
        assert_eq!(
            kind,
            Err(async_nats::ConnectErrorKind::AuthorizationViolation),
            "{what}"
        );
    }

    // A token holder (bob, an admin of another project, p2), the auditor and a
    // rotation handler: every action denied, but for the auditor and handlers
    // subscribing to the inboxes of their own account (no one else's replies ever
    // arrive there: see no_identity_reads_another_connections_replies), handlers
    // serving keyledger.rotate.>, which only keyledger's runner can reach, and bob
    // hearing his own project's secret changes (his role lists secrets, so the auth
    // callout grants keyledger.changes.p2.secret.>; see tests/changes.rs). The
    // command service's intake user, which answers into clients' inboxes, may do none
    // of these either: it reads commands only, and writes nothing of keyledger's.
    let bob = t.token("bob", "p2");
    for who in [
        Who::TokenHolder,
        Who::Auditor,
        Who::RotationHandler,
        Who::Intake,
    ] {
        let probe = Probe::connect(&t, who, &bob).await;
        for (name, action) in ACTIONS {
            let allowed = match *name {
                "subscribe to every inbox of its account" => {
                    matches!(who, Who::Auditor | Who::RotationHandler)
                }
                "serve a rotation handler" => who == Who::RotationHandler,
                "subscribe to its own project's secret changes" => who == Who::TokenHolder,
                _ => false,
            };
            match action {
                Action::Publish(s) | Action::Api(s) => {
                    let subject = targets.subject(s);
                    probe.publish(&subject, b"{}").await;
                    probe.denied(&subject).await;
                }
                Action::Subscribe(s) => {
                    let subject = targets.subject(s);
                    let _sub = probe.client.subscribe(subject.clone()).await.unwrap();
                    probe.client.flush().await.unwrap();
                    if allowed {
                        assert!(!probe.saw_violation(&subject), "{who:?}: {name}");
                    } else {
                        probe.denied(&subject).await;
                    }
                }
            }
        }
    }

    // keyledger's services may do what they need (tried on harmless targets).
    let scratch_key = format!("$KV.KEYLEDGER_KEYS.p1.{id}.scratch");
    service.publish(&scratch_key, b"scratch").await;
    let kv = js.get_key_value("KEYLEDGER_KEYS").await.unwrap();
    assert!(kv.get(format!("p1.{id}.scratch")).await.unwrap().is_some());
    let mut inboxes = service.client.subscribe("_INBOX.>").await.unwrap();
    let info = service
        .request("$JS.API.STREAM.INFO.KEYLEDGER", json!({}))
        .await
        .expect("the service reaches the JetStream API");
    assert_eq!(info["config"]["name"], "KEYLEDGER");
    let copy = tokio::time::timeout(WAIT, inboxes.next()).await;
    assert!(
        matches!(copy, Ok(Some(_))),
        "the service reads its own account's inboxes"
    );
    assert!(!service.saw_violation("_inbox"));

    // It announces changes and hears every project's.
    let mut changes = service
        .client
        .subscribe("keyledger.changes.>")
        .await
        .unwrap();
    let mut held = Vec::new();
    for subject in [
        "keyledger.changes.p1.secret.>",
        "keyledger.changes.p2.secret.>",
    ] {
        held.push(service.client.subscribe(subject).await.unwrap());
    }
    service.client.flush().await.unwrap();
    let scratch_change = "keyledger.changes.p1.secret.matrix-scratch";
    service.publish(scratch_change, b"{}").await;
    let heard = tokio::time::timeout(WAIT, async {
        while let Some(change) = changes.next().await {
            if change.subject.as_str() == scratch_change {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(heard, Ok(true)),
        "the service publishes and hears change notifications"
    );
    assert!(!service.saw_violation("keyledger.changes"));
    drop(held);

    // It reaches the log on a project's quota subjects: the stream itself answers,
    // refusing the message only for the expected last sequence it was sent with (so
    // nothing is written).
    for subject in [
        "keyledger.events.p1.quota.limits",
        "keyledger.events.p1.quota.usage",
    ] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", "999999999");
        let ack = tokio::time::timeout(
            WAIT,
            service
                .client
                .request_with_headers(subject, headers, "{}".into()),
        )
        .await
        .expect("the stream answers in time")
        .expect("the stream answers");
        let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
        let refusal = ack["error"]["description"].as_str().unwrap_or_default();
        assert!(
            refusal.starts_with("wrong last sequence"),
            "{subject}: {ack}"
        );
        assert!(!service.saw_violation(subject));
    }

    // It creates and deletes streams and consumers (its own scratch ones).
    let created = service
        .request(
            "$JS.API.STREAM.CREATE.MATRIX_SCRATCH",
            json!({"name": "MATRIX_SCRATCH", "subjects": ["matrix.scratch"], "storage": "memory"}),
        )
        .await
        .expect("the service creates a stream");
    assert_eq!(created["config"]["name"], "MATRIX_SCRATCH", "{created}");
    let deleted = service
        .request("$JS.API.STREAM.DELETE.MATRIX_SCRATCH", json!({}))
        .await
        .expect("the service deletes a stream");
    assert_eq!(deleted["success"], true, "{deleted}");
    for (subject, config) in [
        (
            "$JS.API.CONSUMER.CREATE.KV_KEYLEDGER_KEYS",
            json!({"ack_policy": "explicit", "inactive_threshold": 5_000_000_000_u64}),
        ),
        (
            "$JS.API.CONSUMER.DURABLE.CREATE.KV_KEYLEDGER_KEYS.matrix-scratch",
            json!({"durable_name": "matrix-scratch", "ack_policy": "explicit"}),
        ),
    ] {
        let created = service
            .request(
                subject,
                json!({"stream_name": "KV_KEYLEDGER_KEYS", "config": config}),
            )
            .await
            .expect("the service creates a consumer on the key bucket");
        assert_eq!(
            created["stream_name"], "KV_KEYLEDGER_KEYS",
            "{subject}: {created}"
        );
        let name = created["name"].as_str().expect("a consumer name");
        let deleted = service
            .request(
                &format!("$JS.API.CONSUMER.DELETE.KV_KEYLEDGER_KEYS.{name}"),
                json!({}),
            )
            .await
            .expect("the service deletes its consumer");
        assert_eq!(deleted["success"], true, "{deleted}");
    }
    // An update of the key bucket and purges of the access-record and checkpoint
    // streams reach the JetStream API, which refuses them itself: a name that is not
    // the bucket's, streams that deny purges. Nothing changes.
    for (subject, body) in [
        (
            "$JS.API.STREAM.UPDATE.KV_KEYLEDGER_KEYS",
            json!({"name": "MATRIX_MISMATCH"}),
        ),
        (
            "$JS.API.STREAM.PURGE.KEYLEDGER_ACCESS",
            json!({"filter": "keyledger.access.matrix-scratch"}),
        ),
        (
            "$JS.API.STREAM.PURGE.KEYLEDGER_CHECKPOINTS",
            json!({"filter": "keyledger.checkpoints.MATRIX_SCRATCH"}),
        ),
    ] {
        let answer = service
            .request(subject, body)
            .await
            .expect("the service reaches the JetStream API");
        assert!(answer["error"].is_object(), "{subject}: {answer}");
    }
    assert!(!service.saw_violation("$js.api"));

    // Nothing the others tried changed the log, the key, the consumers or the CA.
    assert_eq!(log_messages().await, before);
    let consumer = js
        .get_stream("KEYLEDGER")
        .await
        .unwrap()
        .consumer_info("keyledger-order-worker")
        .await
        .unwrap();
    assert_eq!(consumer.config.filter_subject, "keyledger.events.*.order.*");
    let payload = t.get(&format!("/v1/secrets/{id}/payload"), &alice).await;
    assert_eq!(payload.text().await.unwrap(), "matrix-canary");
    t.stop().await;
}

/// The attack that once destroyed data: a command whose reply subject is the log, the
/// key store, the CA's key or the checkpoints. A rotation handler's command crosses
/// accounts, so keyledger sees a reply subject the server made (`_R_.…`); a token
/// holder's is served in the clients' account, where keyledger answers only into a
/// client's inbox: neither answer ever reaches those subjects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_cannot_be_aimed_at_the_log_the_key_store_or_the_ca() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "injection-canary").await;
    let order = t
        .place(
            &alice,
            json!({"type": "certificate", "meta": {"subject_dn": "CN=one.example"}}),
        )
        .await;
    assert_eq!(t.settled(&alice, &order).await["status"], "ACTIVE");
    let key_id = t.key_ids(&id).await[0];
    let targets = [
        format!("keyledger.events.p1.secret.{id}"),
        format!("$KV.KEYLEDGER_KEYS.p1.{id}.{key_id}"),
        "$KV.KEYLEDGER_KEYS.ca.local".to_owned(),
        "keyledger.checkpoints.KEYLEDGER".to_owned(),
    ];
    let service = Probe::connect(&t, Who::Service, "").await;
    // A copy of every create command, as keyledger's account receives it: only a
    // rotation handler's reach it there.
    let mut seen = service
        .client
        .subscribe("keyledger.cmd.secret.create")
        .await
        .unwrap();
    service.client.flush().await.unwrap();
    let mallory = t.token("mallory", "p9");
    let attacker = t.client_nats_as(&mallory).await;
    // A rotation handler may send commands too, from an account of its own.
    let handler = Probe::connect(&t, Who::RotationHandler, "").await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {mallory}").as_str());
    // A token holder's commands are served in the clients' account, which holds none
    // of the targets: keyledger answers there only into a client's inbox, so these
    // are dropped unanswered and never reach keyledger's account (the first command
    // seen there below is the rotation handler's).
    for target in &targets {
        attacker
            .publish_with_reply_and_headers(
                "keyledger.cmd.secret.create",
                target.clone(),
                headers.clone(),
                json!({"name": "from-a-token-holder"}).to_string().into(),
            )
            .await
            .unwrap();
    }
    attacker.flush().await.unwrap();
    for target in &targets {
        handler
            .client
            .publish_with_reply_and_headers(
                "keyledger.cmd.secret.create",
                target.clone(),
                headers.clone(),
                json!({"name": "from-a-rotation-handler"})
                    .to_string()
                    .into(),
            )
            .await
            .unwrap();
        let received = tokio::time::timeout(WAIT, seen.next())
            .await
            .expect("keyledger receives the command")
            .unwrap();
        // The token holder's, sent first, would have come first.
        let body: Value = serde_json::from_slice(&received.payload).unwrap();
        assert_eq!(body["name"], "from-a-rotation-handler", "{body}");
        let reply = received.reply.expect("a reply subject").to_string();
        assert!(
            reply.starts_with("_R_."),
            "a rotation handler: keyledger would answer on {reply}, not on a subject the \
             server made"
        );
    }
    assert!(!handler.saw_violation("keyledger.cmd"));
    // The auditor's requests cannot aim JetStream's answers either.
    let auditor = Probe::connect(&t, Who::Auditor, "").await;
    auditor
        .client
        .publish_with_reply(
            "$JS.API.DIRECT.GET.KEYLEDGER",
            targets[0].clone(),
            json!({"seq": 1}).to_string().into(),
        )
        .await
        .unwrap();
    auditor.client.flush().await.unwrap();
    // Inside keyledger's account, the command service itself refuses a reply subject
    // that is not an inbox (and answers a proper one).
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {alice}").as_str());
    service
        .client
        .publish_with_reply_and_headers(
            "keyledger.cmd.secret.metadata.set",
            targets[0].clone(),
            headers,
            json!({"id": id, "key": "k", "value": "v"})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    let answered = raw_command(
        &t.client_nats_as(&alice).await,
        "secret.metadata.set",
        Some(&alice),
        &json!({"id": id, "key": "after", "value": "attack"}),
    )
    .await;
    assert_eq!(answered["ok"], true, "{answered}");

    // The secret, its key and the CA are intact: the payload reads, the secret
    // changes, another certificate is issued, and the log holds only keyledger's
    // commits.
    let payload = t.get(&format!("/v1/secrets/{id}/payload"), &alice).await;
    assert_eq!(payload.text().await.unwrap(), "injection-canary");
    let second = t
        .place(
            &alice,
            json!({"type": "certificate", "meta": {"subject_dn": "CN=two.example"}}),
        )
        .await;
    let settled = t.settled(&alice, &second).await;
    assert_eq!(settled["status"], "ACTIVE", "{settled}");
    let last = answered["seq"].as_u64().unwrap();
    t.checkpointed(last).await;
    let key_file = t.dir.path().join("commit.key");
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &t.auditor_url(),
        "--public-key",
        &t.checkpoint_public_key_file(),
        "--commit-key-file",
        key_file.to_str().unwrap(),
    ]))
    .await;
    succeeded(&out);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("FOREIGN"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    t.stop().await;
}

/// No identity sees another's replies: a token holder may not subscribe outside its
/// own inbox space, and the auditor's inboxes are in an account of their own, where
/// no reply of keyledger's or of a client's ever arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identity_reads_another_connections_replies() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let auditor = Probe::connect(&t, Who::Auditor, "").await;
    let mut snooped = auditor.client.subscribe("_INBOX.>").await.unwrap();
    auditor.client.flush().await.unwrap();

    // Commands over NATS, and HTTP reads that make keyledger read its log and key
    // store (replies on keyledger's own inboxes).
    let nats = t.client_nats_as(&alice).await;
    let created = raw_command(
        &nats,
        "secret.create",
        Some(&alice),
        &json!({"name": "snoop", "payload": "snoop-canary", "payload_content_type": "text/plain"}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let read = t
        .http
        .get(t.url(&format!("/v1/secrets/{id}/payload")))
        .bearer_auth(&alice)
        .header("X-Keyledger-Min-Seq", created["seq"].to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(read.text().await.unwrap(), "snoop-canary");
    let history = t.get(&format!("/v1/secrets/{id}/history"), &alice).await;
    assert_eq!(history.status(), 200);

    // The auditor's own request comes last: every message before it on its
    // subscription is one of its own replies, or someone else's that leaked.
    let inbox = auditor.client.new_inbox();
    auditor
        .client
        .publish_with_reply(
            "$JS.API.DIRECT.GET.KEYLEDGER",
            inbox.clone(),
            json!({"seq": 1}).to_string().into(),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, snooped.next())
        .await
        .expect("the auditor's own reply arrives")
        .unwrap();
    assert_eq!(
        first.subject.as_str(),
        inbox,
        "the auditor received another connection's reply first"
    );

    // A token holder's reach is its own inbox space.
    let bob = t.token("bob", "p1");
    let probe = Probe::connect(&t, Who::TokenHolder, &bob).await;
    let alices = infra::nats_auth::token_inbox_prefix(&alice).unwrap();
    for subject in [
        "_INBOX.>".to_owned(),
        format!("{alices}.>"),
        "_INBOX_*.>".into(),
    ] {
        let _sub = probe.client.subscribe(subject.clone()).await.unwrap();
        probe.client.flush().await.unwrap();
        probe.denied(&subject).await;
    }
    t.stop().await;
}

/// A token holder cannot have keyledger's answers delivered anywhere but its own
/// inbox space: not into another principal's inbox (where one could pass for the
/// answer to that principal's own request: only a refusal that says no more lands
/// there), not onto a change-notification subject other clients listen on. Such a
/// command is not carried out; one sent with another principal's token is refused in
/// the sender's inbox, saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_go_only_into_the_inbox_space_of_the_commands_principal() {
    let t = TestStack::start().await;
    let (alice, bob) = (t.token("alice", "p1"), t.token("bob", "p1"));
    // Bob listens on his inbox space and on his project's change notifications.
    let listener = t.client_nats_as(&bob).await;
    let bobs = infra::nats_auth::token_inbox_prefix(&bob).unwrap();
    let mut inbox = listener.subscribe(format!("{bobs}.>")).await.unwrap();
    let mut changes = listener
        .subscribe("keyledger.changes.p1.secret.>")
        .await
        .unwrap();
    listener.flush().await.unwrap();

    let nats = t.client_nats_as(&alice).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {alice}").as_str());
    let misdirected =
        |n: usize| json!({"name": format!("misdirected-{n}"), "command_id": format!("m-{n}")});
    for (n, reply) in [
        format!("{bobs}.guessed.1"),
        "keyledger.changes.p1.secret.forged".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        nats.publish_with_reply_and_headers(
            "keyledger.cmd.secret.create",
            reply,
            headers.clone(),
            misdirected(n).to_string().into(),
        )
        .await
        .unwrap();
    }
    nats.flush().await.unwrap();
    // Bob's token on Alice's connection: refused in Alice's inbox, not carried out.
    let refused = raw_command(&nats, "secret.create", Some(&bob), &misdirected(2)).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("keyledger whoami"), "{message}");
    // Alice's own command is answered in her inbox space.
    let created = raw_command(
        &nats,
        "secret.create",
        Some(&alice),
        &json!({"name": "proper"}),
    )
    .await;
    assert_eq!(created["ok"], true, "{created}");

    // Into Bob's inbox came the refusal of the command aimed at it, and nothing of
    // Alice's.
    let refusal = tokio::time::timeout(WAIT, inbox.next())
        .await
        .expect("the refusal of the command aimed at Bob's inbox")
        .unwrap();
    assert_eq!(refusal.subject.as_str(), format!("{bobs}.guessed.1"));
    let refusal: Value = serde_json::from_slice(&refusal.payload).unwrap();
    assert_eq!(refusal["error"]["code"], "forbidden", "{refusal}");
    assert_eq!(refusal["ok"], false, "{refusal}");
    // Bob hears of Alice's create, and of nothing before it: an answer keyledger had
    // sent onto his subjects would have reached him first.
    let first = tokio::time::timeout(WAIT, changes.next())
        .await
        .expect("the notification of Alice's create")
        .unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        first.subject.as_str(),
        format!("keyledger.changes.p1.secret.{id}")
    );
    assert!(
        futures::FutureExt::now_or_never(inbox.next()).is_none(),
        "another answer reached Bob's inbox"
    );
    // None of the others was carried out: sent again properly, under the same command
    // ids, each lands now, after Alice's create (a retry of an applied command would be
    // answered with its first, earlier, commit).
    let after = created["seq"].as_u64().unwrap();
    for (sender, token, n) in [(&nats, &alice, 0), (&nats, &alice, 1), (&listener, &bob, 2)] {
        let again = raw_command(sender, "secret.create", Some(token), &misdirected(n)).await;
        assert!(again["seq"].as_u64().unwrap() > after, "{again}");
    }
    t.stop().await;
}

/// One tenant's command ids say nothing about another's: the same id in two projects
/// makes two secrets, and neither learns of the other.
#[tokio::test]
async fn command_ids_are_scoped_per_project() {
    let t = TestStack::start().await;
    let (token_a, token_b) = (t.token("a", "pa"), t.token("b", "pb"));
    let (nats_a, nats_b) = (
        t.client_nats_as(&token_a).await,
        t.client_nats_as(&token_b).await,
    );
    let body = json!({"command_id": "deploy-2026-12-01", "name": "same-id"});
    let a = raw_command(&nats_a, "secret.create", Some(&token_a), &body).await;
    let b = raw_command(&nats_b, "secret.create", Some(&token_b), &body).await;
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(b["ok"], true, "{b}");
    assert_ne!(a["id"], b["id"]);
    assert_ne!(a["seq"], b["seq"]);
    // Retried in the same project, it is the same command, answered as a replay.
    let again = raw_command(&nats_b, "secret.create", Some(&token_b), &body).await;
    let mut replayed = b.clone();
    replayed["replayed"] = json!(true);
    assert_eq!(again, replayed);
    t.stop().await;
}

/// A NATS client speaking the protocol by hand, as an attacker would: admitted with
/// its token, it sends what no library would.
struct RawNats {
    stream: tokio::net::TcpStream,
    inbox: String,
}

impl RawNats {
    async fn connect(url: &str, token: &str) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let address = url.trim_start_matches("nats://");
        let address = address.rsplit('@').next().unwrap();
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut info = String::new();
        BufReader::new(&mut stream)
            .read_line(&mut info)
            .await
            .unwrap();
        assert!(info.starts_with("INFO"), "{info}");
        let connect = json!({"auth_token": token, "headers": true, "verbose": false,
                             "pedantic": false, "protocol": 1, "name": "raw"});
        let prefix = infra::nats_auth::token_inbox_prefix(token).unwrap();
        let inbox = format!("{prefix}.raw");
        stream
            .write_all(format!("CONNECT {connect}\r\nSUB {inbox} 1\r\nPING\r\n").as_bytes())
            .await
            .unwrap();
        let mut raw = Self { stream, inbox };
        let pong = raw.read_until(b"PONG\r\n").await;
        assert!(!String::from_utf8_lossy(&pong).contains("-ERR"), "{pong:?}");
        raw
    }

    /// Reads until `needle` arrives (or 10 s pass); what was read.
    async fn read_until(&mut self, needle: &[u8]) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while !seen.windows(needle.len()).any(|w| w == needle) {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        seen
    }

    /// Sends a request on `subject` with the raw header block `headers` and `body`;
    /// keyledger's reply.
    async fn request(&mut self, subject: &[u8], headers: &[u8], body: &[u8]) -> String {
        use tokio::io::AsyncWriteExt;
        let mut message = Vec::new();
        message.extend_from_slice(b"HPUB ");
        message.extend_from_slice(subject);
        message.extend_from_slice(
            format!(
                " {} {} {}\r\n",
                self.inbox,
                headers.len(),
                headers.len() + body.len()
            )
            .as_bytes(),
        );
        message.extend_from_slice(headers);
        message.extend_from_slice(body);
        message.extend_from_slice(b"\r\n");
        self.stream.write_all(&message).await.unwrap();
        String::from_utf8_lossy(&self.read_until(b"\"ok\":false").await).into_owned()
    }
}

/// One message from any token holder used to stop keyledger: a header value with a
/// lone CR panicked the NATS client library in the command service's connection, and
/// other malformed header blocks or subjects ended the connection. Each now gets an
/// answer (no token was readable), and keyledger serves the next command at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_and_subjects_get_an_answer_and_stop_nothing() {
    let t = TestStack::start().await;
    let mallory = t.token_with("mallory", "evil", &["observer"]);
    let mut raw = RawNats::connect(&t.stack.client_url, &mallory).await;
    let cases: [(&str, &[u8], &[u8]); 5] = [
        (
            "a lone CR in a value",
            b"keyledger.cmd.secret.create",
            b"NATS/1.0\r\nX: a\rb\r\n\r\n",
        ),
        (
            "a line without a colon",
            b"keyledger.cmd.secret.create",
            b"NATS/1.0\r\nno colon\r\n\r\n",
        ),
        (
            "a bad header name",
            b"keyledger.cmd.secret.create",
            b"NATS/1.0\r\nBad Name: x\r\n\r\n",
        ),
        (
            "a bad version line",
            b"keyledger.cmd.secret.create",
            b"HTTP/1.1 200\r\n\r\n",
        ),
        (
            "a subject that is not UTF-8",
            b"keyledger.cmd.\xff",
            b"NATS/1.0\r\n\r\n",
        ),
    ];
    for (what, subject, headers) in cases {
        let reply = raw.request(subject, headers, b"{}").await;
        assert!(reply.contains("\"ok\":false"), "{what}: no answer: {reply}");
    }
    // The command service still answers everyone, at once.
    let alice = t.token("alice", "p1");
    let nats = t.client_nats_as(&alice).await;
    let started = std::time::Instant::now();
    let created = raw_command(
        &nats,
        "secret.create",
        Some(&alice),
        &json!({"name": "after", "payload": "x", "payload_content_type": "text/plain"}),
    )
    .await;
    assert_eq!(created["ok"], true, "{created}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    t.stop().await;
}

/// One caller's flood of commands: beyond its share of the command slots its commands
/// are refused at once (`too_many_requests`), and another caller's command is served
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_caller_is_refused_beyond_its_share_and_others_are_served() {
    let t = TestStack::start().await;
    let mallory = t.token("mallory", "flood");
    let flooder = t.client_nats_as(&mallory).await;
    let prefix = infra::nats_auth::token_inbox_prefix(&mallory).unwrap();
    let inbox = format!("{prefix}.flood");
    let mut replies = flooder.subscribe(inbox.clone()).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {mallory}").as_str());
    const SENT: usize = 1500;
    for i in 0..SENT {
        let body =
            json!({"name": format!("f{i}"), "payload": "x", "payload_content_type": "text/plain"});
        flooder
            .publish_with_reply_and_headers(
                "keyledger.cmd.secret.create",
                inbox.clone(),
                headers.clone(),
                body.to_string().into(),
            )
            .await
            .unwrap();
    }
    flooder.flush().await.unwrap();
    // Meanwhile, someone else.
    let alice = t.token("alice", "p1");
    let nats = t.client_nats_as(&alice).await;
    let created = raw_command(
        &nats,
        "secret.create",
        Some(&alice),
        &json!({"name": "meanwhile", "payload": "x", "payload_content_type": "text/plain"}),
    )
    .await;
    assert_eq!(created["ok"], true, "{created}");
    // Every one of the flood's commands is answered: done, or refused at once.
    let (mut done, mut refused) = (0, 0);
    while done + refused < SENT {
        let reply = tokio::time::timeout(Duration::from_secs(30), replies.next())
            .await
            .expect("every command is answered")
            .unwrap();
        let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
        if reply["ok"] == true {
            done += 1;
        } else {
            assert_eq!(reply["error"]["code"], "too_many_requests", "{reply}");
            refused += 1;
        }
    }
    println!("{done} done, {refused} refused as too many");
    assert!(refused > 0, "the share was never reached: {done} done");
    t.stop().await;
}

fn now() -> domain::timestamp::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    domain::timestamp::Timestamp::from_unix_millis(i64::try_from(ms).unwrap()).unwrap()
}

/// The HTTP API hands principals it verified by AWS signatures to the command service
/// in delegation tokens. Such a token is accepted only on the delegated subjects,
/// which no client may publish to: one that leaked is no use to a NATS client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_tokens_count_only_on_subjects_clients_cannot_publish_to() {
    let t = TestStack::start().await;
    let commit = infra::keyfile::existing_commit_key(&t.dir.path().join("commit.key")).unwrap();
    let admin = domain::principal::Principal {
        user: domain::ids::UserId::parse("alice").unwrap(),
        project: domain::ids::ProjectId::parse("p1").unwrap(),
        roles: vec![domain::ids::Role::parse("admin").unwrap()],
        service: None,
    };
    let delegated =
        infra::identity::delegation::Delegation::from_commit_key(&commit).mint(&admin, now());
    let mallory = t.token_with("mallory", "p1", &["observer"]);
    let client = t.client_nats_as(&mallory).await;
    let reply = raw_command(
        &client,
        "secret.create",
        Some(&delegated),
        &json!({"name": "by-a-leaked-token", "payload": "x"}),
    )
    .await;
    assert_eq!(reply["error"]["code"], "unauthorized", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only from keyledger's HTTP API"),
        "{reply}"
    );
    // The delegated subjects are not there for a client at all.
    let probe = Probe::connect(&t, Who::TokenHolder, &mallory).await;
    probe
        .publish("keyledger.api.cmd.secret.create", b"{}")
        .await;
    probe.denied("keyledger.api.cmd.secret.create").await;
}
