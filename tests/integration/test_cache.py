"""The entity cache's read endpoints end to end: build/shardhook against the fake Discord, driven by
cache_truth.Truth, whose mutations send the gateway dispatches Discord would send and whose
readers say what Discord's REST API would answer. Every endpoint's JSON must equal the truth's
after a realistic sequence (partial updates, deletions, a guild going unavailable, a new session
that drops stale guilds); plus the errors (bad ids and queries, unknown routes and entities, a
kind not kept, no cache block), ETags, members pagination, the permissions table, a cache over
max_bytes, and --check refusing a kind whose intent is missing.

One daemon per group of checks (each test function), a single shard, to keep the file cheap."""
import json
import re

from cache_truth import P, Truth
from harness import FakeDiscord, Receiver, Shardhook, base_config, timeout, wait_for

INTENTS = ["GUILDS", "GUILD_MEMBERS", "GUILD_EXPRESSIONS", "GUILD_VOICE_STATES",
           "GUILD_PRESENCES", "GUILD_MESSAGES"]
CACHE_ALL = {"guilds": True, "channels": True, "roles": True, "emojis": True, "members": True,
             "voice_states": True, "presences": True}


def is_error(body, code):
    return (isinstance(body, dict) and isinstance(body.get("error"), dict)
            and body["error"].get("code") == code and isinstance(body["error"].get("message"), str)
            and body["error"]["message"] != "")


def start(tmp, truth, guilds, cache=None, intents=INTENTS, wait_guild=None, **cfg):
    """The fake (its READY lists guilds: GUILD_CREATE bodies; a dict: shard -> its list), a
    receiver and shardhook with a cache block; truth.emit sends each event to its guild's shard.
    Waits until wait_guild is answered."""
    per_shard = guilds if isinstance(guilds, dict) else {0: guilds}
    fake = FakeDiscord(tmp, identify_interval_ms=200, shards=truth.shards, guilds=0)
    for shard in range(truth.shards):
        fake.guilds(shard, per_shard.get(shard, []))

    def emit(t, d):
        gid = d.get("guild_id") or (d.get("id") if t.startswith("GUILD_") else None)
        fake.dispatch(truth.shard_of(gid) if gid else 0, t, d)
    truth.emit = emit
    rx = Receiver()
    conf = dict(cfg, intents=intents)
    if cache is not False:
        conf["cache"] = cache if cache is not None else dict(CACHE_ALL)
    sh = Shardhook(base_config(fake, rx, tmp, **conf), tmp)
    sh.wait_http("/healthz")
    if wait_guild:
        sh.wait_http("/v1/guilds/%s" % wait_guild, 200, timeout=20)
    return fake, rx, sh


def new_session(fake, sh, shard, guild_creates):
    """End shard's session (the fake forgets it, then drops the socket with 4000) so the daemon
    IDENTIFYs again, and have the new READY list exactly guild_creates; returns once ready."""
    fake.guilds(shard, guild_creates)
    n_identify = len(fake.identifies(shard=shard, refused=False))
    fake.expire(shard)
    fake.close(shard, 4000)
    wait_for(lambda: len(fake.identifies(shard=shard, refused=False)) > n_identify, 20,
             what="shard %d to IDENTIFY again after its session expired" % shard)
    sh.wait_ready(timeout=20)


class Checker:
    """Collects every difference between the daemon's answers and the truth, so one run reports
    all of them (request, expected, got) instead of stopping at the first."""

    def __init__(self, sh):
        self.sh = sh
        self.diffs = []

    def get(self, path, headers=None):
        return self.sh.api("GET", path, headers=headers)

    def same(self, path, expected):
        code, headers, body = self.get(path)
        if code != 200 or body != expected:
            self.diffs.append("GET %s%s\n  expected 200 %s\n  got %d %s" % (
                path, _where(expected, body) if code == 200 else "", _short(expected), code,
                _short(body)))
        elif not re.fullmatch(r'"[0-9a-f]{16}"', headers.get("etag", "")):
            self.diffs.append("GET %s: ETag %r is not a quoted 16-hex tag" % (
                path, headers.get("etag")))
        return body

    def error(self, path, status, code, retry_after=None):
        got, headers, body = self.get(path)
        if got != status or not is_error(body, code):
            self.diffs.append("GET %s\n  expected %d %s\n  got %d %s" % (
                path, status, code, got, _short(body)))
        elif retry_after is not None and headers.get("retry-after") != retry_after:
            self.diffs.append("GET %s: Retry-After %r, expected %r" % (
                path, headers.get("retry-after"), retry_after))
        return body

    def done(self):
        assert not self.diffs, "%d answer(s) differ from Discord's REST for the state:\n%s" % (
            len(self.diffs), "\n".join(self.diffs))


