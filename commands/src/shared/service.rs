//! The command service: request/reply on `keyledger.cmd.>` in a queue group, so any
//! number of replicas share the load. Each request is verified (bearer token), handled
//! and answered with the reply shape of [`infra::protocol`]. The HTTP API sends its
//! commands on `keyledger.api.cmd.>`, which clients cannot publish to: with its
//! callers' tokens, or with delegation tokens for principals it verified by AWS
//! signatures, which are accepted there and nowhere else.
//!
//! NATS clients' commands, the HTTP API's, and those sent inside keyledger's own
//! account or by rotation handlers are taken on three NATS connections of their own,
//! apart from the one that writes the log, each with its own command slots and a
//! bounded buffer ([`CLIENT_INTAKE_BUFFER`], [`API_INTAKE_BUFFER`]). nats-server
//! closes a connection that does not read its messages as fast as they come (more
//! than `max_pending`, 64 MiB, waiting), and any token holder may publish on
//! `keyledger.cmd.>`: a few connections sending large messages as fast as they can
//! overran the single connection the service had, every few seconds, and with it the
//! HTTP API's writes and keyledger's writes to the log. Now such a flood can only
//! close, or fill, the intake NATS clients' commands come on.
//!
//! The service answers with keyledger's own NATS identity, which may write the log.
//! So it answers only on a subject that can be a reply — an inbox (`_INBOX.`,
//! `_INBOX_<…>.`) or a cross-account response subject (`_R_.`) — never on whatever a
//! request names: a reply subject that is an event, key-store or JetStream subject
//! would make keyledger write there itself. Such a request is refused unanswered and
//! logged.
//!
//! NATS clients' commands come inside the `CLIENTS` account their connections are
//! admitted to (as the user `intake`, [`infra::server`]), where the reply subject is
//! the one the client named. nats-server checks no reply subject
//! against permissions: without a check of keyledger's own, a client could have
//! keyledger's answers delivered onto a change-notification subject other clients
//! listen on, or its command's result into another principal's inbox (an answer to
//! that principal's own request, if its subject were guessed). So a client's command
//! is carried out only when its reply subject is inside the inbox space of the
//! principal its token names ([`infra::nats_auth::inbox_prefix`]), the only one that
//! principal's connections may read: a command whose reply is in another principal's
//! inbox space is refused there, unexecuted ([`own_inbox`]), and one whose reply is no
//! client's inbox is not answered at all ([`is_client_inbox`]). A command whose token
//! does not verify names no principal to trust: its refusal goes to whichever client's
//! inbox it names.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Message};
use domain::principal::Principal;
use domain::subject::{
    COMMAND_PREFIX, COMMANDS_WILDCARD, CommandName, DELEGATED_PREFIX, DELEGATED_WILDCARD,
};
use domain::{ErrorCode, Rejection};
use futures::{FutureExt as _, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::access_key::AccessKeyHandler;
use crate::container::ContainerHandler;
use crate::order::OrderHandler;
use crate::quota::QuotaHandler;
use crate::secret::SecretHandler;
use infra::clock::Clock;
use infra::identity::Verifier;
use infra::protocol::{AUTHORIZATION, AcceptedReply, encode_reply};

/// Most NATS clients' commands a process holds before it takes them up (while every
/// command slot is busy): beyond them the client library drops what comes (and counts
/// a slow consumer), and the sender's retry or timeout answers for it. Its default,
/// 65,536 messages of up to nats-server's `max_payload` (1 MiB) each, let a flood
/// queue tens of gigabytes; a client's burst of 1,500 pipelined commands is still each
/// answered (`tests/nats_security.rs`).
pub const CLIENT_INTAKE_BUFFER: usize = 4096;

/// The same for the HTTP API's commands, which only keyledger's API sends.
pub const API_INTAKE_BUFFER: usize = 4096;

/// The queue group command handlers join.
pub(crate) const QUEUE_GROUP: &str = "keyledger-commands";

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
#[error("command service: {0}")]
pub struct ServiceError(String);

/// What the command service needs.
pub struct CommandService {
    /// The connection NATS clients' commands (`keyledger.cmd.>`) come on and are
    /// answered on: the `intake` user of the `CLIENTS` account.
    pub clients_intake: Client,
    /// The connection commands sent inside keyledger's own account, and by rotation
    /// handlers (from `ROTATION`, with reply subjects the server makes), come on and are
    /// answered on (service credentials).
    pub service_intake: Client,
    /// The connection the HTTP API's commands (`keyledger.api.cmd.>`) come on and are
    /// answered on: another than `clients_intake`, which any token holder can flood.
    pub api_client: Client,
    /// Executes commands on secrets.
    pub handler: Arc<SecretHandler>,
    /// Executes commands on containers.
    pub containers: Arc<ContainerHandler>,
    /// Executes commands on orders.
    pub orders: Arc<OrderHandler>,
    /// Executes commands on access keys.
    pub access_keys: Arc<AccessKeyHandler>,
    /// Executes commands on project quotas.
    pub quotas: Arc<QuotaHandler>,
    /// Verifies bearer tokens.
    pub verifier: Verifier,
    /// Verifies the tokens of the HTTP API's commands: its callers' and its delegation
    /// tokens ([`Verifier::with_delegation`]).
    pub delegated: Verifier,
    /// The clock tokens are checked against.
    pub clock: Clock,
    /// Most commands handled at once by this process on each of its intakes.
    pub concurrency: usize,
}

/// The share of the process's command slots one caller (user in project) may hold:
/// beyond it, a caller's commands are refused at once (`too_many_requests`), so one
/// caller's flood is answered quickly and leaves room for everyone else.
const PER_CALLER_SHARE: usize = 4;

/// A command's `Authorization` header, its name matched whatever its case (as HTTP's
/// are); more than one copy is refused: a proxy that vetted one must not see another
/// used.
fn authorization(headers: Option<&async_nats::HeaderMap>) -> Result<Option<&str>, Rejection> {
    let mut copies = headers
        .into_iter()
        .flat_map(|headers| headers.iter())
        .filter(|(name, _)| AsRef::<str>::as_ref(name).eq_ignore_ascii_case(AUTHORIZATION))
        .flat_map(|(_, values)| values);
    let first = copies.next().map(async_nats::HeaderValue::as_str);
    if copies.next().is_some() {
        return Err(Rejection::unauthorized(
            "the command carries the Authorization header more than once; send one token",
        ));
    }
    Ok(first)
}

/// Rejected commands logged a second, at most: a client can send bogus commands far
/// faster than anyone reads their lines (the rest are counted in a warning, and every
/// one in `keyledger_commands_total`). Faults of keyledger's own are logged apart.
static REJECTIONS_LOGGED: infra::log_budget::LogBudget =
    infra::log_budget::LogBudget::new(100, std::time::Duration::from_secs(1));

/// Commands that cannot be answered (no reply subject, or one that is no inbox) logged
/// a second, at most, for the same reason.
static UNANSWERABLE_LOGGED: infra::log_budget::LogBudget =
    infra::log_budget::LogBudget::new(10, std::time::Duration::from_secs(1));

/// Where a command came from, which decides where it may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intake {
    /// A NATS client, in the `CLIENTS` account.
    Clients,
    /// keyledger's own account, or a rotation handler (whose reply subject, across
    /// accounts, the server makes).
    Service,
    /// The HTTP API.
    Api,
}

