"""A rotation function shaped as AWS's generic rotation template
(SecretsManagerRotationTemplate's lambda_function.py): its four steps call the Secrets
Manager API with boto3, as in Lambda. It rotates a password that lives nowhere else,
so setSecret and testSecret only check the pending value.

For the troubleshooting tests, ROTATION_FAIL_AT names a step that raises, and
ROTATION_SLOW_AT a step that takes ROTATION_SLOW_SECONDS.
"""
import os
import time

import boto3


def lambda_handler(event, context):
    arn = event["SecretId"]
    token = event["ClientRequestToken"]
    step = event["Step"]
    service_client = boto3.client("secretsmanager")

    metadata = service_client.describe_secret(SecretId=arn)
    if not metadata["RotationEnabled"]:
        raise ValueError(f"Secret {arn} is not enabled for rotation")
    versions = metadata["VersionIdsToStages"]
    if token not in versions:
        raise ValueError(f"Secret version {token} has no stage for rotation of secret {arn}.")
    if "AWSCURRENT" in versions[token]:
        return
    if "AWSPENDING" not in versions[token]:
        raise ValueError(f"Secret version {token} not set as AWSPENDING for rotation of secret {arn}.")

    if os.environ.get("ROTATION_SLOW_AT") == step:
        time.sleep(float(os.environ.get("ROTATION_SLOW_SECONDS", "10")))
    if os.environ.get("ROTATION_FAIL_AT") == step:
        raise ValueError(f"{step} refused the new password")

    if step == "createSecret":
        create_secret(service_client, arn, token)
    elif step == "setSecret":
        pending(service_client, arn, token)
    elif step == "testSecret":
        pending(service_client, arn, token)
    elif step == "finishSecret":
        finish_secret(service_client, arn, token)
    else:
        raise ValueError("Invalid step parameter")


def create_secret(service_client, arn, token):
    service_client.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
    try:
        service_client.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
    except service_client.exceptions.ResourceNotFoundException:
        exclude = os.environ.get("EXCLUDE_CHARACTERS", "/@\"'\\")
        passwd = service_client.get_random_password(ExcludeCharacters=exclude)
        service_client.put_secret_value(SecretId=arn, ClientRequestToken=token,
                                        SecretString=passwd["RandomPassword"],
                                        VersionStages=["AWSPENDING"])


def pending(service_client, arn, token):
    value = service_client.get_secret_value(SecretId=arn, VersionId=token,
                                            VersionStage="AWSPENDING")["SecretString"]
    if len(value) != 32:
        raise ValueError("the pending password is not 32 characters")


def finish_secret(service_client, arn, token):
    metadata = service_client.describe_secret(SecretId=arn)
    current_version = None
    for version in metadata["VersionIdsToStages"]:
        if "AWSCURRENT" in metadata["VersionIdsToStages"][version]:
            if version == token:
                return
            current_version = version
            break
    service_client.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT",
                                               MoveToVersionId=token,
                                               RemoveFromVersionId=current_version)
