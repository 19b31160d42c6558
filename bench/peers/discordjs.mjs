// bench/peers/discordjs.mjs: @discordjs/ws (pinned in package-lock.json) against the fake
// Discord's replay. It discovers the gateway through @discordjs/rest pointed at the fake's api
// base, inflates zlib-stream with node:zlib (CompressionMethod.ZlibNative) -- @discordjs/ws has
// no zstd-stream -- runs every shard in this one thread (SimpleShardingStrategy, the default),
// counts dispatches, and prints one JSON line: events/s, CPU seconds (process.cpuUsage, every
// thread of the process), RSS. bench/peers.py starts the fake and runs this.
//
//   node bench/peers/discordjs.mjs --port PORT [--shards N] [--compress zlib|none]
import { REST } from '@discordjs/rest';
import { CompressionMethod, WebSocketManager, WebSocketShardEvents } from '@discordjs/ws';
import { parseArgs, runReplay } from './common.mjs';

const args = parseArgs(process.argv);
if (args.compress === 'zstd') {
  console.error('discordjs: @discordjs/ws 2.0 cannot do zstd-stream (zlib-stream or none only)');
  process.exit(3);
}
const rest = new REST({ api: `http://127.0.0.1:${args.port}/api`, version: '10' }).setToken(
  args.token,
);
const manager = new WebSocketManager({
  token: args.token,
  intents: 513, // GUILDS | GUILD_MESSAGES: what the fake accepts without privileged intents
  rest,
  shardCount: args.shards,
  compression: args.compress === 'zlib' ? CompressionMethod.ZlibNative : null,
});
const counter = { events: 0, onEvent: () => {} };
manager.on(WebSocketShardEvents.Dispatch, () => {
  counter.events++;
  counter.onEvent();
});
manager.on(WebSocketShardEvents.Error, (err, shardId) => {
  console.error(`discordjs: shard ${shardId}: ${err?.stack ?? err}`);
});
await manager.connect();
await runReplay(args, counter, 'discordjs', { library: '@discordjs/ws 2.0.4' });
await manager.destroy({ code: 4000, reason: 'benchmark over' });
process.exit(0);
