#!/usr/bin/env python3
"""A minimal Keystone v3 for keyledger's client tests (Python's standard library
only): enough of the Identity v3 API for keystoneauth1's Password and Token plugins,
and so for python-barbicanclient, the `barbican` and `openstack` CLIs, Castellan and
python-barbicanclient's own functional tests. Not for production: it is the "minimal
Keystone-v3-compatible token endpoint" the tests provide.

  GET  /                  300  {"versions": {"values": [v3]}}
  GET  /v3, /v3/          200  {"version": v3}
  POST /v3/auth/tokens    201  X-Subject-Token: <keyledger token>, body {"token": ...}
                                methods "password" (user by name and domain, or id)
                                and "token" (re-scope a token this stub issued, or
                                any token keyledger accepts, asking keyledger's
                                GET /v1/whoami); a project scope by id or by name
                                and domain; unscoped: the user's default project
  GET  /v3/auth/tokens    200  validates X-Subject-Token
  HEAD /v3/auth/tokens    200 or 404
  GET  /v3/auth/catalog, /v3/auth/projects, /v3/users/{id}, /v3/projects/{id}

The token it issues is a real keyledger token, from `keyledger token issue
--data-dir D --user <user id> --project <project id> --roles <roles>`, so keyledger
accepts it as X-Auth-Token and takes the user, project and roles from it, as it
would from an identity provider's. The catalog has one `key-manager` service named
`barbican` whose endpoints are keyledger's base URL (no /v1).

  keystone_stub.py --config stub.json

stub.json: {"listen": "127.0.0.1:0", "key_manager_url": "http://127.0.0.1:9311",
  "keyledger_bin": "...", "data_dir": "...", "ttl": "2h",
  "users": {"<name>": {"id": "...", "password": "...", "domain": "Default",
             "default_project": "<name>",
             "projects": {"<name>": {"id": "...", "roles": ["admin"]}}}}}
Port 0 picks a free port; the first line printed names the address.
"""
import argparse
import datetime as dt
import json
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_CONFIG = {
    "listen": "127.0.0.1:0",
    "public_url": None,
    "region": "RegionOne",
    "ttl": "2h",
    "users": {},
}

CONF = {}
LOCK = threading.Lock()
TOKENS = {}   # token -> dict(user=..., project=..., expires=datetime)
CACHE = {}    # (user id, project id, roles) -> token (reused while > 10 min left)
VERBOSE = False
SERVICE_ID = "0b4fa8dd8a5b4b4a8a0f8b6d4f0a6a11"
ENDPOINT_IDS = {"public": "1f3c", "internal": "2e4d", "admin": "3a5b"}


def ttl_seconds(ttl):
    unit = ttl[-1]
    n = int(ttl[:-1])
    return n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def domain_matches(want, have="Default"):
    """A domain reference ({"id": ..} or {"name": ..}) names `have`."""
    if not want:
        return True
    a = str(want.get("id") or want.get("name") or "")
    return a.lower() == have.lower()


def find_user(u):
    for name, rec in CONF["users"].items():
        uid = rec.get("id", name)
        if u.get("id") and u["id"] == uid:
            return name, rec
        if u.get("name") == name and domain_matches(
                u.get("domain"), rec.get("domain", "Default")):
            return name, rec
    return None, None


def find_project(rec, scope):
    projects = rec.get("projects", {})
    if scope is None:
        name = rec.get("default_project") or next(iter(projects), None)
        return (name, projects[name]) if name else (None, None)
    for name, p in projects.items():
        pid = p.get("id", name)
        if scope.get("id") and scope["id"] == pid:
            return name, p
        if scope.get("name") == name and domain_matches(scope.get("domain")):
            return name, p
    return None, None


