// examples/receiver-node/server.js: a webhook receiver for shardhook, the way a serverless user
// would write one. `handle()` is the part you deploy (a Lambda, a Vercel/Netlify function, a
// Cloudflare Worker with a Node shim): it verifies the Standard Webhooks signature with the
// reference `standardwebhooks` package, skips batches it has already handled (shardhook
// delivers at least once: a batch whose answer was lost comes again with the same webhook-id),
// skips events it has already handled (after a restart or a takeover, shardhook replays events
// in new batches; each event's "key" is the same every time it comes), and handles each event.
// The HTTP server around it is only for running it locally:
//
//   npm install            # in this folder: installs standardwebhooks
//   WEBHOOK_SECRET=whsec_... PORT=8080 node server.js
//
// Answer 2xx only once the batch is safely handled: anything else makes shardhook retry
// (connection errors, timeouts, 408, 429, 5xx) or dead-letter it (other statuses).
"use strict";
const http = require("http");
const { Webhook, WebhookVerificationError } = require("standardwebhooks");

const MAX_BODY = 16 << 20; // shardhook's largest max_batch_bytes
const wh = new Webhook(process.env.WEBHOOK_SECRET || "");
const recent = new Map(); // webhook-id -> time handled; in production, a shared store
const seenKeys = new Set(); // event keys handled, the latest MAX_KEYS; likewise
const MAX_KEYS = 100000; // duplicates come within minutes of the first delivery

// true the first time an event's key is seen (events without a key: always).
function firstTime(key) {
    if (key === undefined) return true;
    if (seenKeys.has(key)) return false;
    seenKeys.add(key);
    if (seenKeys.size > MAX_KEYS) seenKeys.delete(seenKeys.values().next().value);
    return true;
}

function handleEvent(ev) {
    // Your bot logic. ev is the Gateway dispatch with the shard added:
    // {"shard":[id,count],"op":0,"t":"MESSAGE_CREATE","s":42,"key":"3:9f2c...:42","d":{...}}
    // SHARDHOOK_SESSION_LOST (d: session_id, seq, reason) says events after d.seq may be
    // missing: resynchronise what depends on them.
    const d = ev.d || {};
    const what = d.content !== undefined ? JSON.stringify(String(d.content).slice(0, 60)) : "";
    console.log(`  ${ev.t} shard=${ev.shard[0]} s=${ev.s} ${what}`);
}

// Returns [status, body]. rawBody must be the exact bytes received (do not re-serialise JSON).
function handle(rawBody, headers) {
    let batch;
    try {
        batch = wh.verify(rawBody, headers); // checks the signature and the timestamp's age
    } catch (e) {
        const why = e instanceof WebhookVerificationError ? e.message : String(e);
        console.log(`rejected: ${why}`);
        return [401, { error: "invalid signature" }];
    }
    const id = headers["webhook-id"];
    if (recent.has(id)) {
        console.log(`duplicate batch webhook-id=${id}: already handled, acknowledged again`);
        return [200, { ok: true, duplicate: true }];
    }
    console.log(`verified batch webhook-id=${id} events=${batch.events.length}`);
    for (const ev of batch.events) {
        if (firstTime(ev.key)) handleEvent(ev);
        else console.log(`duplicate event key=${ev.key}: already handled, skipped`);
    }
    recent.set(id, Date.now());
    if (recent.size > 10000) recent.delete(recent.keys().next().value);
    return [200, { ok: true }];
}

const server = http.createServer((req, res) => {
    if (req.method !== "POST") {
        res.writeHead(405).end();
        return;
    }
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
        size += c.length;
        if (size > MAX_BODY) {
            res.writeHead(413).end();
            req.destroy();
            return;
        }
        chunks.push(c);
    });
    req.on("end", () => {
        if (res.writableEnded) return;
        const [status, body] = handle(Buffer.concat(chunks).toString("utf8"), req.headers);
        res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
    });
});

const port = Number(process.env.PORT || 8080);
const host = process.env.HOST || "127.0.0.1";
server.listen(port, host, () => console.log(`receiver-node listening on http://${host}:${port}/`));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => server.close(() => process.exit(0)));

module.exports = { handle };
