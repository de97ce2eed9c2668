#!/usr/bin/env python3
"""Create a secret over NATS with nats-py: no keyledger code, just a NATS request.

    pip install nats-py
    python3 examples/nats_create.py --token "$KEYLEDGER_TOKEN" --name db-password --payload hunter2

Two things every NATS client of keyledger does, whatever its language:

- it connects with its keyledger token as the NATS token: keyledger's nats-server
  admits a connection only for a valid token (and refuses it otherwise);
- it uses its principal's own inbox prefix, "_INBOX_" and the first 32 hex digits of
  SHA-256 of "<project>\\n<user>" (`keyledger whoami` prints it): a connection may
  subscribe to its own replies only, never to anyone else's.

Each command still carries the token in its Authorization header: that is what the
command is authorized with.

Prints keyledger's reply, e.g. {"ok":true,"seq":1,"id":"…","version":1}, and exits 1
if the command was rejected.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import sys

import nats


def inbox_prefix(token: str) -> str:
    """The inbox prefix of the token's principal (its claims, read unverified: the
    server checks the token, this only picks the inbox it will allow)."""
    claims = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    principal = f"{claims['project']}\n{claims['sub']}".encode()
    return "_INBOX_" + hashlib.sha256(principal).hexdigest()[:32]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="nats://127.0.0.1:4222")
    parser.add_argument("--token", required=True, help="a keyledger bearer token")
    parser.add_argument("--name", required=True)
    parser.add_argument("--payload", required=True, help="text payload")
    parser.add_argument("--command-id", help="idempotency key: retries with it are safe")
    args = parser.parse_args()

    body = {"name": args.name, "payload": args.payload, "payload_content_type": "text/plain"}
    if args.command_id:
        body["command_id"] = args.command_id

    nc = await nats.connect(
        args.server, token=args.token, inbox_prefix=inbox_prefix(args.token)
    )
    try:
        reply = await nc.request(
            "keyledger.cmd.secret.create",
            json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {args.token}"},
            timeout=10,
        )
    finally:
        await nc.close()
    print(reply.data.decode())
    return 0 if json.loads(reply.data)["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
