"""`python -m serve http|mcp`: the HTTP service (uvicorn) or the MCP server (stdio / streamable HTTP).

Without --model it serves the newest tuned TAO checkpoint under --runs-dir, else the untrained model,
and prints which (on stderr: over MCP stdio, stdout carries JSON-RPC only, from the first byte).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

from ir_core.config import check, check_range, help_field, parse_or_exit


@dataclass
class ServeArgs:
    """Serve the planner and the search tool: `python -m serve http|mcp [flags]`."""

    what: Literal["http", "mcp"] = help_field("the HTTP service with its page, or the MCP server (the first word)")
    bench: str = help_field("a built benchmark directory", default="data/benchmark/synthetic")
    backend: str = help_field("planner backend: vllm, hf, openai or anthropic", default="vllm")
    model: str | None = help_field("checkpoint folder or API model name (default: newest tuned)", default=None)
    runs_dir: str = help_field("where to look for TAO runs (best.json)", default="runs")
    reranker: str | None = help_field("an encoder folder for the instruction-aware reranker", default=None)
    host: str = help_field("address to listen on", default="127.0.0.1")
    port: int = help_field("port to listen on", default=8000)
    timeout: float = help_field("per-request time limit, seconds", default=30.0)
    transport: Literal["stdio", "http"] = help_field("MCP transport", default="stdio")
    allowed_host: list[str] = help_field(
        "HTTP: other Host headers to serve besides the local names and --host ('*' for any); the rest are "
        "refused, against DNS rebinding", default_factory=list)

    def __post_init__(self) -> None:
        from serve.planners import BACKENDS

        check(self.backend in BACKENDS, "backend", f"invalid choice: {self.backend!r} (choose from {', '.join(BACKENDS)})")
        check_range(self, "port", 1, 65535)
        check_range(self, "timeout", 0, low_open=True)


def parse_args(argv: list[str] | None = None) -> ServeArgs:
    (args,) = parse_or_exit([ServeArgs], argv, "python -m serve", positional="what")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wire = None
    if args.what == "mcp" and args.transport == "stdio":
        from serve.mcp_server import claim_stdout

        wire = claim_stdout()  # before anything loads: vLLM logs to stdout
    from serve.api import Retriever

    try:
        retriever = Retriever.load(args.bench, args.backend, args.model, args.runs_dir, args.reranker)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    about = f"{args.backend} planner, {retriever.policy.describe()}"
    # stdout is the MCP stdio channel: everything human-readable goes to stderr
    print(f"serving {about} over {len(retriever.bench)} products ({args.bench})", file=sys.stderr, flush=True)
    try:
        if args.what == "http":
            import uvicorn

            from serve.app import LOCAL_HOSTS, create_app

            hosts = [*LOCAL_HOSTS, args.host if ":" not in args.host else f"[{args.host}]", *args.allowed_host]
            app = create_app(retriever, timeout_s=args.timeout, description=about, allowed_hosts=hosts)
            uvicorn.run(app, host=args.host, port=args.port, log_level="info")
        else:
            from serve.mcp_server import build_mcp, run_stdio

            server = build_mcp(retriever, timeout_s=args.timeout)
            if wire is not None:
                run_stdio(server, wire)
            else:
                server.run("streamable-http", host=args.host, port=args.port)
    finally:
        retriever.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
