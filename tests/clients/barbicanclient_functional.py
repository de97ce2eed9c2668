#!/usr/bin/env python3
"""Runs python-barbicanclient's own functional tests (the `functionaltests/` of its
PyPI sdist, unchanged) against keyledger and a Keystone v3 stand-in, and fails unless
every test that applies passes.

The tests that cannot apply are listed, each with its reason, in
`barbicanclient_functional_excluded.txt` (stestr's exclude-list format: one regular
expression per line, `#` comments). Every other test must run and pass: a failure,
an error or a skip fails the run, and so does a test that was discovered but did not
run, or an exclusion that matches no test.

  barbicanclient_functional.py --sdist DIR --keyledger-url URL --keystone-url URL \\
      --workdir DIR
"""
import argparse
import io
import os
import re
import subprocess
import sys

import subunit
import testtools

HERE = os.path.dirname(os.path.abspath(__file__))
EXCLUDED = os.path.join(HERE, "barbicanclient_functional_excluded.txt")

CONFIG = """\
# python-barbicanclient's functional tests, pointed at keyledger.
[keymanager]
# keyledger's root, without /v1: the client appends v1/ to an endpoint it is given.
url = {keyledger}
username = barbican
password = secretservice
project_name = service
project_id = service
project_domain_name = Default
# keyledger's --max-payload-bytes default: larger payloads are 413.
max_payload_size = 65536

[identity]
uri = {keystone}
auth_version = v3
username = admin
tenant_name = admin
password = secretadmin
domain_name = Default
admin_username = admin
admin_tenant_name = admin
admin_password = secretadmin
admin_domain_name = Default
"""


def exclusions():
    """(pattern, reason) for each excluded test pattern."""
    out, reason = [], []
    with open(EXCLUDED) as f:
        for line in f:
            line = line.strip()
            if line.startswith("#"):
                reason.append(line.lstrip("# "))
            elif line:
                out.append((line, " ".join(reason)))
                reason = []
    return out


def stestr(workdir, sdist, *args):
    command = [sys.executable, "-m", "stestr", "--test-path",
               os.path.join(sdist, "functionaltests"), "--top-dir", sdist, *args]
    return subprocess.run(command, cwd=workdir, capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", required=True, help="the unpacked sdist")
    ap.add_argument("--keyledger-url", required=True)
    ap.add_argument("--keystone-url", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()

    os.makedirs(os.path.join(a.workdir, "etc"), exist_ok=True)
    with open(os.path.join(a.workdir, "etc", "functional_tests.conf"), "w") as f:
        f.write(CONFIG.format(keyledger=a.keyledger_url.rstrip("/"),
                              keystone=a.keystone_url.rstrip("/")))

    if not os.path.isdir(os.path.join(a.workdir, ".stestr")):
        stestr(a.workdir, a.sdist, "init")
    listed = stestr(a.workdir, a.sdist, "list")
    if listed.returncode != 0:
        print(listed.stdout.decode(), listed.stderr.decode())
        return 1
    discovered = [t for t in listed.stdout.decode().split() if t.startswith("functional")]
    excluded = exclusions()
    print(f"{len(discovered)} tests discovered; excluded, with the reason:")
    skipped_by_us = set()
    for pattern, reason in excluded:
        matched = [t for t in discovered if re.search(pattern, t)]
        if not matched:
            print(f"  the exclusion {pattern!r} matches no test: remove it")
            return 1
        skipped_by_us.update(matched)
        print(f"  {pattern} ({len(matched)}): {reason}")

    run = stestr(a.workdir, a.sdist, "run", "--serial", "--exclude-list", EXCLUDED)
    print(run.stdout.decode()[-3000:])
    last = stestr(a.workdir, a.sdist, "last", "--subunit")
    results = {}

    def record(test):
        if test["status"] != "exists":
            results[test["id"]] = test

    stream = subunit.ByteStreamToStreamResult(io.BytesIO(last.stdout),
                                              non_subunit_name="stdout")
    summary = testtools.StreamToDict(record)
    summary.startTestRun()
    stream.run(summary)
    summary.stopTestRun()

    expected = [t for t in discovered if t not in skipped_by_us]
    passed = [t for t, r in results.items() if r["status"] == "success"]
    not_passed = {t: r["status"] for t, r in results.items() if r["status"] != "success"}
    missing = [t for t in expected if t not in results]
    for test, status in sorted(not_passed.items()):
        print(f"{status.upper()}: {test}")
        details = results[test]["details"]
        if "traceback" in details:
            print(details["traceback"].as_text()[-2000:])
    for test in missing:
        print(f"DID NOT RUN: {test}")
    print(f"python-barbicanclient functional tests: {len(passed)} of {len(expected)} "
          f"that apply passed; {len(skipped_by_us)} excluded as not applying; "
          f"{len(not_passed)} did not pass; {len(missing)} did not run")
    return 0 if passed and not not_passed and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
