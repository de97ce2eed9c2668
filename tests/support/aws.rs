//! AWS Secrets Manager's API from Rust: an access key, and requests signed with it
//! (SigV4, through keyledger's own signing functions) at the stack's clock, so a test
//! that moves that clock still signs within the allowed skew.

use infra::identity::sigv4::{self, Scope};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{TestStack, json_of};

const REGION: &str = "us-east-1";
const SERVICE: &str = "secretsmanager";

/// An access key pair, as `POST /v1/access-keys` returns it once.
pub struct AwsKey {
    pub id: String,
    pub secret: String,
}

impl TestStack {
    /// A new access key for the holder of `token`.
    pub async fn aws_key(&self, token: &str) -> AwsKey {
        let r = self
            .http
            .post(self.url("/v1/access-keys"))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let made = json_of(r).await;
        AwsKey {
            id: made["access_key_id"].as_str().unwrap().to_owned(),
            secret: made["secret_access_key"].as_str().unwrap().to_owned(),
        }
    }

    /// AWS's operation `target` (`"DescribeSecret"`, …) with `input`, signed by `key`
    /// at the stack's clock: the status and the answer's JSON.
    pub async fn aws(&self, key: &AwsKey, target: &str, input: Value) -> (StatusCode, Value) {
        let body = serde_json::to_vec(&input).unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(self.now().unix_millis()) * 1_000_000,
        )
        .unwrap();
        let amz_date = at
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap();
        let host = self.stack.http_addr.to_string();
        let target = format!("secretsmanager.{target}");
        let content_type = "application/x-amz-json-1.1";
        let headers: [(&str, &[u8]); 4] = [
            ("content-type", content_type.as_bytes()),
            ("host", host.as_bytes()),
            ("x-amz-date", amz_date.as_bytes()),
            ("x-amz-target", target.as_bytes()),
        ];
        let signed: Vec<String> = headers.iter().map(|(n, _)| (*n).to_owned()).collect();
        let canonical = sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: &body,
        }
        .canonical(&signed)
        .unwrap();
        let scope = Scope {
            date: amz_date[..8].to_owned(),
            region: REGION.to_owned(),
            service: SERVICE.to_owned(),
        };
        let to_sign = sigv4::string_to_sign(&amz_date, &scope, &canonical);
        let signature =
            sigv4::signature(&to_sign, &sigv4::signing_key(key.secret.as_bytes(), &scope));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
            key.id,
            signed.join(";")
        );
        let r = self
            .http
            .post(self.url("/"))
            .header("content-type", content_type)
            .header("x-amz-date", &amz_date)
            .header("x-amz-target", &target)
            .header("authorization", authorization)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, json_of(r).await)
    }

    /// [`Self::aws`], which must succeed: the answer.
    pub async fn aws_ok(&self, key: &AwsKey, target: &str, input: Value) -> Value {
        let (status, answer) = self.aws(key, target, input).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer
    }

    /// [`Self::aws`], which must be refused (400) with AWS's error `code`: the answer.
    pub async fn aws_refused(&self, key: &AwsKey, target: &str, input: Value, code: &str) -> Value {
        let (status, answer) = self.aws(key, target, input).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["__type"], code, "{answer}");
        answer
    }
}

/// The id keyledger gives the first secret AWS's API creates under `name` in
/// `project` (its first incarnation).
pub fn aws_secret_id(project: &str, name: &str) -> String {
    domain::ids::SecretId::for_name(&domain::ids::ProjectId::parse(project).unwrap(), name, 0)
        .to_string()
}
