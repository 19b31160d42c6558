// bench/peers/common.mjs: what both peer scripts share -- arguments, the fake Discord's replay
// control (wait until every shard is parked after READY, start, count), and the one JSON line
// of figures each prints. The libraries themselves are driven in discordjs.mjs and discordeno.mjs.

export function parseArgs(argv) {
  const args = { port: 0, shards: 1, compress: 'zlib', timeout: 300, token: 'test-token' };
  for (let i = 2; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[++i];
    if (!(key in args) || value === undefined) {
      throw new Error(`usage: --port N [--shards N] [--compress zlib|zstd|none] [--timeout S]`);
    }
    args[key] = typeof args[key] === 'number' ? Number(value) : value;
  }
  if (!args.port) throw new Error('--port is required');
  return args;
}

export async function replayState(port) {
  const res = await fetch(`http://127.0.0.1:${port}/_fake/replay`);
  if (!res.ok) throw new Error(`GET /_fake/replay answered ${res.status}`);
  return res.json();
}

async function sleep(ms) {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

function rssKiB() {
  return Math.round(process.memoryUsage().rss / 1024);
}

// Every shard identified and parked after its prelude: a baseline, then the start.
export async function runReplay(args, counter, name, extra = {}) {
  const deadline = Date.now() + args.timeout * 1000;
  setTimeout(() => {
    console.error(`${name}: timed out after ${args.timeout}s with ${counter.events} events`);
    process.exit(1);
  }, args.timeout * 1000).unref();
  let state;
  for (;;) {
    state = await replayState(args.port);
    if (state.waiting === args.shards) break;
    if (Date.now() > deadline) throw new Error('the shards never reached the replay start');
    await sleep(20);
  }
  const expected = state.events * args.shards;
  global.gc?.();
  await sleep(200); // let start-up garbage settle before the idle reading
  const idleRss = rssKiB();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  counter.events = 0;
  const done = new Promise((resolve) => {
    counter.onEvent = () => {
      if (counter.events >= expected) resolve();
    };
  });
  const res = await fetch(`http://127.0.0.1:${args.port}/_fake/replay/start`, {
    method: 'POST',
    body: '{}',
  });
  if (!res.ok) throw new Error(`POST /_fake/replay/start answered ${res.status}`);
  await done;
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const figures = {
    peer: name,
    shards: args.shards,
    compress: args.compress,
    events: counter.events,
    wall_s: wall,
    cpu_s: cpuS,
    cpu_user_s: cpu.user / 1e6,
    cpu_sys_s: cpu.system / 1e6,
    events_per_s: counter.events / wall,
    events_per_cpu_s: counter.events / cpuS,
    rss_idle_kib: idleRss,
    rss_end_kib: rssKiB(),
    peak_rss_kib: process.resourceUsage().maxRSS,
    node: process.version,
    ...extra,
  };
  console.log(JSON.stringify(figures));
  return figures;
}