/// Whether `reply` is a NATS client's inbox (`_INBOX_<name>.…`), the only subjects a
/// client's command is answered on: never a change notification's or any other
/// subject of the `CLIENTS` account.
fn is_client_inbox(reply: &str) -> bool {
    reply.starts_with("_INBOX_") && infra::nats::is_reply_subject(reply)
}

/// Refuses a NATS client's command whose reply subject is outside the inbox space of
/// `principal`, the one its token names: the refusal, a fixed text, is all that may
/// reach another principal's inbox.
fn own_inbox(reply: &str, principal: &Principal) -> Result<(), Rejection> {
    let prefix = infra::nats_auth::inbox_prefix(&principal.project, &principal.user);
    if reply
        .strip_prefix(&prefix)
        .is_some_and(|rest| rest.starts_with('.'))
    {
        return Ok(());
    }
    Err(Rejection::forbidden(
        "keyledger answers a command only inside the inbox space of the principal its token \
         names, and this one's reply subject is outside it: connect to NATS with this \
         command's token and use its inbox prefix (`keyledger whoami` prints it). The command \
         was not carried out",
    ))
}

/// The callers with commands in flight, and how many each has.
#[derive(Default)]
struct Callers(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// A caller's command in flight; its place is given back when dropped.
struct InFlight<'a> {
    callers: &'a Callers,
    caller: String,
}

