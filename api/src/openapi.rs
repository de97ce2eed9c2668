//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' own
//! `#[utoipa::path]` annotations and the response and request types: the router is
//! built from the same annotations (`utoipa_axum::routes!` in [`crate::app`]), so a
//! route cannot be served without its entry, nor an entry exist without its route.
//! Served at `GET /v1/openapi.json`.

use axum::{Extension, Json};
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi};

use crate::error::ErrorBody;

/// The errors any operation may answer with, each in Barbican's shape. A
/// deliberate 503 carries `Retry-After`.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes responses; never built
pub enum Failures {
    /// The request is malformed: a parameter, a header or the body; the description
    /// names it and says what to send.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No token, or one keyledger does not accept.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The policy refuses it; the description names the roles that would allow it.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Nothing is there (or no longer), or not for this caller.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The `Accept` header or the microversion asked for cannot be served.
    #[response(status = 406)]
    NotAcceptable(ErrorBody),
    /// The body took longer than the body timeout to arrive.
    #[response(status = 408)]
    RequestTimeout(ErrorBody),
    /// It conflicts with the object's state (e.g. a payload stored twice), or asks
    /// for a log sequence not written yet.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is larger than allowed.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body's `Content-Type` is not one this operation takes.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Too many requests of this caller at once; retry after `Retry-After`.
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// keyledger failed; the description has an error id to find in its log.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// A part keyledger needs is unavailable, or the read model lags; retry after
    /// `Retry-After`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The two ways to present a token: `Authorization: Bearer` and Barbican's
/// `X-Auth-Token`.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A keyledger token (a JWT from your identity provider, or `keyledger \
                         token issue`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "x_auth_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "The same token, in Barbican's header",
            ))),
        );
    }
}

/// The document's frame: what the paths are added to.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyledger",
        description = "OpenStack Barbican's v1 API (microversions 1.0 to 1.2), served from an \
                       event-sourced ledger, with keyledger's own additions (versions and \
                       stages, tags, history, the TLS check). Errors are `{code, title, \
                       description}`. Writes answer once reads show them; every successful response to \
                       a secrets request names the log sequence it reflects \
                       (`X-Keyledger-Seq`), and a read may wait for one \
                       (`X-Keyledger-Min-Seq`).",
        license(name = "Apache-2.0"),
    ),
    modifiers(&Security),
    components(schemas(ErrorBody)),
    tags(
        (name = "discovery", description = "Versions and microversions"),
        (name = "secrets", description = "Secrets, their payloads, versions and stages"),
        (name = "metadata", description = "User metadata and tags of a secret"),
        (name = "consumers", description = "Services that use a secret or container"),
        (name = "acls", description = "Who may read a secret or container"),
        (name = "containers", description = "Containers of secrets"),
        (name = "orders", description = "Keys, key pairs and certificates made for you"),
        (name = "access-keys", description = "AWS-style access keys (SigV4) that act as a principal of the project"),
        (name = "changes", description = "What changed, as Server-Sent Events, for services and caches to react"),
        (name = "quotas", description = "How many secrets, orders, containers and consumers a project may hold"),
        (name = "aws", description = "AWS Secrets Manager's API (JSON 1.1, SigV4-signed) on POST /"),
        (name = "audit", description = "History from the log"),
        (name = "identity", description = "The caller as keyledger sees it"),
        (name = "health", description = "Liveness and readiness, for probes (no token)"),
    )
)]
pub struct ApiDoc;

/// Operations anyone may call, without a token.
const PUBLIC: [&str; 5] = ["/", "/v1", "/v1/openapi.json", "/healthz", "/readyz"];

/// What every operation shares, added to each once the router has collected them:
/// the microversion header and its echo, the errors, the log sequence a response
/// reflects, and (but for [`PUBLIC`]) the tokens.
pub fn finish(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
    use utoipa::openapi::{Header, ObjectBuilder, Required, Type};
    let text = |description: &str| {
        Header::builder()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .build()
    };
    let microversion: Parameter = ParameterBuilder::new()
        .name("OpenStack-API-Version")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "The microversion asked for: `key-manager 1.0` (when absent) to `key-manager \
             1.2`, or `key-manager latest`; one entry, for keyledger's service",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(crate::microversion::PATTERN)),
        ))
        .build();
    let failures = Failures::responses();
    for (path, item) in openapi.paths.paths.iter_mut() {
        let public = PUBLIC.contains(&path.as_str());
        for (method, operation) in [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ]
        .into_iter()
        .filter_map(|(method, operation)| Some((method, operation.as_mut()?)))
        {
            operation.operation_id = Some(operation_id(method, path));
            // AWS's API speaks AWS's protocol: no microversions, AWS-shaped errors
            // (documented on the operation itself).
            if (method, path.as_str()) == ("post", "/") {
                continue;
            }
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(microversion.clone());
            for (status, response) in &failures {
                if public && status == "401" {
                    continue;
                }
                operation
                    .responses
                    .responses
                    .entry(status.clone())
                    .or_insert_with(|| response.clone());
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                let utoipa::openapi::RefOr::T(response) = response else {
                    continue;
                };
                response.headers.insert(
                    "OpenStack-API-Version".into(),
                    text("The microversion the response follows, e.g. `key-manager 1.1`"),
                );
                if status.starts_with('2') && !public {
                    response.headers.insert(
                        "X-Keyledger-Seq".into(),
                        Header::builder()
                            .schema(
                                ObjectBuilder::new()
                                    .schema_type(Type::Integer)
                                    .minimum(Some(0)),
                            )
                            .description(Some(
                                "The log sequence the response reflects (for a write, its \
                                 commit): send it as X-Keyledger-Min-Seq to read what it wrote",
                            ))
                            .build(),
                    );
                }
                if status == "429" || status == "503" {
                    response.headers.insert(
                        "Retry-After".into(),
                        text("Seconds to wait before retrying"),
                    );
                }
            }
            if !public {
                operation.security = Some(vec![
                    utoipa::openapi::security::SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    ),
                    utoipa::openapi::security::SecurityRequirement::new(
                        "x_auth_token",
                        Vec::<String>::new(),
                    ),
                ]);
            }
        }
    }
}

/// An operation's id, unique as its method and path are (the handlers' names
/// repeat across resources): `get_secrets_id_payload` for `GET
/// /v1/secrets/{id}/payload`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<String> = match path {
        "/" => vec!["root".into()],
        "/v1" => vec!["version".into()],
        _ => path
            .trim_start_matches("/v1")
            .split('/')
            .filter(|w| !w.is_empty())
            .map(|w| {
                w.trim_matches(['{', '}'])
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            })
            .collect(),
    };
    format!("{method}_{}", words.join("_"))
}

