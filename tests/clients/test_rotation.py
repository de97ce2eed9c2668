"""Rotation end to end with boto3: RotateSecret names a handler where AWS takes a
Lambda ARN, keyledger's runner asks it for the four steps over NATS, and the handler
is AWS's generic rotation template (rotation_function.py) run unchanged by
handlers/nats_lambda.py. Also the troubleshooting cases of AWS's rotation guide: a
handler nobody serves, a step that times out, a rotation still in progress, and the
AWSPENDING a cancelled rotation leaves.

Environment (set by tests/aws_clients.rs), besides test_boto3's:
  KEYLEDGER_ROTATION_NATS   NATS URL with the rotation user's credentials
keyledger runs with --rotation-step-timeout 2s --rotation-attempts 2
--rotation-retry-after 1s.
"""
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
import uuid

import boto3
from botocore.exceptions import ClientError

ADAPTER = pathlib.Path(__file__).resolve().parents[2] / "handlers" / "nats_lambda.py"
FUNCTION = pathlib.Path(__file__).resolve().parent / "rotation_function.py"
REGION = os.environ["AWS_DEFAULT_REGION"]


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def lambda_arn(name):
    return f"arn:aws:lambda:{REGION}:123456789012:function:{name}"


def history(name, token=None):
    """The secret's events from keyledger's log (Barbican's API, as alice unless
    `token` says otherwise)."""
    request = urllib.request.Request(
        os.environ["KEYLEDGER_URL"] + f"/v1/secrets/{name}/history?limit=1000",
        headers={"X-Auth-Token": token or os.environ["KEYLEDGER_TOKEN"]})
    with urllib.request.urlopen(request) as response:
        return [e["event"] for e in json.load(response)["history"]]


