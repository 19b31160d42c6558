#!/usr/bin/env node
// tests/integration/verify_standardwebhooks.js: checks webhook requests with the Standard
// Webhooks reference library from npm (`standardwebhooks`, pinned in tests/package.json), not
// with shardhook's own code. Input (file argument or stdin): one JSON object per line,
// {"secret": "whsec_..." | ["whsec_...", ...], "headers": {...}, "body_b64": "..."}.
// Output: one JSON line {"verified": N, "failed": [{"line": i, "error": "..."}]}; exit 0.
"use strict";
const fs = require("fs");
const { Webhook } = require("standardwebhooks");

const text = fs.readFileSync(process.argv[2] || 0, "utf8");
let verified = 0;
const failed = [];
text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const rec = JSON.parse(line);
    const body = Buffer.from(rec.body_b64, "base64").toString("utf8");
    const secrets = Array.isArray(rec.secret) ? rec.secret : [rec.secret];
    // every key must verify on its own: receivers may hold any one of them while keys rotate
    for (const secret of secrets) {
        try {
            new Webhook(secret).verify(body, rec.headers);
        } catch (e) {
            failed.push({ line: i, secret_index: secrets.indexOf(secret), error: String(e.message || e) });
            return;
        }
    }
    verified++;
});
process.stdout.write(JSON.stringify({ verified, failed }) + "\n");
