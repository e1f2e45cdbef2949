"""A webhook receiver for the tests: verifies every request with the
reference Standard Webhooks package, answers 500 to the first FAIL_FIRST
attempts of each message (then 200), and appends what it got to a JSONL log.

    webhook_receiver.py SECRET LOG PORTFILE FAIL_FIRST
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

secret, log, portfile, fail_first = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seen = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            Webhook(secret).verify(body, headers)
            verified = True
        except WebhookVerificationError as e:
            verified = False
        msg = headers.get("webhook-id", "")
        with lock:
            seen[msg] = seen.get(msg, 0) + 1
            n = seen[msg]
            status = 500 if (n <= fail_first or not verified) else 200
            event = json.loads(body) if verified else None
            with open(log, "a") as f:
                f.write(json.dumps({"id": msg, "attempt": n, "verified": verified, "status": status,
                                    "path": self.path, "event": event}) + "\n")
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
