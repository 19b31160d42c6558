"""bench/cachegen.py: a realistic guild population for the entity cache's benchmark
(bench/cache.py), as the gateway events Discord sends to build it: READY, a GUILD_CREATE per guild
(roles, emojis, channels with permission overwrites, its first members), then
GUILD_MEMBERS_CHUNKs of up to 1,000 members for the rest, as a bot asking for every member
receives them.

Shapes follow what Discord sends today (and what the fake's replay generator sends): a member
carries its user object (id, username, global_name, avatar, discriminator "0", public_flags,
avatar_decoration_data, collectibles, clan, primary_guild), its roles, joined_at,
premium_since, nick (mostly null), pending, mute, deaf, flags, communication_disabled_until,
banner and avatar. Guild sizes are skewed (a few guilds hold most members, as on Discord), users
are shared across guilds (about one membership in seven is a user already seen elsewhere), and
every figure depends only on the seed.

population(...) yields (event name, d as compact JSON text) and fills a stats dict with the
count and the JSON bytes of every guild, channel, role, emoji and member as Discord sent it: a
member's bytes are its object with the user inside (as in GUILD_MEMBERS_CHUNK); a guild's are
GUILD_CREATE's d without the contents of its lists.
"""
import random

DISCORD_EPOCH_MS = 1420070400000
NOW_MS = 1764374400000  # 2025-11-29

ADJ = ["sleepy", "quiet", "lucky", "brave", "tiny", "cosmic", "salty", "happy", "silent",
       "rapid", "fuzzy", "neon", "frozen", "wild", "golden", "hollow", "spicy", "lazy"]
NOUN = ["otter", "falcon", "panda", "wizard", "noodle", "ghost", "tiger", "comet", "pixel",
        "badger", "maple", "raven", "koala", "ember", "walrus", "cactus", "lynx", "moth"]
WORDS = ["general", "memes", "voice", "music", "help", "rules", "announcements", "off-topic",
         "gaming", "art", "events", "clips", "bots", "media", "lfg", "dev", "support", "news"]
NICKS = ["Sam", "Alex", "Kai", "Mo", "Jo", "Rin", "Max", "Lee", "Ash", "Nova", "Pix", "Zed"]


def flake(ms, low):
    return ((ms - DISCORD_EPOCH_MS) << 22) | (low & 0x3FFFFF)


def iso(ms):
    import time
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
    return "%s.%03d000+00:00" % (s, ms % 1000)


def _hash(r):
    return "%032x" % r.getrandbits(128)


