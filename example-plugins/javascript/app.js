// slugify: an orch plugin in JavaScript (jco componentize, QuickJS backend).
// Offers the tool `js_slugify` and blocks model requests whose payload asks
// it to (a demonstration of `block` from JavaScript).

import { log } from 'orch:plugin/host@0.1.1';

export const guest = {
  manifest() {
    return {
      name: 'slugify',
      version: '0.1.0',
      description: 'Turns titles into URL slugs (JavaScript)',
      tools: [
        {
          name: 'js_slugify',
          description: 'Turn a title into a lowercase URL slug.',
          parameters: JSON.stringify({
            type: 'object',
            properties: { title: { type: 'string' } },
            required: ['title'],
          }),
        },
      ],
      hooks: ['pre-compact'],
      agents: [],
      capabilities: [],
    };
  },

  callTool(name, argsJson) {
    if (name !== 'js_slugify') {
      throw `slugify has no tool named ${name}`;
    }
    const { title } = JSON.parse(argsJson);
    if (typeof title !== 'string') {
      throw 'js_slugify needs a string argument `title`';
    }
    log('info', `slugify ${title.length} characters`);
    return title
      .toLowerCase()
      .normalize('NFKD')
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '');
  },

  onHook(event) {
    const payload = JSON.parse(event.payload);
    if (event.point === 'pre-compact' && payload.reason === 'forbidden') {
      return { tag: 'block', val: 'slugify: compaction forbidden by request' };
    }
    return { tag: 'continue' };
  },
};
