"""An HTTP proxy in front of an Iceberg REST catalog, for tests: an OAuth2 token endpoint whose
tokens expire after --token-lifetime seconds (expired or unknown tokens get 401), and answers
to table commits that are lost after the server applied them (--lose-every N: every Nth commit
is forwarded, then its connection is closed without an answer), and a commit held back (--hold
TABLE: the first commit to that table waits until the file --release exists, so a test can
commit something else first). Every event goes to --log as one JSON line."""

import argparse
import http.client
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

ARGS = None
LOCK = threading.Lock()
TOKENS = {}  # token -> issued at
COUNTS = {"tokens": 0, "commits": 0, "held": 0}
COMMIT = re.compile(r"^/v1/(.+/)?namespaces/[^/]+/tables/[^/?]+$")


def log(event, **fields):
    with LOCK, open(ARGS.log, "a") as f:
        f.write(json.dumps({"event": event, "at": time.time(), **fields}) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def token_endpoint(self, body):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("client_id") != ARGS.client_id or form.get("client_secret") != ARGS.client_secret:
            log("token-refused")
            return self.reply(401, json.dumps({"error": "invalid_client"}))
        with LOCK:
            COUNTS["tokens"] += 1
            token = f"tok{COUNTS['tokens']}x{int(time.time() * 1000)}"
            TOKENS[token] = time.time()
        log("token", token=token)
        self.reply(200, json.dumps({
            "access_token": token, "token_type": "bearer", "expires_in": ARGS.token_lifetime,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}))

    def authorized(self):
        if ARGS.token_lifetime <= 0:
            return True
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        issued = TOKENS.get(token)
        if issued is not None and time.time() - issued < ARGS.token_lifetime:
            return True
        reason = "missing" if token is None else ("expired" if issued is not None else "unknown")
        log("rejected", path=self.path, reason=reason)
        self.reply(401, json.dumps({"error": {"message": f"Not authorized: token {reason}",
                                               "type": "NotAuthorizedException", "code": 401}}))
        return False

    def forward(self):
        body = self.body()
        if self.path.startswith("/v1/oauth/tokens") and self.command == "POST":
            return self.token_endpoint(body)
        if not self.authorized():
            return
        if ARGS.hold and self.command == "POST" and self.path.split("?")[0].endswith("/tables/" + ARGS.hold):
            with LOCK:
                COUNTS["held"] += 1
                first = COUNTS["held"] == 1
            if first:
                log("held", path=self.path)
                while not os.path.exists(ARGS.release):
                    time.sleep(0.05)
                log("released", path=self.path)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "authorization", "connection", "content-length")}
        upstream = http.client.HTTPConnection("127.0.0.1", ARGS.upstream_port, timeout=60)
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        if self.command == "POST" and COMMIT.match(self.path.split("?")[0]):
            with LOCK:
                COUNTS["commits"] += 1
                n = COUNTS["commits"]
            if ARGS.lose_every and n % ARGS.lose_every == 0:
                log("lost", path=self.path, status=response.status, n=n)
                self.close_connection = True
                return
            log("commit", path=self.path, status=response.status, n=n)
        self.reply(response.status, data, response.getheader("Content-Type") or "application/json")

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = forward


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--token-lifetime", type=int, default=0)
    parser.add_argument("--client-id", default="lake")
    parser.add_argument("--client-secret", default="")
    parser.add_argument("--lose-every", type=int, default=0)
    parser.add_argument("--hold", default="")
    parser.add_argument("--release", default="")
    ARGS = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
