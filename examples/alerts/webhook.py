#!/usr/bin/env python3
"""An `[[alert]]` hook that posts hangwatch's event to a webhook (Slack, Mattermost, Discord,
ntfy, or anything that takes a JSON POST).

    [[alert]]
    on = ["stalled", "incident", "gave-up", "restarting"]
    command = ["python3", "examples/alerts/webhook.py", "https://hooks.example.com/T000/B000"]
    timeout = "10s"

The event arrives as one JSON line on stdin; its main fields are also in the environment
(HANGWATCH_ALERT, HANGWATCH_EVENT, HANGWATCH_SERVICE, HANGWATCH_AT, HANGWATCH_SUMMARY). The body
posted is `{"text": SUMMARY, "event": EVENT}`, which Slack-like webhooks show as a message.
Standard library only. It exits non-zero when the POST fails, which hangwatch logs as an
`alert-failed` event; it gives up after 5 s, well within the hook's timeout.
"""

import json
import os
import sys
import urllib.request


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: webhook.py URL")
    event = json.loads(sys.stdin.readline() or "{}")
    service = os.environ.get("HANGWATCH_SERVICE", "")
    kind = os.environ.get("HANGWATCH_EVENT", event.get("event", ""))
    summary = os.environ.get("HANGWATCH_SUMMARY") or f"{service}: {kind}"
    text = f"hangwatch on {os.uname().nodename}: {summary}"
    if event.get("event") == "incident" and event.get("verdict"):
        text += "\n" + "\n".join("• " + line for line in event["verdict"])
    body = json.dumps({"text": text, "event": event}).encode()
    request = urllib.request.Request(
        sys.argv[1], data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        if response.status >= 300:
            sys.exit(f"webhook answered {response.status}")


if __name__ == "__main__":
    main()
