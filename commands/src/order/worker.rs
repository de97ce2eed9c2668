//! The order worker: a process manager fed by the event stream. For each placed order
//! it generates the material, records it on the order, stores it as secrets (and a
//! container), and completes the order; or fails it with Barbican's status code and a
//! reason.
//!
//! Every step is idempotent, so the worker is crash-safe: the material is fixed by the
//! first `order.material_recorded` commit, and each secret and container has an id and
//! command id derived from the order, so a step run twice writes once. A worker killed
//! anywhere resumes on restart (pending orders are looked up at start, and the durable
//! consumer redelivers unacknowledged ones) and never creates a secret twice.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use domain::commit::Commit;
use domain::container::{ContainerCommand, ContainerType, CreateContainer, RefName, SecretRef};
use domain::ids::{CommandId, KeyId, OrderId, ProjectId, VersionId};
use domain::order::{
    DistinguishedName, Material, OrderCommand, OrderCompleted, OrderEvent, OrderFailed, OrderSpec,
    OrderState, OrderStatus, OrderType, container_for, secret_for,
};
use domain::principal::Actor;
use domain::secret::fields::{Algorithm, Attributes, BitLength, SecretType};
use domain::secret::payload::{ContentType, PayloadLimit, Plaintext};
use domain::secret::{CreateSecret, SecretCommand};
use domain::subject::{AggregateKind, events_filter};
use domain::{ErrorCode, Rejection};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::OrderHandler;
use super::ca::{CaError, CertificateAuthority, IssueRequest};
use super::generate;
use crate::container::ContainerHandler;
use crate::secret::SecretHandler;
use infra::clock::Clock;
use infra::envelope::Envelope;
use infra::keystore::KeyStore;

/// Name of the worker's durable consumer.
pub const CONSUMER: &str = "keyledger-order-worker";

/// Called after each step with its name; `false` stops the worker there, as a crash
/// would (tests use it to kill the worker mid-order).
pub type StepHook = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How the worker retries an unreachable CA.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all.
    pub attempts: u32,
    /// The first pause; each next one doubles.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Where the worker learns, at start, which orders are still pending.
pub trait PendingOrders: Send + Sync + 'static {
    /// Up to `limit` pending orders: (project, order id).
    fn pending(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(ProjectId, OrderId)>, crate::SourceError>> + Send;
}

/// Why the worker stopped on an order.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A step hook stopped it.
    #[error("stopped after step {0}")]
    Stopped(String),
    /// A command was refused or NATS failed; the order stays pending and is retried.
    #[error(transparent)]
    Command(#[from] Rejection),
}

/// The order worker.
pub struct OrderWorker {
    /// Orders.
    pub orders: Arc<OrderHandler>,
    /// Secrets.
    pub secrets: Arc<SecretHandler>,
    /// Containers.
    pub containers: Arc<ContainerHandler>,
    /// Where data keys go.
    pub keys: KeyStore,
    /// Seals the material.
    pub envelope: Arc<Envelope>,
    /// CA plugins by name.
    pub cas: BTreeMap<String, Arc<dyn CertificateAuthority>>,
    /// The clock.
    pub clock: Clock,
    /// Retrying an unreachable CA.
    pub retry: Retry,
    /// Observes (and may stop) each step.
    pub hook: Option<StepHook>,
}

fn cmd(id: &str) -> Result<CommandId, Rejection> {
    CommandId::parse(id)
}

/// A refusal that retrying cannot change.
fn is_permanent(r: &Rejection) -> bool {
    !matches!(r.code, ErrorCode::Unavailable | ErrorCode::Internal)
}

impl OrderWorker {
    fn step(&self, name: &str) -> Result<(), WorkerError> {
        match &self.hook {
            Some(hook) if !hook(name) => Err(WorkerError::Stopped(name.to_owned())),
            _ => Ok(()),
        }
    }

