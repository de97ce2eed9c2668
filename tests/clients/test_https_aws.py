"""boto3 and the aws CLI against `keyledger up --tls`, trusting its development CA
the way a user does: AWS_CA_BUNDLE=<data-dir>/tls/ca.pem (set by tests/tls.rs), with
AWS_ENDPOINT_URL_SECRETS_MANAGER an https:// URL. Without the CA, both refuse the
certificate."""
import os
import subprocess
import unittest
import uuid

import boto3
from botocore.exceptions import SSLError

AWS = os.path.join(os.path.dirname(os.path.realpath(os.environ["KEYLEDGER_AWS_PYTHON"])), "aws")


class Https(unittest.TestCase):
    def test_boto3_trusts_the_ca_bundle_and_refuses_without_it(self):
        self.assertTrue(os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"].startswith("https://"))
        sm = boto3.client("secretsmanager")
        name = f"https-{uuid.uuid4().hex[:8]}"
        sm.create_secret(Name=name, SecretString="over-tls")
        self.assertEqual(sm.get_secret_value(SecretId=name)["SecretString"], "over-tls")
        bundle = os.environ.pop("AWS_CA_BUNDLE")
        try:
            untrusting = boto3.session.Session().client("secretsmanager")
            with self.assertRaises(SSLError):
                untrusting.get_secret_value(SecretId=name)
        finally:
            os.environ["AWS_CA_BUNDLE"] = bundle

    def test_the_aws_cli_trusts_the_ca_bundle(self):
        name = f"https-cli-{uuid.uuid4().hex[:8]}"
        run = lambda *a: subprocess.run([AWS, "secretsmanager", *a], capture_output=True,
                                        text=True, timeout=60)
        created = run("create-secret", "--name", name, "--secret-string", "cli-over-tls")
        self.assertEqual(created.returncode, 0, created.stderr)
        got = run("get-secret-value", "--secret-id", name, "--query", "SecretString",
                  "--output", "text")
        self.assertEqual((got.returncode, got.stdout.strip()), (0, "cli-over-tls"), got.stderr)
