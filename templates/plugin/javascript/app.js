// {{name}}: an orch plugin in JavaScript (written by `orch plugins new`,
// built with jco's QuickJS backend). Its tool `{{snake}}` counts the words
// of a text; its `pre-compact` hook counts compactions in the plugin's
// key-value store. Change both to your needs.

import { kvGet, kvSet, log, recordMetric } from 'orch:plugin/host@0.1.1';

export const guest = {
  manifest() {
    return {
      name: '{{name}}',
      version: '0.1.0',
      description: 'Counts the words of a text',
      tools: [
        {
          name: '{{snake}}',
          description: 'Count the words of a text.',
          parameters: JSON.stringify({
            type: 'object',
            properties: { text: { type: 'string' } },
            required: ['text'],
          }),
        },
      ],
      hooks: ['pre-compact'],
      agents: [],
      capabilities: [],
    };
  },

  callTool(name, argsJson) {
    if (name !== '{{snake}}') {
      throw `{{name}} has no tool named ${name}`;
    }
    let args;
    try {
      args = JSON.parse(argsJson);
    } catch (err) {
      throw `${name}: the arguments are not JSON: ${err}`;
    }
    const text = args?.text;
    if (typeof text !== 'string') {
      throw `${name} needs a string argument \`text\``;
    }
    recordMetric('{{name}}.calls', 1.0);
    const words = text.split(/\s+/).filter((word) => word !== '');
    return String(words.length);
  },

  onHook(event) {
    if (event.point === 'pre-compact') {
      const count = Number(kvGet('compactions') ?? '0') + 1;
      kvSet('compactions', String(count));
      log('info', `compaction ${count}`);
    }
    return { tag: 'continue' };
  },
};
