"""The aws CLI (v1, from PyPI) against a real `keyledger up`, configured only by the
environment a user sets: AWS_ENDPOINT_URL_SECRETS_MANAGER and a key pair from
`keyledger access-key create` (see test_boto3.py for the variables)."""
import base64
import json
import os
import subprocess
import tempfile
import unittest
import uuid

AWS = os.path.join(os.path.dirname(os.path.realpath(os.environ["KEYLEDGER_AWS_PYTHON"])), "aws")


def aws(*args, check=True):
    done = subprocess.run(
        [os.environ.get("KEYLEDGER_AWS_CLI", AWS), "secretsmanager", *args],
        capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


class AwsCli(unittest.TestCase):
    def test_a_secrets_life_from_the_cli(self):
        name = f"cli/{uuid.uuid4().hex[:8]}"
        created = json.loads(aws("create-secret", "--name", name,
                                 "--secret-string", "s3cr3t").stdout)
        self.assertEqual(created["Name"], name)
        value = aws("get-secret-value", "--secret-id", name, "--query", "SecretString",
                    "--output", "text").stdout.strip()
        self.assertEqual(value, "s3cr3t")
        aws("put-secret-value", "--secret-id", name, "--secret-string", "n3w")
        value = aws("get-secret-value", "--secret-id", created["ARN"], "--query",
                    "SecretString", "--output", "text").stdout.strip()
        self.assertEqual(value, "n3w")
        described = json.loads(aws("describe-secret", "--secret-id", name).stdout)
        self.assertEqual(sorted(described["VersionIdsToStages"].values()),
                         [["AWSCURRENT"], ["AWSPREVIOUS"]])
        listed = json.loads(aws("list-secrets", "--filters",
                                f"Key=name,Values={name}").stdout)
        self.assertEqual([s["Name"] for s in listed["SecretList"]], [name])
        aws("delete-secret", "--secret-id", name, "--recovery-window-in-days", "7")
        aws("restore-secret", "--secret-id", name)
        aws("delete-secret", "--secret-id", name, "--force-delete-without-recovery")
        missing = aws("get-secret-value", "--secret-id", name, check=False)
        # The aws CLI v1 exits 255 when the service answers an error (v2: 254).
        self.assertEqual(missing.returncode, 255, missing.stderr)
        self.assertIn("An error occurred (ResourceNotFoundException)", missing.stderr)

    def test_a_binary_secret_from_a_file(self):
        name = f"cli-bin-{uuid.uuid4().hex[:8]}"
        raw = bytes(range(256))
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(raw)
            f.flush()
            aws("create-secret", "--name", name, "--secret-binary", f"fileb://{f.name}")
        got = json.loads(aws("get-secret-value", "--secret-id", name).stdout)
        self.assertEqual(base64.b64decode(got["SecretBinary"]), raw)


if __name__ == "__main__":
    unittest.main()
