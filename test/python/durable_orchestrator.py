"""The durable path from Python, as README "Bursts" documents it: Debian's python3-redis and
python3-cryptography only (PyPI, and so BullMQ's Python package, is not assumed).

The request goes into the Redis Stream `{prefix}:intake` (XADD), which every bridge reads through
one consumer group: nothing is lost while no bridge runs or during a burst. The token is sealed
here with the fleet's key (AES-256-GCM, the format of src/secrets.ts), so no plaintext token ever
rests in Redis. The result comes back as on the pub/sub path.

  durable_orchestrator.py --port P --secret-key K --requests JSON   enqueue, print one result per line
  durable_orchestrator.py --secret-key K --seal TOKEN               print the sealed token only
"""
import argparse
import base64
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import List, Optional

import redis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


# --- the lines an orchestrator needs (README "Bursts") ---------------------------------------
def seal_token(token: str, secret_key: str) -> str:
    """FLEET_SECRET_KEY -> sha256 -> AES-256-GCM key; "v1:keyid:iv:tag:body", base64, key id as AAD."""
    key = hashlib.sha256(secret_key.encode()).digest()
    key_id = hashlib.sha256(key).hexdigest()[:12]
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, token.encode(), key_id.encode())  # ciphertext + 16-byte tag
    b64 = lambda b: base64.b64encode(b).decode()
    return ":".join(["v1", key_id, b64(iv), b64(sealed[-16:]), b64(sealed[:-16])])


def submit_durable(client: redis.Redis, request: dict, secret_key: str, prefix: str = "fleet") -> str:
    """Enqueues one spawn request durably; the job id is its request_id (a resend makes no second job)."""
    fields = dict(request)
    token = fields.pop("github_token", None)
    entry = {"request": json.dumps(fields)}
    if token:
        entry["sealed_token"] = seal_token(token, secret_key)
    return client.xadd(f"{prefix}:intake", entry)
# ----------------------------------------------------------------------------------------------


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


def wait_results(client: redis.Redis, pubsub, request_ids: List[str], timeout: float) -> List[SpawnResult]:
    """Results in request order, from the subscription or, if published before it, from fleet:result:{id}."""
    found = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(request_ids) and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            found.setdefault(message["channel"].split(":", 2)[2], message["data"])
        for request_id in request_ids:
            if request_id not in found:
                stored = client.get(f"fleet:result:{request_id}")
                if stored:
                    found[request_id] = stored
    missing = [r for r in request_ids if r not in found]
    if missing:
        raise TimeoutError(f"no result for {missing} within {timeout} s")
    return [SpawnResult(**json.loads(found[r])) for r in request_ids]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--prefix", default="fleet")
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--requests", help="JSON list of spawn requests")
    parser.add_argument("--seal", help="print this token sealed, and exit")
    parser.add_argument("--no-wait", action="store_true", help="enqueue only; print the stream entry ids")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    if args.seal is not None:
        print(seal_token(args.seal, args.secret_key))
        return 0
    client = redis.Redis(host="127.0.0.1", port=args.port, decode_responses=True)
    requests = json.loads(args.requests)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    if not args.no_wait:
        pubsub.subscribe(*[f"worker:result:{r['request_id']}" for r in requests])
    for request in requests:
        entry_id = submit_durable(client, request, args.secret_key, args.prefix)
        if args.no_wait:
            print(json.dumps({"entry": entry_id}), flush=True)
    if args.no_wait:
        return 0
    for result in wait_results(client, pubsub, [r["request_id"] for r in requests], args.timeout):
        print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