def until(what, check, seconds=30):
    """Polls `check` until it returns something true, or fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def start_handler(name, module=FUNCTION, projects=(), **env):
    """Runs `module` (the template by default) as handler `name` under the adapter,
    for `projects` (all when empty); returns once it serves its subject."""
    log = tempfile.TemporaryFile(mode="w+")
    only = [arg for p in projects for arg in ("--project", p)]
    process = subprocess.Popen(
        [sys.executable, str(ADAPTER), "--handler", name, "--module", str(module), *only],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **env})
    line = process.stdout.readline()
    if not line.startswith("serving keyledger.rotate."):
        process.kill()
        log.seek(0)
        raise AssertionError(f"handler {name} did not start: {line!r}\n{log.read()}")
    return process


class Rotation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sm = boto3.client("secretsmanager")
        cls.handlers = [
            # For project demo only: the adapter computes demo's account as keyledger.
            start_handler("template", projects=["demo"]),
            start_handler("fails-test", ROTATION_FAIL_AT="testSecret"),
            start_handler("slow-set", ROTATION_SLOW_AT="setSecret", ROTATION_SLOW_SECONDS="4"),
            start_handler("slow-create", ROTATION_SLOW_AT="createSecret",
                          ROTATION_SLOW_SECONDS="8"),
        ]

    @classmethod
    def tearDownClass(cls):
        for p in cls.handlers:
            p.terminate()
            p.wait(timeout=10)

    def assertCode(self, code, call, **kwargs):
        with self.assertRaises(ClientError) as raised:
            call(**kwargs)
        self.assertEqual(raised.exception.response["Error"]["Code"], code,
                         raised.exception.response)
        return raised.exception.response["Error"]["Message"]

    def failures(self, name):
        return [e for e in history(name) if e["type"] == "secret.rotation_step_failed"]

    def test_a_rotation_runs_the_four_steps_on_the_handler(self):
        name = unique("rotated")
        self.sm.create_secret(Name=name, SecretString="first password")
        old = self.sm.describe_secret(SecretId=name)["VersionIdsToStages"]
        answer = self.sm.rotate_secret(SecretId=name, RotationLambdaARN=lambda_arn("template"),
                                       RotationRules={"AutomaticallyAfterDays": 30})
        version = answer["VersionId"]
        described = until("the rotation to finish", lambda: (
            lambda d: d if "LastRotatedDate" in d else None)(self.sm.describe_secret(SecretId=name)))
        self.assertTrue(described["RotationEnabled"])
        self.assertEqual(described["RotationLambdaARN"].rsplit(":", 1)[1], "template")
        self.assertEqual(described["RotationRules"]["AutomaticallyAfterDays"], 30)
        days = (described["NextRotationDate"] - described["LastRotatedDate"]).days
        self.assertEqual(days, 30)
        self.assertEqual(described["VersionIdsToStages"][version], ["AWSCURRENT"])
        (previous,) = old
        self.assertEqual(described["VersionIdsToStages"][previous], ["AWSPREVIOUS"])
        value = self.sm.get_secret_value(SecretId=name)
        self.assertEqual(value["VersionId"], version)
        self.assertEqual(len(value["SecretString"]), 32)
        # Every step is on the log, in order, by keyledger's rotation runner.
        steps = [e["step"] for e in history(name) if e["type"] == "secret.rotation_step_succeeded"]
        self.assertEqual(steps, ["createSecret", "setSecret", "testSecret", "finishSecret"])
        self.assertEqual([e["type"] for e in history(name)][-1], "secret.rotation_succeeded")

    def test_a_failed_test_step_leaves_awscurrent_where_it_was(self):
        name = unique("fails")
        created = self.sm.create_secret(Name=name, SecretString="keep me")
        version = self.sm.rotate_secret(SecretId=name, RotationLambdaARN="fails-test")["VersionId"]
        final = until("the rotation to fail for good", lambda: [
            f for f in self.failures(name) if "retry_at" not in f])
        self.assertEqual(final[0]["step"], "testSecret")
        self.assertIn("ValueError: testSecret refused the new password", final[0]["reason"])
        # Retried once (--rotation-attempts 2) before giving up.
        self.assertEqual(len(self.failures(name)), 2)
        value = self.sm.get_secret_value(SecretId=name)
        self.assertEqual((value["VersionId"], value["SecretString"]),
                         (created["VersionId"], "keep me"))
        stages = self.sm.describe_secret(SecretId=name)["VersionIdsToStages"]
        self.assertEqual(stages[version], ["AWSPENDING"])
        # A new rotation may start: it takes AWSPENDING to its own version.
        again = self.sm.rotate_secret(SecretId=name)["VersionId"]
        self.assertNotEqual(again, version)

    def test_a_handler_nobody_serves_is_named_in_the_failure(self):
        name = unique("unserved")
        self.sm.create_secret(Name=name, SecretString="x")
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN="nobody-serves-this")
        failure = until("the failure", lambda: self.failures(name))[0]
        self.assertIn("handler nobody-serves-this not reachable", failure["reason"])
        self.assertIn("keyledger.rotate.nobody-serves-this", failure["reason"])

    def test_a_slow_step_times_out_and_a_second_rotation_waits(self):
        name = unique("slow")
        self.sm.create_secret(Name=name, SecretString="x")
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN="slow-set")
        message = self.assertCode("InvalidRequestException", self.sm.rotate_secret,
                                  SecretId=name)
        self.assertIn("A previous rotation isn't complete", message)
        failure = until("the timeout", lambda: self.failures(name))[0]
        self.assertEqual(failure["step"], "setSecret")
        self.assertIn("setSecret timed out: handler slow-set did not answer within 2s",
                      failure["reason"])

    def test_cancelling_names_the_version_left_with_awspending(self):
        name = unique("cancelled")
        self.sm.create_secret(Name=name, SecretString="x")
        version = self.sm.rotate_secret(SecretId=name, RotationLambdaARN="slow-set",
                                        RotationRules={"ScheduleExpression": "rate(4 hours)"}
                                        )["VersionId"]
        cancelled = self.sm.cancel_rotate_secret(SecretId=name)
        self.assertEqual(cancelled["VersionId"], version)
        described = self.sm.describe_secret(SecretId=name)
        self.assertFalse(described["RotationEnabled"])
        self.assertNotIn("NextRotationDate", described)
        (event,) = [e for e in history(name) if e["type"] == "secret.rotation_cancelled"]
        self.assertEqual(event["pending"], version)

    def test_awspending_left_on_a_version_without_a_value_is_shown_and_moves(self):
        name = unique("cancelled-early")
        v1 = self.sm.create_secret(Name=name, SecretString="x")["VersionId"]
        # The handler is still in createSecret (8 s): the run's version has no value.
        version = self.sm.rotate_secret(SecretId=name, RotationLambdaARN="slow-create")[
            "VersionId"]
        self.assertEqual(self.sm.describe_secret(SecretId=name)["VersionIdsToStages"],
                         {v1: ["AWSCURRENT"], version: ["AWSPENDING"]})
        self.sm.cancel_rotate_secret(SecretId=name)
        # As AWS, the cancelled run leaves AWSPENDING where it was, and says where.
        stages = self.sm.describe_secret(SecretId=name)["VersionIdsToStages"]
        self.assertEqual(stages, {v1: ["AWSCURRENT"], version: ["AWSPENDING"]})
        listed = self.sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])
        self.assertEqual(listed["SecretList"][0]["SecretVersionsToStages"], stages)
        message = self.assertCode("InvalidParameterException",
                                  self.sm.update_secret_version_stage, SecretId=name,
                                  VersionStage="AWSPENDING", MoveToVersionId=v1)
        self.assertIn(version, message)
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="AWSPENDING",
                                            RemoveFromVersionId=version)
        self.assertEqual(self.sm.describe_secret(SecretId=name)["VersionIdsToStages"],
                         {v1: ["AWSCURRENT"]})

    def test_a_handler_serves_only_its_projects(self):
        # Bob, of project other, names the handler that serves project demo only.
        other = boto3.client("secretsmanager",
                             aws_access_key_id=os.environ["OTHER_ACCESS_KEY_ID"],
                             aws_secret_access_key=os.environ["OTHER_SECRET_ACCESS_KEY"])
        name = unique("elsewhere")
        other.create_secret(Name=name, SecretString="x")
        other.rotate_secret(SecretId=name, RotationLambdaARN="template")
        failure = until("the refusal", lambda: [
            e for e in history(name, os.environ["OTHER_TOKEN"])
            if e["type"] == "secret.rotation_step_failed"])[0]
        self.assertIn("PermissionError", failure["reason"])
        self.assertIn("an account this handler does not serve", failure["reason"])
        self.assertEqual(other.get_secret_value(SecretId=name)["SecretString"], "x")

    def test_a_reused_token_starts_a_run_that_records_its_own_steps(self):
        name = unique("again")
        self.sm.create_secret(Name=name, SecretString="x")
        token = str(uuid.uuid4())
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN="nobody-serves-this",
                              ClientRequestToken=token)
        until("the first run to fail for good", lambda: [
            f for f in self.failures(name) if "retry_at" not in f])
        # The same token again, now with a handler that works: a new run of the same
        # version, whose steps are recorded as its own.
        again = self.sm.rotate_secret(SecretId=name, RotationLambdaARN="template",
                                      ClientRequestToken=token)
        self.assertEqual(again["VersionId"], token)
        until("the second run to finish", lambda: "LastRotatedDate" in
              self.sm.describe_secret(SecretId=name))
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["VersionId"], token)

    def test_a_cron_schedule_names_the_next_rotation_in_utc(self):
        name = unique("cron")
        self.sm.create_secret(Name=name, SecretString="x")
        self.sm.rotate_secret(SecretId=name, RotationLambdaARN="template", RotateImmediately=False,
                              RotationRules={"ScheduleExpression": "cron(0 16 1,15 * ? *)",
                                             "Duration": "2h"})
        described = self.sm.describe_secret(SecretId=name)
        self.assertTrue(described["RotationEnabled"])
        self.assertEqual(described["RotationRules"],
                         {"ScheduleExpression": "cron(0 16 1,15 * ? *)", "Duration": "2h"})
        after = described["NextRotationDate"].astimezone(datetime.timezone.utc)
        self.assertEqual((after.day in (1, 15), after.hour, after.minute), (True, 16, 0))
        self.assertGreater(after, datetime.datetime.now(datetime.timezone.utc))
        self.assertLess(after - datetime.datetime.now(datetime.timezone.utc),
                        datetime.timedelta(days=17))
        self.assertNotIn("LastRotatedDate", described)

    def test_bad_rotation_input_is_refused_with_what_to_do(self):
        name = unique("bad")
        self.sm.create_secret(Name=name, SecretString="x")
        message = self.assertCode("InvalidParameterException", self.sm.rotate_secret,
                                  SecretId=name)
        self.assertIn("RotationLambdaARN", message)
        message = self.assertCode("InvalidParameterException", self.sm.rotate_secret,
                                  SecretId=name, RotationLambdaARN="template",
                                  RotationRules={"ScheduleExpression": "cron(0 16 1,15 * * *)"})
        self.assertIn("? in exactly one of day-of-month and day-of-week", message)
        self.assertCode("InvalidParameterException", self.sm.rotate_secret, SecretId=name,
                        RotationLambdaARN="template",
                        RotationRules={"AutomaticallyAfterDays": 1001})
        self.assertCode("InvalidParameterException", self.sm.rotate_secret, SecretId=name,
                        RotationLambdaARN="arn:aws:s3:::bucket")
        message = self.assertCode("InvalidParameterException", self.sm.rotate_secret,
                                  SecretId=name, RotationLambdaARN="template",
                                  RotationRules={})
        self.assertIn("AutomaticallyAfterDays", message)
        self.assertCode("InvalidParameterException", self.sm.rotate_secret, SecretId=name,
                        RotationLambdaARN="template",
                        RotationRules={"ScheduleExpression": "rate(4 hours)", "Duration": "5h"})


if __name__ == "__main__":
    unittest.main()
