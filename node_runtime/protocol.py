"""The runtime channel between a node script and the workflow that runs it.

A script started as a step inherits one end of a socketpair; ``CODE_EVOLVER_RUNTIME_FD`` names
its file descriptor and ``CODE_EVOLVER_RUNTIME_TOKEN`` the secret of this step attempt. No
network is involved, so it works inside a sandbox. Messages are JSON, one per line:

    script -> parent   {"hello": TOKEN, "version": 2}                        (first, once)
    script -> parent   {"token": TOKEN, "id": 7, "tool": "translator", "input": "Hi",
                        "params": {"target_lang": "French"}, "timeout_s": null}
    parent -> script   {"id": 7, "ok": true, "output": "Salut"}
                       {"id": 7, "ok": false, "error": "...", "type": "ToolNotFound"}
    script -> parent   {"token": TOKEN, "cancel": 7}        (the script gave up on call 7)
    parent -> script   {"refused": "..."}                   (a wrong secret; then it hangs up)

Every message carries the secret: a process that inherited the descriptor but not the secret
(the script keeps both from its subprocesses) cannot slip a call in between the script's own.

Replies may come in any order (calls run in parallel); ``id`` pairs them. The parent closes the
channel when the step attempt ends, so a script cannot call tools after its step.
"""

from __future__ import annotations

import json
from typing import Any

ENV_FD = "CODE_EVOLVER_RUNTIME_FD"
ENV_TOKEN = "CODE_EVOLVER_RUNTIME_TOKEN"
VERSION = 2
MAX_MESSAGE = 16 * 1024 * 1024
"""The longest line either side accepts; a script checks its requests against it."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message
