#!/usr/bin/env python3
"""Create a secret over NATS with nats-py: no keyledger code, just a NATS request.

    pip install nats-py
    python3 examples/nats_create.py --token "$KEYLEDGER_TOKEN" --name db-password --payload hunter2

Prints keyledger's reply, e.g. {"ok":true,"seq":1,"id":"…","version":1}, and exits 1
if the command was rejected.
"""

import argparse
import asyncio
import json
import sys

import nats


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

    nc = await nats.connect(args.server)
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
