#!/usr/bin/env python3
"""A service that keeps one secret's payload in memory and refreshes it the moment
the secret changes: no polling, only keyledger's change stream. Standard library only.

    python3 examples/cached_secret.py --url http://127.0.0.1:9311 \\
        --token "$KEYLEDGER_TOKEN" --secret <secret id>

How it works, and what any client of `GET /v1/changes` does:

- It reads the payload once (`GET /v1/secrets/<id>/payload`).
- It listens to `GET /v1/changes` (Server-Sent Events): one event per change in its
  project that its token may list, carrying the object's kind, id, version and event
  types, never a payload. When one names its secret, it reads the payload again: a
  change is sent only once the API's reads show it, so the read returns the new
  version.
- Each event's `id` is a log sequence. When the stream breaks (or a refresh fails),
  it reconnects with `Last-Event-ID` of the last change it handled and misses
  nothing; a new version stored while it was away is read as soon as it is back.
  The stream ends when the token expires: it then stops and says so (a real service
  would fetch a new token and go on from the last id).
- When the secret is deleted or expires, it drops the cached payload and exits.

It prints one JSON line per payload it holds: the version, the SHA-256 of the
payload (never the payload itself) and the sequence it reflects. A real service would
hand the payload to whatever needs it (a database pool, a TLS listener) instead.
"""

import argparse
import hashlib
import json
import sys
import time
import urllib.error
import urllib.request

# Events after which the secret's payload may be another.
REFRESH = {"secret.payload_stored", "secret.stage_moved", "secret.rotation_succeeded"}
# Events after which there is no payload any more.
GONE = {"secret.deleted", "secret.expired", "secret.deletion_scheduled"}


def request(args, path, headers=None):
    req = urllib.request.Request(args.url.rstrip("/") + path, headers=headers or {})
    req.add_header("Authorization", "Bearer " + args.token)
    return req


def read_payload(args):
    """The current payload and the sequence its read reflects."""
    with urllib.request.urlopen(
        request(args, f"/v1/secrets/{args.secret}/payload", {"Accept": "*/*"}), timeout=30
    ) as response:
        return response.read(), int(response.headers.get("X-Keyledger-Seq", "0"))


def show(payload, version, seq):
    print(
        json.dumps(
            {
                "version": version,
                "sha256": hashlib.sha256(payload).hexdigest(),
                "seq": seq,
            }
        ),
        flush=True,
    )


def changes(args, last_event_id):
    """Yields (sequence, change) from the change stream, from after `last_event_id`."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    with urllib.request.urlopen(request(args, "/v1/changes", headers), timeout=60) as stream:
        event_id, data = None, []
        for raw in stream:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if event_id is not None and data:
                    yield event_id, json.loads("\n".join(data))
                event_id, data = None, []
            elif line.startswith("id:"):
                event_id = int(line[3:].strip())
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            # Lines starting with ":" keep the connection alive.


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:9311")
    parser.add_argument("--token", required=True)
    parser.add_argument("--secret", required=True, help="the secret's id")
    args = parser.parse_args()

    payload, seq = read_payload(args)
    version = None
    show(payload, version, seq)
    # Changes after the read: nothing between the read and the stream is missed.
    last = seq
    while True:
        try:
            for event_id, change in changes(args, last):
                if change["kind"] == "secret" and change["id"] == args.secret:
                    events = set(change["events"])
                    if events & GONE:
                        print(json.dumps({"gone": change["events"], "seq": event_id}), flush=True)
                        return 0
                    if events & REFRESH:
                        payload, seq = read_payload(args)
                        version = change["version"]
                        show(payload, version, seq)
                # Only once the change is handled: a refresh that failed is tried
                # again from here after the reconnect.
                last = event_id
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                # The token expired or lost its rights: a new one is needed.
                print(json.dumps({"stopped": f"{e.code} {e.reason}"}), file=sys.stderr, flush=True)
                return 1
            print(json.dumps({"reconnecting": f"{e.code} {e.reason}"}), file=sys.stderr, flush=True)
            time.sleep(1)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            # The stream broke: come back after a moment, from the last change handled.
            print(json.dumps({"reconnecting": str(e)}), file=sys.stderr, flush=True)
            time.sleep(1)

if __name__ == "__main__":
    sys.exit(main())