impl Callers {
    fn start(&self, caller: String, limit: usize) -> Result<InFlight<'_>, Rejection> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(caller.clone()).or_default();
        if *n >= limit {
            return Err(Rejection::new(
                domain::ErrorCode::TooManyRequests,
                format!(
                    "you have {limit} commands in flight already; wait for their replies \
                     before sending more"
                ),
            ));
        }
        *n += 1;
        Ok(InFlight {
            callers: self,
            caller,
        })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = self.callers.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.caller);
            }
        }
    }
}

impl CommandService {
    /// Serves commands until `shutdown` is cancelled, then finishes those in flight.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServiceError> {
        async fn subscribe(
            client: &Client,
            subject: &'static str,
        ) -> Result<async_nats::Subscriber, ServiceError> {
            client
                .queue_subscribe(subject, QUEUE_GROUP.into())
                .await
                .map_err(|e| ServiceError(e.to_string()))
        }
        let clients = subscribe(&self.clients_intake, COMMANDS_WILDCARD).await?;
        let service = subscribe(&self.service_intake, COMMANDS_WILDCARD).await?;
        let delegated = subscribe(&self.api_client, DELEGATED_WILDCARD).await?;
        let callers = Arc::new(Callers::default());
        let this = Arc::new(self);
        // Any subscription ending ends the service, to be restarted whole.
        let stop = shutdown.child_token();
        let serve = |subscription, intake| {
            let (this, callers, stop) = (this.clone(), callers.clone(), stop.clone());
            async move {
                let served = this.serve(subscription, intake, callers, &stop).await;
                stop.cancel();
                served
            }
        };
        let (clients, service, api) = tokio::join!(
            serve(clients, Intake::Clients),
            serve(service, Intake::Service),
            serve(delegated, Intake::Api)
        );
        clients.and(service).and(api)
    }

    /// Serves the commands of one intake with slots of its own: NATS clients holding
    /// every one of theirs (many callers, each up to its share, with slow commands)
    /// leave the HTTP API's free. Until `stop`, then finishes those in flight.
    async fn serve(
        self: Arc<Self>,
        mut subscription: async_nats::Subscriber,
        intake: Intake,
        callers: Arc<Callers>,
        stop: &CancellationToken,
    ) -> Result<(), ServiceError> {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let served = loop {
            let message = tokio::select! {
                () = stop.cancelled() => break Ok(()),
                m = subscription.next() => m,
            };
            let Some(message) = message else {
                break Err(ServiceError("a subscription ended".into()));
            };
            let permit = tokio::select! {
                () = stop.cancelled() => break Ok(()),
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break Ok(()),
                },
            };
            let (this, callers) = (self.clone(), callers.clone());
            tokio::spawn(async move {
                this.answer(message, intake, &callers).await;
                drop(permit);
            });
        };
        let _ = subscription.unsubscribe().await;
        // Let commands in flight finish, so their callers get a reply.
        let concurrency = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let _ =
            tokio::time::timeout(Duration::from_secs(10), permits.acquire_many(concurrency)).await;
        served
    }

    async fn answer(&self, message: Message, intake: Intake, callers: &Callers) {
        let Some(reply_to) = message.reply.clone() else {
            if let Some(earlier) = UNANSWERABLE_LOGGED.take() {
                tracing::warn!(subject = %message.subject, earlier_not_logged = earlier, "a command without a reply subject was ignored; use request/reply");
            }
            return;
        };
        if !infra::nats::is_reply_subject(&reply_to) {
            if let Some(earlier) = UNANSWERABLE_LOGGED.take() {
                tracing::warn!(
                    subject = %message.subject,
                    reply = ?reply_to.as_str(),
                    earlier_not_logged = earlier,
                    "refused a command whose reply subject is not an inbox (_INBOX.…, \
                     _INBOX_<name>.… or _R_.…): keyledger never answers onto other subjects"
                );
            }
            return;
        }
        if intake == Intake::Clients && !is_client_inbox(&reply_to) {
            if let Some(earlier) = UNANSWERABLE_LOGGED.take() {
                tracing::warn!(
                    subject = %message.subject,
                    reply = ?reply_to.as_str(),
                    earlier_not_logged = earlier,
                    "refused a NATS client's command whose reply subject is no client's inbox \
                     (_INBOX_<name>.…): keyledger answers clients only there"
                );
            }
            return;
        }
        let (prefix, verifier, client) = match intake {
            Intake::Clients => (COMMAND_PREFIX, &self.verifier, &self.clients_intake),
            Intake::Service => (COMMAND_PREFIX, &self.verifier, &self.service_intake),
            Intake::Api => (DELEGATED_PREFIX, &self.delegated, &self.api_client),
        };
        let name = message
            .subject
            .strip_prefix(prefix)
            .unwrap_or_default()
            .to_owned();
        let started = std::time::Instant::now();
        let mut project = None;
        let result = answer_or_internal(
            &name,
            self.execute(
                &name,
                verifier,
                (intake == Intake::Clients).then_some(reply_to.as_str()),
                &message,
                callers,
                &mut project,
            ),
        )
        .await;
        record(&name, project.as_deref(), &result, started.elapsed());
        match &result {
            Ok(a) => {
                tracing::info!(command = %name, id = %a.id, seq = a.seq, version = a.version, "accepted")
            }
            // A fault of keyledger's own (a corrupt log, a tampered key store, a KEK
            // out of reach) is always logged: a client's flood must not hide it.
            Err(r) if matches!(r.code, ErrorCode::Internal | ErrorCode::Unavailable) => {
                tracing::warn!(command = %name, code = r.code.as_str(), message = %r.message, "rejected")
            }
            Err(r) => {
                if let Some(earlier) = REJECTIONS_LOGGED.take() {
                    if earlier > 0 {
                        tracing::warn!(
                            not_logged = earlier,
                            "rejected commands not logged: more than 100 a second"
                        );
                    }
                    tracing::info!(command = %name, code = r.code.as_str(), message = %r.message, "rejected")
                }
            }
        }
        if let Err(e) = client.publish(reply_to, encode_reply(&result).into()).await {
            tracing::warn!(command = %name, error = %e, "sending the reply failed");
        }
    }

    /// Carries out the command `name` of `message`, for the principal its token names
    /// (`verifier`); a NATS client's (`clients_reply`, its reply subject) only when
    /// that subject is in the principal's inbox space.
    async fn execute(
        &self,
        name: &str,
        verifier: &Verifier,
        clients_reply: Option<&str>,
        message: &Message,
        callers: &Callers,
        project: &mut Option<String>,
    ) -> Result<AcceptedReply, Rejection> {
        let authorization = authorization(message.headers.as_ref())?;
        let principal = verifier.verify_authorization(authorization, (self.clock)())?;
        if let Some(reply) = clients_reply {
            own_inbox(reply, &principal)?;
        }
        *project = Some(principal.project.to_string());
        let _in_flight = callers.start(
            format!("{}@{}", principal.user, principal.project),
            (self.concurrency / PER_CALLER_SHARE).max(1),
        )?;
        tracing::debug!(command = %name, user = %principal.user, project = %principal.project, "received");
        let Some(command) = CommandName::parse(name) else {
            return Err(Rejection::invalid(format!(
                "unknown command {name:?}; the commands are {}",
                domain::subject::command::ALL.join(", ")
            )));
        };
        let body = &message.payload;
        match command {
            CommandName::Secret(op) => self.handler.handle(op, &principal, body).await,
            CommandName::Container(op) => self.containers.handle(op, &principal, body).await,
            CommandName::Order(op) => self.orders.handle(op, &principal, body).await,
            CommandName::AccessKey(op) => self.access_keys.handle(op, &principal, body).await,
            CommandName::Quota(op) => self.quotas.handle(op, &principal, body).await,
        }
    }
}