def user_json(r, uid, n):
    adj, noun = ADJ[n % 18], NOUN[(n // 18) % 18]
    gn = '"%s%s %s"' % (adj[0].upper(), adj[1:], noun) if n % 4 else "null"
    av = '"%s"' % _hash(r) if n % 5 else "null"
    bot = ',"bot":true' if n % 50 == 7 else ""
    return ('{"username":"%s_%s%d","public_flags":%d,"primary_guild":null,"id":"%d",'
            '"global_name":%s,"discriminator":"0","collectibles":null,"clan":null,'
            '"avatar_decoration_data":null,"avatar":%s%s}'
            % (adj, noun, n % 1000, 64 if n % 3 == 0 else 0, uid, gn, av, bot))


def member_json(r, user, role_ids):
    x = r.random()
    k = 0 if x < 0.45 else 1 if x < 0.70 else 2 if x < 0.85 else r.randint(3, 6)
    roles = ",".join('"%d"' % role_ids[r.randrange(1, len(role_ids))] for _ in range(k))
    nick = '"%s"' % r.choice(NICKS) if r.random() < 0.1 else "null"
    joined = NOW_MS - r.randrange(86400000, 86400000 * 2500)
    prem = '"%s"' % iso(joined + 86400000) if r.random() < 0.03 else "null"
    av = '"%s"' % _hash(r) if r.random() < 0.01 else "null"
    return ('{"user":%s,"roles":[%s],"premium_since":%s,"pending":false,"nick":%s,'
            '"mute":false,"joined_at":"%s","flags":0,"deaf":false,'
            '"communication_disabled_until":null,"banner":null,"avatar":%s}'
            % (user, roles, prem, nick, iso(joined), av))


def role_json(r, gid, rid, k):
    perms = r.getrandbits(41) if k else 1071698660929
    color = r.getrandbits(24) if k % 3 else 0
    tags = ',"tags":{"bot_id":"%d"}' % flake(NOW_MS - 10**10, rid) if k % 10 == 9 else ""
    return ('{"id":"%d","name":"%s %s","description":null,"permissions":"%d","position":%d,'
            '"color":%d,"colors":{"primary_color":%d,"secondary_color":null,'
            '"tertiary_color":null},"hoist":%s,"managed":%s,"mentionable":%s,"icon":null,'
            '"unicode_emoji":null,"flags":0%s}'
            % (rid if k else gid, ADJ[k % 18], NOUN[(k * 7) % 18], perms, k, color, color,
               "true" if k % 7 == 1 else "false", "true" if tags else "false",
               "true" if k % 5 == 0 else "false", tags))


def channel_json(r, gid, cid, k, cat, role_ids):
    typ = 4 if k % 10 == 0 else 2 if k % 10 == 9 else 5 if k % 10 == 5 else 0
    name = "%s-%d" % (WORDS[k % len(WORDS)], k)
    parent = "null" if typ == 4 else '"%d"' % cat
    extra = ""
    if typ in (0, 5):
        topic = "Talk about %s here, be kind" % WORDS[(k * 5) % len(WORDS)] if r.random() < .6 \
            else ""
        extra = (',"topic":"%s","nsfw":false,"rate_limit_per_user":%d,"last_message_id":"%d"'
                 % (topic, 0 if r.random() < .8 else 5, flake(NOW_MS - r.randrange(10**9),
                                                             r.getrandbits(22))))
    elif typ == 2:
        extra = ',"bitrate":64000,"user_limit":0,"rtc_region":null'
    ows = []
    for o in range(r.choice((0, 0, 1, 1, 2, 3, 4))):
        oid = gid if o == 0 else role_ids[r.randrange(1, len(role_ids))]
        ows.append('{"id":"%d","type":0,"allow":"%d","deny":"%d"}'
                   % (oid, r.getrandbits(18) if o else 0, r.getrandbits(15)))
    return ('{"id":"%d","type":%d,"name":"%s","position":%d,"parent_id":%s%s,"flags":0,'
            '"permission_overwrites":[%s]}'
            % (cid, typ, name, k, parent, extra, ",".join(ows)))


def emoji_json(eid, k):
    return ('{"id":"%d","name":"%s%s","roles":[],"require_colons":true,"managed":false,'
            '"animated":%s,"available":true}'
            % (eid, ADJ[k % 18], NOUN[(k // 3) % 18], "true" if k % 6 == 0 else "false"))


def guild_head(r, gid, g, owner, size, chan0):
    return ('"id":"%d","name":"%s %s Community","icon":"%s","description":"A place for %s '
            'fans","splash":null,"discovery_splash":null,"banner":null,"owner_id":"%d",'
            '"application_id":null,"region":"deprecated","afk_channel_id":null,'
            '"afk_timeout":300,"system_channel_id":"%d","system_channel_flags":0,'
            '"widget_enabled":false,"widget_channel_id":null,"verification_level":2,'
            '"default_message_notifications":1,"explicit_content_filter":2,"mfa_level":1,'
            '"premium_tier":%d,"premium_subscription_count":%d,"preferred_locale":"en-US",'
            '"rules_channel_id":"%d","public_updates_channel_id":"%d",'
            '"safety_alerts_channel_id":null,"nsfw_level":0,"nsfw":false,'
            '"features":["COMMUNITY","NEWS","ANIMATED_ICON","INVITE_SPLASH","ROLE_ICONS"],'
            '"max_members":500000,"max_video_channel_users":25,"max_stage_video_channel_users":'
            '50,"vanity_url_code":null,"premium_progress_bar_enabled":false,"hub_type":null,'
            '"incidents_data":null,"latest_onboarding_question_id":null,'
            '"home_header":null,"inventory_settings":null,"joined_at":"%s","large":%s,'
            '"unavailable":false,"member_count":%d,"lazy":true'
            % (gid, ADJ[g % 18], NOUN[(g // 18) % 18], _hash(r), NOUN[g % 18], owner, chan0,
               g % 4, g % 30, chan0, chan0, iso(NOW_MS - r.randrange(10**10)),
               "true" if size > 250 else "false", size))


def shares(total, weights, floor):
    s = sum(weights)
    out = [max(floor, int(round(total * w / s))) for w in weights]
    # put the rounding difference on the largest
    out[0] += total - sum(out)
    return out


def population(guilds=1000, members=1000000, channels=100000, roles=20, seed=1, stats=None,
               in_create=100, chunk=1000):
    """Yield (t, d) events for the population; stats (a dict) gets counts and JSON bytes."""
    r = random.Random(seed)
    st = stats if stats is not None else {}
    for k in ("guilds", "channels", "roles", "emojis", "members", "users"):
        st.setdefault(k, {"count": 0, "json_bytes": 0})
    sizes = shares(members, [1.0 / (i + 1) ** 0.9 for i in range(guilds)], 2)
    chans = shares(channels, [s ** 0.5 for s in sizes], 3)
    gids = [flake(NOW_MS - 3 * 10**11 + i * 10**8, i) for i in range(guilds)]
    app = flake(NOW_MS - 4 * 10**11, 1)
    ready = ('{"v":10,"user_settings":{},"user":{"verified":true,"username":"bench",'
             '"mfa_enabled":false,"id":"%d","global_name":null,"flags":0,"email":null,'
             '"discriminator":"0","bot":true,"avatar":null},"session_type":"normal",'
             '"session_id":"bench0000000000000000000000000000","resume_gateway_url":'
             '"wss://gateway-us-east1-b.discord.gg","relationships":[],"private_channels":[],'
             '"presences":[],"guilds":[%s],"guild_join_requests":[],"geo_ordered_rtc_regions":'
             '["us-east"],"application":{"id":"%d","flags":565248},"shard":[0,1]}'
             % (app, ",".join('{"unavailable":true,"id":"%d"}' % g for g in gids), app))
    yield "READY", ready
    next_user = 0
    user_ids = []
    for g, gid in enumerate(gids):
        nroles = max(3, min(80, int(r.gauss(roles, roles / 3))))
        role_ids = [gid] + [gid + (k + 1) * 1048576 for k in range(1, nroles)]
        role_js = [role_json(r, gid, role_ids[k], k) for k in range(nroles)]
        emo_js = [emoji_json(gid + (k + 1) * 4096 + 7, k)
                  for k in range(min(50, 3 + sizes[g] // 500))]
        chan_js = []
        cat = gid
        for k in range(chans[g]):
            cid = gid + (k + 1) * 4096
            if k % 10 == 0:
                cat = cid
            chan_js.append(channel_json(r, gid, cid, k, cat, role_ids))
        # this guild's members: mostly new users, about one in seven seen in another guild
        seen = set()
        mem_js = []
        for _ in range(sizes[g]):
            n = r.randrange(len(user_ids)) if user_ids and r.random() < 0.15 else -1
            if n < 0 or n in seen:
                n = next_user
                next_user += 1
                user_ids.append(flake(NOW_MS - 2 * 10**11 + n * 997, n))
                st["users"]["count"] += 1
            seen.add(n)
            mem_js.append(member_json(r, user_json(r, user_ids[n], n), role_ids))
        owner = user_ids[min(seen)] if seen else app
        head = guild_head(r, gid, g, owner, len(mem_js), gid + 4096)
        first = mem_js[:in_create]
        d = ('{%s,"roles":[%s],"emojis":[%s],"stickers":[],"channels":[%s],"threads":[],'
             '"stage_instances":[],"guild_scheduled_events":[],"soundboard_sounds":[],'
             '"voice_states":[],"members":[%s],"presences":[],"embedded_activities":[],'
             '"application_command_counts":{}}'
             % (head, ",".join(role_js), ",".join(emo_js), ",".join(chan_js), ",".join(first)))
        lists = sum(map(len, role_js)) + sum(map(len, emo_js)) + sum(map(len, chan_js)) + \
            sum(map(len, first)) + max(0, len(role_js) - 1) + max(0, len(emo_js) - 1) + \
            max(0, len(chan_js) - 1) + max(0, len(first) - 1)
        for kind, js in (("roles", role_js), ("emojis", emo_js), ("channels", chan_js),
                         ("members", mem_js)):
            st[kind]["count"] += len(js)
            st[kind]["json_bytes"] += sum(map(len, js))
        st["guilds"]["count"] += 1
        st["guilds"]["json_bytes"] += len(d) - lists
        yield "GUILD_CREATE", d
        rest = mem_js[in_create:]
        count = (len(rest) + chunk - 1) // chunk
        for i in range(count):
            part = rest[i * chunk:(i + 1) * chunk]
            yield "GUILD_MEMBERS_CHUNK", (
                '{"not_found":[],"members":[%s],"guild_id":"%d","chunk_index":%d,'
                '"chunk_count":%d,"nonce":"bench"}' % (",".join(part), gid, i, count))
    st["guild_ids"] = gids
    st["user_ids_sample"] = user_ids[:: max(1, len(user_ids) // 1000)]


if __name__ == "__main__":
    import sys
    stats = {}
    n = 0
    for t, d in population(guilds=20, members=20000, channels=2000, stats=stats):
        n += len(d)
    print(n, {k: v for k, v in stats.items() if isinstance(v, dict)}, file=sys.stderr)
