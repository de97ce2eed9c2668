//! NATS subjects: keyledger's public addressing scheme, documented in one place.
//!
//! - Commands: request/reply on `keyledger.cmd.<name>`, e.g. `keyledger.cmd.secret.create`.
//! - Events: one stream, `keyledger.events.<project>.<kind>.<id>`, one subject per aggregate.
//! - Checkpoints: `keyledger.checkpoints.<event stream>`.
//! - Access records: `keyledger.access.records`.
//!
//! Every subject and filter keyledger builds comes from a function or constant here.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{AggregateId, ProjectId};

/// Subjects of every commit in the event stream.
pub const EVENTS_WILDCARD: &str = "keyledger.events.>";

/// Subjects every command handler listens on.
pub const COMMANDS_WILDCARD: &str = "keyledger.cmd.>";

/// The prefix of command subjects; the rest is the command name.
pub const COMMAND_PREFIX: &str = "keyledger.cmd.";

/// Every delegated command: those the HTTP API sends with a delegation token, for a
/// principal it verified by an AWS signature. Only keyledger's own NATS account may
/// publish here (it is not exported to clients), and only here does the command
/// service accept delegation tokens.
pub const DELEGATED_WILDCARD: &str = "keyledger.api.cmd.>";
/// The prefix of delegated command subjects: `keyledger.api.cmd.<name>`.
pub const DELEGATED_PREFIX: &str = "keyledger.api.cmd.";

/// The subject a rotation handler serves: `keyledger.rotate.<handler>`.
pub fn rotation_handler(handler: &crate::secret::rotation::HandlerName) -> String {
    format!("{ROTATE_PREFIX}{handler}")
}
/// The prefix of rotation handlers' subjects.
pub const ROTATE_PREFIX: &str = "keyledger.rotate.";
/// Every rotation handler's subject: what the `rotation` NATS user may serve.
pub const ROTATE_WILDCARD: &str = "keyledger.rotate.>";

/// Command names, as in `keyledger.cmd.<name>`.
pub mod command {
    /// Create a secret (Barbican `POST /v1/secrets`).
    pub const SECRET_CREATE: &str = "secret.create";
    /// Store the payload of a secret created without one (Barbican `PUT /v1/secrets/{id}`).
    pub const SECRET_PAYLOAD_PUT: &str = "secret.payload.put";
    /// Store a new version of a secret's value (AWS `PutSecretValue`).
    pub const SECRET_VALUE_PUT: &str = "secret.value.put";
    /// Move a staging label between versions (AWS `UpdateSecretVersionStage`).
    pub const SECRET_STAGE_MOVE: &str = "secret.stage.move";
    /// Set one metadata key of a secret.
    pub const SECRET_METADATA_SET: &str = "secret.metadata.set";
    /// Remove one metadata key of a secret.
    pub const SECRET_METADATA_DELETE: &str = "secret.metadata.delete";
    /// Replace all metadata of a secret.
    pub const SECRET_METADATA_REPLACE: &str = "secret.metadata.replace";
    /// Add or change tags.
    pub const SECRET_TAGS_SET: &str = "secret.tags.set";
    /// Remove tags.
    pub const SECRET_TAGS_REMOVE: &str = "secret.tags.remove";
    /// Delete a secret: after a recovery window, or at once with `force`.
    pub const SECRET_DELETE: &str = "secret.delete";
    /// Register a consumer of a secret.
    pub const SECRET_CONSUMER_REGISTER: &str = "secret.consumer.register";
    /// Unregister a consumer of a secret.
    pub const SECRET_CONSUMER_REMOVE: &str = "secret.consumer.remove";
    /// Undo a deletion during its recovery window.
    pub const SECRET_RESTORE: &str = "secret.restore";
    /// Record a secret's expiry and destroy its keys, once its expiration has passed.
    pub const SECRET_EXPIRE: &str = "secret.expire";
    /// End a deletion whose window has passed. Issued by keyledger's scheduler only;
    /// not served on NATS.
    pub const SECRET_PURGE: &str = "secret.purge";
    /// Destroy deprecated versions. Issued by keyledger's scheduler only; not served on
    /// NATS.
    pub const SECRET_VERSIONS_PRUNE: &str = "secret.versions.prune";
    /// Replace or merge a secret's ACL (Barbican `PUT`/`PATCH /v1/secrets/{id}/acl`).
    pub const SECRET_ACL_SET: &str = "secret.acl.set";
    /// Reset a secret's ACL to the default (Barbican `DELETE /v1/secrets/{id}/acl`).
    pub const SECRET_ACL_DELETE: &str = "secret.acl.delete";
    /// Set or clear a secret's description (AWS `UpdateSecret` with `Description`).
    pub const SECRET_DESCRIPTION_SET: &str = "secret.description.set";
    /// Configure a secret's rotation, start one, or both (AWS `RotateSecret`).
    pub const SECRET_ROTATE: &str = "secret.rotate";
    /// Turn rotation off and stop a run (AWS `CancelRotateSecret`).
    pub const SECRET_ROTATION_CANCEL: &str = "secret.rotation.cancel";
    /// Start a scheduled rotation. Issued by keyledger's rotation runner only; not
    /// served on NATS.
    pub const SECRET_ROTATION_START: &str = "secret.rotation.start";
    /// Record a rotation step's outcome. Issued by keyledger's rotation runner only;
    /// not served on NATS.
    pub const SECRET_ROTATION_STEP: &str = "secret.rotation.step";