/// Counts a command by its name (`unknown` for a name that is not a command: the
/// label takes no caller's string) and outcome, and observes how long it took.
fn record(
    name: &str,
    project: Option<&str>,
    result: &Result<AcceptedReply, Rejection>,
    took: Duration,
) {
    use infra::metrics::{COMMAND_DURATION, COMMANDS, project_label};
    let command = CommandName::parse(name).map_or("unknown", CommandName::as_str);
    let outcome = match result {
        Ok(_) => "accepted",
        Err(r) => r.code.as_str(),
    };
    let mut labels = vec![
        metrics::Label::from_static_parts("command", command),
        metrics::Label::from_static_parts("outcome", outcome),
    ];
    labels.extend(project.and_then(project_label));
    metrics::counter!(COMMANDS, labels).increment(1);
    metrics::histogram!(COMMAND_DURATION, "command" => command).record(took.as_secs_f64());
}

/// What `handling` (of the command `name`) yields; if it panics, the answer is
/// `internal` with an error id instead. A panic while handling one command must not
/// leave its caller without an answer: it is caught, logged with the id, and answered.
async fn answer_or_internal(
    name: &str,
    handling: impl Future<Output = Result<AcceptedReply, Rejection>>,
) -> Result<AcceptedReply, Rejection> {
    match std::panic::AssertUnwindSafe(handling).catch_unwind().await {
        Ok(result) => result,
        Err(cause) => Err(panicked(name, cause)),
    }
}

