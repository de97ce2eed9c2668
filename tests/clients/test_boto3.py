"""boto3 against a real `keyledger up`, configured as a user points an AWS SDK at it:
AWS_ENDPOINT_URL_SECRETS_MANAGER and a key pair from `keyledger access-key create`.

Environment (set by tests/aws_clients.rs):
  AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  AWS_DEFAULT_REGION   alice, admin of project demo
  AUDITOR_ACCESS_KEY_ID, AUDITOR_SECRET_ACCESS_KEY   carol, role audit in demo
  OTHER_ACCESS_KEY_ID, OTHER_SECRET_ACCESS_KEY       bob, admin of project other
  KEYLEDGER_URL, KEYLEDGER_TOKEN                     Barbican's API, as alice
"""
import datetime
import json
import os
import re
import unittest
import urllib.error
import urllib.request
import uuid

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
from botocore.exceptions import ClientError

ENDPOINT = os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"]
REGION = os.environ["AWS_DEFAULT_REGION"]


def client(key=None, secret=None):
    return boto3.client(
        "secretsmanager",
        aws_access_key_id=key or os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or os.environ["AWS_SECRET_ACCESS_KEY"],
    )


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def pages(call, **kwargs):
    """Every page of a listing botocore has no paginator for, following NextToken."""
    while True:
        page = call(**kwargs)
        yield page
        if "NextToken" not in page:
            return
        kwargs["NextToken"] = page["NextToken"]