    /// Create a container (Barbican `POST /v1/containers`).
    pub const CONTAINER_CREATE: &str = "container.create";
    /// Add a reference to a generic container.
    pub const CONTAINER_SECRET_ADD: &str = "container.secret.add";
    /// Remove a reference from a generic container.
    pub const CONTAINER_SECRET_REMOVE: &str = "container.secret.remove";
    /// Register a consumer of a container.
    pub const CONTAINER_CONSUMER_REGISTER: &str = "container.consumer.register";
    /// Unregister a consumer of a container.
    pub const CONTAINER_CONSUMER_REMOVE: &str = "container.consumer.remove";
    /// Replace or merge a container's ACL.
    pub const CONTAINER_ACL_SET: &str = "container.acl.set";
    /// Reset a container's ACL.
    pub const CONTAINER_ACL_DELETE: &str = "container.acl.delete";
    /// Delete a container.
    pub const CONTAINER_DELETE: &str = "container.delete";

    /// Place an order (Barbican `POST /v1/orders`).
    pub const ORDER_PLACE: &str = "order.place";
    /// Delete an order.
    pub const ORDER_DELETE: &str = "order.delete";

    /// Create or import an access key (AWS SigV4 credentials for a principal).
    pub const ACCESS_KEY_CREATE: &str = "access_key.create";
    /// Revoke an access key and destroy its sealed secret.
    pub const ACCESS_KEY_REVOKE: &str = "access_key.revoke";
    /// Set a project's quotas (the service admin only).
    pub const QUOTA_SET: &str = "quota.set";
    /// Remove a project's quotas (the service admin only).
    pub const QUOTA_DELETE: &str = "quota.delete";

    /// Every command name served on NATS, for help texts and routing tables.
    pub const ALL: &[&str] = &[
        SECRET_CREATE,
        SECRET_PAYLOAD_PUT,
        SECRET_VALUE_PUT,
        SECRET_STAGE_MOVE,
        SECRET_METADATA_SET,
        SECRET_METADATA_DELETE,
        SECRET_METADATA_REPLACE,
        SECRET_TAGS_SET,
        SECRET_TAGS_REMOVE,
        SECRET_DELETE,
        SECRET_RESTORE,
        SECRET_EXPIRE,
        SECRET_CONSUMER_REGISTER,
        SECRET_CONSUMER_REMOVE,
        SECRET_ACL_SET,
        SECRET_ACL_DELETE,
        SECRET_DESCRIPTION_SET,
        SECRET_ROTATE,
        SECRET_ROTATION_CANCEL,
        CONTAINER_CREATE,
        CONTAINER_SECRET_ADD,
        CONTAINER_SECRET_REMOVE,
        CONTAINER_CONSUMER_REGISTER,
        CONTAINER_CONSUMER_REMOVE,
        CONTAINER_ACL_SET,
        CONTAINER_ACL_DELETE,
        CONTAINER_DELETE,
        ORDER_PLACE,
        ORDER_DELETE,
        ACCESS_KEY_CREATE,
        ACCESS_KEY_REVOKE,
        QUOTA_SET,
        QUOTA_DELETE,
    ];
}

/// Declares the commands of one aggregate: an enum whose variants are its served
/// commands, each with its wire name from [`command`].
macro_rules! commands_of {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:path,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every one of them.
            pub const ALL: &[Self] = &[$(Self::$variant,)*];

            /// Its name, as in `keyledger.cmd.<name>`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)*
                }
            }
        }
    };
}

