"""Serving the planner: a Python API (`serve.api.Retriever`), an HTTP service (`serve.app`), an MCP server
(`serve.mcp_server`) and a page that draws the plan beside the results.

Everything here is glue over the project's own prompt builder, parser, executor and reranker, so a plan
served here is the plan that training and evaluation scored. Submodules are imported lazily by callers:
importing `serve` pulls in neither torch, vLLM nor FastAPI.
"""