def _short(v, n=600):
    s = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    return s if len(s) <= n else s[:n] + "..."


def _where(expected, got, path=""):
    """The first place expected and got differ, as ' (at path: expected X, got Y)'."""
    if isinstance(expected, dict) and isinstance(got, dict):
        for k in sorted(set(expected) | set(got)):
            if k not in got:
                return " (at %s.%s: missing)" % (path, k)
            if k not in expected:
                return " (at %s.%s: not expected, got %s)" % (path, k, _short(got[k], 80))
            w = _where(expected[k], got[k], "%s.%s" % (path, k))
            if w:
                return w
        return ""
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return " (at %s: %d items, expected %d)" % (path, len(got), len(expected))
        for i, (e, g) in enumerate(zip(expected, got)):
            w = _where(e, g, "%s[%d]" % (path, i))
            if w:
                return w
        return ""
    return "" if expected == got else " (at %s: expected %s, got %s)" % (
        path, _short(expected, 80), _short(got, 80))


def check_guild(c, truth, gid):
    """Every read of guild gid against the truth."""
    t = truth
    c.same("/v1/guilds/%s" % gid, t.guild(gid))
    c.same("/v1/guilds/%s/channels" % gid, t.channels(gid))
    c.same("/v1/guilds/%s/threads" % gid, t.threads(gid))
    c.same("/v1/guilds/%s/roles" % gid, t.roles(gid))
    c.same("/v1/guilds/%s/emojis" % gid, t.emojis(gid))
    c.same("/v1/guilds/%s/members?limit=1000" % gid, t.members(gid, 1000))
    c.same("/v1/guilds/%s/voice-states" % gid, t.voice_states(gid))
    g = t.guilds[gid]
    for uid in g["members"]:
        c.same("/v1/guilds/%s/members/%s" % (gid, uid), t.member(gid, uid))
        c.same("/v1/users/%s" % uid, t.user(uid))
    for uid in g["voice"]:
        c.same("/v1/guilds/%s/voice-states/%s" % (gid, uid), t.voice_state(gid, uid))
    for cid in list(g["channels"]) + list(g["threads"]):
        c.same("/v1/channels/%s" % cid, t.channel(cid))


class Sync:
    """Waits until the cache applied everything sent so far: a CHANNEL_UPDATE of a marker
    channel (events are applied in order per shard) and the channel answering it."""

    def __init__(self, sh, truth, gid):
        self.sh, self.truth, self.gid, self.n = sh, truth, gid, 0
        self.cid = truth.channel_create(gid, "sync-marker", position=9)

    def __call__(self):
        self.n += 1
        topic = "sync %d" % self.n
        self.truth.channel_update(self.gid, self.cid, topic=topic)

        def seen():
            code, _, body = self.sh.api("GET", "/v1/channels/%s" % self.cid)
            return code == 200 and body.get("topic") == topic
        wait_for(seen, 10, what="the cache to apply the events up to marker %r" % topic)


def build_world(truth, n_members=6):
    """Guild A (members in GUILD_CREATE), guild B (large: only the bot, members by chunks) and
    guild C (listed in READY, its GUILD_CREATE held back)."""
    users = [truth.new_user("member%d" % i) for i in range(n_members)]
    a = truth.add_guild("Alpha", members=users)
    b_users = [truth.new_user("bee%d" % i) for i in range(4)]
    b = truth.add_guild("Beta", members=b_users, large=True)
    c = truth.add_guild("Gamma", members=[truth.new_user("gam0")])
    return a, b, c, users, b_users