commands_of!(
    /// The commands served on secrets.
    SecretOp {
        /// [`command::SECRET_CREATE`].
        Create = command::SECRET_CREATE,
        /// [`command::SECRET_PAYLOAD_PUT`].
        PayloadPut = command::SECRET_PAYLOAD_PUT,
        /// [`command::SECRET_VALUE_PUT`].
        ValuePut = command::SECRET_VALUE_PUT,
        /// [`command::SECRET_STAGE_MOVE`].
        StageMove = command::SECRET_STAGE_MOVE,
        /// [`command::SECRET_METADATA_SET`].
        MetadataSet = command::SECRET_METADATA_SET,
        /// [`command::SECRET_METADATA_DELETE`].
        MetadataDelete = command::SECRET_METADATA_DELETE,
        /// [`command::SECRET_METADATA_REPLACE`].
        MetadataReplace = command::SECRET_METADATA_REPLACE,
        /// [`command::SECRET_TAGS_SET`].
        TagsSet = command::SECRET_TAGS_SET,
        /// [`command::SECRET_TAGS_REMOVE`].
        TagsRemove = command::SECRET_TAGS_REMOVE,
        /// [`command::SECRET_DELETE`].
        Delete = command::SECRET_DELETE,
        /// [`command::SECRET_RESTORE`].
        Restore = command::SECRET_RESTORE,
        /// [`command::SECRET_EXPIRE`].
        Expire = command::SECRET_EXPIRE,
        /// [`command::SECRET_CONSUMER_REGISTER`].
        ConsumerRegister = command::SECRET_CONSUMER_REGISTER,
        /// [`command::SECRET_CONSUMER_REMOVE`].
        ConsumerRemove = command::SECRET_CONSUMER_REMOVE,
        /// [`command::SECRET_ACL_SET`].
        AclSet = command::SECRET_ACL_SET,
        /// [`command::SECRET_ACL_DELETE`].
        AclDelete = command::SECRET_ACL_DELETE,
        /// [`command::SECRET_DESCRIPTION_SET`].
        DescriptionSet = command::SECRET_DESCRIPTION_SET,
        /// [`command::SECRET_ROTATE`].
        Rotate = command::SECRET_ROTATE,
        /// [`command::SECRET_ROTATION_CANCEL`].
        RotationCancel = command::SECRET_ROTATION_CANCEL,
    }
);

commands_of!(
    /// The commands served on containers.
    ContainerOp {
        /// [`command::CONTAINER_CREATE`].
        Create = command::CONTAINER_CREATE,
        /// [`command::CONTAINER_SECRET_ADD`].
        SecretAdd = command::CONTAINER_SECRET_ADD,
        /// [`command::CONTAINER_SECRET_REMOVE`].
        SecretRemove = command::CONTAINER_SECRET_REMOVE,
        /// [`command::CONTAINER_CONSUMER_REGISTER`].
        ConsumerRegister = command::CONTAINER_CONSUMER_REGISTER,
        /// [`command::CONTAINER_CONSUMER_REMOVE`].
        ConsumerRemove = command::CONTAINER_CONSUMER_REMOVE,
        /// [`command::CONTAINER_ACL_SET`].
        AclSet = command::CONTAINER_ACL_SET,
        /// [`command::CONTAINER_ACL_DELETE`].
        AclDelete = command::CONTAINER_ACL_DELETE,
        /// [`command::CONTAINER_DELETE`].
        Delete = command::CONTAINER_DELETE,
    }
);

commands_of!(
    /// The commands served on orders.
    OrderOp {
        /// [`command::ORDER_PLACE`].
        Place = command::ORDER_PLACE,
        /// [`command::ORDER_DELETE`].
        Delete = command::ORDER_DELETE,
    }
);

commands_of!(
    /// The commands served on access keys.
    AccessKeyOp {
        /// [`command::ACCESS_KEY_CREATE`].
        Create = command::ACCESS_KEY_CREATE,
        /// [`command::ACCESS_KEY_REVOKE`].
        Revoke = command::ACCESS_KEY_REVOKE,
    }
);

commands_of!(
    /// The commands served on project quotas.
    QuotaOp {
        /// [`command::QUOTA_SET`].
        Set = command::QUOTA_SET,
        /// [`command::QUOTA_DELETE`].
        Delete = command::QUOTA_DELETE,
    }
);