    /// Takes order `order` of `project` as far as it goes: to ACTIVE or ERROR. Safe to
    /// call any number of times, concurrently too.
    pub async fn process(&self, project: &ProjectId, order: OrderId) -> Result<(), WorkerError> {
        let worker = Actor::order_worker();
        let OrderState::Placed(placed) = self.orders.state(project, order).await? else {
            return Ok(());
        };
        if placed.status != OrderStatus::Pending {
            return Ok(());
        }
        let spec = match OrderSpec::parse(placed.order_type, &placed.meta) {
            Ok(spec) => spec,
            // Placed under an earlier build that took what this one refuses: the order
            // fails, rather than being retried forever.
            Err(refused) => return self.fail(project, order, refused.into()).await,
        };
        let material = match &placed.material {
            Some(m) => m.clone(),
            None => match self.generate(project, order, &spec).await {
                Ok(items) => {
                    self.orders
                        .run(
                            &worker,
                            project.clone(),
                            order,
                            OrderCommand::RecordMaterial(items),
                            cmd(&format!("order-{order}-material"))?,
                        )
                        .await?;
                    self.step("material")?;
                    // Whoever recorded first, that material stands.
                    match self.orders.state(project, order).await? {
                        OrderState::Placed(o) => o.material.clone().unwrap_or_default(),
                        _ => return Ok(()),
                    }
                }
                Err(failed) => return self.fail(project, order, failed).await,
            },
        };
        match self.store(project, order, &placed, &spec, &material).await {
            // The material cannot be stored as asked (say, its expiration passed while
            // the order waited): the order fails, rather than being retried forever.
            Err(WorkerError::Command(r)) if is_permanent(&r) => {
                self.fail(project, order, r.into()).await
            }
            other => other,
        }
    }

    /// Fails the order, as `failed` says.
    async fn fail(
        &self,
        project: &ProjectId,
        order: OrderId,
        failed: OrderFailed,
    ) -> Result<(), WorkerError> {
        self.orders
            .run(
                &Actor::order_worker(),
                project.clone(),
                order,
                OrderCommand::Fail(failed),
                cmd(&format!("order-{order}-fail"))?,
            )
            .await?;
        Ok(())
    }

    /// Stores recorded material as secrets (and a container), and completes the order.
    async fn store(
        &self,
        project: &ProjectId,
        order: OrderId,
        placed: &domain::order::Order,
        spec: &OrderSpec,
        material: &[Material],
    ) -> Result<(), WorkerError> {
        let worker = Actor::order_worker();
        for item in material {
            let (_, command_id) = secret_for(project, order, &item.role);
            let create = CreateSecret {
                attributes: item.attributes.clone(),
                payload: Some(item.payload.clone()),
                owning_service: None,
                tags: Default::default(),
            };
            self.secrets
                .run_as(
                    &worker,
                    project.clone(),
                    item.secret_id,
                    SecretCommand::CreateForOrder {
                        create: Box::new(create),
                        creator: placed.creator.clone(),
                    },
                    cmd(&command_id)?,
                )
                .await?;
            self.step(&format!("secret:{}", item.role))?;
        }
        let completed = if placed.order_type == OrderType::Key {
            OrderCompleted {
                secret_id: material.first().map(|m| m.secret_id),
                container_id: None,
            }
        } else {
            let (container, command_id) = container_for(project, order);
            let kind = if placed.order_type == OrderType::Certificate {
                ContainerType::Certificate
            } else {
                ContainerType::Rsa
            };
            let refs = material
                .iter()
                .map(|m| {
                    Ok(SecretRef {
                        name: RefName::parse(&m.role)?,
                        project: project.clone(),
                        secret_id: m.secret_id,
                    })
                })
                .collect::<Result<_, Rejection>>()?;
            self.containers
                .run_as(
                    &worker,
                    project.clone(),
                    container,
                    ContainerCommand::CreateForOrder {
                        create: Box::new(CreateContainer {
                            name: spec.name.clone(),
                            kind,
                            refs,
                        }),
                        creator: placed.creator.clone(),
                    },
                    cmd(&command_id)?,
                )
                .await?;
            self.step("container")?;
            OrderCompleted {
                secret_id: None,
                container_id: Some(container),
            }
        };
        self.orders
            .run(
                &worker,
                project.clone(),
                order,
                OrderCommand::Complete(completed),
                cmd(&format!("order-{order}-complete"))?,
            )
            .await?;
        self.step("complete")?;
        Ok(())
    }

