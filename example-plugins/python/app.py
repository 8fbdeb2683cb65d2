"""word-stats: an orch plugin in Python (componentize-py).

Offers the tool `py_word_stats` (words, lines and characters of a text) and
counts how often the conversation was about to be compacted (`pre-compact`),
in its key-value store.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types


class Guest(exports.Guest):
    def manifest(self) -> types.PluginManifest:
        return types.PluginManifest(
            name="word-stats",
            version="0.1.0",
            description="Word, line and character counts (Python)",
            tools=[
                types.ToolSpec(
                    name="py_word_stats",
                    description="Count the words, lines and characters of a text.",
                    parameters=json.dumps(
                        {
                            "type": "object",
                            "properties": {"text": {"type": "string"}},
                            "required": ["text"],
                        }
                    ),
                )
            ],
            hooks=[types.HookPoint.PRE_COMPACT],
            agents=[],
            capabilities=[],
        )

    def call_tool(self, name: str, args_json: str) -> str:
        if name != "py_word_stats":
            raise Err(f"word-stats has no tool named {name!r}")
        args = json.loads(args_json)
        text = args.get("text")
        if not isinstance(text, str):
            raise Err("py_word_stats needs a string argument `text`")
        host.record_metric("word-stats.calls", 1.0)
        return json.dumps(
            {"words": len(text.split()), "lines": len(text.splitlines()), "chars": len(text)}
        )

    def on_hook(self, event: types.HookEvent) -> types.Decision:
        if event.point == types.HookPoint.PRE_COMPACT:
            count = int(host.kv_get("compactions") or "0") + 1
            host.kv_set("compactions", str(count))
        return types.Decision_Continue()