/// A command served on NATS, parsed once from its subject and dispatched by its
/// aggregate: each handler matches its own commands exhaustively, so a new command
/// does not compile until it is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandName {
    /// On a secret.
    Secret(SecretOp),
    /// On a container.
    Container(ContainerOp),
    /// On an order.
    Order(OrderOp),
    /// On an access key.
    AccessKey(AccessKeyOp),
    /// On a project's quotas.
    Quota(QuotaOp),
}

impl CommandName {
    /// The command named `name` (as in `keyledger.cmd.<name>`), if keyledger serves it.
    pub fn parse(name: &str) -> Option<Self> {
        let secret = SecretOp::ALL.iter().copied().map(Self::Secret);
        let container = ContainerOp::ALL.iter().copied().map(Self::Container);
        let order = OrderOp::ALL.iter().copied().map(Self::Order);
        let access_key = AccessKeyOp::ALL.iter().copied().map(Self::AccessKey);
        let quota = QuotaOp::ALL.iter().copied().map(Self::Quota);
        secret
            .chain(container)
            .chain(order)
            .chain(access_key)
            .chain(quota)
            .find(|c| c.as_str() == name)
    }

    /// Its name, as in `keyledger.cmd.<name>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret(op) => op.as_str(),
            Self::Container(op) => op.as_str(),
            Self::Order(op) => op.as_str(),
            Self::AccessKey(op) => op.as_str(),
            Self::Quota(op) => op.as_str(),
        }
    }
}

impl fmt::Display for CommandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The subject a command named `name` is sent on.
pub fn command_subject(name: &str) -> String {
    format!("{COMMAND_PREFIX}{name}")
}

/// The kind of aggregate a subject addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateKind {
    /// A secret.
    Secret,
    /// A container.
    Container,
    /// An order.
    Order,
    /// An access key (its id is the access key id).
    AccessKey,
    /// The KEK keyring ([`crate::keyring`]): keyledger's own, in project `_keyledger`.
    Kek,
    /// A project's quotas ([`crate::quota`]): its limits and its charges.
    Quota,
}

impl AggregateKind {
    /// The subject token for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Container => "container",
            Self::Order => "order",
            Self::AccessKey => "access_key",
            Self::Kek => "kek",
            Self::Quota => "quota",
        }
    }
}

impl fmt::Display for AggregateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The subject of one aggregate's commits.
pub fn aggregate_subject(project: &ProjectId, kind: AggregateKind, id: &AggregateId) -> String {
    format!("keyledger.events.{project}.{kind}.{id}")
}

/// Whether `subject` is the one [`aggregate_subject`] makes of these, without making
/// it: every reader of the log asks for each commit it places.
pub fn is_aggregate_subject(
    subject: &str,
    project: &ProjectId,
    kind: AggregateKind,
    id: &AggregateId,
) -> bool {
    let parts = [
        "keyledger.events.",
        project.as_str(),
        ".",
        kind.as_str(),
        ".",
        id.as_str(),
    ];
    parts
        .iter()
        .try_fold(subject, |rest, part| rest.strip_prefix(part))
        == Some("")
}

/// The project, kind and id an aggregate's subject names (the inverse of
/// [`aggregate_subject`]); `None` for any other subject.
pub fn parse_aggregate_subject(subject: &str) -> Option<(ProjectId, AggregateKind, AggregateId)> {
    let rest = subject.strip_prefix("keyledger.events.")?;
    let mut parts = rest.splitn(3, '.');
    let project = ProjectId::parse(parts.next()?).ok()?;
    let kind = match parts.next()? {
        "secret" => AggregateKind::Secret,
        "container" => AggregateKind::Container,
        "order" => AggregateKind::Order,
        "access_key" => AggregateKind::AccessKey,
        "kek" => AggregateKind::Kek,
        "quota" => AggregateKind::Quota,
        _ => return None,
    };
    let id = AggregateId::parse(parts.next()?).ok()?;
    Some((project, kind, id))
}

/// A filter over the event stream, `keyledger.events.<project>.<kind>.<id>`, with `*`
/// for each part that is `None`. The parts must be subject tokens (no `.`).
pub fn events_filter(
    project: Option<&str>,
    kind: Option<AggregateKind>,
    id: Option<&str>,
) -> String {
    format!(
        "keyledger.events.{}.{}.{}",
        project.unwrap_or("*"),
        kind.map_or("*", AggregateKind::as_str),
        id.unwrap_or("*")
    )
}

