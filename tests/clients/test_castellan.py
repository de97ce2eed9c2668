"""Castellan, the key-manager library Nova, Cinder and Glance use, with its Barbican
backend pointed at keyledger (`[barbican] barbican_endpoint`, no `/v1`), in the three
ways services authenticate: a Keystone password, a token in a request context
(re-scoped at Keystone), and a context that hands castellan its own auth plugin.

Environment: KEYLEDGER_URL, KEYLEDGER_TOKEN (an admin of project `demo`, user
`alice`), KEYSTONE_URL (a Keystone v3 whose user `alice` has password `secret`).
"""
import os
import unittest

from castellan import key_manager, options
from castellan.common import exception
from castellan.common.credentials import keystone_password
from castellan.common.objects import opaque_data, passphrase, symmetric_key
from cryptography.hazmat.primitives import serialization
from keystoneauth1 import token_endpoint
from oslo_config import cfg
from oslo_context import context as oslo_context

URL = os.environ["KEYLEDGER_URL"].rstrip("/")
TOKEN = os.environ["KEYLEDGER_TOKEN"]
KEYSTONE = os.environ["KEYSTONE_URL"].rstrip("/")


class PluginContext(oslo_context.RequestContext):
    """A service's context that hands castellan a ready auth plugin."""

    def __init__(self, token, endpoint, **kw):
        super().__init__(auth_token=token, **kw)
        self._plugin = token_endpoint.Token(endpoint, token)

    def get_auth_plugin(self):
        return self._plugin


def manager():
    conf = cfg.ConfigOpts()
    options.set_defaults(conf, backend="barbican", barbican_endpoint=URL,
                         barbican_api_version="v1", auth_endpoint=KEYSTONE,
                         retry_delay=1, number_of_retries=10)
    conf([], project="keyledger-castellan-test")
    return key_manager.API(conf)


class Castellan:
    """The same checks in each way of authenticating (mixed into the cases below)."""

    def context(self):
        raise NotImplementedError

    def setUp(self):
        self.km = manager()
        self.ctx = self.context()

    def test_stored_objects_read_back_and_are_deleted(self):
        objects = [
            symmetric_key.SymmetricKey("AES", 128, bytes(range(16)), name="c-sym"),
            passphrase.Passphrase(b"correct horse", name="c-pw"),
            opaque_data.OpaqueData(b"\xff\x00binary", name="c-op"),
        ]
        for obj in objects:
            object_id = self.km.store(self.ctx, obj)
            got = self.km.get(self.ctx, object_id)
            self.assertEqual(type(got), type(obj))
            self.assertEqual(got.get_encoded(), obj.get_encoded())
            self.assertEqual(got.name, obj.name)
            metadata = self.km.get(self.ctx, object_id, metadata_only=True)
            self.assertIsNone(metadata.get_encoded())
            self.km.delete(self.ctx, object_id)
            with self.assertRaises(exception.ManagedObjectNotFoundError):
                self.km.get(self.ctx, object_id)

    def test_generated_keys_are_listed(self):
        key_id = self.km.create_key(self.ctx, "AES", 256, name="c-gen")
        key = self.km.get(self.ctx, key_id)
        self.assertEqual((key.algorithm, key.bit_length), ("AES", 256))
        self.assertEqual(len(key.get_encoded()), 32)
        private_id, public_id = self.km.create_key_pair(self.ctx, "RSA", 2048,
                                                        name="c-pair")
        # Castellan hands key pairs over as DER, converted from the PEM stored.
        private = serialization.load_der_private_key(
            self.km.get(self.ctx, private_id).get_encoded(), password=None)
        public = serialization.load_der_public_key(
            self.km.get(self.ctx, public_id).get_encoded())
        self.assertEqual(private.public_key().public_numbers(), public.public_numbers())
        self.assertEqual(private.key_size, 2048)
        # A listing of one type (the first page, as Barbican's clients ask for it).
        listed = self.km.list(self.ctx, object_type=symmetric_key.SymmetricKey)
        self.assertTrue(listed)
        self.assertTrue(all(isinstance(k, symmetric_key.SymmetricKey) for k in listed))

    def test_a_consumer_keeps_its_key_until_removed(self):
        key_id = self.km.store(self.ctx, symmetric_key.SymmetricKey(
            "AES", 256, bytes(32), name="c-used"))
        consumer = {"service": "image", "resource_type": "image", "resource_id": "i-1"}
        self.km.add_consumer(self.ctx, key_id, consumer)
        self.km.remove_consumer(self.ctx, key_id, consumer)
        self.km.delete(self.ctx, key_id)


class WithAPassword(Castellan, unittest.TestCase):
    def context(self):
        return keystone_password.KeystonePassword(
            password="secret", username="alice", user_domain_id="default",
            project_name="demo", project_domain_id="default", auth_url=KEYSTONE)


class WithAToken(Castellan, unittest.TestCase):
    def context(self):
        return oslo_context.RequestContext(auth_token=TOKEN, project_id="demo",
                                           user_id="alice")


class WithAPlugin(Castellan, unittest.TestCase):
    def context(self):
        return PluginContext(TOKEN, URL, project_id="demo", user_id="alice")


if __name__ == "__main__":
    unittest.main()
