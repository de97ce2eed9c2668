//! AWS's SigV4 test suite (`infra/tests/fixtures/aws4_testsuite`, as botocore ships
//! it, with its LICENSE and NOTICE): for each case, from the signed request as a server
//! receives it (`<case>.sreq`), the canonical request (`.creq`), the string to sign
//! (`.sts`) and the signature of the `Authorization` header (`.authz`).

use std::path::{Path, PathBuf};

use time::macros::datetime;

use super::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const NOW: OffsetDateTime = datetime!(2015-08-30 12:36:00 UTC);

/// A raw request of the suite: method, path, query, headers, body.
struct Raw {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Raw {
    fn parse(text: &str) -> Self {
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let request_line = lines.next().unwrap();
        let (method, rest) = request_line.split_once(' ').unwrap();
        let target = rest.strip_suffix(" HTTP/1.1").unwrap();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // A folded line continues the header before it.
                let last = headers.last_mut().unwrap();
                last.1.push(b' ');
                last.1.extend_from_slice(line.trim().as_bytes());
            } else {
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_owned(), value.as_bytes().to_vec()));
            }
        }
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(Request<'_>) -> T) -> T {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        f(Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &headers,
            body: &self.body,
        })
    }

    fn header(&self, name: &str) -> &str {
        let (_, value) = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .unwrap();
        std::str::from_utf8(value).unwrap()
    }
}

/// Every directory of the suite that holds a case (`<dir>/<dir>.sreq`).
fn cases() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                if path.join(format!("{name}.sreq")).exists() {
                    out.push(path.clone());
                }
                walk(&path, out);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws4_testsuite");
    let mut out = Vec::new();
    walk(&root, &mut out);
    out.sort();
    out
}

fn read(case: &Path, ext: &str) -> String {
    let name = case.file_name().unwrap().to_str().unwrap();
    std::fs::read_to_string(case.join(format!("{name}.{ext}"))).unwrap()
}

#[test]
fn every_case_of_aws_test_suite_verifies() {
    let cases = cases();
    assert!(cases.len() >= 30, "{cases:?}");
    for case in &cases {
        let raw = Raw::parse(&read(case, "sreq"));
        // The suite's `.authz` is the header to check: in one case
        // (get-vanilla-with-session-token) the `.sreq` carries a stale one.
        let auth = Authorization::parse(&read(case, "authz")).unwrap();
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
        let creq = raw.with(|r| r.canonical(&auth.signed_headers)).unwrap();
        assert_eq!(
            String::from_utf8(creq.clone()).unwrap(),
            read(case, "creq"),
            "{case:?}"
        );
        let amz_date = raw.header("x-amz-date");
        let sts = string_to_sign(amz_date, &auth.scope, &creq);
        assert_eq!(sts, read(case, "sts"), "{case:?}");
        let key = signing_key(SECRET.as_bytes(), &auth.scope);
        auth.verify(&sts, &key)
            .unwrap_or_else(|e| panic!("{case:?}: {e}"));
        auth.check(amz_date, NOW, "service", &["host", "x-amz-date"])
            .unwrap();
    }
}

/// The `post-vanilla` case's request.
fn post_vanilla_request() -> Raw {
    let case =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws4_testsuite/post-vanilla");
    Raw::parse(&read(&case, "sreq"))
}

/// The `post-vanilla` case, parsed, with its signing key.
fn post_vanilla() -> (Raw, Authorization, Zeroizing<[u8; 32]>) {
    let raw = post_vanilla_request();
    let auth = Authorization::parse(raw.header("authorization").trim()).unwrap();
    let key = signing_key(SECRET.as_bytes(), &auth.scope);
    (raw, auth, key)
}

fn signs(raw: &Raw, auth: &Authorization, key: &[u8; 32]) -> Result<(), SigV4Error> {
    let creq = raw.with(|r| r.canonical(&auth.signed_headers))?;
    auth.verify(
        &string_to_sign(raw.header("x-amz-date"), &auth.scope, &creq),
        key,
    )
}