def issue(user_id, project_id, roles):
    key = (user_id, project_id, tuple(roles))
    now = dt.datetime.now(dt.timezone.utc)
    with LOCK:
        tok = CACHE.get(key)
        if tok and TOKENS[tok]["expires"] - now > dt.timedelta(minutes=10):
            return tok, TOKENS[tok]
    kl_roles = [r for r in roles if r in (
        "admin", "creator", "observer", "audit", "member", "reader")] or \
        ["observer"]
    out = subprocess.run(
        [CONF["keyledger_bin"], "token", "issue", "--data-dir",
         CONF["data_dir"], "--user", user_id, "--project", project_id,
         "--roles", ",".join(kl_roles), "--ttl", CONF["ttl"]],
        check=True, capture_output=True, text=True).stdout
    tok = out.strip().splitlines()[-1].strip()
    info = {"issued": now,
            "expires": now + dt.timedelta(seconds=ttl_seconds(CONF["ttl"]))}
    with LOCK:
        CACHE[key] = tok
    return tok, info


def whoami(token):
    """keyledger's view of a token (GET /v1/whoami), or None if refused."""
    import urllib.request
    req = urllib.request.Request(
        CONF["key_manager_url"].rstrip("/") + "/v1/whoami",
        headers={"X-Auth-Token": token, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())
    except Exception:  # noqa: BLE001
        return None


def catalog():
    url = CONF["key_manager_url"].rstrip("/")
    return [{
        "id": SERVICE_ID, "type": "key-manager", "name": "barbican",
        "endpoints": [{"id": ENDPOINT_IDS[i], "interface": i,
                       "region": CONF["region"], "region_id": CONF["region"],
                       "url": url} for i in ("public", "internal", "admin")],
    }, {
        "id": "9c1e", "type": "identity", "name": "keystone",
        "endpoints": [{"id": "9c1e-" + i, "interface": i,
                       "region": CONF["region"], "region_id": CONF["region"],
                       "url": CONF["public_url"] + "/v3"}
                      for i in ("public", "internal", "admin")],
    }]


def token_body(uname, urec, pname, prec, methods, info):
    uid = urec.get("id", uname)
    pid = prec.get("id", pname)
    return {"token": {
        "methods": methods,
        "user": {"id": uid, "name": uname,
                 "domain": {"id": "default", "name": "Default"},
                 "password_expires_at": None},
        "project": {"id": pid, "name": pname,
                    "domain": {"id": "default", "name": "Default"}},
        "roles": [{"id": r, "name": r} for r in prec.get("roles", [])],
        "catalog": catalog(),
        "issued_at": iso(info["issued"]), "expires_at": iso(info["expires"]),
        "audit_ids": [uuid.uuid4().hex[:22]],
        "is_domain": False,
    }}


def v3_version():
    return {"id": "v3.14", "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": CONF["public_url"] + "/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}]}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keystone-stub/1"

    def log_message(self, fmt, *a):
        if VERBOSE:
            sys.stderr.write("keystone-stub: " + (fmt % a) + "\n")

    def send(self, code, body=None, headers=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Vary", "X-Auth-Token")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def err(self, code, title, msg):
        self.send(code, {"error": {"code": code, "title": title,
                                   "message": msg}})

    def path_only(self):
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def lookup(self, tok):
        with LOCK:
            info = TOKENS.get(tok)
        if not info or info["expires"] < dt.datetime.now(dt.timezone.utc):
            return None
        return info

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        p = self.path_only()
        if p == "/":
            return self.send(300, {"versions": {"values": [v3_version()]}})
        if p == "/v3":
            return self.send(200, {"version": v3_version()})
        if p == "/v3/auth/tokens":
            info = self.lookup(self.headers.get("X-Subject-Token", ""))
            if not info:
                return self.err(404, "Not Found", "token not found")
            return self.send(200, info["body"], {
                "X-Subject-Token": self.headers["X-Subject-Token"]})
        info = self.lookup(self.headers.get("X-Auth-Token", ""))
        if not info:
            return self.err(401, "Unauthorized",
                            "The request you have made requires "
                            "authentication.")
        t = info["body"]["token"]
        if p == "/v3/auth/catalog":
            return self.send(200, {"catalog": t["catalog"]})
        if p == "/v3/auth/projects":
            return self.send(200, {"projects": [dict(
                t["project"], enabled=True, domain_id="default")]})
        if p.startswith("/v3/users/"):
            return self.send(200, {"user": dict(
                t["user"], enabled=True, domain_id="default")})
        if p.startswith("/v3/projects/"):
            return self.send(200, {"project": dict(
                t["project"], enabled=True, domain_id="default")})
        return self.err(404, "Not Found", "keystone-stub has no %s" % p)

    def do_DELETE(self):
        if self.path_only() == "/v3/auth/tokens":
            with LOCK:
                TOKENS.pop(self.headers.get("X-Subject-Token", ""), None)
            return self.send(204)
        return self.err(404, "Not Found", "no such route")

    def do_POST(self):
        p = self.path_only()
        n = int(self.headers.get("Content-Length") or 0)
        try:
            req = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return self.err(400, "Bad Request", "body is not JSON")
        if p != "/v3/auth/tokens":
            return self.err(404, "Not Found", "keystone-stub has no %s" % p)
        auth = req.get("auth", {})
        ident = auth.get("identity", {})
        methods = ident.get("methods", [])
        uname = urec = None
        if "password" in methods:
            u = ident.get("password", {}).get("user", {})
            uname, urec = find_user(u)
            if not urec or urec.get("password") != u.get("password"):
                return self.err(401, "Unauthorized",
                                "The request you have made requires "
                                "authentication.")
        elif "token" in methods:
            old = ident.get("token", {}).get("id", "")
            info = self.lookup(old)
            if info:
                uid = info["body"]["token"]["user"]["id"]
                uname, urec = find_user({"id": uid})
            else:
                # a token this stub did not issue (e.g. straight from
                # `keyledger token issue`): ask keyledger who it is
                who = whoami(old)
                if not who:
                    return self.err(401, "Unauthorized", "token not valid")
                uname, urec = find_user({"id": who["user_id"]})
                if not urec:
                    # not configured here: the token's own user and project
                    uname = who["user_id"]
                    urec = {"id": uname, "default_project": who["project_id"],
                            "projects": {who["project_id"]: {
                                "id": who["project_id"],
                                "roles": who.get("roles") or []}}}
        else:
            return self.err(401, "Unauthorized",
                            "unsupported auth methods %s" % methods)
        scope = auth.get("scope")
        if scope and "project" not in scope:
            return self.err(401, "Unauthorized",
                            "keystone-stub scopes to projects only")
        pname, prec = find_project(urec, scope and scope["project"])
        if not prec:
            return self.err(401, "Unauthorized",
                            "user %s has no role on project %s" % (
                                uname, scope))
        tok, info = issue(urec.get("id", uname), prec.get("id", pname),
                          prec.get("roles", []))
        body = token_body(uname, urec, pname, prec, methods, info)
        with LOCK:
            TOKENS[tok] = dict(info, body=body)
        self.send(201, body, {"X-Subject-Token": tok})


def main():
    global VERBOSE
    ap = argparse.ArgumentParser()
    ap.add_argument("--config")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    VERBOSE = a.verbose
    CONF.update(DEFAULT_CONFIG)
    if a.config:
        with open(a.config) as f:
            CONF.update(json.load(f))
    host, port = CONF["listen"].rsplit(":", 1)
    srv = ThreadingHTTPServer((host, int(port)), H)
    port = srv.server_address[1]
    CONF["public_url"] = (CONF.get("public_url") or
                          "http://%s:%s" % (host, port)).rstrip("/")
    print("keystone-stub listening on %s/v3 (key-manager %s)" % (
        CONF["public_url"], CONF["key_manager_url"]), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