@timeout(240)
def test_every_read_matches_discord_after_a_realistic_sequence(tmp):
    truth = Truth()
    a, b, c_gid, users, b_users = build_world(truth)
    ga = truth.guilds[a]
    mod, muted = ga["mod"], ga["muted"]
    gc_a = truth.guild_create(a)
    gc_b = truth.guild_create(b, with_members=False)
    fake, rx, sh = start(tmp, truth, [gc_a, gc_b, {"id": c_gid, "unavailable": True}],
                         wait_guild=a)
    c = Checker(sh)

    # Gamma: READY listed it, no GUILD_CREATE yet: 503 guild_loading, on every guild route
    c.error("/v1/guilds/%s" % c_gid, 503, "guild_loading", retry_after="1")
    c.error("/v1/guilds/%s/members/%s" % (c_gid, users[0]["id"]), 503, "guild_loading",
            retry_after="1")
    c.error("/v1/guilds/%s/channels" % c_gid, 503, "guild_loading", retry_after="1")
    truth.send_guild_create(c_gid)
    sh.wait_ready(timeout=20)
    sync = Sync(sh, truth, a)
    sync()
    for gid in (a, b, c_gid):
        check_guild(c, truth, gid)
    c.same("/v1/cache/guilds", truth.cache_guilds())

    # Beta's members arrive by GUILD_MEMBERS_CHUNK (as an op 8 answer would bring them)
    truth.members_chunk(b, [u["id"] for u in b_users[:2]], 0, 2, nonce="n1")
    truth.members_chunk(b, [u["id"] for u in b_users[2:]], 1, 2, nonce="n1")

    # partial updates of every kind
    u0, u1, u2, u3 = (u["id"] for u in users[:4])
    truth.guild_update(a, name="Alpha Prime", description="renamed", premium_tier=2)
    truth.member_update(a, u0, nick="zero", roles=[mod])
    truth.member_update(a, u1, roles=[muted], user={"global_name": "One Renamed",
                                                    "avatar": "a_0123456789abcdef"})
    truth.member_add(a, truth.new_user("newcomer"), roles=[mod], nick="new")
    truth.role_update(a, mod, name="moderator", permissions=int(ga["roles"][mod]["permissions"])
                      | P["BAN_MEMBERS"], color=15844367, mentionable=True)
    extra_role = truth.role_create(a, "extra", P["USE_EXTERNAL_EMOJIS"], position=3)
    truth.channel_update(a, ga["general"], topic="new topic", nsfw=True, rate_limit_per_user=5,
                         permission_overwrites=[truth.overwrite(u2, 1, allow=P["MANAGE_MESSAGES"])])
    news = truth.channel_create(a, "announcements", type_=5, position=3, parent_id=ga["category"])
    th1 = truth.thread_create(a, ga["general"], u0, "thread one")
    th2 = truth.thread_create(a, ga["general"], u1, "thread two")
    th3 = truth.thread_create(a, ga["staff"], u0, "staff thread")
    truth.thread_update(a, th1, name="thread one renamed",
                        thread_metadata={"archived": True, "locked": True})
    truth.emojis_update(a, ga["emojis"] + [truth.emoji_object("partyblob", roles=[mod])])
    truth.stickers_update(a, ga["stickers"] + [truth.sticker_object(a, "dance")])
    truth.voice_join(a, u2, ga["voice_ch"], self_mute=True)
    truth.voice_join(a, u3, ga["voice_ch"])
    truth.voice_update(a, u2, self_mute=False, self_video=True)
    truth.presence_update(a, u0, "online", username="zero-renamed", avatar="c_0123456789abcdef")
    truth.presence_update(a, u2, "dnd", [{"name": "Chess", "type": 0, "created_at": 1700000000000}])
    truth.user_update(username="cache-bot-2", avatar="0123456789abcdef0123456789abcdef")
    # a member the cache first sees in a message (author + member), and one already known
    late = truth.new_user("talker")
    truth.unseen_member(a, late)
    truth.message_create(a, ga["general"], late["id"], "first words")
    truth.message_create(a, th2, u1, "in a thread")
    truth.interaction_create(a, ga["general"], users[4]["id"], nick="slasher",
                             avatar="b_0123456789abcdef")
    sync()
    for gid in (a, b, c_gid):
        check_guild(c, truth, gid)
    c.same("/v1/users/%s" % truth.bot_id, truth.user(truth.bot_id))

    # deletions: a channel, a thread, a role, a member; THREAD_LIST_SYNC of one parent
    truth.channel_delete(a, news)
    truth.thread_delete(a, th1)
    truth.role_delete(a, extra_role)
    truth.member_remove(a, users[5]["id"])
    fresh = truth.thread_object(a, ga["general"], u3, "synced thread")
    truth.thread_list_sync(a, [ga["general"]], [fresh])  # th2 goes; th3 (in staff) stays
    truth.voice_leave(a, u3)
    sync()
    check_guild(c, truth, a)
    c.error("/v1/channels/%s" % news, 404, "unknown_channel")
    c.error("/v1/channels/%s" % th1, 404, "unknown_channel")
    c.error("/v1/channels/%s" % th2, 404, "unknown_channel")
    c.error("/v1/guilds/%s/members/%s" % (a, users[5]["id"]), 404, "unknown_member")
    c.error("/v1/guilds/%s/voice-states/%s" % (a, u3), 404, "unknown_voice_state")
    c.error("/v1/users/%s" % truth.snowflake(), 404, "unknown_user")
    c.error("/v1/guilds/%s" % truth.snowflake(), 404, "unknown_guild")
    c.error("/v1/guilds/%s/members/%s" % (a, truth.snowflake()), 404, "unknown_member")
    c.same("/v1/cache/guilds", truth.cache_guilds())

    check_pagination(c, truth, a)
    check_permissions(c, truth, a, sync)
    check_etag(c, sh, truth, a, sync)
    check_bad_requests(c, a, u0)
    check_stats(c, sh, truth)

    # Gamma goes unavailable: 503 guild_loading; Beta is deleted (the bot left): 404
    b_channel = next(iter(truth.guilds[b]["channels"]))
    truth.guild_unavailable(c_gid)
    truth.guild_delete(b)
    sync()
    c.error("/v1/guilds/%s" % c_gid, 503, "guild_loading", retry_after="1")
    c.error("/v1/guilds/%s/roles" % c_gid, 503, "guild_loading", retry_after="1")
    c.error("/v1/guilds/%s" % b, 404, "unknown_guild")
    c.error("/v1/guilds/%s/members/%s" % (b, b_users[0]["id"]), 404, "unknown_guild")
    c.error("/v1/channels/%s" % b_channel, 404, "unknown_channel")
    c.same("/v1/cache/guilds", truth.cache_guilds())
    truth.send_guild_create(c_gid)  # back from the outage
    sync()
    check_guild(c, truth, c_gid)

    # a new session: READY lists Alpha only; Gamma was not brought back and is dropped
    c_channel = next(iter(truth.guilds[c_gid]["channels"]))
    truth.drop_guild(c_gid)
    ga["channels"][ga["staff"]]["name"] = "staff-room"  # only the new GUILD_CREATE says so
    new_session(fake, sh, 0, [truth.guild_create(a)])
    sync()
    c.error("/v1/guilds/%s" % c_gid, 404, "unknown_guild")
    c.error("/v1/channels/%s" % c_channel, 404, "unknown_channel")
    check_guild(c, truth, a)
    c.same("/v1/cache/guilds", truth.cache_guilds())
    c.done()


