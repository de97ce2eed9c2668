//! What verifying one SigV4 request costs keyledger's API (issue 18), on one core:
//! the canonical request (with the SHA-256 of the body), the string to sign and one
//! HMAC, with the day's signing key cached, and with it derived again (four more
//! HMACs: a cache miss). Prints the median of 5 rounds in µs per request.
//!
//! `cargo bench -p infra --bench sigv4`

// A benchmark, like a test, fails loudly on a broken input.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use infra::identity::sigv4::{
    Authorization, Request, Scope, signature, signing_key, string_to_sign,
};

const ROUNDS: usize = 5;
const PER_ROUND: u32 = 50_000;

fn main() {
    let scope = Scope {
        date: "20261201".into(),
        region: "us-east-1".into(),
        service: "secretsmanager".into(),
    };
    let amz_date = "20261201T100000Z";
    let secret = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    for (what, body) in [
        ("GetSecretValue", br#"{"SecretId": "db-password"}"#.to_vec()),
        ("PutSecretValue, 1 KiB value", {
            let mut b = br#"{"SecretId": "db-password", "SecretString": ""#.to_vec();
            b.extend(std::iter::repeat_n(b'x', 1024));
            b.extend_from_slice(br#""}"#);
            b
        }),
    ] {
        let headers: [(&str, &[u8]); 5] = [
            ("X-Amz-Target", b"secretsmanager.GetSecretValue"),
            ("Content-Type", b"application/x-amz-json-1.1"),
            (
                "User-Agent",
                b"Boto3/1.44.5 md/Botocore#1.44.5 ua/2.1 os/linux",
            ),
            ("X-Amz-Date", amz_date.as_bytes()),
            ("Host", b"127.0.0.1:9311"),
        ];
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: &body,
        };
        let signed: Vec<String> = ["content-type", "host", "x-amz-date", "x-amz-target"]
            .map(String::from)
            .to_vec();
        let key = signing_key(secret, &scope);
        let sts = string_to_sign(amz_date, &scope, &request.canonical(&signed).unwrap());
        let header = format!(
            "AWS4-HMAC-SHA256 Credential=AKLGEXAMPLE0000000001/{}/{}/{}/aws4_request, \
             SignedHeaders={}, Signature={}",
            scope.date,
            scope.region,
            scope.service,
            signed.join(";"),
            signature(&sts, &key)
        );
        let verify = |derive: bool| {
            let auth = Authorization::parse(&header).unwrap();
            let creq = request.canonical(&auth.signed_headers).unwrap();
            let sts = string_to_sign(amz_date, &auth.scope, &creq);
            if derive {
                auth.verify(&sts, &signing_key(secret, &auth.scope))
            } else {
                auth.verify(&sts, &key)
            }
            .unwrap();
        };
        for (label, derive) in [("signing key cached", false), ("signing key derived", true)] {
            let mut rounds: Vec<f64> = (0..ROUNDS)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..PER_ROUND {
                        verify(black_box(derive));
                    }
                    started.elapsed().as_secs_f64() * 1e6 / f64::from(PER_ROUND)
                })
                .collect();
            rounds.sort_by(f64::total_cmp);
            println!(
                "{what} ({} B body), {label}: {:.2} µs per request (median of {ROUNDS} rounds \
                 of {PER_ROUND}; rounds {:.2}–{:.2})",
                body.len(),
                rounds[ROUNDS / 2],
                rounds[0],
                rounds[ROUNDS - 1]
            );
        }
    }
}
