"""The MCP place: `ambient mcp`, a Model Context Protocol server over stdio for chat apps.

The MCP server (:mod:`.server`) loads no model and opens no store: it is a client of the running
daemon, authenticated with a client key (:mod:`ambient.keys`). The daemon side (:mod:`.routes`)
answers it under ``/mcp`` within that key's view only (:mod:`.views`). See ``docs/clients.md``.
"""
