//! OpenAPI schemas of request values whose rules `ToSchema` cannot state from the
//! types (map keys, tuples, lengths of bodies that are not JSON), written out. The
//! HTTP API's document (`api::openapi`) uses them; the rules are the domain's.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ArrayItems, ObjectBuilder, Schema, Type,
};
use utoipa::{PartialSchema, ToSchema};

/// A pattern standing for "text without control characters", replaced in the
/// served document by the character class keyledger refuses (Unicode Cc), computed
/// from the same predicate the checks use.
pub const PRINTABLE: &str = "keyledger:printable";
/// A pattern standing for "text people read in listings": also without invisible
/// formatting or separator characters (Unicode Cc, Cf, Zl, Zp).
pub const VISIBLE: &str = "keyledger:visible";

/// A metadata key: [`domain::secret::fields::MetadataKey::parse`]'s rule.
pub(crate) const METADATA_KEY: &str = "^[A-Za-z0-9._-]{1,255}$";

fn text(min: usize, max: usize, pattern: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length((min > 0).then_some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
}

fn map(keys: ObjectBuilder, values: ObjectBuilder) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(keys))
        .additional_properties(Some(AdditionalProperties::RefOr(values.into())))
        .into()
}

/// User metadata: key to value (1 to 1,024 visible characters).
pub struct MetadataMap;

impl PartialSchema for MetadataMap {
    fn schema() -> RefOr<Schema> {
        map(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(METADATA_KEY)),
            text(1, 1024, VISIBLE),
        )
    }
}

impl ToSchema for MetadataMap {}

/// Tags: key (1 to 128 visible characters) to value (up to 256).
pub struct TagsMap;

impl PartialSchema for TagsMap {
    fn schema() -> RefOr<Schema> {
        map(text(1, 128, VISIBLE), text(0, 256, VISIBLE))
    }
}

impl ToSchema for TagsMap {}

/// A payload sent as the body itself: not empty.
pub struct PayloadBody;

impl PartialSchema for PayloadBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .into()
    }
}

impl ToSchema for PayloadBody {}

/// `utc_hours`: `[from, to]`, from 0 to 23, to 0 to 24.
pub struct HourWindow;

impl PartialSchema for HourWindow {
    fn schema() -> RefOr<Schema> {
        let hour = |max: u8| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(max))
        };
        ArrayBuilder::new()
            .prefix_items([hour(23), hour(24)])
            .items(ArrayItems::False)
            .min_items(Some(2))
            .max_items(Some(2))
            .into()
    }
}

impl ToSchema for HourWindow {}

/// A weekday of `weekdays`.
pub struct Weekday;

impl PartialSchema for Weekday {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]))
            .into()
    }
}

impl ToSchema for Weekday {}

/// A user id: [`domain::ids::UserId::parse`]'s rule.
pub struct UserId;

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        text(1, domain::ids::UserId::MAX_LEN, PRINTABLE).into()
    }
}

impl ToSchema for UserId {}
