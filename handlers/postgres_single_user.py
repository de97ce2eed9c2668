"""Rotates the password of one PostgreSQL user: keyledger's counterpart of AWS's
SecretsManagerRDSPostgreSQLRotationSingleUser template, with the same four steps and
the same secret shape, run as a keyledger rotation handler by nats_lambda.py:

  nats_lambda.py --handler postgres --module handlers/postgres_single_user.py

The secret's value is JSON: {"engine": "postgres", "username", "password", "dbname",
and "host" with "port" (TCP) or "unix_sock" (the server's socket file, keyledger's
addition)}. The user changes its own password (ALTER ROLE ... PASSWORD), so the
handler needs no other database credentials. The handler calls keyledger's Secrets
Manager API with boto3 (AWS_ENDPOINT_URL_SECRETS_MANAGER and an access key in the
environment) and connects with pg8000, as AWS's template does.

  createSecret  a new password from GetRandomPassword, stored as AWSPENDING
  setSecret     logs in with AWSCURRENT's (or AWSPREVIOUS's) password and sets it
  testSecret    logs in with the new password
  finishSecret  moves AWSCURRENT to the new version
"""
import json
import logging
import os

import boto3
import pg8000

logger = logging.getLogger("keyledger.rotation.postgres")

# Characters AWS's template keeps out of generated passwords.
EXCLUDE_CHARACTERS = os.environ.get("EXCLUDE_CHARACTERS", "/@\"'\\")


def lambda_handler(event, context):
    arn = event["SecretId"]
    token = event["ClientRequestToken"]
    step = event["Step"]
    service_client = boto3.client("secretsmanager")

    metadata = service_client.describe_secret(SecretId=arn)
    if not metadata.get("RotationEnabled"):
        raise ValueError(f"Secret {arn} is not enabled for rotation")
    versions = metadata["VersionIdsToStages"]
    if token not in versions:
        raise ValueError(f"Secret version {token} has no stage for rotation of secret {arn}.")
    if "AWSCURRENT" in versions[token]:
        logger.info("Secret version %s already set as AWSCURRENT for secret %s.", token, arn)
        return
    if "AWSPENDING" not in versions[token]:
        raise ValueError(
            f"Secret version {token} not set as AWSPENDING for rotation of secret {arn}.")

    if step == "createSecret":
        create_secret(service_client, arn, token)
    elif step == "setSecret":
        set_secret(service_client, arn, token)
    elif step == "testSecret":
        test_secret(service_client, arn, token)
    elif step == "finishSecret":
        finish_secret(service_client, arn, token)
    else:
        raise ValueError(f"Invalid step parameter {step} for secret {arn}")


def create_secret(service_client, arn, token):
    current = get_secret_dict(service_client, arn, "AWSCURRENT")
    try:
        get_secret_dict(service_client, arn, "AWSPENDING", token)
        logger.info("createSecret: AWSPENDING already holds a value for %s.", arn)
    except service_client.exceptions.ResourceNotFoundException:
        current["password"] = service_client.get_random_password(
            ExcludeCharacters=EXCLUDE_CHARACTERS)["RandomPassword"]
        service_client.put_secret_value(SecretId=arn, ClientRequestToken=token,
                                        SecretString=json.dumps(current),
                                        VersionStages=["AWSPENDING"])
        logger.info("createSecret: stored a new password for %s as version %s.", arn, token)


def set_secret(service_client, arn, token):
    pending = get_secret_dict(service_client, arn, "AWSPENDING", token)
    conn = connect(pending)
    if conn:
        # A retried setSecret: the password is set already.
        conn.close()
        return
    current = get_secret_dict(service_client, arn, "AWSCURRENT")
    conn = connect(current)
    if not conn:
        try:
            previous = get_secret_dict(service_client, arn, "AWSPREVIOUS")
        except service_client.exceptions.ResourceNotFoundException:
            previous = None
        conn = connect(previous) if previous else None
    if not conn:
        raise ValueError(
            f"setSecret: unable to log into database {current.get('dbname')} as "
            f"{current['username']} with the AWSCURRENT or AWSPREVIOUS password of {arn}")
    try:
        cur = conn.cursor()
        # ALTER ROLE takes no bind parameters: the server quotes both parts.
        cur.execute("SELECT quote_ident(%s), quote_literal(%s)",
                    (pending["username"], pending["password"]))
        user, password = cur.fetchone()
        cur.execute(f"ALTER ROLE {user} WITH PASSWORD {password}")
        conn.commit()
        logger.info("setSecret: set the password of %s in PostgreSQL.", pending["username"])
    finally:
        conn.close()


def test_secret(service_client, arn, token):
    conn = connect(get_secret_dict(service_client, arn, "AWSPENDING", token))
    if not conn:
        raise ValueError(f"testSecret: unable to log into the database with the AWSPENDING "
                         f"password of {arn}")
    try:
        cur = conn.cursor()
        cur.execute("SELECT NOW()")
        conn.commit()
    finally:
        conn.close()


def finish_secret(service_client, arn, token):
    metadata = service_client.describe_secret(SecretId=arn)
    current_version = None
    for version, stages in metadata["VersionIdsToStages"].items():
        if "AWSCURRENT" in stages:
            if version == token:
                return
            current_version = version
            break
    service_client.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT",
                                               MoveToVersionId=token,
                                               RemoveFromVersionId=current_version)
    logger.info("finishSecret: moved AWSCURRENT to version %s of %s.", token, arn)


def connect(secret):
    """A connection with `secret`'s credentials, or None when they do not log in."""
    where = ({"unix_sock": secret["unix_sock"]} if secret.get("unix_sock")
             else {"host": secret["host"], "port": int(secret.get("port", 5432))})
    try:
        return pg8000.connect(user=secret["username"], password=secret["password"],
                              database=secret.get("dbname", "postgres"), timeout=5, **where)
    except pg8000.exceptions.InterfaceError:
        return None
    except pg8000.exceptions.DatabaseError:
        return None


def get_secret_dict(service_client, arn, stage, token=None):
    """The secret's value at `stage` (and version `token`), checked."""
    if token:
        value = service_client.get_secret_value(SecretId=arn, VersionId=token, VersionStage=stage)
    else:
        value = service_client.get_secret_value(SecretId=arn, VersionStage=stage)
    secret = json.loads(value["SecretString"])
    for key in ("username", "password"):
        if key not in secret:
            raise KeyError(f"{key} key is missing from the secret JSON of {arn}")
    if secret.get("engine", "postgres") != "postgres":
        raise KeyError(f"database engine of {arn} must be set to 'postgres'")
    if "host" not in secret and "unix_sock" not in secret:
        raise KeyError(f"the secret JSON of {arn} needs host (and port) or unix_sock")
    return secret