/// The answer to a command whose handling panicked.
fn panicked(name: &str, cause: Box<dyn std::any::Any + Send>) -> Rejection {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let what = cause
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| cause.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(command = %name, error_id = %id, panic = %what, "handling a command panicked");
    Rejection::internal(format!(
        "keyledger failed while handling this command (error id {id}); retry it with the same \
         command_id: it is applied at most once"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler with a bug.
    async fn handling_that_panics() -> Result<AcceptedReply, Rejection> {
        panic!("a bug while handling a command")
    }

    /// The error id an `internal` answer names: 32 hex digits.
    fn error_id(message: &str) -> &str {
        let id = message
            .split_once("(error id ")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("no error id in {message:?}"));
        assert_eq!(id.len(), 32, "{id:?}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id:?}");
        id
    }

    #[tokio::test]
    async fn a_panic_while_handling_a_command_is_answered_as_internal_with_an_error_id() {
        let result = answer_or_internal("secret.create", handling_that_panics()).await;
        // The reply the caller gets, as sent on NATS.
        let reply: serde_json::Value = serde_json::from_slice(&encode_reply(&result)).unwrap();
        assert_eq!(reply["ok"], false, "{reply}");
        assert_eq!(reply["error"]["code"], "internal", "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        let first = error_id(message).to_owned();
        // The panic's text is logged, never answered.
        assert!(!message.contains("a bug while handling"), "{message}");
        // Each panic gets its own id, to find its log line by.
        let again = answer_or_internal("secret.create", handling_that_panics())
            .await
            .unwrap_err();
        assert_eq!(again.code, domain::ErrorCode::Internal);
        assert_ne!(error_id(&again.message), first.as_str());
    }

    #[tokio::test]
    async fn an_answer_without_a_panic_is_passed_on_unchanged() {
        let refused = Rejection::invalid("name contains U+202E");
        let result = answer_or_internal("secret.create", async {
            Err::<AcceptedReply, Rejection>(refused.clone())
        })
        .await;
        assert_eq!(result.unwrap_err(), refused);
    }

    fn principal(user: &str, project: &str) -> Principal {
        Principal {
            user: domain::ids::UserId::parse(user).unwrap(),
            project: domain::ids::ProjectId::parse(project).unwrap(),
            roles: Vec::new(),
            service: None,
        }
    }

    #[test]
    fn a_clients_command_is_carried_out_only_for_a_reply_in_its_principals_inbox_space() {
        let (alice, bob) = (principal("alice", "p1"), principal("bob", "p1"));
        let own = infra::nats_auth::inbox_prefix(&alice.project, &alice.user);
        let bobs = infra::nats_auth::inbox_prefix(&bob.project, &bob.user);
        assert!(is_client_inbox(&format!("{own}.nuid.1")));
        assert_eq!(own_inbox(&format!("{own}.nuid.1"), &alice), Ok(()));
        // Another principal's inbox: refused there, saying what to do.
        for elsewhere in [format!("{bobs}.nuid.1"), format!("{own}x.nuid.1")] {
            assert!(is_client_inbox(&elsewhere), "{elsewhere}");
            let refused = own_inbox(&elsewhere, &alice).unwrap_err();
            assert_eq!(refused.code, ErrorCode::Forbidden, "{elsewhere}");
            assert!(refused.message.contains("keyledger whoami"), "{refused:?}");
        }
        // No client's inbox (a change notification's subject, keyledger's own or a
        // cross-account one): not answered at all, whoever sent it.
        for nowhere in [
            "keyledger.changes.p1.secret.x".to_owned(),
            "_INBOX.abc.1".to_owned(),
            "_R_.abc.1".to_owned(),
            format!("{own}.>"),
            own.clone(),
        ] {
            assert!(!is_client_inbox(&nowhere), "{nowhere}");
        }
    }
}