#[test]
fn any_change_to_what_was_signed_is_refused() {
    let (raw, auth, key) = post_vanilla();
    signs(&raw, &auth, &key).unwrap();

    let mut body = post_vanilla_request();
    body.body = b"{}".to_vec();
    assert_eq!(signs(&body, &auth, &key), Err(SigV4Error::Mismatch));

    let mut method = post_vanilla_request();
    method.method = "PUT".into();
    assert_eq!(signs(&method, &auth, &key), Err(SigV4Error::Mismatch));

    let mut host = post_vanilla_request();
    host.headers[0].1 = b"example.amazonaws.com:8080".to_vec();
    assert_eq!(host.headers[0].0, "Host");
    assert_eq!(signs(&host, &auth, &key), Err(SigV4Error::Mismatch));

    let mut flipped = auth.clone();
    flipped.signature[31] ^= 1;
    assert_eq!(signs(&raw, &flipped, &key), Err(SigV4Error::Mismatch));

    // An encoded path is signed encoded once more, as the SDKs do: `%2F` stays a
    // byte of a segment, never a separator.
    let encoded = Request {
        method: "GET",
        path: "/a%20b/..%2F/c",
        query: "",
        headers: &[("host", b"h")],
        body: b"",
    };
    let creq = encoded.canonical(&["host".to_owned()]).unwrap();
    assert!(
        String::from_utf8(creq)
            .unwrap()
            .starts_with("GET\n/a%2520b/..%252F/c\n"),
        "the path is encoded again"
    );

    let other = signing_key(b"another secret", &auth.scope);
    assert_eq!(signs(&raw, &auth, &other), Err(SigV4Error::Mismatch));

    // A signed header missing from the request.
    let mut more = auth.clone();
    more.signed_headers = vec!["host".into(), "x-amz-date".into(), "x-amz-target".into()];
    let err = signs(&raw, &more, &key).unwrap_err();
    assert!(err.to_string().contains("x-amz-target"), "{err}");
}

