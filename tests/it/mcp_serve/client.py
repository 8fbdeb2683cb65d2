"""An MCP client (the Python `mcp` SDK) driving `orch mcp serve` through a
whole session: two missions, a refused third, a cancel, an unknown id.

Usage: client.py ORCH PROJECT SCRIPT STDOUT_LOG EXIT_FILE
Prints one JSON report on its stdout; the Rust test asserts on it.
"""

import asyncio
import json
import os
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ORCH, PROJECT, SCRIPT, STDOUT_LOG, EXIT_FILE = sys.argv[1:6]

# The server's stdout goes through tee, so the test can check every byte it
# wrote; the exit code of orch itself is written to EXIT_FILE.
WRAPPER = '{ "$0" "$@"; echo $? > "$EXIT_FILE"; } | tee "$STDOUT_LOG"'


def result_of(result):
    text = "".join(block.text for block in result.content if block.type == "text")
    return {
        "error": bool(result.isError),
        "text": text,
        "structured": result.structuredContent,
    }


async def main():
    report = {"logs": [], "progress": [], "bad_messages": []}

    async def on_log(params):
        report["logs"].append({"level": params.level, "data": params.data})

    async def on_message(message):
        # Anything the transport could not read as JSON-RPC arrives here as
        # an exception.
        if isinstance(message, Exception):
            report["bad_messages"].append(repr(message))

    async def on_progress(progress, total, message):
        report["progress"].append({"progress": progress, "message": message})

    env = dict(os.environ)
    env["STDOUT_LOG"] = STDOUT_LOG
    env["EXIT_FILE"] = EXIT_FILE
    server = StdioServerParameters(
        command="sh",
        args=["-c", WRAPPER, ORCH, "mcp", "serve", "-C", PROJECT,
              "--provider", "scripted", "--script", SCRIPT],
        env=env,
        cwd=PROJECT,
    )
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write, logging_callback=on_log,
                                 message_handler=on_message) as session:
            await session.initialize()
            tools = await session.list_tools()
            report["tools"] = sorted(tool.name for tool in tools.tools)

            started = time.monotonic()
            first = await session.call_tool("run_mission", {"goal": "Greet the world"},
                                            progress_callback=on_progress)
            report["first"] = result_of(first)
            report["first_seconds"] = time.monotonic() - started
            report["logs_when_first_returned"] = list(report["logs"])
            mission = (first.structuredContent or {}).get("mission")
            report["status_at_once"] = result_of(
                await session.call_tool("mission_status", {"id": mission}))

            statuses = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                status = result_of(await session.call_tool("mission_status", {"id": mission}))
                statuses.append(status)
                if status["error"] or status["structured"]["status"] != "running":
                    break
                await asyncio.sleep(0.2)
            report["first_final"] = statuses[-1]
            report["plan"] = result_of(await session.call_tool("read_plan", {"id": mission}))
            report["unknown"] = result_of(
                await session.call_tool("mission_status", {"id": "m-nosuchmission"}))

            long = await session.call_tool("run_mission", {"goal": "Sleep a while"})
            report["long"] = result_of(long)
            long_id = (long.structuredContent or {}).get("mission")
            report["refused"] = result_of(
                await session.call_tool("run_mission", {"goal": "Greet again"}))
            # Let the Worker's command start, so the cancel stops real work.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(
                    log["data"].get("mission") == long_id and log["data"].get("type") == "task_started"
                    for log in report["logs"]):
                await asyncio.sleep(0.1)
            report["cancel"] = result_of(
                await session.call_tool("cancel_mission", {"id": long_id}))
            report["long_final"] = result_of(
                await session.call_tool("mission_status", {"id": long_id}))
            # The server keeps notifying until the cancelled mission's end
            # is told; leaving before that would close the session under a
            # notification still in flight.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(
                    log["data"].get("mission") == long_id and log["data"].get("type") == "mission_finished"
                    for log in report["logs"]):
                await asyncio.sleep(0.1)
    print(json.dumps(report))


asyncio.run(main())
