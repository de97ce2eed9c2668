"""The `openstack` CLI (python-openstackclient with python-barbicanclient's plugin)
against keyledger, as a user points it there: `--os-auth-type admin_token
--os-endpoint <keyledger>/v1 --os-token <token>`.

Environment: KEYLEDGER_URL (the API's base URL), KEYLEDGER_TOKEN (an admin of
project `demo`), KEYLEDGER_OTHER_TOKEN (user `bob`, an observer in another project).
"""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.request
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import yaml

URL = os.environ["KEYLEDGER_URL"].rstrip("/")
TOKEN = os.environ["KEYLEDGER_TOKEN"]
OTHER = os.environ["KEYLEDGER_OTHER_TOKEN"]
OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")


def openstack(*args, token=TOKEN, check=True):
    """Runs `openstack <args>` against keyledger; its stdout (JSON when asked)."""
    command = [OPENSTACK, "--os-auth-type", "admin_token", "--os-endpoint", URL + "/v1",
               "--os-token", token, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"openstack {' '.join(args)} failed:\n{done.stderr}")
    return done


def unique(name):
    """`name` with a suffix no other run uses, so listings by name find one."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def as_json(*args, token=TOKEN):
    return json.loads(openstack(*args, "-f", "json", token=token).stdout)


def certificate_chain():
    """A CA and a server certificate it signed, as a TLS terminator is given them:
    (certificate PEM, its private key PEM (PKCS#8), the CA's certificate PEM)."""
    def certificate(common_name, key, issuer_name, issuer_key, ca):
        now = datetime.datetime.now(datetime.timezone.utc)
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                            common_name)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                           issuer_name)]))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                               critical=True)
                .sign(issuer_key, hashes.SHA256()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("keyledger test CA", ca_key, "keyledger test CA", ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate("lb.example.test", key, "keyledger test CA", ca_key, False)
    pem = lambda cert: cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return pem(leaf), key_pem, pem(ca)


class Secrets(unittest.TestCase):
    def test_store_get_list_update_and_delete(self):
        name = unique("cli-text")
        href = as_json("secret", "store", "--name", name, "--payload", "hello cli")[
            "Secret href"]
        self.assertTrue(href.startswith(URL + "/v1/secrets/"), href)
        payload = openstack("secret", "get", href, "--payload", "-f", "value").stdout
        self.assertEqual(payload.strip(), "hello cli")
        shown = as_json("secret", "get", href)
        self.assertEqual(shown["Name"], name)
        self.assertEqual(shown["Status"], "ACTIVE")
        listed = as_json("secret", "list", "--name", name)
        self.assertEqual([s["Secret href"] for s in listed], [href])

        # A secret created without a payload gets one later, once.
        later = as_json("secret", "store", "--name", "cli-later")["Secret href"]
        openstack("secret", "update", later, "stored later")
        payload = openstack("secret", "get", later, "--payload", "-f", "value").stdout
        self.assertEqual(payload.strip(), "stored later")

        openstack("secret", "delete", href)
        gone = openstack("secret", "get", href, check=False)
        self.assertNotEqual(gone.returncode, 0)
        self.assertIn("Secret not found", gone.stderr)

    def test_a_binary_file_round_trips(self):
        data = bytes(range(256))
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "key.bin")
            with open(source, "wb") as f:
                f.write(data)
            href = as_json("secret", "store", "--name", "cli-bin", "--file", source)[
                "Secret href"]
            target = os.path.join(tmp, "out.bin")
            openstack("secret", "get", href, "--file", target,
                      "--payload_content_type", "application/octet-stream")
            with open(target, "rb") as f:
                self.assertEqual(f.read(), data)


class Acls(unittest.TestCase):
    def test_users_are_granted_read_and_the_grant_is_revoked(self):
        href = as_json("secret", "store", "--name", "cli-shared", "--payload", "shared")[
            "Secret href"]
        # bob, of another project, cannot read it...
        denied = openstack("secret", "get", href, "--payload", token=OTHER, check=False)
        self.assertNotEqual(denied.returncode, 0)
        self.assertIn("Forbidden: reading the payload", denied.stderr)
        # ...until the ACL lists him.
        openstack("acl", "submit", href, "--user", "bob", "--no-project-access")
        acl = as_json("acl", "get", href)
        self.assertEqual(acl[0]["Users"], ["bob"], acl)
        self.assertFalse(acl[0]["Project Access"], acl)
        payload = openstack("secret", "get", href, "--payload", "-f", "value",
                            token=OTHER).stdout
        self.assertEqual(payload.strip(), "shared")
        added = as_json("acl", "user", "add", href, "--user", "dave")
        self.assertEqual(sorted(added[0]["Users"]), ["bob", "dave"], added)
        removed = as_json("acl", "user", "remove", href, "--user", "bob")
        self.assertEqual(removed[0]["Users"], ["dave"], removed)
        openstack("acl", "delete", href)
        acl = as_json("acl", "get", href)
        self.assertTrue(acl[0]["Project Access"], acl)
        denied = openstack("secret", "get", href, "--payload", token=OTHER, check=False)
        self.assertNotEqual(denied.returncode, 0)


    def test_changing_users_keeps_the_acls_conditions(self):
        # Conditions are keyledger's: the CLI neither shows nor sends them, and changes
        # an ACL by putting back the users and project access it read. That must not
        # lift a network limit the owner set over the API.
        href = as_json("secret", "store", "--name", unique("cli-limited"), "--payload",
                       "limited")["Secret href"]
        request = urllib.request.Request(
            href + "/acl", method="PUT",
            data=json.dumps({"read": {"users": ["bob"], "project-access": False,
                                      "conditions": {"source_cidrs": ["192.168.0.0/16"]}}}
                            ).encode(),
            headers={"X-Auth-Token": TOKEN, "Content-Type": "application/json"})
        urllib.request.urlopen(request).close()
        as_json("acl", "user", "add", href, "--user", "dave")
        with urllib.request.urlopen(urllib.request.Request(
                href + "/acl", headers={"X-Auth-Token": TOKEN})) as response:
            read = json.load(response)["read"]
        self.assertEqual(sorted(read["users"]), ["bob", "dave"], read)
        self.assertEqual(read["conditions"], {"source_cidrs": ["192.168.0.0/16"]}, read)
        # bob is listed, but the tests reach the API from 127.0.0.1.
        denied = openstack("secret", "get", href, "--payload", token=OTHER, check=False)
        self.assertNotEqual(denied.returncode, 0)
        self.assertIn("outside the allowed 192.168.0.0/16", denied.stderr)


class Containers(unittest.TestCase):
    def test_generic_and_rsa_containers(self):
        a = as_json("secret", "store", "--name", "a", "--payload", "aaa")["Secret href"]
        b = as_json("secret", "store", "--name", "b", "--payload", "bbb")["Secret href"]
        name = unique("cli-gen")
        generic = as_json("secret", "container", "create", "--name", name, "--type",
                          "generic", "--secret", "a=" + a, "--secret", "b=" + b)[
            "Container href"]
        listed = as_json("secret", "container", "list", "--name", name)
        self.assertEqual([c["Container href"] for c in listed], [generic])
        shown = openstack("secret", "container", "get", generic).stdout
        self.assertIn(a, shown)
        self.assertIn(b, shown)

        # An rsa container from a key pair an order generated.
        order = as_json("secret", "order", "create", "asymmetric", "--name", "cli-pair",
                        "--algorithm", "rsa", "--bit-length", "2048")["Order href"]
        placed = as_json("secret", "order", "get", order)
        self.assertEqual(placed["Status"], "ACTIVE", placed)
        pair = placed["Container href"]
        rsa = openstack("secret", "container", "get", pair).stdout
        self.assertIn("Private Key    | " + URL + "/v1/secrets/", rsa)
        self.assertIn("Public Key     | " + URL + "/v1/secrets/", rsa)
        self.assertIn(pair, [c["Container href"] for c in
                             as_json("secret", "container", "list", "--type", "rsa")])

        openstack("secret", "container", "delete", generic)
        gone = openstack("secret", "container", "get", generic, check=False)
        self.assertNotEqual(gone.returncode, 0)

    def test_a_certificate_container(self):
        # A certificate, its key and the CA that signed it, stored from PEM files as
        # an operator stores them for a TLS-terminating load balancer (Octavia).
        cert_pem, key_pem, ca_pem = certificate_chain()
        refs = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, secret_type, pem in (("certificate", "certificate", cert_pem),
                                           ("private_key", "private", key_pem),
                                           ("intermediates", "certificate", ca_pem)):
                path = os.path.join(tmp, name + ".pem")
                with open(path, "w") as f:
                    f.write(pem)
                refs[name] = as_json("secret", "store", "--name", unique("cli-" + name),
                                     "--secret-type", secret_type,
                                     "--payload-content-type", "text/plain",
                                     "--file", path)["Secret href"]
        name = unique("cli-cert")
        href = as_json("secret", "container", "create", "--name", name, "--type",
                       "certificate", *[a for role, ref in refs.items()
                                        for a in ("--secret", f"{role}={ref}")])[
            "Container href"]
        self.assertTrue(href.startswith(URL + "/v1/containers/"), href)

        # Read back, barbicanclient shows a certificate container's secrets by role.
        # In YAML: `-f json` fails in the client itself, whose certificate (and rsa)
        # container formatter leaves `Created` a datetime that json cannot encode.
        shown = yaml.safe_load(openstack("secret", "container", "get", href,
                                         "-f", "yaml").stdout)
        self.assertEqual((shown["Name"], shown["Type"], shown["Status"]),
                         (name, "certificate", "ACTIVE"), shown)
        self.assertEqual((shown["Certificate"], shown["Private Key"],
                          shown["Intermediates"], shown["PK Passphrase"]),
                         (refs["certificate"], refs["private_key"],
                          refs["intermediates"], None), shown)
        # What a load balancer reads through it: the PEMs as stored, a certificate
        # and the private key of its public key.
        payload = lambda ref: openstack("secret", "get", ref, "--payload",
                                        "-f", "value").stdout.strip()
        stored_cert = payload(shown["Certificate"])
        self.assertEqual(stored_cert, cert_pem.strip())
        certificate = x509.load_pem_x509_certificate(stored_cert.encode())
        self.assertEqual(payload(shown["Intermediates"]), ca_pem.strip())
        key = serialization.load_pem_private_key(payload(shown["Private Key"]).encode(),
                                                 password=None)
        self.assertEqual(key.public_key(), certificate.public_key())

        listed = as_json("secret", "container", "list", "--name", name, "--type",
                         "certificate")
        self.assertEqual([(c["Container href"], c["Type"]) for c in listed],
                         [(href, "certificate")], listed)
        self.assertEqual(sorted(listed[0]["Secrets"].splitlines()),
                         sorted(f"{role}={ref}" for role, ref in refs.items()), listed)

        openstack("secret", "container", "delete", href)
        gone = openstack("secret", "container", "get", href, check=False)
        self.assertNotEqual(gone.returncode, 0)
        self.assertEqual(as_json("secret", "container", "list", "--name", name), [])
        # Deleting a container leaves its secrets.
        self.assertEqual(payload(refs["certificate"]), cert_pem.strip())


class Consumers(unittest.TestCase):
    def test_a_consumer_is_registered_listed_and_removed(self):
        href = as_json("secret", "store", "--name", "cli-used", "--payload", "x")[
            "Secret href"]
        who = ["--service-type-name", "image", "--resource-type", "image",
               "--resource-id", "img-1"]
        openstack("secret", "consumer", "create", *who, href)
        listed = as_json("secret", "consumer", "list", href)
        self.assertEqual([(c["Service"], c["Resource id"]) for c in listed],
                         [("image", "img-1")], listed)
        openstack("secret", "consumer", "delete", *who, href)
        self.assertEqual(as_json("secret", "consumer", "list", href), [])


class Orders(unittest.TestCase):
    def test_a_key_order_makes_a_key(self):
        order = as_json("secret", "order", "create", "key", "--name", "cli-key",
                        "--algorithm", "aes", "--bit-length", "256", "--mode", "cbc",
                        "--payload-content-type", "application/octet-stream")["Order href"]
        placed = as_json("secret", "order", "get", order)
        self.assertEqual(placed["Status"], "ACTIVE", placed)
        key = as_json("secret", "get", placed["Secret href"])
        self.assertEqual((key["Algorithm"], key["Bit length"], key["Mode"]),
                         ("aes", 256, "cbc"), key)
        self.assertIn(order, [o["Order href"] for o in as_json("secret", "order", "list")])
        openstack("secret", "order", "delete", order)
        gone = openstack("secret", "order", "get", order, check=False)
        self.assertNotEqual(gone.returncode, 0)


if __name__ == "__main__":
    unittest.main()