#[test]
fn time_scope_and_required_headers_are_checked() {
    let (raw, auth, _) = post_vanilla();
    let date = raw.header("x-amz-date");
    let second = time::Duration::seconds(1);
    auth.check(date, NOW + MAX_SKEW, "service", &[]).unwrap();
    auth.check(date, NOW - MAX_SKEW, "service", &[]).unwrap();
    assert!(matches!(
        auth.check(date, NOW + MAX_SKEW + second, "service", &[]),
        Err(SigV4Error::Expired { .. })
    ));
    let err = auth
        .check(date, NOW - MAX_SKEW - second, "service", &[])
        .unwrap_err();
    assert!(matches!(err, SigV4Error::NotYetCurrent { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123559Z \
         (20150830T122059Z + 15 min.); set the client's clock right"
    );
    assert_eq!(
        auth.check(date, NOW, "secretsmanager", &[]),
        Err(SigV4Error::WrongService {
            expected: "secretsmanager".into(),
            found: "service".into()
        })
    );
    let err = auth
        .check(date, NOW, "service", &["host", "x-amz-target"])
        .unwrap_err();
    assert!(
        err.to_string().contains("x-amz-target must be signed"),
        "{err}"
    );
    // X-Amz-Date of another day than the scope's, or not a time.
    assert!(auth.check("20150831T000000Z", NOW, "service", &[]).is_err());
    assert!(
        auth.check("2015-08-30T12:36:00Z", NOW, "service", &[])
            .is_err()
    );
}

#[test]
fn a_malformed_authorization_header_says_what_is_wrong() {
    let good = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/secretsmanager/\
                aws4_request, SignedHeaders=host;x-amz-date, Signature=\
                5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b";
    let auth = Authorization::parse(good).unwrap();
    assert_eq!(
        auth.scope.to_string(),
        "20150830/us-east-1/secretsmanager/aws4_request"
    );
    assert!(auth.signs("host") && !auth.signs("x-amz-target"));
    for (header, says) in [
        ("Bearer abc", "must start with AWS4-HMAC-SHA256"),
        ("AWS4-HMAC-SHA256", "must start with AWS4-HMAC-SHA256"),
        (
            &good.replace("Credential=", "Cred="),
            "unknown parameter \"Cred\"",
        ),
        (
            &good.replace(", Signature=", ", Credential=x, Signature="),
            "names Credential twice",
        ),
        (
            &good.replace("/aws4_request", "/aws5_request"),
            "is malformed",
        ),
        (&good.replace("20150830", "2015083"), "is malformed"),
        (
            &good.replace("host;x-amz-date", "x-amz-date;host"),
            "sorted",
        ),
        (
            &good.replace("host;x-amz-date", "Host;x-amz-date"),
            "lowercase",
        ),
        (
            &good.replace("host;x-amz-date", "host;;x-amz-date"),
            "lowercase",
        ),
        (&good.replace("5da7", "5da"), "64 hexadecimal digits"),
        (&good.replace("5da7", "zzzz"), "64 hexadecimal digits"),
        (
            &good.replace(", SignedHeaders=host;x-amz-date", ""),
            "'SignedHeaders'",
        ),
        (good.split(", Signature").next().unwrap(), "'Signature'"),
    ] {
        let err = Authorization::parse(header).unwrap_err();
        assert!(matches!(err, SigV4Error::Incomplete(_)), "{header}: {err}");
        assert!(err.to_string().contains(says), "{header}: {err}");
    }
}

/// A request a real client signed: botocore 1.44.5's `GetSecretValue`, frozen at
/// 2026-12-01T10:00:00Z (`SigV4Auth` with region `us-east-1`, access key
/// `AKLGEXAMPLE0000000001` and secret `keyledger-example-secret`).
#[test]
fn a_request_botocore_signed_verifies() {
    let body = br#"{"SecretId": "db-password"}"#;
    let headers: [(&str, &[u8]); 5] = [
        ("X-Amz-Target", b"secretsmanager.GetSecretValue"),
        ("Content-Type", b"application/x-amz-json-1.1"),
        (
            "User-Agent",
            b"Boto3/1.44.5 md/Botocore#1.44.5 ua/2.1 os/linux",
        ),
        ("X-Amz-Date", b"20261201T100000Z"),
        ("Host", b"127.0.0.1:9311"),
    ];
    let request = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let auth = Authorization::parse(BOTOCORE_AUTHORIZATION).unwrap();
    assert_eq!(
        auth.signed_headers,
        ["content-type", "host", "x-amz-date", "x-amz-target"]
    );
    let creq = request.canonical(&auth.signed_headers).unwrap();
    let sts = string_to_sign("20261201T100000Z", &auth.scope, &creq);
    let key = signing_key(b"keyledger-example-secret", &auth.scope);
    auth.verify(&sts, &key).unwrap();
    auth.check(
        "20261201T100000Z",
        datetime!(2026-12-01 10:05:00 UTC),
        "secretsmanager",
        &["host", "x-amz-date", "x-amz-target"],
    )
    .unwrap();
}

const BOTOCORE_AUTHORIZATION: &str = include_str!("botocore_get_secret_value.authz");

proptest::proptest! {
    /// Whatever a client sends, parsing and canonicalising answer, with an
    /// [`SigV4Error::Incomplete`] that says what is wrong, and never panic.
    #[test]
    fn any_input_is_answered_without_a_panic(
        header in "(AWS4-HMAC-SHA256 )?[ -~]{0,200}",
        path in "[ -~]{0,64}",
        query in "[ -~]{0,64}",
        value in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        signed in "[a-z;-]{0,40}",
    ) {
        let parsed = Authorization::parse(&header);
        proptest::prop_assert!(matches!(parsed, Ok(_) | Err(SigV4Error::Incomplete(_))), "{parsed:?}");
        let headers: [(&str, &[u8]); 2] = [("Host", b"h"), ("x-a", &value)];
        let request = Request { method: "POST", path: &path, query: &query, headers: &headers, body: &value };
        let names: Vec<String> = signed.split(';').map(String::from).collect();
        let canonical = request.canonical(&names);
        proptest::prop_assert!(matches!(canonical, Ok(_) | Err(SigV4Error::Incomplete(_))));
        let auth = Authorization::parse(&format!(
            "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders={signed}, Signature={}",
            "0".repeat(64)
        ));
        if let Ok(auth) = auth {
            let _ = auth.check(&path, NOW, "s", &["host"]);
        }
    }
}