@timeout(120)
def test_new_session_drops_only_that_shards_stale_guilds(tmp):
    truth = Truth(shards=2)
    kept = truth.add_guild("Kept", shard=0, members=[truth.new_user("k0")])
    stale = truth.add_guild("Stale", shard=0, members=[truth.new_user("s0")])
    other = truth.add_guild("Other shard", shard=1, members=[truth.new_user("o0")])
    fake, rx, sh = start(tmp, truth, {0: [truth.guild_create(kept), truth.guild_create(stale)],
                                      1: [truth.guild_create(other)]}, wait_guild=other)
    sh.wait_ready(timeout=20)
    sync0, sync1 = Sync(sh, truth, kept), Sync(sh, truth, other)
    sync0()
    sync1()
    c = Checker(sh)
    c.same("/v1/cache/guilds", truth.cache_guilds())
    stale_channel = next(iter(truth.guilds[stale]["channels"]))
    stale_member = next(u for u in truth.guilds[stale]["members"] if u != truth.bot_id)
    # shard 0 starts a new session whose READY lists only Kept; shard 1 goes on as it was
    truth.drop_guild(stale)
    truth.guilds[kept]["fields"]["name"] = "Kept (new session)"
    new_session(fake, sh, 0, [truth.guild_create(kept)])
    sync0()
    sync1()
    assert len(fake.identifies(shard=1, refused=False)) == 1, "shard 1 identified again"
    c.error("/v1/guilds/%s" % stale, 404, "unknown_guild")
    c.error("/v1/channels/%s" % stale_channel, 404, "unknown_channel")
    c.error("/v1/guilds/%s/members/%s" % (stale, stale_member), 404, "unknown_guild")
    for gid in (kept, other):
        check_guild(c, truth, gid)
    c.same("/v1/cache/guilds", truth.cache_guilds())
    c.done()


