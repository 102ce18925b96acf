"""The MCP server (official `mcp` SDK): the planner as a tool an agent calls, over stdio or streamable HTTP.

Tool `search_products(query, instructions, k)` returns structured output (the plan, the products with
their metadata, any plan error); resource `schema://index` is the index schema an agent can read to know
which fields its instructions can constrain. The tool runs `Retriever.asearch`, so concurrent calls are
batched into the planner like HTTP requests are.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from pydantic import Field

from rewards.plan import MAX_QUERY_CHARS
from serve.api import MAX_INSTRUCTION_CHARS, Retriever, SearchResult

SCHEMA_URI = "schema://index"
MAX_K = 100


def build_mcp(retriever: Retriever, name: str = "instructed-retriever", timeout_s: float = 30.0):
    """An `mcp.server.mcpserver.MCPServer` with the search tool and the schema resource; a call that takes
    longer than `timeout_s` is a tool error."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer(name, instructions=(
        "Product search that follows instructions. Call search_products with the shopper's request as "
        "`query` and their constraints (brand, colour, price, rating, review recency) as `instructions`; "
        f"read {SCHEMA_URI} for the filterable fields."))

    @server.tool(description="Search the product catalogue. A small planner model turns the request and "
                             "instructions into keyword searches with metadata filters; returns the plan, the "
                             "ranked products with their metadata, and the plan's error if it failed.")
    async def search_products(
        query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="the shopper's request")],
        instructions: Annotated[str | None, Field(max_length=MAX_INSTRUCTION_CHARS,
                                                  description="constraints to enforce, e.g. 'not by lumia'")] = None,
        k: Annotated[int, Field(ge=1, le=MAX_K, description="number of products")] = 10,
    ) -> SearchResult:
        try:
            return await asyncio.wait_for(retriever.asearch(query, instructions, k), timeout_s)
        except TimeoutError:
            raise ToolError(f"the search took longer than {timeout_s:g} s") from None

    @server.resource(SCHEMA_URI, name="index-schema", mime_type="application/json",
                     description="fields, types, allowed ops, example values and today's date of the index")
    def index_schema() -> str:
        return json.dumps({"index": retriever.schema.to_json(), "rendered": retriever.schema.render()})

    return server