/// The prefix of change notifications: `keyledger.changes.<project>.<kind>.<id>`,
/// payload-free, announced for every object every lister of its project may see.
pub const CHANGES_PREFIX: &str = "keyledger.changes.";

/// Every change notification.
pub const CHANGES_WILDCARD: &str = "keyledger.changes.>";

/// The change notifications of `kind` in `project` (what a lister of that kind may
/// subscribe to).
pub fn changes_filter(project: &ProjectId, kind: AggregateKind) -> String {
    format!("{CHANGES_PREFIX}{project}.{kind}.>")
}

/// Subjects of the checkpoint stream: one per event stream.
pub const CHECKPOINTS_WILDCARD: &str = "keyledger.checkpoints.>";

/// The subject of the checkpoints of the event stream `log_stream`.
pub fn checkpoint_subject(log_stream: &str) -> String {
    format!("keyledger.checkpoints.{log_stream}")
}

/// Subjects of the access stream.
pub const ACCESS_WILDCARD: &str = "keyledger.access.>";

/// The subject access records are appended on.
pub const ACCESS_RECORDS: &str = "keyledger.access.records";

#[cfg(test)]
mod tests {
    #[test]
    fn filters_put_a_wildcard_where_a_part_is_open() {
        assert_eq!(
            events_filter(Some("p1"), None, Some("x")),
            "keyledger.events.p1.*.x"
        );
        assert_eq!(
            events_filter(None, Some(AggregateKind::Order), None),
            "keyledger.events.*.order.*"
        );
        assert_eq!(
            checkpoint_subject("KEYLEDGER"),
            "keyledger.checkpoints.KEYLEDGER"
        );
    }

    #[test]
    fn an_aggregate_subject_parses_back_to_what_made_it() {
        let p1 = ProjectId::parse("p1").unwrap();
        let id = AggregateId::parse("x-1").unwrap();
        let subject = aggregate_subject(&p1, AggregateKind::Order, &id);
        assert_eq!(
            parse_aggregate_subject(&subject),
            Some((p1, AggregateKind::Order, id))
        );
        assert_eq!(parse_aggregate_subject("keyledger.events.p1.secret"), None);
        assert_eq!(
            parse_aggregate_subject("keyledger.events.p1.secret.*"),
            None
        );
        assert_eq!(parse_aggregate_subject("keyledger.events.p1.key.x"), None);
        assert_eq!(parse_aggregate_subject("keyledger.cmd.secret.create"), None);
    }

    #[test]
    fn an_aggregate_subject_is_recognised_exactly() {
        let p1 = ProjectId::parse("p1").unwrap();
        let id = AggregateId::parse("x-1").unwrap();
        let kind = AggregateKind::Secret;
        let made = aggregate_subject(&p1, kind, &id);
        let others = [
            "keyledger.events.p1.secret.x-1x",
            "keyledger.events.p1.secret.x-",
            "keyledger.events.p1.secret.",
            "keyledger.events.p1x.secret.x-1",
            "keyledger.events.p1.order.x-1",
            "keyledger.events.p1.secretx-1",
            "keyledger.event.p1.secret.x-1",
            "xkeyledger.events.p1.secret.x-1",
            "",
        ];
        assert!(is_aggregate_subject(&made, &p1, kind, &id));
        for other in others {
            assert_ne!(other, made);
            assert!(!is_aggregate_subject(other, &p1, kind, &id), "{other}");
        }
    }

    #[test]
    fn every_served_command_name_parses_to_its_command() {
        for name in command::ALL {
            let parsed = CommandName::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(parsed.as_str(), *name);
        }
        let served = SecretOp::ALL.len()
            + ContainerOp::ALL.len()
            + OrderOp::ALL.len()
            + AccessKeyOp::ALL.len()
            + QuotaOp::ALL.len();
        assert_eq!(served, command::ALL.len());
        assert_eq!(CommandName::parse(command::SECRET_PURGE), None);
        assert_eq!(CommandName::parse("secret.nothing"), None);
    }

    use super::*;

    #[test]
    fn subjects_have_the_documented_shape() {
        let p = ProjectId::parse("p1").unwrap();
        assert_eq!(
            aggregate_subject(
                &p,
                AggregateKind::Secret,
                &AggregateId::parse("abc").unwrap()
            ),
            "keyledger.events.p1.secret.abc"
        );
        assert_eq!(
            command_subject(command::SECRET_CREATE),
            "keyledger.cmd.secret.create"
        );
    }
}