pub use infra::schemas::{PRINTABLE, VISIBLE};

/// `^[^<refused>]*$` for the characters free text refuses.
fn text_pattern(visible: bool) -> String {
    // Beyond the BMP the character itself: ECMA-262 and Python regexes agree on
    // no escape for those (`\u{…}` needs ECMA's u flag; `\U` is Python's alone).
    let escape = |c: char| match u32::from(c) {
        n if n <= 0xFFFF => format!("\\u{n:04X}"),
        _ => c.to_string(),
    };
    let class: String = domain::secret::fields::refused_ranges(visible)
        .into_iter()
        .map(|(a, b)| {
            if a == b {
                escape(a)
            } else {
                format!("{}-{}", escape(a), escape(b))
            }
        })
        .collect();
    format!("^[^{class}]*$")
}

/// The document as JSON, its text-pattern placeholders replaced.
pub fn to_json(document: &utoipa::openapi::OpenApi) -> Value {
    fn replace(value: &mut Value, printable: &str, visible: &str) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match (key.as_str(), v.as_str()) {
                        ("pattern", Some(PRINTABLE)) => *v = Value::from(printable),
                        ("pattern", Some(VISIBLE)) => *v = Value::from(visible),
                        _ => replace(v, printable, visible),
                    }
                }
            }
            Value::Array(items) => {
                for v in items {
                    replace(v, printable, visible);
                }
            }
            _ => {}
        }
    }
    let mut json = serde_json::to_value(document).unwrap_or_default();
    replace(&mut json, &text_pattern(false), &text_pattern(true));
    exact_integers(&mut json);
    never_null_parameters(&mut json);
    json
}

