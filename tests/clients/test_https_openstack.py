"""The `openstack` CLI against `keyledger up --tls`, trusting its development CA the
way a user does: REQUESTS_CA_BUNDLE=<data-dir>/tls/ca.pem (set by tests/tls.rs; or
--os-cacert), with an https:// endpoint. Without the CA it refuses the certificate."""
import os
import subprocess
import sys
import unittest
import uuid

URL = os.environ["KEYLEDGER_URL"].rstrip("/")
TOKEN = os.environ["KEYLEDGER_TOKEN"]
OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")


def openstack(*args, env=None):
    command = [OPENSTACK, "--os-auth-type", "admin_token", "--os-endpoint", URL + "/v1",
               "--os-token", TOKEN, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env=env or os.environ)


class Https(unittest.TestCase):
    def test_a_secret_is_stored_and_read_over_https(self):
        self.assertTrue(URL.startswith("https://"))
        name = f"https-{uuid.uuid4().hex[:8]}"
        stored = openstack("secret", "store", "--name", name, "--payload", "os-over-tls",
                           "-f", "value", "-c", "Secret href")
        self.assertEqual(stored.returncode, 0, stored.stderr)
        href = stored.stdout.strip()
        got = openstack("secret", "get", href, "--payload", "-f", "value")
        self.assertEqual((got.returncode, got.stdout.strip()), (0, "os-over-tls"), got.stderr)

    def test_without_the_ca_the_certificate_is_refused(self):
        env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
        refused = openstack("secret", "list", env=env)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("CERTIFICATE_VERIFY_FAILED", refused.stderr)
