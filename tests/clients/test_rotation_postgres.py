"""The shipped PostgreSQL rotation handler (handlers/postgres_single_user.py) against a
real PostgreSQL that checks passwords: after finishSecret the new password logs in and
the old one does not; a handler that fails at testSecret leaves AWSCURRENT where it was.

Environment (set by tests/aws_clients.rs), besides test_boto3's:
  KEYLEDGER_ROTATION_NATS   NATS URL with the rotation user's credentials
  PG_SOCKET                 the server's Unix socket; role keyledger logs in without a
                            password, every other role with its own
"""
import json
import os
import pathlib
import uuid
import unittest

import boto3
import pg8000

from test_rotation import history, start_handler, unique, until

HANDLER = pathlib.Path(__file__).resolve().parents[2] / "handlers" / "postgres_single_user.py"
FAILING = pathlib.Path(__file__).resolve().parent / "postgres_fails_test.py"
SOCKET = os.environ["PG_SOCKET"]


def login(user, password):
    """Whether `user` logs in with `password`: False only when the server refused the
    password (28P01). pg8000 may report that refusal as a network error, when the
    server shut the socket before pg8000 closed it: the refusal is then in the chain."""
    try:
        pg8000.connect(user=user, password=password, database="keyledger",
                       unix_sock=SOCKET, timeout=5).close()
        return True
    except (pg8000.exceptions.DatabaseError, pg8000.exceptions.InterfaceError) as e:
        cause = e
        while cause is not None:
            if isinstance(cause, pg8000.exceptions.DatabaseError) and "28P01" in str(cause):
                return False
            cause = cause.__cause__ or cause.__context__
        raise


def admin(sql):
    conn = pg8000.connect(user="keyledger", database="keyledger", unix_sock=SOCKET)
    conn.autocommit = True
    conn.cursor().execute(sql)
    conn.close()


class PostgresRotation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sm = boto3.client("secretsmanager")
        cls.handlers = [start_handler("postgres", module=HANDLER),
                        start_handler("postgres-fails-test", module=FAILING)]

    @classmethod
    def tearDownClass(cls):
        for p in cls.handlers:
            p.terminate()
            p.wait(timeout=10)

    def database_user(self):
        """A new role with a password, and the secret that holds its credentials."""
        user = f"app_{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        admin(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        self.assertTrue(login(user, password))
        name = unique("pg")
        value = {"engine": "postgres", "username": user, "password": password,
                 "dbname": "keyledger", "unix_sock": SOCKET}
        self.sm.create_secret(Name=name, SecretString=json.dumps(value))
        return name, user, password

    def test_the_new_password_logs_in_and_the_old_one_does_not(self):
        name, user, old = self.database_user()
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN="postgres",
                              RotationRules={"AutomaticallyAfterDays": 7})
        until("the rotation to finish", lambda: "LastRotatedDate" in
              self.sm.describe_secret(SecretId=name), seconds=60)
        new = json.loads(self.sm.get_secret_value(SecretId=name)["SecretString"])
        self.assertEqual(new["username"], user)
        self.assertNotEqual(new["password"], old)
        self.assertTrue(login(user, new["password"]), "the new password logs in")
        self.assertFalse(login(user, old), "the old password no longer logs in")
        previous = json.loads(self.sm.get_secret_value(
            SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"])
        self.assertEqual(previous["password"], old)

    def test_a_failing_test_step_leaves_awscurrent_where_it_was(self):
        name, user, old = self.database_user()
        before = self.sm.get_secret_value(SecretId=name)
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN="postgres-fails-test")
        until("the rotation to fail for good", lambda: [
            e for e in history(name)
            if e["type"] == "secret.rotation_step_failed" and "retry_at" not in e], seconds=60)
        after = self.sm.get_secret_value(SecretId=name)
        self.assertEqual(after["VersionId"], before["VersionId"])
        self.assertEqual(after["SecretString"], before["SecretString"])
        self.assertIn("AWSCURRENT", after["VersionStages"])


if __name__ == "__main__":
    unittest.main()