/// Gives unsigned integers (`format: uint64` …) their exact maximum, as a JSON
/// integer: utoipa writes none for 64 bits, and a float for the rest.
fn exact_integers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            // utoipa spells them `u-int64` …; the usual name is `uint64`.
            let format = map.get("format").and_then(Value::as_str);
            let (name, max) = match format {
                Some("u-int64" | "uint64") => ("uint64", u64::MAX),
                Some("u-int32" | "uint32") => ("uint32", u32::MAX.into()),
                Some("u-int16" | "uint16") => ("uint16", u16::MAX.into()),
                Some("u-int8" | "uint8") => ("uint8", u8::MAX.into()),
                _ => ("", 0),
            };
            if !name.is_empty() {
                map.insert("format".into(), Value::from(name));
                let declared = map.get("maximum").and_then(Value::as_f64);
                if declared.is_none_or(|d| d >= max as f64) {
                    map.insert("maximum".into(), Value::from(max));
                }
            }
            map.values_mut().for_each(exact_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(exact_integers),
        _ => {}
    }
}

/// A header or query parameter is text, never JSON `null`: an optional one is left
/// out. utoipa marks `Option` parameters nullable; this takes that back.
fn never_null_parameters(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let parameters = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("parameters"))
        .filter_map(Value::as_array_mut)
        .flatten();
    for parameter in parameters {
        let Some(types) = parameter
            .pointer_mut("/schema/type")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        types.retain(|t| t != "null");
        if let [only] = &types[..] {
            let only = only.clone();
            if let Some(schema) = parameter.get_mut("schema").and_then(Value::as_object_mut) {
                schema.insert("type".into(), only);
            }
        }
    }
}

/// The document, as served.
#[derive(Clone)]
pub struct Document(pub std::sync::Arc<Value>);

/// `GET /v1/openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "discovery",
    responses((status = 200, description = "The OpenAPI document", body = Object)),
)]
pub async fn document(Extension(document): Extension<Document>) -> Json<Value> {
    Json((*document.0).clone())
}

/// `X-Keyledger-Min-Seq`: the read waits until the read model shows this sequence.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes parameters; never built
pub struct MinSeq {
    /// A log sequence (a write's `X-Keyledger-Seq`, or a NATS command reply's `seq`):
    /// the read waits, up to the consistency timeout (5 s), until the read model
    /// shows it; a sequence the log does not hold yet is 409.
    #[param(rename = "X-Keyledger-Min-Seq", minimum = 0)]
    min_seq: Option<u64>,
}

/// `{id}` of a secret's paths.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes parameters; never built
pub struct SecretPath {
    /// The secret: its UUID (as in its `secret_ref`), its reference
    /// (`krn:keyledger:<project>:secret:<name>-<6 characters>`) or its name in your
    /// project.
    id: String,
}

/// `{id}` of a container's paths.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes parameters; never built
pub struct ContainerPath {
    /// The container's UUID, as in its `container_ref`.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    id: String,
}

/// `{id}` of an order's paths.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes parameters; never built
pub struct OrderPath {
    /// The order's UUID, as in its `order_ref`.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    id: String,
}

/// `{id}` of an access key's paths.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes parameters; never built
pub struct AccessKeyPath {
    /// The access key id (`AWS_ACCESS_KEY_ID`), as `GET /v1/access-keys` lists it.
    #[param(pattern = "^[A-Za-z0-9]{16,64}$")]
    id: String,
}

/// The `{project}` of a project's quotas.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes parameters; never built
pub struct ProjectPath {
    /// The project id (1 to 64 ASCII letters, digits, `-` or `_`).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    project: String,
}

/// `Accept` of `GET /v1/secrets/{id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes parameters; never built
pub struct AcceptSecret {
    /// `application/json` (or none, or `*/*`) for the metadata; `text/plain` or
    /// `application/octet-stream` for the payload, as for `…/payload`. A list with
    /// q-values is read too; nothing served: 406.
    #[param(
        rename = "Accept",
        pattern = r"^[ \t]*(application/json|application/\*|\*/\*|text/plain|text/\*|application/octet-stream)?[ \t]*$"
    )]
    accept: Option<String>,
}

/// `Accept` of a payload read.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes parameters; never built
pub struct AcceptPayload {
    /// The type to serve it in: its own (none, or `*/*`), `text/plain` (a binary
    /// payload only when it is UTF-8, else 406) or `application/octet-stream`. A
    /// list with q-values is read too; nothing served: 406.
    #[param(
        rename = "Accept",
        pattern = r"^[ \t]*(application/\*|\*/\*|text/plain|text/\*|application/octet-stream)?[ \t]*$"
    )]
    accept: Option<String>,
}
