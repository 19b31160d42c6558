"""Python side of the fake Discord's control API (build/fake-discord, sources tests/fake/).

Standard library only (urllib). Every call is JSON in and out on 127.0.0.1:

    f = Fake(port)
    f.dispatch(0, "MESSAGE_CREATE", {"content": "hi"})   # -> {"s": [7]}
    f.burst(1000, shard=0)                                # -> {"first_s": 8, "last_s": 1007}
    f.op(0, 7)                                            # server asks for a reconnect
    f.close(0, 4000); f.close(0, drop=True)
    f.ack(0, True)                                        # withhold heartbeat ACKs
    f.rest_fail(2, 429, retry_after=1.5)
    f.received(op=2)                                      # IDENTIFY payloads the fake got
    f.members(chunks=3, rate_limited=1)                   # script op 8's answers
    f.quiet(ops=[43])                                     # leave op 43 unanswered
    f.stream(50)                                          # a MESSAGE_CREATE every 50 ms per shard
    f.expire(3)                                           # shard 3's next RESUME gets op 9
    f.guilds(0, [guild_create_d, ...])                    # what READY lists on later IDENTIFYs
    f.identifies(); f.resumes(); f.closes(shard=3)        # what the fake judged, from its log

A call the fake answers with a non-2xx status raises FakeError (status, body); request() gives
the raw (status, body) instead.
"""
import json
import os
import time
import urllib.error
import urllib.request

MULTIPLIER = float(os.environ.get("SH_TEST_TIMEOUT_MULTIPLIER") or 1)


class FakeError(Exception):
    def __init__(self, status, body, path):
        super().__init__("fake-discord %s answered %d: %s" % (path, status, body))
        self.status = status
        self.body = body