def barbican(method, path, body=None, headers=None):
    """A request to keyledger's Barbican API as alice."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        os.environ["KEYLEDGER_URL"] + path, data=data, method=method,
        headers={"X-Auth-Token": os.environ["KEYLEDGER_TOKEN"],
                 "Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request) as response:
        return response.read()


class Boto3(unittest.TestCase):
    def setUp(self):
        self.sm = client()

    def assertCode(self, code, call, *args, **kwargs):
        with self.assertRaises(ClientError) as caught:
            call(*args, **kwargs)
        error = caught.exception.response["Error"]
        self.assertEqual(error["Code"], code, error)
        return error["Message"]

    def test_a_string_and_a_binary_secret_round_trip(self):
        name = unique("app/db")
        created = self.sm.create_secret(Name=name, SecretString='{"password":"pw1"}')
        self.assertRegex(
            created["ARN"],
            rf"^arn:aws:secretsmanager:{REGION}:\d{{12}}:secret:{re.escape(name)}-[A-Za-z0-9]{{6}}$")
        self.assertEqual(created["Name"], name)
        got = self.sm.get_secret_value(SecretId=name)
        self.assertEqual(got["SecretString"], '{"password":"pw1"}')
        self.assertEqual(got["VersionId"], created["VersionId"])
        self.assertEqual(got["VersionStages"], ["AWSCURRENT"])
        self.assertIsInstance(got["CreatedDate"], datetime.datetime)
        self.assertEqual(self.sm.get_secret_value(SecretId=created["ARN"])["ARN"], created["ARN"])

        raw = bytes(range(256))
        binary = self.sm.create_secret(Name=unique("blob"), SecretBinary=raw)
        got = self.sm.get_secret_value(SecretId=binary["ARN"])
        self.assertEqual(got["SecretBinary"], raw)
        self.assertNotIn("SecretString", got)

    def test_a_client_request_token_names_the_version_and_makes_retries_safe(self):
        token = str(uuid.uuid4())
        name = unique("token")
        first = self.sm.create_secret(Name=name, SecretString="v1", ClientRequestToken=token)
        self.assertEqual(first["VersionId"], token)
        again = self.sm.create_secret(Name=name, SecretString="v1", ClientRequestToken=token)
        self.assertEqual(again["ARN"], first["ARN"])
        message = self.assertCode("ResourceExistsException", self.sm.create_secret, Name=name,
                                  SecretString="other", ClientRequestToken=token)
        self.assertIn("This ClientRequestToken was used for it with another value", message)
        self.assertCode("ResourceExistsException", self.sm.create_secret, Name=name,
                        SecretString="v1")
        # The same token without the value is another request, either way round.
        message = self.assertCode("ResourceExistsException", self.sm.create_secret, Name=name,
                                  ClientRequestToken=token)
        self.assertIn("This ClientRequestToken was used for it with another value", message)
        bare = unique("token-bare")
        bare_token = str(uuid.uuid4())
        made = self.sm.create_secret(Name=bare, ClientRequestToken=bare_token)
        self.assertNotIn("VersionId", made)
        self.assertEqual(self.sm.create_secret(Name=bare, ClientRequestToken=bare_token)["ARN"],
                         made["ARN"])
        message = self.assertCode("ResourceExistsException", self.sm.create_secret, Name=bare,
                                  SecretString="v1", ClientRequestToken=bare_token)
        self.assertIn("This ClientRequestToken was used for it with another value", message)

    def test_put_moves_awscurrent_and_awsprevious_follows(self):
        name = unique("rotating")
        v1 = self.sm.create_secret(Name=name, SecretString="one")["VersionId"]
        token = str(uuid.uuid4())
        put = self.sm.put_secret_value(SecretId=name, SecretString="two", ClientRequestToken=token)
        self.assertEqual(put["VersionId"], token)
        self.assertEqual(put["VersionStages"], ["AWSCURRENT"])
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "two")
        previous = self.sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
        self.assertEqual((previous["SecretString"], previous["VersionId"]), ("one", v1))
        self.assertEqual(
            self.sm.get_secret_value(SecretId=name, VersionId=v1)["SecretString"], "one")
        # The same token and value: no new version; another value: refused.
        again = self.sm.put_secret_value(SecretId=name, SecretString="two", ClientRequestToken=token)
        self.assertEqual(again["VersionId"], token)
        self.assertCode("ResourceExistsException", self.sm.put_secret_value, SecretId=name,
                        SecretString="three", ClientRequestToken=token)
        stages = self.sm.describe_secret(SecretId=name)["VersionIdsToStages"]
        self.assertEqual(stages, {token: ["AWSCURRENT"], v1: ["AWSPREVIOUS"]})
        # AWSPENDING holds a value beside AWSCURRENT.
        pending = self.sm.put_secret_value(SecretId=name, SecretString="next",
                                           VersionStages=["AWSPENDING"])
        self.assertEqual(self.sm.get_secret_value(SecretId=name, VersionStage="AWSPENDING")
                         ["VersionId"], pending["VersionId"])
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "two")
        self.assertCode("InvalidRequestException", self.sm.get_secret_value, SecretId=name,
                        VersionId=v1, VersionStage="AWSCURRENT")

    def test_a_first_value_is_awscurrent_whatever_labels_it_is_given(self):
        name = unique("first")
        self.sm.create_secret(Name=name)
        first = self.sm.put_secret_value(SecretId=name, SecretString="p",
                                         VersionStages=["AWSPENDING"])
        self.assertEqual(sorted(first["VersionStages"]), ["AWSCURRENT", "AWSPENDING"])
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "p")
        # The next value takes only the labels it names.
        second = self.sm.put_secret_value(SecretId=name, SecretString="q",
                                          VersionStages=["AWSPENDING"])
        self.assertEqual(second["VersionStages"], ["AWSPENDING"])
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "p")

    def test_custom_staging_labels(self):
        name = unique("labels")
        v1 = self.sm.create_secret(Name=name, SecretString="one")["VersionId"]
        put = self.sm.put_secret_value(SecretId=name, SecretString="two",
                                       VersionStages=["Canary", "blue-green"])
        v2 = put["VersionId"]
        self.assertEqual(sorted(put["VersionStages"]), ["Canary", "blue-green"])
        # Read by a custom label; AWSCURRENT stayed on the first version.
        self.assertEqual(self.sm.get_secret_value(SecretId=name, VersionStage="Canary")
                         ["SecretString"], "two")
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "one")
        # Labels are case-sensitive: "canary" is another label, on no version.
        self.assertCode("ResourceNotFoundException", self.sm.get_secret_value, SecretId=name,
                        VersionStage="canary")
        # Moving a label off another version must name that version, as in AWS.
        message = self.assertCode("InvalidParameterException", self.sm.update_secret_version_stage,
                                  SecretId=name, VersionStage="Canary", MoveToVersionId=v1)
        self.assertIn("RemoveFromVersionId", message)
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="Canary",
                                            MoveToVersionId=v1, RemoveFromVersionId=v2)
        stages = self.sm.describe_secret(SecretId=name)["VersionIdsToStages"]
        self.assertEqual(sorted(stages[v1]), ["AWSCURRENT", "Canary"])
        self.assertEqual(stages[v2], ["blue-green"])
        listed = {v["VersionId"]: sorted(v["VersionStages"])
                  for v in self.sm.list_secret_version_ids(SecretId=name)["Versions"]}
        self.assertEqual(listed[v1], ["AWSCURRENT", "Canary"])
        # Taken off, a custom label is gone; at most 20 labels on one version.
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="blue-green",
                                            RemoveFromVersionId=v2)
        self.assertCode("InvalidParameterException", self.sm.put_secret_value, SecretId=name,
                        SecretString="three", VersionStages=[f"l{i}" for i in range(21)])
        message = self.assertCode("InvalidParameterException", self.sm.put_secret_value,
                                  SecretId=name, SecretString="three",
                                  VersionStages=["bad\u202elabel"])
        self.assertIn("U+202E", message)

    def test_a_label_holding_a_comma_is_one_label(self):
        # A custom label may hold any visible character: "x,AWSCURRENT" is one label,
        # and AWSCURRENT stays where it was.
        name = unique("comma")
        v1 = self.sm.create_secret(Name=name, SecretString="one")["VersionId"]
        v2 = self.sm.put_secret_value(SecretId=name, SecretString="two",
                                      VersionStages=["x,AWSCURRENT"])["VersionId"]
        self.assertEqual(self.sm.describe_secret(SecretId=name)["VersionIdsToStages"],
                         {v1: ["AWSCURRENT"], v2: ["x,AWSCURRENT"]})
        got = self.sm.get_secret_value(SecretId=name, VersionStage="x,AWSCURRENT")
        self.assertEqual((got["SecretString"], got["VersionStages"]), ("two", ["x,AWSCURRENT"]))
        current = self.sm.get_secret_value(SecretId=name)
        self.assertEqual((current["VersionId"], current["VersionStages"]), (v1, ["AWSCURRENT"]))
        listed = {v["VersionId"]: v["VersionStages"]
                  for v in self.sm.list_secret_version_ids(SecretId=name)["Versions"]}
        self.assertEqual(listed, {v1: ["AWSCURRENT"], v2: ["x,AWSCURRENT"]})

    def test_labels_stay_where_they_are_on_a_secret_of_more_than_a_page_of_versions(self):
        # 101 values: more versions than a page of them (100) holds, the labelled ones
        # last. DescribeSecret and ListSecrets still name them, as rotation needs.
        name = unique("many")
        self.sm.create_secret(Name=name, SecretString="v0")
        versions = [self.sm.put_secret_value(SecretId=name, SecretString=f"v{i}")["VersionId"]
                    for i in range(1, 102)]
        expected = {versions[-1]: ["AWSCURRENT"], versions[-2]: ["AWSPREVIOUS"]}
        self.assertEqual(self.sm.describe_secret(SecretId=name)["VersionIdsToStages"], expected)
        (entry,) = self.sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]
        self.assertEqual(entry["SecretVersionsToStages"], expected)

    def test_a_create_retried_after_its_secret_was_deleted_says_so(self):
        name = unique("retried")
        token = str(uuid.uuid4())
        self.sm.create_secret(Name=name, SecretString="a", ClientRequestToken=token)
        self.sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
        # Retried while the secret waits out its recovery window: as AWS answers.
        with self.assertRaises(ClientError) as pending:
            self.sm.create_secret(Name=name, SecretString="a", ClientRequestToken=token)
        self.assertEqual(pending.exception.response["Error"]["Code"], "InvalidRequestException")
        self.assertIn("scheduled for deletion", pending.exception.response["Error"]["Message"])
        # Retried once it is gone: neither its ARN nor "already exists", but what to do.
        # (Whether the command service still knows the command id decides which error.)
        self.sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        with self.assertRaises(ClientError) as gone:
            self.sm.create_secret(Name=name, SecretString="a", ClientRequestToken=token)
        error = gone.exception.response["Error"]
        self.assertIn(error["Code"], ["InvalidRequestException", "ResourceExistsException"])
        self.assertIn("ClientRequestToken", error["Message"])
        self.assertNotIn("already exists", error["Message"])
        self.sm.create_secret(Name=name, SecretString="b", ClientRequestToken=str(uuid.uuid4()))
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "b")

    def test_a_secret_barbican_made_without_a_name_is_found_by_the_name_shown(self):
        # AWS's answers name it by its id; given back as a SecretId, it finds it.
        ref = json.loads(barbican("POST", "/v1/secrets", {
            "payload": "nameless", "payload_content_type": "text/plain"}))["secret_ref"]
        secret_id = ref.rsplit("/", 1)[1]
        described = self.sm.describe_secret(SecretId=secret_id)
        self.assertEqual(described["Name"], secret_id)
        self.assertEqual(self.sm.get_secret_value(SecretId=described["Name"])["SecretString"],
                         "nameless")

    def test_a_put_answers_with_the_labels_stored(self):
        name = unique("replay")
        self.sm.create_secret(Name=name, SecretString="a")
        token = str(uuid.uuid4())
        first = self.sm.put_secret_value(SecretId=name, SecretString="b",
                                         ClientRequestToken=token)
        self.assertEqual(first["VersionStages"], ["AWSCURRENT"])
        # A replay changes nothing, whatever labels it names.
        again = self.sm.put_secret_value(SecretId=name, SecretString="b",
                                         ClientRequestToken=token, VersionStages=["custom"])
        self.assertEqual((again["VersionId"], again["VersionStages"]),
                         (first["VersionId"], ["AWSCURRENT"]))
        twice = self.sm.put_secret_value(SecretId=name, SecretString="c",
                                         VersionStages=["x2", "x2"])
        self.assertEqual(twice["VersionStages"], ["x2"])

    def test_a_create_without_a_value_checks_its_token_too(self):
        unchecked = boto3.client(
            "secretsmanager",
            aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            config=botocore.config.Config(parameter_validation=False))
        for token in ["x" * 200, "short"]:
            message = self.assertCode("InvalidParameterException", unchecked.create_secret,
                                      Name=unique("token"), ClientRequestToken=token)
            self.assertIn("32 to 64", message)
        # A member of the wrong type is named, its value never repeated.
        message = self.assertCode("SerializationException", unchecked.get_secret_value,
                                  SecretId=1234567)
        self.assertIn("member SecretId: invalid type: integer", message)
        self.assertNotIn("1234567", message)

    def test_a_refused_update_changes_nothing(self):
        name = unique("update")
        token = str(uuid.uuid4())
        self.sm.create_secret(Name=name, SecretString="a", Description="before")
        self.sm.put_secret_value(SecretId=name, SecretString="b", ClientRequestToken=token)
        # Both values at once, and a token already used for another value: refused,
        # and the description stays.
        with self.assertRaises(ClientError) as both:
            self.sm.update_secret(SecretId=name, SecretString="c", SecretBinary=b"c",
                                  Description="after")
        self.assertEqual(both.exception.response["Error"]["Code"], "InvalidParameterException")
        with self.assertRaises(ClientError) as reused:
            self.sm.update_secret(SecretId=name, SecretString="c", ClientRequestToken=token,
                                  Description="after")
        self.assertEqual(reused.exception.response["Error"]["Code"], "ResourceExistsException")
        self.assertEqual(self.sm.describe_secret(SecretId=name)["Description"], "before")
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "b")
        # Accepted, it sets both.
        self.sm.update_secret(SecretId=name, SecretString="c", Description="after")
        self.assertEqual(self.sm.describe_secret(SecretId=name)["Description"], "after")
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "c")

    def test_a_value_at_the_limit_passes_however_botocore_escapes_it(self):
        # botocore writes each non-ASCII character as a six-byte \uXXXX: 64 KiB of
        # "é" (two bytes each in UTF-8) is a 192 KiB JSON string.
        name = unique("escaped")
        value = "\u00e9" * 32768
        self.sm.create_secret(Name=name, SecretString=value)
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], value)
        # One byte more is the payload limit's refusal, not the body's.
        with self.assertRaises(ClientError) as over:
            self.sm.put_secret_value(SecretId=name, SecretString=value + "x")
        error = over.exception.response["Error"]
        self.assertIn("the limit is 65536 bytes", error["Message"])
        self.assertNotIn("request body", error["Message"])

    def test_describe_and_list_with_filters_and_pages(self):
        prefix = unique("list")
        arns = [self.sm.create_secret(Name=f"{prefix}/{i}", SecretString=str(i),
                                      Tags=[{"Key": "team", "Value": f"t{i % 2}"}])["ARN"]
                for i in range(3)]
        described = self.sm.describe_secret(SecretId=arns[0])
        self.assertEqual(described["Tags"], [{"Key": "team", "Value": "t0"}])
        # Listed entries name their labelled versions, as DescribeSecret does.
        (entry,) = self.sm.list_secrets(Filters=[{"Key": "name", "Values": [f"{prefix}/0"]}]
                                        )["SecretList"]
        self.assertEqual(entry["SecretVersionsToStages"], described["VersionIdsToStages"])
        self.assertIsInstance(described["CreatedDate"], datetime.datetime)
        self.assertFalse(described["RotationEnabled"])

        def names(**kwargs):
            pages = self.sm.get_paginator("list_secrets").paginate(**kwargs)
            return sorted(s["Name"] for page in pages for s in page["SecretList"])

        self.assertEqual(names(Filters=[{"Key": "name", "Values": [prefix]}]),
                         [f"{prefix}/{i}" for i in range(3)])
        self.assertEqual(
            names(Filters=[{"Key": "name", "Values": [prefix]},
                           {"Key": "tag-value", "Values": ["t1"]}]), [f"{prefix}/1"])
        self.assertEqual(
            names(Filters=[{"Key": "name", "Values": [prefix]},
                           {"Key": "tag-value", "Values": ["!t1"]}]),
            [f"{prefix}/0", f"{prefix}/2"])
        # One per page: the paginator follows NextToken through all three.
        pages = list(self.sm.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [prefix]}], PaginationConfig={"PageSize": 1}))
        self.assertEqual(sum(len(p["SecretList"]) for p in pages), 3)
        self.assertGreaterEqual(len(pages), 3)
        self.assertCode("InvalidNextTokenException", self.sm.list_secrets, NextToken="bm9wZQ")
        self.assertCode("InvalidParameterException", self.sm.list_secrets,
                        Filters=[{"Key": "colour", "Values": ["red"]}])
        # AWS's bounds on filters, and keyledger's on the words of `all`.
        self.assertCode("InvalidParameterException", self.sm.list_secrets,
                        Filters=[{"Key": "name", "Values": ["x"]}] * 11)
        self.assertCode("InvalidParameterException", self.sm.list_secrets,
                        Filters=[{"Key": "all", "Values": [" ".join(["w"] * 65)]}])
        self.assertEqual(names(Filters=[{"Key": "all", "Values": [f"{prefix.upper()} T1"]}]),
                         [f"{prefix}/1"])
        self.assertCode("InvalidParameterException", self.sm.create_secret,
                        Name=unique("dup"), SecretString="x",
                        Tags=[{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}])

    def test_delete_with_a_recovery_window_restore_and_force(self):
        name = unique("doomed")
        first = self.sm.create_secret(Name=name, SecretString="x")
        deleted = self.sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
        self.assertIsInstance(deleted["DeletionDate"], datetime.datetime)
        self.assertCode("InvalidRequestException", self.sm.get_secret_value, SecretId=name)
        message = self.assertCode("InvalidRequestException", self.sm.create_secret, Name=name,
                                  SecretString="y")
        self.assertIn("scheduled for deletion", message)
        self.assertCode("InvalidRequestException", self.sm.delete_secret, SecretId=name)
        self.assertIn("DeletedDate", self.sm.describe_secret(SecretId=name))
        planned = self.sm.list_secrets(IncludePlannedDeletion=True,
                                       Filters=[{"Key": "name", "Values": [name]}])
        self.assertEqual([s["Name"] for s in planned["SecretList"]], [name])
        hidden = self.sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])
        self.assertEqual(hidden["SecretList"], [])

        self.sm.restore_secret(SecretId=name)
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "x")

        self.assertCode("InvalidParameterException", self.sm.delete_secret, SecretId=name,
                        RecoveryWindowInDays=3)
        self.assertCode("InvalidParameterException", self.sm.delete_secret, SecretId=name,
                        RecoveryWindowInDays=7, ForceDeleteWithoutRecovery=True)
        self.sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        self.assertCode("ResourceNotFoundException", self.sm.get_secret_value, SecretId=name)
        # Deleting what is gone, by force, succeeds (as AWS documents).
        self.sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        # The name is free again, for a secret with a new ARN.
        second = self.sm.create_secret(Name=name, SecretString="z")
        self.assertNotEqual(second["ARN"], first["ARN"])
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "z")

    def test_a_partial_arn_and_a_name_ending_in_six_characters_resolve_or_name_both(self):
        base = unique("db")
        first = self.sm.create_secret(Name=base, SecretString="first")
        suffix = first["ARN"].rsplit("-", 1)[1]
        partial = first["ARN"].rsplit("-", 1)[0]
        self.assertEqual(self.sm.get_secret_value(SecretId=partial)["SecretString"], "first")
        # A second secret whose name is the first one's name and suffix: it cannot take
        # over the first one's full ARN, which names exactly one secret.
        second = self.sm.create_secret(Name=f"{base}-{suffix}", SecretString="second")
        self.assertEqual(
            self.sm.get_secret_value(SecretId=first["ARN"])["SecretString"], "first")
        self.assertEqual(
            self.sm.get_secret_value(SecretId=second["ARN"])["SecretString"], "second")
        # The name `<base>-<suffix>` reads two ways: both are named, with their ARNs.
        message = self.assertCode("InvalidParameterException", self.sm.get_secret_value,
                                  SecretId=f"{base}-{suffix}")
        self.assertIn(first["ARN"], message)
        self.assertIn(second["ARN"], message)
        # A secret Barbican's API gives the same name does not hide the AWS one.
        barbican("POST", "/v1/secrets", {"name": base, "payload": "shadow",
                                         "payload_content_type": "text/plain"})
        self.assertEqual(self.sm.get_secret_value(SecretId=base)["SecretString"], "first")

    def test_versions_labels_and_moving_them(self):
        name = unique("labels")
        v1 = self.sm.create_secret(Name=name, SecretString="one")["VersionId"]
        v2 = self.sm.put_secret_value(SecretId=name, SecretString="two")["VersionId"]
        v3 = self.sm.put_secret_value(SecretId=name, SecretString="three",
                                      VersionStages=["AWSPENDING"])["VersionId"]
        v4 = self.sm.put_secret_value(SecretId=name, SecretString="four",
                                      VersionStages=["AWSPENDING"])["VersionId"]

        def versions(**kwargs):
            return {v["VersionId"]: v["VersionStages"]
                    for p in pages(self.sm.list_secret_version_ids, SecretId=name,
                                   MaxResults=1, **kwargs)
                    for v in p["Versions"]}

        self.assertEqual(versions(), {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"],
                                      v4: ["AWSPENDING"]})
        self.assertEqual(versions(IncludeDeprecated=True)[v3], [])
        # AWSCURRENT sits on v2: moving it needs RemoveFromVersionId, as in AWS.
        message = self.assertCode("InvalidParameterException",
                                  self.sm.update_secret_version_stage, SecretId=name,
                                  VersionStage="AWSCURRENT", MoveToVersionId=v4)
        self.assertIn(v2, message)
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="AWSCURRENT",
                                            MoveToVersionId=v4, RemoveFromVersionId=v2)
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "four")
        self.assertEqual(self.sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
                         ["VersionId"], v2)
        # Taking AWSPENDING off the version it is on.
        self.sm.update_secret_version_stage(SecretId=name, VersionStage="AWSPENDING",
                                            RemoveFromVersionId=v4)
        self.assertNotIn("AWSPENDING", versions()[v4])

    def test_update_secret_tags_and_random_passwords(self):
        name = unique("update")
        self.sm.create_secret(Name=name, SecretString="old")
        updated = self.sm.update_secret(SecretId=name, SecretString="new")
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["VersionId"],
                         updated["VersionId"])
        # A description: set on update, shown by DescribeSecret and ListSecrets, found
        # by the description filter (a prefix, in any case), cleared by an empty one.
        self.sm.update_secret(SecretId=name, Description="Orders DB password")
        self.assertEqual(self.sm.describe_secret(SecretId=name)["Description"],
                         "Orders DB password")
        found = self.sm.list_secrets(Filters=[{"Key": "description", "Values": ["orders db"]},
                                              {"Key": "name", "Values": [name]}])["SecretList"]
        self.assertEqual([(s["Name"], s["Description"]) for s in found],
                         [(name, "Orders DB password")])
        self.sm.update_secret(SecretId=name, Description="")
        self.assertNotIn("Description", self.sm.describe_secret(SecretId=name))
        described = unique("described")
        self.sm.create_secret(Name=described, SecretString="x", Description="made with one")
        self.assertEqual(self.sm.describe_secret(SecretId=described)["Description"],
                         "made with one")
        self.assertCode("InvalidParameterException", self.sm.update_secret, SecretId=name,
                        Description="x" * 2049)

        self.sm.tag_resource(SecretId=name, Tags=[{"Key": "env", "Value": "prod"},
                                                  {"Key": "team", "Value": "db"}])
        self.sm.untag_resource(SecretId=name, TagKeys=["team", "absent"])
        self.assertEqual(self.sm.describe_secret(SecretId=name)["Tags"],
                         [{"Key": "env", "Value": "prod"}])

        password = self.sm.get_random_password()["RandomPassword"]
        self.assertEqual(len(password), 32)
        short = self.sm.get_random_password(PasswordLength=20, ExcludePunctuation=True,
                                            ExcludeCharacters="abc")["RandomPassword"]
        self.assertEqual(len(short), 20)
        self.assertTrue(short.isalnum(), short)
        self.assertFalse(set(short) & set("abc"), short)

    def test_batch_get_by_ids_and_by_filters(self):
        prefix = unique("batch")
        arns = [self.sm.create_secret(Name=f"{prefix}-{i}", SecretString=f"v{i}")["ARN"]
                for i in range(3)]
        missing = unique("absent")
        got = self.sm.batch_get_secret_value(SecretIdList=[arns[0], f"{prefix}-1", missing])
        self.assertEqual(sorted(v["SecretString"] for v in got["SecretValues"]), ["v0", "v1"])
        self.assertEqual([(e["SecretId"], e["ErrorCode"]) for e in got["Errors"]],
                         [(missing, "ResourceNotFoundException")])
        values = sorted(v["SecretString"]
                        for p in pages(self.sm.batch_get_secret_value, MaxResults=1,
                                       Filters=[{"Key": "name", "Values": [prefix]}])
                        for v in p["SecretValues"])
        self.assertEqual(values, ["v0", "v1", "v2"])

    def test_errors_say_what_is_wrong(self):
        self.assertCode("ResourceNotFoundException", self.sm.get_secret_value,
                        SecretId=unique("missing"))
        self.assertCode("ResourceNotFoundException", self.sm.describe_secret,
                        SecretId=f"arn:aws:secretsmanager:{REGION}:000000000000:secret:x")
        bad = client(secret="not-the-secret-access-key-0123456789")
        self.assertCode("InvalidSignatureException", bad.list_secrets)
        unknown = client(key="AKLGUNKNOWNUNKNOWN00", secret="whatever-whatever-whatever")
        message = self.assertCode("UnrecognizedClientException", unknown.list_secrets)
        self.assertIn("keyledger access-key", message)
        message = self.assertCode("InvalidRequestException", self.sm.get_resource_policy,
                                  SecretId="x")
        self.assertIn("PUT /v1/secrets/{id}/acl", message)

    def test_a_revoked_key_is_refused_from_the_next_request(self):
        # Signatures are checked against access keys kept in memory beside the
        # projector: a revocation the API has answered holds for the very next request,
        # though the key was just used (and so held).
        made = json.loads(barbican("POST", "/v1/access-keys", {}))
        mine = client(key=made["access_key_id"], secret=made["secret_access_key"])
        for _ in range(3):
            mine.list_secrets(MaxResults=1)
        barbican("DELETE", f"/v1/access-keys/{made['access_key_id']}")
        message = self.assertCode("UnrecognizedClientException", mine.list_secrets)
        self.assertIn("revoked", message)

    def test_a_name_resolves_to_what_the_last_write_left(self):
        # Names are resolved from memory beside the projector: a secret created under a
        # name just used (and so held), or one deleted, changes what the very next
        # request finds.
        name = unique("held")
        barbican("POST", "/v1/secrets", {"name": name, "payload": "first",
                                         "payload_content_type": "text/plain"})
        for _ in range(3):
            self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "first")
        second = json.loads(barbican("POST", "/v1/secrets", {
            "name": name, "payload": "second",
            "payload_content_type": "text/plain"}))["secret_ref"]
        message = self.assertCode("InvalidParameterException", self.sm.get_secret_value,
                                  SecretId=name)
        self.assertIn("names 2 secrets", message)
        barbican("DELETE", "/v1/secrets/" + second.rsplit("/", 1)[1])
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "first")

        # Deleted for good, then created again under its name: the new secret.
        self.sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        self.assertCode("ResourceNotFoundException", self.sm.get_secret_value, SecretId=name)
        self.sm.create_secret(Name=name, SecretString="third")
        self.assertEqual(self.sm.get_secret_value(SecretId=name)["SecretString"], "third")

    def test_a_clock_off_by_twenty_minutes_is_refused(self):
        real = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: real() - datetime.timedelta(minutes=20)
        try:
            message = self.assertCode("InvalidSignatureException", self.sm.list_secrets)
        finally:
            botocore.auth.get_current_datetime = real
        self.assertIn("Signature expired", message)

    def test_a_signature_for_another_service_is_refused(self):
        credentials = botocore.credentials.Credentials(
            os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
        request = botocore.awsrequest.AWSRequest(
            method="POST", url=ENDPOINT + "/", data=b"{}",
            headers={"X-Amz-Target": "secretsmanager.ListSecrets",
                     "Content-Type": "application/x-amz-json-1.1"})
        botocore.auth.SigV4Auth(credentials, "kms", REGION).add_auth(request)
        prepared = request.prepare()
        sent = urllib.request.Request(prepared.url, data=prepared.body, method="POST",
                                      headers=dict(prepared.headers))
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(sent)
        self.assertEqual(caught.exception.code, 400)
        body = json.loads(caught.exception.read())
        self.assertEqual(body["__type"], "InvalidSignatureException")
        self.assertIn("secretsmanager", body["message"])

    def test_the_policy_decides_per_key(self):
        name = unique("private")
        arn = self.sm.create_secret(Name=name, SecretString="s")["ARN"]
        auditor = client(os.environ["AUDITOR_ACCESS_KEY_ID"],
                         os.environ["AUDITOR_SECRET_ACCESS_KEY"])
        self.assertCode("AccessDeniedException", auditor.get_secret_value, SecretId=arn)
        # Not even a forced deletion of a name no secret has: the auditor deletes nothing.
        self.assertCode("AccessDeniedException", auditor.delete_secret, SecretId=unique("none"),
                        ForceDeleteWithoutRecovery=True)
        other = client(os.environ["OTHER_ACCESS_KEY_ID"], os.environ["OTHER_SECRET_ACCESS_KEY"])
        # Another project is another account: its ARN names nothing there.
        self.assertCode("ResourceNotFoundException", other.get_secret_value, SecretId=arn)
        self.assertCode("ResourceNotFoundException", other.get_secret_value, SecretId=name)
        self.assertCode("ResourceNotFoundException", other.delete_secret, SecretId=arn,
                        ForceDeleteWithoutRecovery=True)
        self.assertEqual(self.sm.get_secret_value(SecretId=arn)["SecretString"], "s")

    def test_one_secret_whichever_api_made_it(self):
        name = unique("shared")
        self.sm.create_secret(Name=name, SecretString="from-aws")
        payload = barbican("GET", f"/v1/secrets/{name}/payload", headers={"Accept": "text/plain"})
        self.assertEqual(payload, b"from-aws")

        other = unique("barbican")
        barbican("POST", "/v1/secrets", {"name": other, "payload": "from-barbican",
                                         "payload_content_type": "text/plain"})
        self.assertEqual(self.sm.get_secret_value(SecretId=other)["SecretString"], "from-barbican")
        # AWS names are unique, and Barbican's secret holds this one.
        self.assertCode("ResourceExistsException", self.sm.create_secret, Name=other,
                        SecretString="again")


if __name__ == "__main__":
    unittest.main()
