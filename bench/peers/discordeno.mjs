// bench/peers/discordeno.mjs: @discordeno/gateway (pinned in package-lock.json) against the
// fake Discord's replay. zstd-stream goes through fzstd (its optional dependency, installed),
// zlib-stream through node:zlib. Every shard runs in this one thread; the payloads reach the
// `message` event the way a bot gets them (camelized, preferSnakeCase off). Counts dispatches
// and prints one JSON line: events/s, CPU seconds (process.cpuUsage), RSS. bench/peers.py
// starts the fake and runs this.
//
//   node bench/peers/discordeno.mjs --port PORT [--shards N] [--compress zstd|zlib|none]
import { createGatewayManager, TransportCompression } from '@discordeno/gateway';
import { parseArgs, runReplay } from './common.mjs';

const args = parseArgs(process.argv);
const url = `ws://127.0.0.1:${args.port}`;
const quiet = () => {};
const logger = {
  debug: quiet,
  info: quiet,
  warn: (...a) => console.error('discordeno warn:', ...a),
  error: (...a) => console.error('discordeno error:', ...a),
  fatal: (...a) => console.error('discordeno fatal:', ...a),
};
const counter = { events: 0, onEvent: () => {} };
const gateway = createGatewayManager({
  token: args.token,
  intents: 513,
  url,
  connection: {
    url,
    shards: args.shards,
    sessionStartLimit: { maxConcurrency: 16, remaining: 1000, total: 1000, resetAfter: 0 },
  },
  totalShards: args.shards,
  transportCompression:
    args.compress === 'zstd'
      ? TransportCompression.zstd
      : args.compress === 'zlib'
        ? TransportCompression.zlib
        : null,
  spawnShardDelay: 0, // the fake's identify window is 0 in the benchmark
  resharding: { enabled: false },
  logger,
  events: {
    message(_shard, payload) {
      if (payload.op !== 0) return;
      counter.events++;
      counter.onEvent();
    },
  },
});
// The shards identify in the background; runReplay waits for the fake to see them all.
gateway.spawnShards().catch((err) => console.error('discordeno: spawn:', err));
await runReplay(args, counter, 'discordeno', { library: '@discordeno/gateway 21.0.0' });
await gateway.shutdown(4000, 'benchmark over');
process.exit(0);