def check_pagination(c, truth, gid):
    """members?limit=&after= pages by user id as REST does (default limit 1)."""
    ids = sorted(truth.guilds[gid]["members"], key=int)
    c.same("/v1/guilds/%s/members" % gid, truth.members(gid))  # REST's default: one member
    c.same("/v1/guilds/%s/members?limit=2" % gid, truth.members(gid, 2))
    c.same("/v1/guilds/%s/members?limit=3&after=%s" % (gid, ids[1]), truth.members(gid, 3, ids[1]))
    c.same("/v1/guilds/%s/members?limit=1000&after=%s" % (gid, ids[-1]), [])
    walked, after = [], "0"
    while True:
        code, _, page = c.get("/v1/guilds/%s/members?limit=2&after=%s" % (gid, after))
        if code != 200 or not page:
            break
        walked += [m["user"]["id"] for m in page]
        after = page[-1]["user"]["id"]
        if len(walked) > len(ids):
            break
    if walked != ids:
        c.diffs.append("paging members by 2: got user ids %s, expected %s" % (walked, ids))
    c.same("/v1/cache/guilds?limit=1", truth.cache_guilds(1))
    first = sorted(truth.guilds, key=int)[0]
    c.same("/v1/cache/guilds?limit=2&after=%s" % first, truth.cache_guilds(2, first))


def check_permissions(c, truth, gid, sync):
    """A table of members and channels whose permissions the truth computes with Discord's
    documented algorithm; each case sets up what it needs through events first."""
    g = truth.guilds[gid]
    admin_role = truth.role_create(gid, "admin", P["ADMINISTRATOR"], position=4)
    helper = truth.role_create(gid, "helper", P["MANAGE_THREADS"], position=1)
    owner = g["fields"]["owner_id"]
    mk = {}
    for name, roles, kw in (("plain", [], {}), ("admin", [admin_role], {}),
                            ("mod", [g["mod"]], {}), ("two", [g["mod"], helper], {}),
                            ("timed", [g["mod"]], {"communication_disabled_until":
                                                   "2099-01-01T00:00:00.000000+00:00"}),
                            ("timed_admin", [admin_role], {"communication_disabled_until":
                                                           "2099-01-01T00:00:00.000000+00:00"}),
                            ("past_timeout", [], {"communication_disabled_until":
                                                  "2020-01-01T00:00:00.000000+00:00"}),
                            ("denied", [helper], {}), ("muted", [g["muted"]], {})):
        u = truth.new_user("perm-" + name)
        truth.member_add(gid, u, roles=roles, **kw)
        mk[name] = u["id"]
    # a channel exercising every overwrite kind, in the order that matters
    tricky = truth.channel_create(gid, "tricky", position=5, overwrites=[
        truth.overwrite(gid, 0, allow=P["ATTACH_FILES"], deny=P["ADD_REACTIONS"]),
        truth.overwrite(g["mod"], 0, allow=P["ADD_REACTIONS"], deny=P["EMBED_LINKS"]),
        truth.overwrite(helper, 0, allow=P["EMBED_LINKS"], deny=P["ATTACH_FILES"]),
        truth.overwrite(g["muted"], 0, deny=P["SEND_MESSAGES"]),
        truth.overwrite(mk["denied"], 1, deny=P["VIEW_CHANNEL"]),
        truth.overwrite(mk["plain"], 1, allow=P["MENTION_EVERYONE"] | P["MANAGE_CHANNELS"])])
    thread = truth.thread_create(gid, tricky, mk["plain"], "tricky thread")
    cases = [(uid, ch) for uid in list(mk.values()) + [owner]
             for ch in (None, g["general"], g["staff"], tricky, thread)]
    # the table must cover the distinct outcomes it claims to (a self-check of the table)
    bits = {}
    for uid, ch in cases:
        bits[(uid, ch)] = int(truth.permissions(gid, uid, ch)["permissions"])
    assert bits[(owner, g["staff"])] == bits[(mk["admin"], tricky)] == sum(P.values())
    assert bits[(mk["plain"], g["staff"])] == 0  # @everyone denied VIEW_CHANNEL
    assert bits[(mk["mod"], g["staff"])] & P["VIEW_CHANNEL"]  # the role overwrite gives it back
    assert bits[(mk["denied"], tricky)] == 0
    assert not bits[(mk["muted"], tricky)] & (P["SEND_MESSAGES"] | P["ATTACH_FILES"])
    assert bits[(mk["timed"], None)] == P["VIEW_CHANNEL"] | P["READ_MESSAGE_HISTORY"]
    assert bits[(mk["timed_admin"], None)] == sum(P.values())
    two = bits[(mk["two"], tricky)]  # role overwrites together: an allow beats another's deny
    assert two & P["EMBED_LINKS"] and two & P["ADD_REACTIONS"] and not two & P["ATTACH_FILES"]
    assert bits[(mk["plain"], thread)] == bits[(mk["plain"], tricky)]
    sync()
    for uid, ch in cases:
        path = "/v1/guilds/%s/members/%s/permissions" % (gid, uid)
        if ch:
            path += "?channel_id=%s" % ch
        c.same(path, truth.permissions(gid, uid, ch))
    c.error("/v1/guilds/%s/members/%s/permissions?channel_id=%s" % (gid, owner, truth.snowflake()),
            404, "unknown_channel")
    c.error("/v1/guilds/%s/members/%s/permissions" % (gid, truth.snowflake()), 404,
            "unknown_member")


