"""``python -m devkit.standins --jira-port 8081 --slack-port 8082 [--seed seed.json]``: serve both until killed."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from devkit.jira_standin import JiraStandIn
from devkit.slack_standin import SlackStandIn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.standins", description=__doc__)
    parser.add_argument("--jira-port", type=int, default=8081)
    parser.add_argument("--slack-port", type=int, default=8082)
    parser.add_argument("--seed", help="JSON file with {'jira': {...}, 'slack': {...}} to seed")
    args = parser.parse_args(argv)
    jira, slack = JiraStandIn(), SlackStandIn()
    if args.seed:
        with open(args.seed, encoding="utf-8") as fh:
            data = json.load(fh)
        jira.seed(data.get("jira", {}))
        slack.seed(data.get("slack", {}))
    servers = [jira.serve(args.jira_port), slack.serve(args.slack_port)]
    print(f"jira stand-in on http://127.0.0.1:{servers[0].server_port}, "  # noqa: T201
          f"slack stand-in on http://127.0.0.1:{servers[1].server_port}/api/", flush=True)  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
