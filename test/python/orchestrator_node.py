"""Drives the fleet exactly as the LangGraph orchestrator's Developer node does.

It subscribes to worker:result:{request_id} first, publishes the spawn request with all eight
legacy keys, waits, and builds SpawnResult(**data): the dataclass raises on any unknown or
missing key, which is how the real orchestrator would break. Prints one JSON line per request.
"""
import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import List, Optional

import redis


@dataclass
class SpawnResult:
    request_id: str
    success: bool
    exit_code: int
    output: str
    commit_sha: Optional[str]
    branch: Optional[str]
    files_changed: Optional[List[str]]
    summary: Optional[str]
    error_type: Optional[str]
    error_message: Optional[str]
    logs_tail: Optional[str]


def spawn_worker(client, request, timeout):
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"worker:result:{request['request_id']}")
    # The subscription is confirmed before publishing, or a fast result would be missed.
    while pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
        pass
    client.publish("worker:spawn", json.dumps(request))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1.0)
        if message and message["type"] == "message":
            pubsub.close()
            data = json.loads(message["data"])
            result = SpawnResult(**data)
            # Types as the orchestrator relies on them.
            assert isinstance(result.success, bool) and isinstance(result.exit_code, int)
            assert result.files_changed is None or all(isinstance(f, str) for f in result.files_changed)
            return result
    raise TimeoutError(f"no result for {request['request_id']} within {timeout} s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", required=True, help="JSON list of spawn requests")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    client = redis.Redis(host="127.0.0.1", port=args.port, decode_responses=True)
    for request in json.loads(args.requests):
        result = spawn_worker(client, request, args.timeout)
        print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
