//! Access control end to end: the whole matrix of role × private/shared ×
//! listed/unlisted × same/other project × operation, over the HTTP API and over NATS
//! commands, against a real stack. Also: ACL conditions, `acl_only`, whoami, and the
//! ACL endpoints' Barbican semantics.

use std::time::Duration;

use domain::ErrorCode;
use domain::subject::command;
use infra::client::CommandClient;
use infra::protocol::{
    AclOperationRequest, CreateSecretRequest, DeleteSecretRequest, SetAclRequest,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestStack, description, id_of, json_of};

const ROLES: [&str; 7] = [
    "admin", "creator", "member", "observer", "audit", "reader", "none",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    List,
    Get,
    Payload,
    Delete,
    SetAcl,
}

const OPS: [Op; 6] = [
    Op::Create,
    Op::List,
    Op::Get,
    Op::Payload,
    Op::Delete,
    Op::SetAcl,
];

/// What each role may do to a non-private secret of its own project that it did not
/// create, per operation in the order of `OPS`: Barbican's current defaults for admin,
/// member and reader, its legacy policy for creator, observer and audit (see
/// docs/access-control.md). For `List`: whether the role may list the
/// project's secrets at all.
fn grants(role: &str) -> [bool; 6] {
    const T: bool = true;
    const F: bool = false;
    match role {
        "admin" | "creator" => [T, T, T, T, T, T],
        // Only the secret's creator (or an admin) changes its ACL.
        "member" => [T, T, T, T, T, F],
        "observer" => [F, T, T, T, F, F],
        "audit" => [F, F, T, F, F, F],
        _ => [F, F, F, F, F, F],
    }
}

/// One principal of the matrix.
#[derive(Debug, Clone, Copy)]
struct Case {
    role: &'static str,
    private: bool,
    listed: bool,
    same_project: bool,
}

impl Case {
    fn user(&self) -> String {
        format!(
            "{}-{}-{}",
            self.role,
            if self.same_project { "p1" } else { "p2" },
            if self.listed { "listed" } else { "unlisted" }
        )
    }

    fn project(&self) -> &'static str {
        if self.same_project { "p1" } else { "p2" }
    }

    fn roles(&self) -> Vec<&'static str> {
        if self.role == "none" {
            vec![]
        } else {
            vec![self.role]
        }
    }

    /// The expected outcome: the role's grants in its own project (on a private
    /// secret only admins keep them, and creating is unaffected), plus what the ACL
    /// gives a listed user from anywhere: metadata for any role, the payload for any
    /// role but audit. A listing of the own project needs a role that lists, and then
    /// shows the secret if its metadata may be read; another project's secrets are
    /// listed through `acl_only`.
    fn allowed(&self, op: Op) -> bool {
        let index = OPS.iter().position(|o| *o == op).unwrap();
        let by_role = grants(self.role)[index];
        if op == Op::List && self.same_project {
            return by_role && self.allowed(Op::Get);
        }
        let by_acl = self.listed
            && self.role != "none"
            && match op {
                Op::List | Op::Get => true,
                Op::Payload => self.role != "audit",
                _ => false,
            };
        match (self.same_project, self.private) {
            (true, false) => by_role || by_acl,
            (true, true) => self.role == "admin" || (op == Op::Create && by_role) || by_acl,
            (false, _) => by_acl,
        }
    }
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for role in ROLES {
        for private in [false, true] {
            for listed in [false, true] {
                for same_project in [true, false] {
                    out.push(Case {
                        role,
                        private,
                        listed,
                        same_project,
                    });
                }
            }
        }
    }
    out
}

struct Matrix {
    t: TestStack,
    owner: String,
}

impl Matrix {
    fn token(&self, case: &Case) -> String {
        self.t
            .token_with(&case.user(), case.project(), &case.roles())
    }

