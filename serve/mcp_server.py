"""The MCP server (official `mcp` SDK): the planner as a tool an agent calls, over stdio or streamable HTTP.

Tool `search_products(query, instructions, k)` returns structured output (the plan, the products with
their metadata, any plan error); resource `schema://index` is the index schema an agent can read to know
which fields its instructions can constrain. The tool runs `Retriever.asearch`, so concurrent calls are
batched into the planner like HTTP requests are.

Its arguments validate through the Python API's rules (serve.checks) and unknown arguments are refused
(a misspelt `instruction` must not drop the user's constraint silently); every refusal reaches the agent
as an error result whose text says what was wrong. Over stdio, `claim_stdout` keeps the process's stdout
for JSON-RPC alone from before the model loads (vLLM and its engine process log to stdout otherwise).
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import sys
from typing import Any, BinaryIO

from pydantic import ConfigDict

from serve.api import Retriever, SearchResult
from serve.checks import Instructions, K, Query, RequestError

SCHEMA_URI = "schema://index"
TOOL_DESCRIPTION = ("Search the product catalogue. A small planner model turns the request and instructions into "
                    "keyword searches with metadata filters; returns the plan, the ranked products with their "
                    "metadata, and the plan's error if it failed.")


def build_mcp(retriever: Retriever, name: str = "instructed-retriever", timeout_s: float = 30.0):
    """An `mcp.server.mcpserver.MCPServer` with the search tool and the schema resource; a call that takes
    longer than `timeout_s` is a tool error."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.mcpserver.tools import Tool

    async def search_products(query: Query, instructions: Instructions = None,  # type: ignore[assignment]
                              k: K = 10) -> SearchResult:
        try:
            result = await asyncio.wait_for(retriever.asearch(query, instructions, k), timeout_s)
        except TimeoutError:
            raise ToolError(f"the search took longer than {timeout_s:g} s") from None
        except RequestError as exc:  # e.g. k over a smaller executor depth
            raise ToolError(str(exc)) from None
        if result.error is not None and result.error.code == "prompt_too_long":
            raise ToolError(f"the query and instructions are too long for the planner model: {result.error.reason}")
        return result

    tool = Tool.from_function(search_products, description=TOOL_DESCRIPTION)
    tool.fn_metadata.arg_model = _strict(tool.fn_metadata.arg_model)
    tool.parameters = tool.fn_metadata.arg_model.model_json_schema(by_alias=True)
    server = MCPServer(name, tools=[tool], instructions=(
        "Product search that follows instructions. Call search_products with the shopper's request as "
        "`query` and their constraints (brand, colour, price, rating, review recency) as `instructions`; "
        f"read {SCHEMA_URI} for the filterable fields."))

    @server.resource(SCHEMA_URI, name="index-schema", mime_type="application/json",
                     description="fields, types, allowed ops, example values and today's date of the index")
    def index_schema() -> str:
        return json.dumps({"index": retriever.schema.to_json(), "rendered": retriever.schema.render()})

    return server


def _strict(arg_model: type) -> type:
    """The SDK's argument model, refusing unknown arguments (its base ignores them) and leaving the
    refused values out of the error text (our messages describe them; raw input may not be printable)."""
    return type(arg_model.__name__, (arg_model,),
                {"model_config": ConfigDict(extra="forbid", hide_input_in_errors=True), "__module__": __name__})


def claim_stdout() -> BinaryIO:
    """Keep fd 1 for the MCP wire only: return a private (close-on-exec) duplicate of it for the JSON-RPC
    stream and point fd 1 at stderr, so that everything else written to stdout, by Python, C extensions
    or child processes such as vLLM's engine core, lands on stderr. Call it before loading the model.
    (The SDK's stdio transport does the same, but only once it serves, after the model has loaded.)"""
    sys.stdout.flush()
    wire = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    os.dup2(2, 1)
    return os.fdopen(wire, "wb", buffering=0)


def run_stdio(server: Any, wire: BinaryIO) -> None:
    """Serve `server` over stdin and the claimed `wire` (see `claim_stdout`)."""
    import anyio
    from mcp.server.stdio import stdio_server

    async def serve() -> None:
        out = anyio.wrap_file(io.TextIOWrapper(wire, encoding="utf-8", line_buffering=True))
        async with stdio_server(stdout=out) as (read, write):
            low = server._lowlevel_server  # MCPServer.run_stdio_async, with our stdout stream
            await low.run(read, write, low.create_initialization_options())

    anyio.run(serve)
