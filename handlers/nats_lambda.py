#!/usr/bin/env python3
"""Runs an AWS Secrets Manager rotation function as a keyledger rotation handler.

AWS invokes a rotation Lambda function with {"SecretId", "ClientRequestToken",
"Step"} for each of the four steps; keyledger's rotation runner sends the same event
as a NATS request on keyledger.rotate.<handler>. This adapter serves that subject (in
a queue group, so several copies share the work) and calls the module's
`lambda_handler(event, context)` unchanged: AWS's own rotation templates run here as
they do in Lambda, calling keyledger's Secrets Manager API with boto3 (point them at
it with AWS_ENDPOINT_URL_SECRETS_MANAGER and an access key from
`keyledger access-key create`, as a Lambda function uses its execution role).

  nats_lambda.py --nats nats://rotation:<password>@127.0.0.1:4222 \\
      --handler postgres --module handlers/postgres_single_user.py

A function that raises answers Lambda's error shape, {"errorType", "errorMessage"};
keyledger records it as the step's failure and retries the step. Needs nats-py.
"""
import argparse
import asyncio
import hashlib
import importlib.util
import json
import logging
import os
import signal
import sys

import nats

log = logging.getLogger("keyledger.rotation")


def account_of(project):
    """The AWS account id keyledger shows for `project` (docs/aws.md, Accounts)."""
    if len(project) == 12 and project.isdigit():
        return project
    digest = hashlib.sha256(f"keyledger/aws-account/v1\0{project}".encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**12:012d}"


def printable(text):
    """`text` as valid UTF-8 (an exception's message may hold lone surrogates, which
    no JSON reader accepts)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def load(path):
    """The rotation function's module, loaded from its file."""
    spec = importlib.util.spec_from_file_location("rotation_function", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "lambda_handler", None)):
        sys.exit(f"{path} has no lambda_handler(event, context)")
    return module


async def serve(url, handler, module, accounts):
    subject = f"keyledger.rotate.{handler}"
    nc = await nats.connect(url, name=f"keyledger-rotation-{handler}")
    loop = asyncio.get_running_loop()

    async def on_request(msg):
        try:
            event = json.loads(msg.data)
            log.info("%s %s %s", event.get("Step"), event.get("SecretId"),
                     event.get("ClientRequestToken"))
            # Handler names are one namespace for the whole deployment: serve only the
            # projects this handler is for.
            parts = str(event.get("SecretId", "")).split(":")
            account = parts[4] if len(parts) > 4 else None
            if accounts and account not in accounts:
                raise PermissionError(f"secret {event.get('SecretId')} is in an account this "
                                      f"handler does not serve (--project)")
            # A step may take long (a database round trip): off the event loop.
            result = await loop.run_in_executor(None, module.lambda_handler, event, None)
            reply = json.dumps(result)
        except Exception as e:  # noqa: BLE001 - every failure is the step's answer
            message = printable(str(e))
            log.warning("step failed: %s: %r", type(e).__name__, message)
            reply = json.dumps({"errorType": type(e).__name__, "errorMessage": message})
        await msg.respond(reply.encode())

    await nc.subscribe(subject, queue=subject, cb=on_request)
    await nc.flush()
    print(f"serving {subject}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.drain()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", default=os.environ.get("KEYLEDGER_ROTATION_NATS"),
                        help="NATS URL with the rotation user's credentials "
                             "($KEYLEDGER_ROTATION_NATS)")
    parser.add_argument("--handler", required=True,
                        help="the handler's name, as RotationLambdaARN names it")
    parser.add_argument("--module", required=True,
                        help="the file defining lambda_handler(event, context)")
    parser.add_argument("--project", action="append", default=[],
                        help="serve only secrets of this keyledger project (repeatable); "
                             "without it, every project whose users name this handler")
    args = parser.parse_args()
    if not args.nats:
        parser.error("give --nats or set KEYLEDGER_ROTATION_NATS")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    accounts = {account_of(p) for p in args.project}
    asyncio.run(serve(args.nats, args.handler, load(args.module), accounts))


if __name__ == "__main__":
    main()