    /// Generates and seals what `spec` asks for, or says why not (as an ERROR order).
    async fn generate(
        &self,
        project: &ProjectId,
        order: OrderId,
        spec: &OrderSpec,
    ) -> Result<Vec<Material>, OrderFailed> {
        let made = match spec.order_type {
            OrderType::Key => vec![symmetric_key(spec)?],
            OrderType::Asymmetric | OrderType::Certificate => self.key_pair(spec).await?,
        };
        self.seal_and_store(project, order, made).await
    }

    /// The key pair an asymmetric or certificate order asks for, with the certificate
    /// and its chain from the CA for a certificate order, else the public key.
    async fn key_pair(&self, spec: &OrderSpec) -> Result<Vec<Made>, OrderFailed> {
        let key_spec = spec.key_pair().map_err(|why| match spec.order_type {
            OrderType::Certificate => bad(format!("the CA {} cannot certify {why}", spec.ca)),
            _ => bad(why.to_string()),
        })?;
        let dn = match &spec.subject_dn {
            Some(dn) => Some(DistinguishedName::parse(dn).map_err(|e| bad(e.to_string()))?),
            None => None,
        };
        let ca = match spec.order_type {
            OrderType::Certificate => Some(self.cas.get(&spec.ca).cloned().ok_or_else(|| {
                bad(format!(
                    "meta.ca {:?} names no CA; the CAs are {}",
                    spec.ca,
                    self.cas.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?),
            _ => None,
        };
        // RSA generation takes seconds: keep it off the async workers.
        let key_pair = tokio::task::spawn_blocking(move || generate::key_pair(key_spec))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| OrderFailed {
                error_status_code: 500,
                error_reason: e,
            })?;
        let (algorithm, bits) = (spec.algorithm_as_named.as_str(), key_spec.bits());
        // PEM text, stored as application/octet-stream as Barbican stores what its
        // orders make: Castellan reads these payloads as bytes.
        let pem = |role: &str, secret_type, text: String| -> Result<Made, OrderFailed> {
            Ok(Made {
                role: role.to_owned(),
                attributes: attributes(spec, secret_type, algorithm, bits)?,
                bytes: text.into_bytes(),
                content_type: ContentType::OctetStream,
            })
        };
        let mut made = vec![pem(
            "private_key",
            SecretType::Private,
            key_pair.serialize_pem(),
        )?];
        if let (Some(ca), Some(dn)) = (ca, dn) {
            let issued = self
                .issue(ca.as_ref(), spec, &dn, key_spec, &key_pair)
                .await?;
            made.push(pem(
                "certificate",
                SecretType::Certificate,
                issued.certificate,
            )?);
            made.push(pem("intermediates", SecretType::Certificate, issued.chain)?);
        } else {
            made.push(pem(
                "public_key",
                SecretType::Public,
                key_pair.public_key_pem(),
            )?);
        }
        Ok(made)
    }

    /// Seals each thing made under a fresh data key and stores the wrapped key, before
    /// any commit names it.
    async fn seal_and_store(
        &self,
        project: &ProjectId,
        order: OrderId,
        made: Vec<Made>,
    ) -> Result<Vec<Material>, OrderFailed> {
        let mut material = Vec::new();
        for Made {
            role,
            attributes,
            bytes,
            content_type,
        } in made
        {
            let (secret_id, _) = secret_for(project, order, &role);
            let internal = |e: &dyn std::fmt::Display| OrderFailed {
                error_status_code: 500,
                error_reason: format!("sealing the {role} failed: {e}"),
            };
            let plaintext = Plaintext::from_bytes(bytes, content_type, PayloadLimit(512 * 1024))
                .map_err(|e| internal(&e))?;
            let (key_id, version_id) = (
                KeyId::from_uuid(Uuid::new_v4()),
                VersionId::from_uuid(Uuid::new_v4()),
            );
            let (payload, wrapped) = self
                .envelope
                .seal(&plaintext, project, secret_id, version_id, key_id)
                .map_err(|e| internal(&e))?;
            // The data key is stored before the commit that names it (the material).
            self.keys
                .put(project, secret_id, key_id, &wrapped)
                .await
                .map_err(|e| OrderFailed {
                    error_status_code: 503,
                    error_reason: format!("the key store is unavailable: {e}"),
                })?;
            material.push(Material {
                role,
                secret_id,
                attributes,
                payload,
            });
        }
        Ok(material)
    }

    /// Asks the CA, retrying an unreachable one with backoff a bounded number of times.
    async fn issue(
        &self,
        ca: &dyn CertificateAuthority,
        spec: &OrderSpec,
        dn: &DistinguishedName,
        key: domain::order::KeySpec,
        key_pair: &rcgen::KeyPair,
    ) -> Result<super::ca::Issued, OrderFailed> {
        let mut pause = self.retry.backoff;
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = IssueRequest {
                subject: dn,
                subject_alt_names: &spec.subject_alt_names,
                validity_days: spec.validity_days,
                key_usage: &spec.key_usage,
                key,
                key_pair,
                now: (self.clock)(),
            };
            match ca.issue(request).await {
                Ok(issued) => return Ok(issued),
                Err(CaError::Rejected { status, reason }) => {
                    return Err(OrderFailed {
                        error_status_code: status,
                        error_reason: reason,
                    });
                }
                Err(CaError::Unavailable(why)) if attempt >= self.retry.attempts => {
                    return Err(OrderFailed {
                        error_status_code: 503,
                        error_reason: format!(
                            "the CA {} is unreachable or failing: {why}; tried {attempt} times \
                             over {waited:?}. Place the order again once the CA is back",
                            ca.name()
                        ),
                    });
                }
                Err(CaError::Unavailable(why)) => {
                    tracing::warn!(ca = ca.name(), attempt, error = %why, "CA unavailable; retrying");
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause *= 2;
                }
            }
        }
    }

    /// Runs until `shutdown`: first the orders still pending (after a restart), then
    /// each order placed, from the stream. When NATS goes away and comes back, or the
    /// consumer fails, it starts again from the consumer's position: every step is
    /// idempotent.
    pub async fn run<P: PendingOrders>(
        self,
        js: jetstream::Context,
        stream: &str,
        pending: P,
        shutdown: CancellationToken,
    ) {
        match pending.pending(1000).await {
            Ok(list) => {
                for (project, id) in list {
                    if let Err(e) = self.process(&project, id).await {
                        tracing::warn!(order = %id, error = %e, "order worker: resuming failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "order worker: cannot list pending orders"),
        }
        let mut restarts = domain::restarts::Restarts::new();
        loop {
            let started = std::time::Instant::now();
            match self.follow(&js, stream, &shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    let backoff = restarts.after_failure(started.elapsed());
                    tracing::warn!(error = %e, retry_in = ?backoff, "order worker: restarting");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }

    /// Follows placed orders with the durable consumer until shutdown (or the hook
    /// stops the worker), a failure, or a reconnection to NATS.
    async fn follow(
        &self,
        js: &jetstream::Context,
        stream: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let client = js.client();
        let connects = infra::nats::connects(&client);
        let stream = js.get_stream(stream).await.map_err(Interrupted::setup)?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    description: Some("generates what orders ask for".into()),
                    filter_subject: events_filter(None, Some(AggregateKind::Order), None),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(60),
                    ..Default::default()
                },
            )
            .await
            .map_err(Interrupted::setup)?;
        let mut messages = consumer.messages().await.map_err(Interrupted::setup)?;
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = infra::nats::reconnected(&client, connects) => {
                    return Err(Interrupted::Reconnected);
                }
                next = messages.next() => next,
            };
            let message = match next {
                None => return Err(Interrupted::Ended),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "order worker: receiving failed; continuing");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            // Only a commit keyledger wrote starts work; a foreign message is reported
            // by the projector and the auditor, and ignored here.
            let placed = Commit::<OrderEvent>::open(&message.payload, self.orders.commit_key())
                .ok()
                .filter(|c| {
                    c.body
                        .events
                        .iter()
                        .any(|e| matches!(e, OrderEvent::Placed(_)))
                });
            let outcome = match placed {
                None => Ok(()),
                Some(commit) => match OrderId::parse(commit.body.aggregate.id.as_str()) {
                    Ok(id) => self.process(&commit.body.aggregate.project, id).await,
                    Err(_) => Ok(()),
                },
            };
            let ack = match outcome {
                Ok(()) => message.ack().await,
                Err(WorkerError::Stopped(step)) => {
                    // Simulates a crash: no acknowledgement; a restart resumes.
                    tracing::warn!(step, "order worker stopped by its hook");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "order worker: an order failed to progress; retrying");
                    message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                        .await
                }
            };
            if let Err(e) = ack {
                tracing::warn!(error = %e, "order worker: acknowledging failed");
            }
        }
    }
}

/// One thing an order makes, before it is sealed: its role in the order's container,
/// its attributes and its bytes.
struct Made {
    role: String,
    attributes: Attributes,
    bytes: Vec<u8>,
    content_type: ContentType,
}

/// An order refused for what it asks (400).
fn bad(reason: String) -> OrderFailed {
    OrderFailed {
        error_status_code: 400,
        error_reason: reason,
    }
}

/// The attributes of a secret an order makes.
fn attributes(
    spec: &OrderSpec,
    secret_type: SecretType,
    algorithm: &str,
    bits: u32,
) -> Result<Attributes, OrderFailed> {
    Ok(Attributes {
        name: spec.name.clone(),
        secret_type,
        algorithm: Some(Algorithm::parse(algorithm).map_err(|r| bad(r.message))?),
        bit_length: Some(BitLength::parse(i64::from(bits)).map_err(|r| bad(r.message))?),
        mode: spec.mode.clone(),
        expiration: spec.expiration,
        metadata: Default::default(),
        description: None,
    })
}

/// The symmetric key a key order asks for.
fn symmetric_key(spec: &OrderSpec) -> Result<Made, OrderFailed> {
    let bytes = spec
        .symmetric_key_bytes()
        .map_err(|why| bad(why.to_string()))?;
    Ok(Made {
        role: "secret".into(),
        attributes: attributes(
            spec,
            SecretType::Symmetric,
            &spec.algorithm_as_named,
            spec.bit_length,
        )?,
        bytes: generate::symmetric(bytes).to_vec(),
        content_type: ContentType::OctetStream,
    })
}

/// Why the worker stopped following orders, to start again.
#[derive(Debug, thiserror::Error)]
enum Interrupted {
    /// The stream, the consumer or its message feed could not be set up.
    #[error("setting up the order consumer failed: {0}")]
    Setup(Box<dyn std::error::Error + Send + Sync>),
    /// NATS reconnected: the consumer's position is read again.
    #[error("NATS reconnected")]
    Reconnected,
    /// The consumer's message feed ended.
    #[error("the order consumer ended")]
    Ended,
}

impl Interrupted {
    fn setup(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Setup(Box::new(e))
    }
}