def check_etag(c, sh, truth, gid, sync):
    path = "/v1/guilds/%s" % gid
    code, h1, _ = sh.api("GET", path)
    tag = h1.get("etag", "")
    code, h, body = sh.api("GET", path, headers={"If-None-Match": tag})
    if code != 304 or body not in ("", None):
        c.diffs.append("GET %s with If-None-Match %s: expected 304 and no body, got %d %r" % (
            path, tag, code, body))
    code, h, body = sh.api("GET", path, headers={"If-None-Match": '"0000000000000000"'})
    if code != 200 or h.get("etag") != tag:
        c.diffs.append("GET %s with another tag: expected 200 with ETag %s, got %d %s" % (
            path, tag, code, h.get("etag")))
    truth.guild_update(gid, name="Alpha Again")
    sync()
    code, h, body = sh.api("GET", path, headers={"If-None-Match": tag})
    if code != 200 or body != truth.guild(gid) or h.get("etag") in (None, tag):
        c.diffs.append("GET %s after GUILD_UPDATE with the old tag: expected 200, the new guild "
                       "and a new ETag; got %d, ETag %s (old %s)%s" % (
                           path, code, h.get("etag"), tag, _where(truth.guild(gid), body)))
    mpath = "/v1/guilds/%s/members?limit=5" % gid
    code, h, _ = sh.api("GET", mpath)
    code2, _, body2 = sh.api("GET", mpath, headers={"If-None-Match": h.get("etag", "")})
    if code != 200 or code2 != 304:
        c.diffs.append("GET %s twice with If-None-Match: expected 200 then 304, got %d then %d" % (
            mpath, code, code2))


def check_bad_requests(c, gid, uid):
    for path in ("/v1/guilds/abc", "/v1/guilds/12x4", "/v1/guilds/-5/channels",
                 "/v1/guilds/123456789012345678901234567/roles",
                 "/v1/guilds/%s/members/notanid" % gid, "/v1/channels/1.5", "/v1/users/%20",
                 "/v1/guilds/%s/voice-states/x" % gid):
        c.error(path, 400, "invalid_id")
    for query in ("limit=0", "limit=1001", "limit=abc", "limit=", "after=xyz", "after=-1",
                  "limit=5&after=1e5"):
        c.error("/v1/guilds/%s/members?%s" % (gid, query), 400, "invalid_query")
    for query in ("limit=0", "limit=1001", "after=nope"):
        c.error("/v1/cache/guilds?%s" % query, 400, "invalid_query")
    c.error("/v1/guilds/%s/members/%s/permissions?channel_id=abc" % (gid, uid), 400,
            "invalid_query")
    for path in ("/v1/guilds/%s/bans" % gid, "/v1/guilds/%s/members/%s/roles" % (gid, uid),
                 "/v1/guilds/%s/channels/extra" % gid, "/v1/users", "/v1/cache/nope",
                 "/v1/guilds"):
        c.error(path, 404, "not_found")


def check_stats(c, sh, truth):
    code, _, st = sh.api("GET", "/v1/cache")
    if code != 200:
        c.diffs.append("GET /v1/cache: %d %s" % (code, _short(st)))
        return
    want = truth.counts()
    kinds = st.get("kinds", {})
    for kind in ("guilds", "roles", "members", "voice_states", "presences"):
        got = kinds.get(kind, {})
        count = got.get("count")
        if kind == "guilds" and isinstance(count, int):  # the listed ones: held - loading
            count -= got.get("loading", 0)
        if got.get("enabled") is not True or count != want[kind]:
            c.diffs.append("GET /v1/cache kinds.%s: expected enabled, count %d; got %s" % (
                kind, want[kind], got))
    ch = kinds.get("channels", {}).get("count")
    if ch not in (want["channels"], want["channels"] + want["threads"]):
        c.diffs.append("GET /v1/cache kinds.channels.count %s: expected %d (or %d with threads)" % (
            ch, want["channels"], want["channels"] + want["threads"]))
    if st.get("full") is not False or not 0 < st.get("bytes", 0) <= st.get("max_bytes", 0):
        c.diffs.append("GET /v1/cache: expected full false and 0 < bytes <= max_bytes: %s" % (
            _short(st),))
    shards = st.get("shards") or [{}]
    if shards[0].get("guilds") != want["guilds"]:
        c.diffs.append("GET /v1/cache shards[0].guilds %s, expected %d" % (
            shards[0].get("guilds"), want["guilds"]))


