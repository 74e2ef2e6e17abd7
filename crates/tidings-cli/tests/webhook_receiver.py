"""A webhook endpoint as a Python service writes one, for the webhook tests of `tidings serve`.

It checks each request with the `standardwebhooks` library (signature and timestamp),
answers as the event's data asks (`answers`: the status of each attempt, the last one
repeated; `sleep_ms`: how long to take), and prints one JSON line per request:
its event id, attempt, status, whether the signature held, and how many requests were in
flight when it arrived. The first line is `{"port": N}`.

A request stops counting as in flight just before its answer is written: the sender may
start its next request as soon as it has read an answer, and counting until after the
write would let that next request see one more in flight than the sender ever had.

Usage: webhook_receiver.py SECRET
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

SECRET = sys.argv[1]
verifier = Webhook(SECRET)
lock = threading.Lock()
state = {"in_flight": 0, "attempts": {}}


def say(record):
    with lock:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


class Endpoint(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        with lock:
            state["in_flight"] += 1
            concurrent = state["in_flight"]
        counted = True

        def done():
            nonlocal counted
            if counted:
                counted = False
                with lock:
                    state["in_flight"] -= 1

        try:
            try:
                event = verifier.verify(body, headers)
                verified = True
            except WebhookVerificationError as error:
                event = json.loads(body)
                verified = str(error)
            with lock:
                attempt = state["attempts"].get(event["id"], 0) + 1
                state["attempts"][event["id"]] = attempt
            plan = event.get("data") or {}
            time.sleep(plan.get("sleep_ms", 0) / 1000)
            answers = plan.get("answers", [200])
            status = answers[min(attempt, len(answers)) - 1] if verified is True else 401
            say(
                {
                    "id": event["id"],
                    "attempt": attempt,
                    "status": status,
                    "verified": verified,
                    "concurrent": concurrent,
                    "at": time.time(),
                    "content_type": headers.get("content-type"),
                    "webhook_id": headers.get("webhook-id"),
                    "event": event,
                }
            )
            done()
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"answered %d on purpose" % status)
        finally:
            done()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
say({"port": server.server_address[1]})
server.serve_forever()