class Fake:
    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.port = int(port)
        self.base = "http://%s:%d" % (host, self.port)
        self.timeout = timeout * MULTIPLIER

    # -- transport -------------------------------------------------------------------------------
    def request(self, method, path, body=None, headers=None):
        """(status, parsed JSON or text) for one call."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=dict(headers or {}))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def _call(self, method, path, body=None):
        status, data = self.request(method, path, body)
        if not 200 <= status < 300:
            raise FakeError(status, data, path)
        return data

    def _post(self, path, **fields):
        return self._call("POST", path, {k: v for k, v in fields.items() if v is not None})

    # -- control API -----------------------------------------------------------------------------
    def dispatch(self, shard, t, d=None):
        """One event to shard's current session (shard None: every session) -> {"s": [...]}."""
        body = {"t": t, "d": {} if d is None else d}
        if shard is not None:
            body["shard"] = shard
        return self._call("POST", "/_fake/dispatch", body)

    def burst(self, count, shard=None, t=None):
        """count events (d carries "n": 1..count) -> {"first_s","last_s"}, or with shard None
        {"shards": [{"shard","first_s","last_s"}, ...]}."""
        return self._post("/_fake/burst", count=count, shard=shard, t=t)

    def op(self, shard, op, d=None, conn=None):
        """Send {"op": op, "d": d} on the shard's live connection (or connection id conn)."""
        body = {"op": op, "d": d}
        if shard is not None:
            body["shard"] = shard
        if conn is not None:
            body["conn"] = conn
        return self._call("POST", "/_fake/op", body)

    def raw(self, shard, text=None, garbage=None, conn=None):
        """Send text as one payload through the connection's compression (malformed JSON, say),
        or garbage as one binary message bypassing compression (a corrupt stream)."""
        return self._post("/_fake/raw", shard=shard, text=text, garbage=garbage, conn=conn)

    def resume_fail(self, count):
        """The next count RESUMEs of a valid session are closed with 4000 instead of resumed."""
        return self._post("/_fake/resume-fail", count=count)

    def close(self, shard, code=None, drop=False, conn=None):
        """Close the shard's live connection with code (default 4000), or drop it
        (no close frame)."""
        return self._post("/_fake/close", shard=shard, code=code, drop=True if drop else None,
                          conn=conn)

    def ack(self, shard, withhold, conn=None):
        """Withhold (True) or send (False) heartbeat ACKs; shard None: every shard."""
        return self._post("/_fake/ack", shard=shard, withhold=bool(withhold), conn=conn)

    def rest_fail(self, count, status, retry_after=None):
        """The next count calls of /gateway/bot answer status (429: with Retry-After)."""
        return self._post("/_fake/rest-fail", count=count, status=status, retry_after=retry_after)

    def rest_hold(self, count):
        """The next count calls of /gateway/bot are read and never answered (logged with status 0)."""
        return self._post("/_fake/rest-hold", count=count)

    def members(self, chunks=None, count=None, rate_limited=None, retry_after=None,
                send_chunks=None, silent=None, not_found=None, reset=None):
        """Script the answers to op 8 (REQUEST_GUILD_MEMBERS). Every field is kept until changed:
        chunks: GUILD_MEMBERS_CHUNKs per answer (default 1); count: members of a guild in an
        all-members answer (default 5; a query answers min(limit, count) named QUERY-member-N);
        rate_limited: the next N requests get RATE_LIMITED {opcode 8, retry_after, meta {guild_id,
        nonce}} instead; retry_after: its seconds (default 0.2); send_chunks: only the first N
        chunks go out (-1: all); silent: no answer at all; not_found: user ids reported missing;
        reset=True: back to the defaults and forget the per-guild all-members windows.
        Independently of the script, a second all-members request (query "", limit 0) for a guild
        within --members-window-ms (30 s) gets RATE_LIMITED and logs a "member request window"
        violation. -> the script now, plus "requests": op 8 payloads seen."""
        return self._post("/_fake/members", chunks=chunks, count=count, rate_limited=rate_limited,
                          retry_after=retry_after, send_chunks=send_chunks, silent=silent,
                          not_found=not_found, reset=reset)

    def quiet(self, ops=None, guild_ids=None):
        """Leave requests unanswered (they are still recorded): ops lists opcodes (4, 8, 31, 43)
        never answered; guild_ids lists guilds whose replies are skipped (a soundboard request
        for several guilds then answers only the others). Each list replaces the previous one;
        pass [] to clear it. Answers to ops 4/31/43: VOICE_STATE_UPDATE (+ VOICE_SERVER_UPDATE
        when joining a channel), one SOUNDBOARD_SOUNDS per guild (two sounds each), and
        CHANNEL_INFO with the guild's voice channel and the requested fields."""
        return self._post("/_fake/quiet", ops=ops, guild_ids=guild_ids)

    def stream(self, period_ms, shard=None):
        """A steady stream: one MESSAGE_CREATE (d.n counts up) every period_ms to the current
        session of shard (None: every shard), whether a connection is live or not (Discord keeps
        a session's events for a RESUME). period_ms 0 stops it. -> {"period_ms", "emitted"}."""
        return self._post("/_fake/stream", period_ms=period_ms, shard=shard)

    def expire(self, shard=None):
        """Expire every session of shard (None: all): the next RESUME of one gets op 9 false,
        and the stream skips it. -> {"expired": [session ids]}."""
        return self._post("/_fake/expire", shard=shard)

    def guilds(self, shard, guilds):
        """From now on every IDENTIFY of shard gets a READY listing exactly guilds (GUILD_CREATE
        bodies), then one GUILD_CREATE per guild (an {"id", "unavailable": true} entry is listed
        and never sent), as Discord starts a session. None: back to the generated guilds."""
        return self._call("POST", "/_fake/guilds", {"shard": shard, "guilds": guilds})

    def log(self):
        return self._call("GET", "/_fake/log")

    def reset_log(self):
        return self._call("POST", "/_fake/reset-log", {})

    # -- helpers over the log --------------------------------------------------------------------
    def received(self, op=None, conn=None):
        """Received entries {"conn","t_ms","op","payload"}, optionally only one op / connection."""
        return [e for e in self.log()["received"]
                if (op is None or e["op"] == op) and (conn is None or e["conn"] == conn)]

    def connections(self):
        return self.log()["connections"]

    def sessions(self):
        return self.log()["sessions"]

    def violations(self):
        return self.log()["violations"]

    def identifies(self, shard=None, refused=None, log=None):
        """IDENTIFYs as judged: {"t_ms","conn","shard","bucket","session_id","refused"} (refused:
        null, "identify bucket" or "session budget"). refused=False: accepted only; True:
        refused only."""
        return [e for e in (log or self.log())["identifies"]
                if (shard is None or e["shard"] == shard)
                and (refused is None or bool(e["refused"]) == refused)]

    def resumes(self, shard=None, refused=None, log=None):
        """RESUMEs as judged: {"t_ms","conn","shard","seq","replayed","session_id","refused"}
        (refused: null, or why: "session expired", "unknown session", ...)."""
        return [e for e in (log or self.log())["resumes"]
                if (shard is None or e["shard"] == shard)
                and (refused is None or bool(e["refused"]) == refused)]

    def closes(self, shard=None, log=None):
        """Closed connections: {"id","shard","close_code","closed_by","reason","opened_ms",
        "closed_ms",...}; closed_by "client", "server" or "drop"; a server close's reason is
        "superseded" when a RESUME on another connection took its session."""
        return [c for c in (log or self.log())["connections"]
                if c["closed_ms"] is not None and (shard is None or c["shard"] == shard)]

    def rest(self):
        return self.log()["rest"]

    def wait(self, pred, timeout=5.0, interval=0.02, what="condition"):
        """Call pred(fake) until it returns something truthy; return it. AssertionError on timeout
        (scaled by SH_TEST_TIMEOUT_MULTIPLIER)."""
        deadline = time.monotonic() + timeout * MULTIPLIER
        while True:
            value = pred(self)
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError("fake-discord: timed out waiting for %s" % what)
            time.sleep(interval)
