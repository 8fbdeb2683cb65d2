"""{{name}}: an orch plugin in Python (written by `orch plugins new`).

Its tool `{{snake}}` counts the words of a text; its `pre-compact` hook
counts compactions in the plugin's key-value store. Change both to your
needs. Import every module here, at the top level: the interpreter is
snapshotted when the component is built.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types


class Guest(exports.Guest):
    def manifest(self) -> types.PluginManifest:
        return types.PluginManifest(
            name="{{name}}",
            version="0.1.0",
            description="Counts the words of a text",
            tools=[
                types.ToolSpec(
                    name="{{snake}}",
                    description="Count the words of a text.",
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
        if name != "{{snake}}":
            raise Err(f"{{name}} has no tool named {name!r}")
        try:
            args = json.loads(args_json)
        except ValueError as err:
            raise Err(f"{name}: the arguments are not JSON: {err}")
        text = args.get("text") if isinstance(args, dict) else None
        if not isinstance(text, str):
            raise Err(f"{name} needs a string argument `text`")
        host.record_metric("{{name}}.calls", 1.0)
        return str(len(text.split()))

    def on_hook(self, event: types.HookEvent) -> types.Decision:
        if event.point == types.HookPoint.PRE_COMPACT:
            count = int(host.kv_get("compactions") or "0") + 1
            host.kv_set("compactions", str(count))
            host.log(types.LogLevel.INFO, f"compaction {count}")
        return types.Decision_Continue()