    /// A secret of project p1, created by `owner` (a creator), with the ACL of `case`.
    async fn secret_for(&self, case: &Case, listed: &[String]) -> String {
        let id = self.t.create_text(&self.owner, "matrix", "payload").await;
        let r = self
            .t
            .http
            .put(self.t.url(&format!("/v1/secrets/{id}/acl")))
            .bearer_auth(&self.owner)
            .json(&json!({"read": {"project-access": !case.private, "users": listed}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        id
    }

    /// Runs `op` over HTTP; `Some(true)` allowed, `Some(false)` refused with 403,
    /// `None` when HTTP cannot express it (creating in another project).
    async fn http(&self, case: &Case, op: Op, id: &str) -> Option<bool> {
        let token = self.token(case);
        let h = &self.t.http;
        let request = match op {
            Op::Create if !case.same_project => return None,
            Op::Create => h.post(self.t.url("/v1/secrets")).json(
                &json!({"name": "new", "payload": "x", "payload_content_type": "text/plain"}),
            ),
            Op::List => {
                let path = if case.same_project {
                    "/v1/secrets?limit=100"
                } else {
                    "/v1/secrets?limit=100&acl_only=true"
                };
                let r = h
                    .get(self.t.url(path))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                if r.status() == StatusCode::FORBIDDEN {
                    return Some(false);
                }
                assert_eq!(r.status(), StatusCode::OK, "{case:?}");
                let body = json_of(r).await;
                let seen = body["secrets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| id_of(s) == id);
                return Some(seen);
            }
            Op::Get => h
                .get(self.t.url(&format!("/v1/secrets/{id}")))
                .header("Accept", "application/json"),
            Op::Payload => h.get(self.t.url(&format!("/v1/secrets/{id}/payload"))),
            Op::Delete => h.delete(self.t.url(&format!("/v1/secrets/{id}"))),
            Op::SetAcl => h
                .put(self.t.url(&format!("/v1/secrets/{id}/acl")))
                .json(&json!({"read": {"project-access": true}})),
        };
        let r = request.bearer_auth(&token).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(
            status.is_success() || status == StatusCode::FORBIDDEN,
            "{case:?} {op:?}: {status} {body}"
        );
        if op == Op::Payload && status.is_success() {
            assert_eq!(body, "payload");
        }
        Some(status.is_success())
    }

    /// Runs a write `op` as a NATS command naming project p1; `None` for reads, which
    /// are not commands.
    async fn nats(&self, case: &Case, op: Op, id: &str) -> Option<bool> {
        let token = self.token(case);
        // Each principal on a connection of its own: keyledger answers a command only
        // in its principal's inbox space.
        let nats = CommandClient::new(self.t.client_nats_as(&token).await, Duration::from_secs(10));
        let result = match op {
            Op::Create => {
                let request = CreateSecretRequest {
                    project: Some("p1".into()),
                    name: Some("new".into()),
                    ..Default::default()
                };
                nats.send(command::SECRET_CREATE, &token, &request).await
            }
            Op::Delete => {
                let request = DeleteSecretRequest {
                    command_id: None,
                    project: Some("p1".into()),
                    id: id.to_owned(),
                    recovery_window_days: None,
                    recovery_window: None,
                    force: Some(true),
                    ignore_consumers: None,
                };
                nats.send(command::SECRET_DELETE, &token, &request).await
            }
            Op::SetAcl => {
                let request = SetAclRequest {
                    command_id: None,
                    project: Some("p1".into()),
                    id: id.to_owned(),
                    mode: None,
                    read: AclOperationRequest {
                        project_access: Some(true),
                        ..Default::default()
                    },
                };
                nats.send(command::SECRET_ACL_SET, &token, &request).await
            }
            Op::List | Op::Get | Op::Payload => return None,
        };
        match result {
            Ok(_) => Some(true),
            Err(rejection) => {
                assert_eq!(
                    rejection.code,
                    ErrorCode::Forbidden,
                    "{case:?} {op:?}: {rejection:?}"
                );
                // The policy's refusal, not the one for a reply outside the caller's
                // inbox space.
                assert!(
                    !rejection.message.contains("inbox space"),
                    "{case:?} {op:?}: {rejection:?}"
                );
                Some(false)
            }
        }
    }
}

#[tokio::test]
async fn the_whole_matrix_holds_on_http_and_nats() {
    let t = TestStack::start().await;
    let owner = t.token_with("owner", "p1", &["creator"]);
    let m = Matrix { t, owner };
    let cases = cases();
    let listed: Vec<String> = cases.iter().filter(|c| c.listed).map(Case::user).collect();

    // Reads share one secret per privacy setting; each write gets a fresh secret.
    let mut readable = std::collections::HashMap::new();
    for private in [false, true] {
        let probe = Case {
            role: "admin",
            private,
            listed: false,
            same_project: true,
        };
        readable.insert(private, m.secret_for(&probe, &listed).await);
    }

    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        for op in OPS {
            let expected = case.allowed(op);
            for path in ["http", "nats"] {
                let id = match op {
                    Op::Delete | Op::SetAcl => m.secret_for(case, &listed).await,
                    _ => readable[&case.private].clone(),
                };
                let got = match path {
                    "http" => m.http(case, op, &id).await,
                    _ => m.nats(case, op, &id).await,
                };
                if let Some(got) = got {
                    checked += 1;
                    if got != expected {
                        failures.push(format!(
                            "{path} {op:?} by {} ({case:?}): expected {}, got {}",
                            case.user(),
                            if expected { "allowed" } else { "denied" },
                            if got { "allowed" } else { "denied" },
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // 56 principals × (6 HTTP operations, minus creating in another project, plus
    // 3 NATS commands).
    assert_eq!(checked, 56 * 6 - 28 + 56 * 3);
    m.t.stop().await;
}

#[tokio::test]
async fn denials_say_what_would_allow_the_action() {
    let t = TestStack::start().await;
    let observer = t.token_with("olga", "p1", &["observer"]);
    let r = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(&observer)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        description(r).await,
        (
            StatusCode::FORBIDDEN,
            "creating a secret in project p1 requires role member, creator or admin; you have observer"
                .to_owned()
        )
    );

    let owner = t.token_with("owner", "p1", &["creator"]);
    let id = t.create_text(&owner, "private", "hush").await;
    let r = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}/acl")))
        .bearer_auth(&owner)
        .json(&json!({"read": {"project-access": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = t.get(&format!("/v1/secrets/{id}/payload"), &observer).await;
    assert_eq!(
        description(r).await,
        (
            StatusCode::FORBIDDEN,
            format!(
                "reading the payload of secret {id}: the secret is private (project-access is \
                 false), so only its creator (owner), admins of project p1 and users on its \
                 ACL may read it; you are olga"
            )
        )
    );
    let auditor = t.token_with("audrey", "p1", &["audit"]);
    let shared = t.create_text(&owner, "shared", "visible").await;
    let r = t
        .get(&format!("/v1/secrets/{shared}/payload"), &auditor)
        .await;
    assert_eq!(
        description(r).await,
        (
            StatusCode::FORBIDDEN,
            format!(
                "reading the payload of secret {shared} in project p1 requires role observer, member, \
                 creator or admin, or being on its ACL; you have audit"
            )
        )
    );
    t.stop().await;
}

#[tokio::test]
async fn acl_conditions_limit_grants_and_say_which_failed() {
    let t = TestStack::start().await;
    let owner = t.token_with("owner", "p1", &["creator"]);
    let carol = t.token_with("carol", "p2", &["observer"]);
    let id = t.create_text(&owner, "office only", "s3cret").await;
    let set = |body: Value| {
        t.http
            .put(t.url(&format!("/v1/secrets/{id}/acl")))
            .bearer_auth(&owner)
            .json(&body)
            .send()
    };
    // The tests reach the API from 127.0.0.1.
    let r = set(json!({"read": {
        "project-access": false, "users": ["carol"],
        "conditions": {"source_cidrs": ["192.168.0.0/16"]}
    }}))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let payload = || {
        t.http
            .get(t.url(&format!("/v1/secrets/{id}/payload")))
            .bearer_auth(&carol)
            .send()
    };
    assert_eq!(
        description(payload().await.unwrap()).await,
        (
            StatusCode::FORBIDDEN,
            format!(
                "reading the payload of secret {id} is not allowed now: source 127.0.0.1 is \
                 outside the allowed 192.168.0.0/16 (a condition of the secret's ACL)"
            )
        )
    );
    // The creator is not bound by the conditions.
    let own = t.get(&format!("/v1/secrets/{id}/payload"), &owner).await;
    assert_eq!(own.text().await.unwrap(), "s3cret");
    // Merging in the loopback network lets carol read, keeping the user list.
    let r = t
        .http
        .patch(t.url(&format!("/v1/secrets/{id}/acl")))
        .bearer_auth(&owner)
        .json(&json!({"read": {"conditions": {"source_cidrs": ["127.0.0.0/8"]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(payload().await.unwrap().text().await.unwrap(), "s3cret");
    // An hour window that excludes now.
    let now = domain::timestamp::Timestamp::from_unix_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
    .unwrap();
    let (from, to) = ((now.hour() + 2) % 24, (now.hour() + 3) % 24);
    let r = set(json!({"read": {
        "project-access": false, "users": ["carol"],
        "conditions": {"utc_hours": [from, to]}
    }}))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, message) = description(payload().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message.contains(&format!(
            "is outside the allowed hours {from:02}:00-{to:02}:00 UTC"
        )),
        "{message}"
    );
    // Bad conditions are refused with what to fix.
    let r = set(json!({"read": {"conditions": {"source_cidrs": ["10.0.0.0/33"]}}}))
        .await
        .unwrap();
    let (status, message) = description(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message.contains("\"10.0.0.0/33\" is not a network"),
        "{message}"
    );
    t.stop().await;
}

/// An ACL as shown, without its times, once they are checked: present, in Barbican's
/// form (UTC without an offset), and `updated` not before `created`.
pub fn untimed(mut acl: Value) -> Value {
    let read = acl["read"].as_object_mut().expect("a read ACL");
    let created = read
        .remove("created")
        .expect("a set ACL shows when it was set");
    let updated = read.remove("updated").expect("and when it last changed");
    for time in [&created, &updated] {
        let text = time.as_str().unwrap();
        assert!(
            text.len() >= 19 && !text.ends_with('Z') && !text.contains('+'),
            "{text}"
        );
    }
    assert!(updated.as_str() >= created.as_str(), "{created} {updated}");
    acl
}

#[tokio::test]
async fn acl_endpoints_follow_barbican() {
    let t = TestStack::start().await;
    let owner = t.token_with("owner", "p1", &["creator"]);
    let id = t.create_text(&owner, "acl", "v").await;
    let acl_url = t.url(&format!("/v1/secrets/{id}/acl"));
    let acl_path = format!("/v1/secrets/{id}/acl");
    let get = || async { json_of(t.get(&acl_path, &owner).await).await };

    assert_eq!(get().await, json!({"read": {"project-access": true}}));
    let r = t
        .http
        .put(&acl_url)
        .bearer_auth(&owner)
        .json(&json!({"read": {"users": ["bob", "carol"], "project-access": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["acl_ref"], json!(format!("{acl_url}")));
    assert_eq!(
        untimed(get().await),
        json!({"read": {"project-access": false, "users": ["bob", "carol"]}})
    );
    // PATCH changes only what it names.
    let r = t
        .http
        .patch(&acl_url)
        .bearer_auth(&owner)
        .json(&json!({"read": {"users": ["dave"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        untimed(get().await),
        json!({"read": {"project-access": false, "users": ["dave"]}})
    );
    // Only dave sees it in acl_only listings.
    for (user, expected) in [("dave", 1), ("bob", 0)] {
        let token = t.token_with(user, "p9", &["observer"]);
        let list = json_of(t.get("/v1/secrets?acl_only=true", &token).await).await;
        assert_eq!(list["total"], expected, "{user}: {list}");
    }
    // DELETE resets it.
    let r = t
        .http
        .delete(&acl_url)
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Barbican answers with a JSON body of null, which its clients parse.
    assert_eq!(json_of(r).await, Value::Null);
    assert_eq!(get().await, json!({"read": {"project-access": true}}));
    // Unknown members are named.
    let r = t
        .http
        .put(&acl_url)
        .bearer_auth(&owner)
        .json(&json!({"write": {"users": ["x"]}}))
        .send()
        .await
        .unwrap();
    let (status, message) = description(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("unknown field `write`"), "{message}");
    // Deleting the secret removes it from the listings of those it was shared with.
    let dave = t.token_with("dave", "p9", &["observer"]);
    let shared_total = || async {
        json_of(t.get("/v1/secrets?acl_only=true", &dave).await).await["total"].clone()
    };
    let r = t
        .http
        .put(&acl_url)
        .bearer_auth(&owner)
        .json(&json!({"read": {"users": ["dave"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(shared_total().await, 1);
    let r = t
        .http
        .delete(t.url(&format!("/v1/secrets/{id}")))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(shared_total().await, 0);
    t.stop().await;
}

#[tokio::test]
async fn whoami_shows_the_principal_as_keyledger_sees_it() {
    let t = TestStack::start().await;
    let token = t.token_with("alice", "p1", &["member", "ops"]);
    let me = json_of(t.get("/v1/whoami", &token).await).await;
    assert_eq!(
        me,
        json!({
            "user_id": "alice", "project_id": "p1", "roles": ["member", "ops"],
            "effective_roles": ["member"], "service": null, "source": "127.0.0.1",
            "nats_inbox_prefix": infra::nats_auth::inbox_prefix(
                &domain::ids::ProjectId::parse("p1").unwrap(),
                &domain::ids::UserId::parse("alice").unwrap(),
            ),
        })
    );
    t.stop().await;
}

/// A caller the policy refuses learns nothing from a command: not that a command id
/// was used, not whether a guessed payload matches a stored version, not whether a
/// secret exists in another project. Authorization comes before every other answer.
#[tokio::test]
async fn a_refused_caller_learns_nothing_from_retries_payload_guesses_or_existence() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let nats = t.client_nats_as(&alice).await;
    let created = crate::support::raw_command(
        &nats,
        command::SECRET_CREATE,
        Some(&alice),
        &json!({"command_id": "cid-1", "name": "pin", "payload": "4711",
                "payload_content_type": "text/plain"}),
    )
    .await;
    assert_eq!(created["ok"], true, "{created}");
    let (id, version) = (created["id"].clone(), created["version_id"].clone());
    let private = crate::support::raw_command(
        &nats,
        command::SECRET_ACL_SET,
        Some(&alice),
        &json!({"id": id, "read": {"project-access": false}}),
    )
    .await;
    assert_eq!(private["ok"], true, "{private}");

    // Each caller on a connection of its own, admitted by its token.
    let send = |token: String, name: &'static str, body: Value| {
        let t = &t;
        async move {
            let nats = t.client_nats_as(&token).await;
            let reply = crate::support::raw_command(&nats, name, Some(&token), &body).await;
            // Any refusal is the policy's, never the one for a reply outside the
            // caller's inbox space.
            assert!(!reply.to_string().contains("inbox space"), "{reply}");
            reply
        }
    };
    let code = |reply: &Value| reply["error"]["code"].as_str().unwrap_or("ok").to_owned();
    let bob = t.token("bob", "p2");
    let auditor = t.token_with("audrey", "p1", &["audit"]);
    // A guessed payload with the token of an existing version: refused alike, right
    // or wrong.
    for (who, token) in [("bob", &bob), ("an auditor", &auditor)] {
        for guess in ["4711", "0000"] {
            let reply = send(
                token.clone(),
                command::SECRET_VALUE_PUT,
                json!({"project": "p1", "id": id, "client_request_token": version,
                       "payload": guess, "payload_content_type": "text/plain"}),
            )
            .await;
            assert_eq!(code(&reply), "forbidden", "{who} guessing {guess}: {reply}");
        }
    }
    // Alice's command id, sent by others: refused, or a conflict, never her reply.
    for (who, token, name, body) in [
        (
            "bob",
            bob.clone(),
            command::SECRET_METADATA_SET,
            json!({"command_id": "cid-1", "project": "p1", "id": id, "key": "k", "value": "v"}),
        ),
        (
            "bob",
            bob.clone(),
            command::SECRET_CREATE,
            json!({"command_id": "cid-1", "project": "p1", "name": "x"}),
        ),
        (
            "an observer",
            t.token_with("olga", "p1", &["observer"]),
            command::SECRET_CREATE,
            json!({"command_id": "cid-1", "name": "x"}),
        ),
    ] {
        let reply = send(token, name, body).await;
        assert_eq!(code(&reply), "forbidden", "{who}: {reply}");
        // A create names no id: the reply must not give alice's.
        if name == command::SECRET_CREATE {
            assert!(!reply.to_string().contains(id.as_str().unwrap()), "{reply}");
        }
    }
    let eve = send(
        t.token_with("eve", "p1", &["creator"]),
        command::SECRET_CREATE,
        json!({"command_id": "cid-1", "name": "x", "payload": "eve's",
               "payload_content_type": "text/plain"}),
    )
    .await;
    assert_eq!(code(&eve), "conflict", "{eve}");
    assert!(!eve.to_string().contains(id.as_str().unwrap()), "{eve}");
    // Alice's own retry is still answered as the first time.
    let again = send(
        alice.clone(),
        command::SECRET_CREATE,
        json!({"command_id": "cid-1", "name": "pin", "payload": "4711",
               "payload_content_type": "text/plain"}),
    )
    .await;
    assert_eq!(again["id"], id, "{again}");

    // From another project, an existing secret and a made-up one are refused alike.
    let made_up = "00000000-0000-4000-8000-000000000001";
    for name in [command::SECRET_DELETE, command::SECRET_METADATA_SET] {
        let on = |target: &str| json!({"project": "p1", "id": target, "key": "k", "value": "v", "force": true});
        let real = send(bob.clone(), name, on(id.as_str().unwrap())).await;
        let fake = send(bob.clone(), name, on(made_up)).await;
        assert_eq!(
            real["error"]["message"]
                .as_str()
                .unwrap()
                .replace(id.as_str().unwrap(), made_up),
            fake["error"]["message"].as_str().unwrap(),
            "{name}"
        );
    }
    t.stop().await;
}
