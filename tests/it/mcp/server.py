"""A small MCP server (Python `mcp` SDK, low-level API) for orch's MCP tests.

Tools: echo (read-only), touch (writes a file), big (10 MB of text), die
(exits the process in the middle of the call), slow (a minute),
broken (an input schema
that is not an object schema), roots (the client's roots), grow (adds a
tool and says the list changed). `server.py hang` never answers
initialize.
"""

import os
import sys
import time

if len(sys.argv) > 1 and sys.argv[1] == "hang":
    print("hanging on purpose", file=sys.stderr, flush=True)
    time.sleep(3600)
    sys.exit(0)

import anyio
import mcp.types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.stdio import stdio_server

server = Server("orch-test")
grown = False

OBJECT = {"type": "object", "properties": {"text": {"type": "string"}}}


@server.list_tools()
async def list_tools() -> list[types.Tool]:
    tools = [
        types.Tool(
            name="echo",
            description="Say the text back",
            inputSchema={"$schema": "http://json-schema.org/draft-07/schema#", **OBJECT, "required": ["text"]},
            annotations=types.ToolAnnotations(readOnlyHint=True),
        ),
        types.Tool(
            name="touch",
            description="Create a file in the server's directory",
            inputSchema={"type": "object", "properties": {"name": {"type": "string"}}},
        ),
        types.Tool(name="big", description="Ten megabytes of text", inputSchema={"type": "object"},
                   annotations=types.ToolAnnotations(readOnlyHint=True)),
        types.Tool(name="die", description="Exit in the middle of the call", inputSchema={"type": "object"}),
        types.Tool(name="broken", description="A schema that is no object schema", inputSchema={"type": "string"}),
        types.Tool(name="roots", description="The client's roots", inputSchema={"type": "object"},
                   annotations=types.ToolAnnotations(readOnlyHint=True)),
        types.Tool(name="grow", description="Add a tool", inputSchema={"type": "object"}),
        types.Tool(name="slow", description="Take a minute", inputSchema={"type": "object"},
                   annotations=types.ToolAnnotations(readOnlyHint=True)),
    ]
    if grown:
        tools.append(types.Tool(name="grown", description="Added later", inputSchema={"type": "object"},
                                annotations=types.ToolAnnotations(readOnlyHint=True)))
    return tools


@server.call_tool(validate_input=False)
async def call_tool(name: str, arguments: dict):
    global grown
    if name == "echo":
        return [types.TextContent(type="text", text=arguments.get("text", ""))]
    if name == "touch":
        with open(arguments.get("name", "touched"), "w") as f:
            f.write("touched\n")
        return [types.TextContent(type="text", text="done")]
    if name == "big":
        return [types.TextContent(type="text", text="x" * 10_000_000)]
    if name == "die":
        print("dying on purpose", file=sys.stderr, flush=True)
        os._exit(3)
    if name == "roots":
        roots = await server.request_context.session.list_roots()
        return [types.TextContent(type="text", text=" ".join(str(r.uri) for r in roots.roots))]
    if name == "grow":
        grown = True
        await server.request_context.session.send_tool_list_changed()
        return [types.TextContent(type="text", text="grown")]
    if name == "grown":
        return [types.TextContent(type="text", text="the grown tool answers")]
    if name == "slow":
        await anyio.sleep(60)
        return [types.TextContent(type="text", text="late")]
    raise ValueError(f"no tool {name}")


async def main():
    async with stdio_server() as (read, write):
        await server.run(
            read,
            write,
            server.create_initialization_options(
                notification_options=NotificationOptions(tools_changed=True)
            ),
        )


anyio.run(main)