def metric(sh, name):
    code, _, text = sh.api("GET", "/metrics")
    assert code == 200, text
    m = re.search(r"^%s(?:\{\})? ([0-9.e+-]+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


@timeout(180)
def test_cache_over_max_bytes_keeps_guilds_channels_and_roles(tmp):
    truth = Truth()
    gid = truth.add_guild("Crowded", large=True)
    g = truth.guilds[gid]
    fake, rx, sh = start(tmp, truth, [truth.guild_create(gid, with_members=False)],
                         cache=dict(CACHE_ALL, presences=False, max_bytes=1048576),
                         wait_guild=gid)
    sh.wait_ready(timeout=20)
    off = sh.log_offset()
    # 8 chunks of 1000 members: about 4 MB of member JSON, far past the 1 MiB bound
    for k in range(8):
        batch = [truth.new_user("crowd%d" % (k * 1000 + i)) for i in range(1000)]
        for u in batch:
            truth.unseen_member(gid, u)
        truth.members_chunk(gid, [u["id"] for u in batch], k, 8)

    def full():
        code, _, st = sh.api("GET", "/v1/cache")
        return code == 200 and st.get("full") is True and st
    st = wait_for(full, 30, what="/v1/cache to say full")
    assert st["bytes"] <= st["max_bytes"] == 1048576, st
    assert 0 < st["kinds"]["members"]["count"] < len(g["members"]), st["kinds"]["members"]
    assert metric(sh, "shardhook_cache_full") == 1
    sh.wait_log(r"cache.*(full|max_bytes)", since=off)
    full_lines = [l for l in sh.log_text()[off:].splitlines()
                  if re.search(r"cache.*(full|max_bytes)", l)]
    assert len(full_lines) == 1, "expected one log line when the cache fills:\n" + "\n".join(
        full_lines[:5])
    # past the bound: guilds, channels and roles still follow the events; new members do not
    truth.guild_update(gid, name="Crowded Still")
    new_channel = truth.channel_create(gid, "after-full", position=4)
    new_role = truth.role_create(gid, "after-full", P["SPEAK"])
    late = truth.new_user("late-joiner")
    truth.member_add(gid, late)
    # events are applied in order on the cache thread, after delivery routed them: a channel
    # created last shows that everything before it (the role, the late member) is applied too
    last = truth.channel_create(gid, "after-everything", position=5)
    wait_for(lambda: sh.api("GET", "/v1/channels/%s" % last)[0] == 200, 10,
             what="the channel created after everything else")
    c = Checker(sh)
    c.same("/v1/channels/%s" % new_channel, truth.channel(new_channel))
    c.same("/v1/guilds/%s/channels" % gid, truth.channels(gid))
    c.same("/v1/guilds/%s/roles" % gid, truth.roles(gid))
    roles = {r["id"] for r in truth.roles(gid)}
    assert new_role in roles
    guild = dict(truth.guild(gid))
    c.same("/v1/guilds/%s" % gid, guild)
    c.error("/v1/guilds/%s/members/%s" % (gid, late["id"]), 404, "unknown_member")
    c.done()


@timeout(120)
def test_kinds_turned_off_answer_not_cached(tmp):
    truth = Truth()
    gid = truth.add_guild("Partial", members=[truth.new_user("someone")])
    uid = next(u for u in truth.guilds[gid]["members"] if u != truth.bot_id)
    # members and voice states are off; emojis left out while the bot has no GUILD_EXPRESSIONS
    fake, rx, sh = start(tmp, truth, [truth.guild_create(gid)],
                         cache={"members": False, "voice_states": False},
                         intents=["GUILDS", "GUILD_MEMBERS", "GUILD_VOICE_STATES",
                                  "GUILD_MESSAGES"], wait_guild=gid)
    sh.wait_ready(timeout=20)
    c = Checker(sh)
    for path, key in (("/v1/guilds/%s/members?limit=10" % gid, "members"),
                      ("/v1/guilds/%s/members/%s" % (gid, uid), "members"),
                      ("/v1/guilds/%s/voice-states" % gid, "voice_states"),
                      ("/v1/guilds/%s/voice-states/%s" % (gid, uid), "voice_states"),
                      ("/v1/guilds/%s/emojis" % gid, "emojis")):
        body = c.error(path, 404, "not_cached")
        if is_error(body, "not_cached") and key not in body["error"]["message"]:
            c.diffs.append("GET %s: not_cached message %r does not name %r" % (
                path, body["error"]["message"], key))
    c.same("/v1/guilds/%s/channels" % gid, truth.channels(gid))
    c.same("/v1/guilds/%s/roles" % gid, truth.roles(gid))
    code, _, st = sh.api("GET", "/v1/cache")
    assert code == 200, st
    assert st["kinds"]["members"]["enabled"] is False and st["kinds"]["guilds"]["enabled"] is True
    c.done()


def test_no_cache_block_answers_cache_disabled(tmp):
    fake = FakeDiscord(tmp, identify_interval_ms=200, shards=1)
    sh = Shardhook(base_config(fake, Receiver(), tmp, intents=INTENTS), tmp)
    sh.wait_ready(timeout=20)
    c = Checker(sh)
    ts = 300000000000  # the fake's first guild (tests/fake/events.c fk_guild_id), which it sent
    g, u, ch = str(ts << 22), "300000000000000002", "300000000000000003"
    for path in ("/v1/guilds/%s" % g, "/v1/guilds/%s/channels" % g, "/v1/guilds/%s/threads" % g,
                 "/v1/guilds/%s/roles" % g, "/v1/guilds/%s/emojis" % g,
                 "/v1/guilds/%s/members?limit=5" % g, "/v1/guilds/%s/members/%s" % (g, u),
                 "/v1/guilds/%s/members/%s/permissions?channel_id=%s" % (g, u, ch),
                 "/v1/guilds/%s/voice-states" % g, "/v1/guilds/%s/voice-states/%s" % (g, u),
                 "/v1/channels/%s" % ch, "/v1/users/%s" % u, "/v1/cache/guilds", "/v1/cache"):
        c.error(path, 404, "cache_disabled")
    c.done()


def test_check_refuses_a_kind_whose_intent_is_missing(tmp):
    cases = (({"members": True}, ["GUILDS"], "GUILD_MEMBERS"),
             ({"presences": True}, ["GUILDS", "GUILD_MEMBERS"], "GUILD_PRESENCES"),
             ({"voice_states": True}, ["GUILDS"], "GUILD_VOICE_STATES"),
             ({"emojis": True}, ["GUILDS"], "GUILD_EXPRESSIONS"))
    for cache, intents, intent in cases:
        cfg = base_config(None, None, tmp, intents=intents, cache=cache)
        code, out = Shardhook.check(cfg, tmp)
        lines = [l for l in out.splitlines() if intent in l]
        assert code != 0, "--check accepted cache %s without %s:\n%s" % (cache, intent, out)
        assert len(lines) == 1 and "cache" in lines[0], (
            "expected one line naming %s for cache %s:\n%s" % (intent, cache, out))
    # kinds left out are simply not kept when their intent is missing: accepted
    code, out = Shardhook.check(base_config(None, None, tmp, intents=["GUILDS"], cache={}), tmp)
    assert code == 0, out


@timeout(180)
def test_restart_resumes_with_a_warm_cache(tmp):
    """A SIGTERM writes the shard's snapshot; the restarted daemon RESUMEs (Discord sends no
    GUILD_CREATE then) and still answers what only the first session's GUILD_CREATE carried,
    plus what the replay brings."""
    truth = Truth()
    users = [truth.new_user("warm%d" % i) for i in range(3)]
    gid = truth.add_guild("Warm", members=users)
    fake, rx, sh = start(tmp, truth, [truth.guild_create(gid)], wait_guild=gid)
    sh.wait_ready(timeout=20)
    g = truth.guilds[gid]
    truth.member_update(gid, users[0]["id"], nick="before")
    sync = Sync(sh, truth, gid)
    sync()
    assert sh.stop() == 0
    # while it is down: events the RESUME replays
    truth.member_update(gid, users[1]["id"], nick="while-down")
    truth.role_create(gid, "while-down", P["SPEAK"])
    fake.guilds(0, [])  # an IDENTIFY now would bring no guild back: only the snapshot can
    sh.start()
    fake.wait(lambda f: len(f.received(op=6)) >= 1, 15, what="RESUME")
    sh.wait_ready(timeout=20)
    assert len(fake.identifies(shard=0, refused=False)) == 1, "the restart identified again"
    sync()
    c = Checker(sh)
    check_guild(c, truth, gid)
    c.same("/v1/cache/guilds", truth.cache_guilds())
    c.done()
    assert g["members"][users[0]["id"]]["nick"] == "before"
