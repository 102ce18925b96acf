"""Drive an MCP stdio server by hand and keep every byte of its stdout, to check the wire holds only JSON-RPC.

The SDK's client would skip or hide a stray line; this one records them all: `talk(command, calls)`
initializes, sends each tools/call, waits for every answer, closes stdin, waits for the process to exit
and returns (stdout lines, stderr text, {id: response}).
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

PROTOCOL = "2025-06-18"


def talk(command: list[str], calls: list[dict], *, cwd: str, env: dict, timeout_s: float = 300,
         ) -> tuple[list[str], str, dict[int, dict]]:
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    lines: queue.Queue[str | None] = queue.Queue()
    out: list[str] = []
    err: list[bytes] = []

    def pump_out() -> None:
        for raw in proc.stdout:
            lines.put(raw.decode("utf-8", "backslashreplace"))
        lines.put(None)

    def pump_err() -> None:
        err.append(proc.stderr.read())

    threads = [threading.Thread(target=f, daemon=True) for f in (pump_out, pump_err)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    answers: dict[int, dict] = {}

    def send(message: dict) -> None:
        proc.stdin.write((json.dumps(message) + "\n").encode())
        proc.stdin.flush()

    def wait_for(ids: set[int]) -> None:
        while not ids <= answers.keys():
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError(f"the server closed stdout early: {b''.join(err).decode()[-3000:]}")
            out.append(line)
            try:
                message = json.loads(line)
            except ValueError:
                continue  # kept in `out` for the caller to see
            if isinstance(message, dict) and "id" in message:
                answers[message["id"]] = message

    try:
        send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "wire-test", "version": "0"}}})
        wait_for({0})
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        for i, arguments in enumerate(calls, 1):
            send({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                  "params": {"name": "search_products", "arguments": arguments}})
        wait_for(set(range(1, len(calls) + 1)))
        proc.stdin.close()
        proc.wait(timeout=max(1, deadline - time.monotonic()))
        for t in threads:
            t.join(timeout=30)
        while (line := lines.get_nowait() if not lines.empty() else None) is not None:
            out.append(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out, b"".join(err).decode("utf-8", "backslashreplace"), answers
