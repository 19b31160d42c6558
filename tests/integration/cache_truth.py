"""The truth the entity cache's tests compare against: a model of one bot's Discord state.

Every mutation updates the model and emits the exact gateway dispatch Discord sends for it
(through truth.emit(t, d), which a test points at the fake Discord); every reader answers what
Discord's REST API would answer for the state the model holds, in REST's shapes:

  - a guild is REST's guild object: GUILD_CREATE's guild fields without the gateway-only ones,
    with "roles", "emojis" and "stickers" inside;
  - a channel or thread carries "guild_id" (GUILD_CREATE's channels do not); a thread loses
    THREAD_CREATE's "newly_created";
  - a member carries "user" and never "guild_id"; a voice state carries "guild_id", no "member";
  - lists are sorted by id ascending (members by user id).

permissions() implements Discord's documented algorithm (developers/topics/permissions:
base permissions, owner and ADMINISTRATOR, overwrites in Discord's order, the implicit rules,
timeouts) independently of the daemon's C code.

Standard library only; no I/O.
"""
import copy

SNOW_T0 = 300000000000  # ms since the Discord epoch: mid 2024, as tests/fake/events.c
TS = "2025-01-01T00:00:00.000000+00:00"

# Fields of GUILD_CREATE that only the gateway sends (never in REST's guild object).
GATEWAY_ONLY = ("joined_at", "large", "unavailable", "member_count", "voice_states", "members",
                "channels", "threads", "presences", "stage_instances", "guild_scheduled_events",
                "soundboard_sounds", "embedded_activities", "lazy", "application_command_counts")

# Discord's permission flags (developers/topics/permissions, "Bitwise Permission Flags").
PERMISSIONS = [
    (0, "CREATE_INSTANT_INVITE"), (1, "KICK_MEMBERS"), (2, "BAN_MEMBERS"), (3, "ADMINISTRATOR"),
    (4, "MANAGE_CHANNELS"), (5, "MANAGE_GUILD"), (6, "ADD_REACTIONS"), (7, "VIEW_AUDIT_LOG"),
    (8, "PRIORITY_SPEAKER"), (9, "STREAM"), (10, "VIEW_CHANNEL"), (11, "SEND_MESSAGES"),
    (12, "SEND_TTS_MESSAGES"), (13, "MANAGE_MESSAGES"), (14, "EMBED_LINKS"), (15, "ATTACH_FILES"),
    (16, "READ_MESSAGE_HISTORY"), (17, "MENTION_EVERYONE"), (18, "USE_EXTERNAL_EMOJIS"),
    (19, "VIEW_GUILD_INSIGHTS"), (20, "CONNECT"), (21, "SPEAK"), (22, "MUTE_MEMBERS"),
    (23, "DEAFEN_MEMBERS"), (24, "MOVE_MEMBERS"), (25, "USE_VAD"), (26, "CHANGE_NICKNAME"),
    (27, "MANAGE_NICKNAMES"), (28, "MANAGE_ROLES"), (29, "MANAGE_WEBHOOKS"),
    (30, "MANAGE_GUILD_EXPRESSIONS"), (31, "USE_APPLICATION_COMMANDS"), (32, "REQUEST_TO_SPEAK"),
    (33, "MANAGE_EVENTS"), (34, "MANAGE_THREADS"), (35, "CREATE_PUBLIC_THREADS"),
    (36, "CREATE_PRIVATE_THREADS"), (37, "USE_EXTERNAL_STICKERS"),
    (38, "SEND_MESSAGES_IN_THREADS"), (39, "USE_EMBEDDED_ACTIVITIES"), (40, "MODERATE_MEMBERS"),
    (41, "VIEW_CREATOR_MONETIZATION_ANALYTICS"), (42, "USE_SOUNDBOARD"),
    (43, "CREATE_GUILD_EXPRESSIONS"), (44, "CREATE_EVENTS"), (45, "USE_EXTERNAL_SOUNDS"),
    (46, "SEND_VOICE_MESSAGES"), (48, "SET_VOICE_CHANNEL_STATUS"), (49, "SEND_POLLS"),
    (50, "USE_EXTERNAL_APPS"), (51, "PIN_MESSAGES"), (52, "BYPASS_SLOWMODE"),
]
P = {name: 1 << bit for bit, name in PERMISSIONS}
ALL = sum(P.values())


def perm_names(bits):
    return [name for bit, name in PERMISSIONS if bits >> bit & 1]


def compute_permissions(guild_id, owner_id, everyone, member_role_perms, user_id,
                        overwrites=None, timed_out=False):
    """Discord's documented computation. everyone: @everyone's permissions; member_role_perms:
    {role_id: permissions} of the member's roles; overwrites: None for the guild level, else the
    channel's permission_overwrites as Discord sends them (a thread: its parent's)."""
    # compute_base_permissions
    if user_id == owner_id:
        return ALL
    perms = everyone
    for p in member_role_perms.values():
        perms |= p
    if perms & P["ADMINISTRATOR"]:
        return ALL
    if overwrites is not None:
        # compute_overwrites: @everyone, then the member's roles together, then the member
        by_id = {o["id"]: o for o in overwrites}
        ow = by_id.get(guild_id)
        if ow:
            perms &= ~int(ow["deny"])
            perms |= int(ow["allow"])
        allow = deny = 0
        for rid in member_role_perms:
            ow = by_id.get(rid)
            if ow and ow["type"] == 0:
                allow |= int(ow["allow"])
                deny |= int(ow["deny"])
        perms &= ~deny
        perms |= allow
        ow = by_id.get(user_id)
        if ow and ow["type"] == 1:
            perms &= ~int(ow["deny"])
            perms |= int(ow["allow"])
        # implicit permissions: no VIEW_CHANNEL denies everything in the channel; no
        # SEND_MESSAGES denies what only sending a message uses
        if not perms & P["VIEW_CHANNEL"]:
            perms = 0
        elif not perms & P["SEND_MESSAGES"]:
            perms &= ~(P["MENTION_EVERYONE"] | P["SEND_TTS_MESSAGES"] | P["ATTACH_FILES"]
                       | P["EMBED_LINKS"])
    if timed_out:  # timed-out members keep only these (owner and administrators are exempt)
        perms &= P["VIEW_CHANNEL"] | P["READ_MESSAGE_HISTORY"]
    return perms


def _merge(base, upd):
    out = dict(base)
    out.update(upd)
    return out


# The fields only the user itself sees (USER_UPDATE and READY's user carry them for the bot):
# REST's user object as another user sees it has none, nor does the cache keep them.
PRIVATE_USER_FIELDS = ("email", "verified", "mfa_enabled", "locale", "premium_type")


def _public(user):
    return {k: v for k, v in user.items() if k not in PRIVATE_USER_FIELDS}


def _by_id(items, key="id"):
    return sorted(items, key=lambda x: int(x[key]))


class Truth:
    """One bot's Discord state. emit(t, d) receives each dispatch (set it to send through the
    fake); shards: the bot's shard count (a guild's shard is (id >> 22) % shards)."""

    def __init__(self, shards=1, emit=None, bot_name="cache-bot"):
        self.shards = shards
        self.emit = emit or (lambda t, d: None)
        self.n = 0
        self.guilds = {}  # id -> dict of parts (see _new_guild)
        self.users = {}  # id -> user object (every user object seen, merged)
        self.bot_id = "1100000000000000001"  # the fake's READY user
        # "verified" as READY's user has it, so merging READY's user in changes nothing
        self.users[self.bot_id] = dict(self.user_object(self.bot_id, bot_name, bot=True),
                                       verified=True)

    # ---- ids and object builders ---------------------------------------------------------------
    def snowflake(self, shard=None):
        """A new id, above every earlier one; with shard, one whose guild shard is shard."""
        while True:
            self.n += 1
            ts = SNOW_T0 + self.n * 7
            if shard is None or ts % self.shards == shard:
                return str((ts << 22) | (self.n & 0xfff))

    def shard_of(self, guild_id):
        return (int(guild_id) >> 22) % self.shards

    @staticmethod
    def user_object(uid, name, bot=False):
        u = {"id": uid, "username": name, "global_name": name.title(), "discriminator": "0",
             "avatar": None, "banner": None, "accent_color": None, "public_flags": 0, "flags": 0,
             "avatar_decoration_data": None, "collectibles": None, "primary_guild": None,
             "clan": None}
        if bot:
            u["bot"] = True
        return u

    def new_user(self, name, bot=False):
        uid = self.snowflake()
        return self.user_object(uid, name, bot)

    def role_object(self, rid, name, permissions, position, **kw):
        r = {"id": rid, "name": name, "description": None, "permissions": str(permissions),
             "position": position, "color": 0,
             "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
             "hoist": False, "managed": False, "mentionable": False, "icon": None,
             "unicode_emoji": None, "flags": 0}
        r.update(kw)
        return r

    @staticmethod
    def overwrite(oid, type_, allow=0, deny=0):
        return {"id": oid, "type": type_, "allow": str(allow), "deny": str(deny)}

    def channel_object(self, gid, name, type_=0, position=0, parent_id=None, overwrites=(),
                       **kw):
        """A channel as REST answers it (with guild_id)."""
        cid = self.snowflake()
        c = {"id": cid, "type": type_, "guild_id": gid, "name": name, "position": position,
             "flags": 0, "parent_id": parent_id, "permission_overwrites": list(overwrites)}
        if type_ in (0, 5):
            c.update({"topic": None, "nsfw": False, "last_message_id": None,
                      "rate_limit_per_user": 0, "default_thread_rate_limit_per_user": 0,
                      "default_auto_archive_duration": 4320, "last_pin_timestamp": None})
        elif type_ == 2:
            c.update({"nsfw": False, "bitrate": 64000, "user_limit": 0, "rtc_region": None,
                      "last_message_id": None, "rate_limit_per_user": 0})
        c.update(kw)
        return c

    def thread_object(self, gid, parent_id, owner_id, name, **kw):
        tid = self.snowflake()
        t = {"id": tid, "type": 11, "guild_id": gid, "parent_id": parent_id, "owner_id": owner_id,
             "name": name, "last_message_id": None, "message_count": 0, "member_count": 1,
             "total_message_sent": 0, "rate_limit_per_user": 0, "flags": 0,
             "thread_metadata": {"archived": False, "archive_timestamp": TS,
                                 "auto_archive_duration": 1440, "locked": False,
                                 "create_timestamp": TS, "invitable": True}}
        t.update(kw)
        return t

    def member_object(self, user, roles=(), nick=None, **kw):
        """A member as REST answers it (user inside, no guild_id)."""
        m = {"user": user, "nick": nick, "avatar": None, "banner": None, "roles": list(roles),
             "joined_at": TS, "premium_since": None, "deaf": False, "mute": False, "flags": 0,
             "pending": False, "communication_disabled_until": None}
        m.update(kw)
        return m

    def emoji_object(self, name, roles=()):
        return {"id": self.snowflake(), "name": name, "roles": list(roles),
                "require_colons": True, "managed": False, "animated": False, "available": True}

    def sticker_object(self, gid, name):
        return {"id": self.snowflake(), "name": name, "tags": "smile", "type": 2,
                "format_type": 1, "description": "a sticker", "asset": "", "available": True,
                "guild_id": gid}

    def voice_object(self, gid, uid, channel_id, **kw):
        v = {"guild_id": gid, "channel_id": channel_id, "user_id": uid,
             "session_id": "vs%s" % uid[-6:], "deaf": False, "mute": False, "self_deaf": False,
             "self_mute": False, "self_video": False, "suppress": False,
             "request_to_speak_timestamp": None}
        v.update(kw)
        return v

    # ---- guild creation -------------------------------------------------------------------------
    def add_guild(self, name, shard=0, members=(), owner=None, large=False):
        """A new guild in the model (not emitted): the bot's member, members (user objects), a
        category, two text channels and a voice channel, @everyone and two roles, an emoji and
        a sticker. Returns its id; guild_create(id) gives the GUILD_CREATE body."""
        gid = self.snowflake(shard)
        owner = owner or self.new_user("owner%d" % self.n)
        g = {"fields": None, "roles": {}, "emojis": [], "stickers": [], "channels": {},
             "threads": {}, "members": {}, "voice": {}, "presences": {}, "unavailable": False,
             "member_count": 0, "joined_at": TS, "large": large}
        self.guilds[gid] = g
        g["fields"] = {
            "id": gid, "name": name, "icon": None, "icon_hash": None, "splash": None,
            "discovery_splash": None, "owner_id": owner["id"], "region": "deprecated",
            "afk_channel_id": None, "afk_timeout": 300, "widget_enabled": False,
            "widget_channel_id": None, "verification_level": 1,
            "default_message_notifications": 1, "explicit_content_filter": 2,
            "features": ["COMMUNITY", "NEWS"], "mfa_level": 0, "application_id": None,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "max_presences": None, "max_members": 500000, "vanity_url_code": None,
            "description": "a guild of the cache tests", "banner": None, "premium_tier": 1,
            "premium_subscription_count": 3, "preferred_locale": "en-US",
            "public_updates_channel_id": None, "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50, "nsfw_level": 0, "nsfw": False,
            "premium_progress_bar_enabled": False, "safety_alerts_channel_id": None,
            "incidents_data": None, "hub_type": None, "latest_onboarding_question_id": None,
            "home_header": None, "inventory_settings": None, "version": 1700000000000}
        R = P
        g["roles"][gid] = self.role_object(gid, "@everyone", R["VIEW_CHANNEL"] | R["SEND_MESSAGES"]
                                           | R["READ_MESSAGE_HISTORY"] | R["CONNECT"] | R["SPEAK"]
                                           | R["ADD_REACTIONS"] | R["EMBED_LINKS"], 0)
        mod = self.role_object(self.snowflake(), "mod", R["KICK_MEMBERS"] | R["MANAGE_MESSAGES"]
                               | R["MODERATE_MEMBERS"], 2, color=3447003, hoist=True,
                               colors={"primary_color": 3447003, "secondary_color": None,
                                       "tertiary_color": None})
        muted = self.role_object(self.snowflake(), "muted", 0, 1)
        g["roles"][mod["id"]] = mod
        g["roles"][muted["id"]] = muted
        g["mod"], g["muted"] = mod["id"], muted["id"]
        cat = self.channel_object(gid, "Text Channels", 4, 0)
        for k in [kk for kk in list(cat) if kk not in ("id", "type", "guild_id", "name", "position",
                                                       "flags", "parent_id",
                                                       "permission_overwrites")]:
            del cat[k]
        general = self.channel_object(gid, "general", 0, 0, cat["id"], topic="say hi")
        staff = self.channel_object(gid, "staff", 0, 1, cat["id"], overwrites=[
            self.overwrite(gid, 0, deny=R["VIEW_CHANNEL"]),
            self.overwrite(mod["id"], 0, allow=R["VIEW_CHANNEL"])])
        voice = self.channel_object(gid, "Voice", 2, 2)
        for c in (cat, general, staff, voice):
            g["channels"][c["id"]] = c
        g["general"], g["staff"], g["voice_ch"], g["category"] = (general["id"], staff["id"],
                                                                    voice["id"], cat["id"])
        g["emojis"] = [self.emoji_object("blobwave")]
        g["stickers"] = [self.sticker_object(gid, "wave")]
        self._set_user(owner)
        g["members"][owner["id"]] = self._strip_user(self.member_object(owner))
        self._set_user(self.users[self.bot_id])
        g["members"][self.bot_id] = self._strip_user(
            self.member_object(self.users[self.bot_id],
                               joined_at="2025-01-02T00:00:00.000000+00:00"))
        for u in members:
            self._set_user(u)
            g["members"][u["id"]] = self._strip_user(self.member_object(u))
        g["member_count"] = len(g["members"])
        return gid

    def guild_create(self, gid, with_members=True):
        """GUILD_CREATE's d for the model's guild gid, as Discord sends it."""
        g = self.guilds[gid]
        d = copy.deepcopy(g["fields"])
        d.update({"roles": _by_id(copy.deepcopy(list(g["roles"].values()))),
                  "emojis": copy.deepcopy(g["emojis"]), "stickers": copy.deepcopy(g["stickers"]),
                  "joined_at": g["joined_at"], "large": g["large"], "unavailable": False,
                  "member_count": g["member_count"], "lazy": True,
                  "application_command_counts": {"1": 2}, "stage_instances": [],
                  "guild_scheduled_events": [], "soundboard_sounds": [],
                  "embedded_activities": []})
        chans = []
        for c in g["channels"].values():
            c = copy.deepcopy(c)
            del c["guild_id"]  # GUILD_CREATE's channels carry no guild_id
            chans.append(c)
        d["channels"] = chans
        d["threads"] = copy.deepcopy(list(g["threads"].values()))
        d["members"] = ([self._with_user(m, u) for u, m in g["members"].items()]
                        if with_members else
                        [self._with_user(g["members"][self.bot_id], self.bot_id)])
        d["voice_states"] = []
        for v in g["voice"].values():
            v = copy.deepcopy(v)
            del v["guild_id"]  # GUILD_CREATE's voice states carry neither guild_id nor member
            d["voice_states"].append(v)
        d["presences"] = copy.deepcopy(list(g["presences"].values()))
        if not with_members:  # a large guild: only the bot; the rest come by chunks
            self.forget_members(gid, keep=[self.bot_id])
        return d

    def unseen_member(self, gid, user, **kw):
        """A member of gid no event has shown yet (a large guild's GUILD_CREATE leaves most
        out): GUILD_MEMBERS_CHUNK or a message brings it."""
        self._set_user(user)
        m = self._strip_user(self.member_object(user, **kw))
        self.guilds[gid].setdefault("hidden", {})[user["id"]] = m

    def forget_members(self, gid, keep=()):
        g = self.guilds[gid]
        g["hidden"] = {u: m for u, m in g["members"].items() if u not in keep}
        g["members"] = {u: m for u, m in g["members"].items() if u in keep}

    def _set_user(self, user):
        u = self.users.get(user["id"], {})
        self.users[user["id"]] = _merge(u, copy.deepcopy(user))

    @staticmethod
    def _strip_user(m):
        m = dict(m)
        m.pop("user", None)
        m.pop("guild_id", None)
        return m

    def _with_user(self, m, uid, public=False):
        m = copy.deepcopy(m)
        m["user"] = copy.deepcopy(_public(self.users[uid]) if public else self.users[uid])
        return m

    # ---- mutations: each emits Discord's dispatch ----------------------------------------------
    def send_guild_create(self, gid, with_members=True):
        self.guilds[gid]["unavailable"] = False
        self.emit("GUILD_CREATE", self.guild_create(gid, with_members))

    def guild_update(self, gid, **fields):
        g = self.guilds[gid]
        g["fields"].update(fields)
        d = copy.deepcopy(g["fields"])
        d.update({"roles": _by_id(copy.deepcopy(list(g["roles"].values()))),
                  "emojis": copy.deepcopy(g["emojis"]), "stickers": copy.deepcopy(g["stickers"])})
        self.emit("GUILD_UPDATE", d)

    def guild_unavailable(self, gid):
        self.guilds[gid]["unavailable"] = True
        self.emit("GUILD_DELETE", {"id": gid, "unavailable": True})

    def guild_delete(self, gid):
        """The bot left or was removed: everything of the guild goes."""
        del self.guilds[gid]
        self.emit("GUILD_DELETE", {"id": gid})

    def drop_guild(self, gid):
        """Forget gid without an event (a new session that does not bring it back)."""
        del self.guilds[gid]

    def channel_create(self, gid, name, **kw):
        c = self.channel_object(gid, name, **kw)
        self.guilds[gid]["channels"][c["id"]] = c
        self.emit("CHANNEL_CREATE", copy.deepcopy(c))
        return c["id"]

    def channel_update(self, gid, cid, **fields):
        c = self.guilds[gid]["channels"][cid]
        c.update(fields)
        self.emit("CHANNEL_UPDATE", copy.deepcopy(c))

    def channel_delete(self, gid, cid):
        c = self.guilds[gid]["channels"].pop(cid)
        self.emit("CHANNEL_DELETE", copy.deepcopy(c))

    def thread_create(self, gid, parent_id, owner_id, name, **kw):
        t = self.thread_object(gid, parent_id, owner_id, name, **kw)
        self.guilds[gid]["threads"][t["id"]] = t
        d = copy.deepcopy(t)
        d["newly_created"] = True
        self.emit("THREAD_CREATE", d)
        return t["id"]

    def thread_update(self, gid, tid, **fields):
        t = self.guilds[gid]["threads"][tid]
        for k, v in fields.items():
            if k == "thread_metadata":
                t[k] = _merge(t[k], v)
            else:
                t[k] = v
        self.emit("THREAD_UPDATE", copy.deepcopy(t))

    def thread_delete(self, gid, tid):
        t = self.guilds[gid]["threads"].pop(tid)
        self.emit("THREAD_DELETE", {"id": tid, "guild_id": gid, "parent_id": t["parent_id"],
                                    "type": t["type"]})

    def thread_list_sync(self, gid, channel_ids, threads):
        """THREAD_LIST_SYNC: the active threads of channel_ids (None: the whole guild) are now
        exactly threads (thread objects of the model's building, added to it)."""
        g = self.guilds[gid]
        for tid, t in list(g["threads"].items()):
            if channel_ids is None or t["parent_id"] in channel_ids:
                del g["threads"][tid]
        for t in threads:
            g["threads"][t["id"]] = copy.deepcopy(t)
        d = {"guild_id": gid, "threads": copy.deepcopy(threads), "members": []}
        if channel_ids is not None:
            d["channel_ids"] = list(channel_ids)
        self.emit("THREAD_LIST_SYNC", d)

    def role_create(self, gid, name, permissions, position=1, **kw):
        r = self.role_object(self.snowflake(), name, permissions, position, **kw)
        self.guilds[gid]["roles"][r["id"]] = r
        self.emit("GUILD_ROLE_CREATE", {"guild_id": gid, "role": copy.deepcopy(r)})
        return r["id"]

    def role_update(self, gid, rid, **fields):
        r = self.guilds[gid]["roles"][rid]
        r.update({k: str(v) if k == "permissions" else v for k, v in fields.items()})
        self.emit("GUILD_ROLE_UPDATE", {"guild_id": gid, "role": copy.deepcopy(r)})

    def role_delete(self, gid, rid):
        """(Discord drops the role from members too; tests delete roles no member holds.)"""
        g = self.guilds[gid]
        del g["roles"][rid]
        for m in g["members"].values():
            if rid in m["roles"]:
                m["roles"].remove(rid)
        self.emit("GUILD_ROLE_DELETE", {"guild_id": gid, "role_id": rid})

    def emojis_update(self, gid, emojis):
        self.guilds[gid]["emojis"] = copy.deepcopy(emojis)
        self.emit("GUILD_EMOJIS_UPDATE", {"guild_id": gid, "emojis": copy.deepcopy(emojis)})

    def stickers_update(self, gid, stickers):
        self.guilds[gid]["stickers"] = copy.deepcopy(stickers)
        self.emit("GUILD_STICKERS_UPDATE", {"guild_id": gid, "stickers": copy.deepcopy(stickers)})

    def member_add(self, gid, user, roles=(), **kw):
        g = self.guilds[gid]
        self._set_user(user)
        m = self.member_object(user, roles, **kw)
        g["members"][user["id"]] = self._strip_user(m)
        g["member_count"] += 1
        d = copy.deepcopy(m)
        d["guild_id"] = gid
        self.emit("GUILD_MEMBER_ADD", d)

    def member_update(self, gid, uid, user=None, **fields):
        """GUILD_MEMBER_UPDATE as Discord sends it: guild_id, roles, user, joined_at, nick,
        avatar, banner, premium_since, pending, communication_disabled_until, flags (deaf and
        mute left out: Discord omits them), with fields changed; user changes merge."""
        g = self.guilds[gid]
        m = g["members"][uid]
        m.update(fields)
        if user:
            self._set_user(_merge(self.users[uid], user))
        d = {"guild_id": gid, "user": copy.deepcopy(self.users[uid])}
        for k in ("roles", "joined_at", "nick", "avatar", "banner", "premium_since", "pending",
                  "communication_disabled_until", "flags"):
            d[k] = copy.deepcopy(m[k])
        self.emit("GUILD_MEMBER_UPDATE", d)

    def member_remove(self, gid, uid):
        g = self.guilds[gid]
        assert uid not in g["voice"] and uid not in g["presences"], "tests remove idle members"
        del g["members"][uid]
        g["member_count"] -= 1
        self.emit("GUILD_MEMBER_REMOVE", {"guild_id": gid, "user": copy.deepcopy(self.users[uid])})

    def members_chunk(self, gid, uids, chunk_index=0, chunk_count=1, nonce=None):
        """GUILD_MEMBERS_CHUNK of members the model knows (hidden ones included)."""
        g = self.guilds[gid]
        hidden = g.get("hidden", {})
        members = []
        for uid in uids:
            m = g["members"].get(uid) or hidden.pop(uid)
            g["members"][uid] = m
            members.append(self._with_user(m, uid))
        d = {"guild_id": gid, "members": members, "chunk_index": chunk_index,
             "chunk_count": chunk_count}
        if nonce:
            d["nonce"] = nonce
        self.emit("GUILD_MEMBERS_CHUNK", d)

    def message_create(self, gid, cid, uid, content="hello"):
        """A message by uid: Discord sends the author (user) and member (no user inside); the
        channel's (or thread's) last_message_id becomes the message's id."""
        g = self.guilds[gid]
        m = g["members"].get(uid) or g.get("hidden", {}).pop(uid)
        g["members"][uid] = m
        mid = self.snowflake()
        ch = g["channels"].get(cid) or g["threads"].get(cid)
        ch["last_message_id"] = mid
        if ch.get("type") == 11:
            ch["message_count"] += 1
            ch["total_message_sent"] += 1
        member = copy.deepcopy(m)
        self.emit("MESSAGE_CREATE", {
            "type": 0, "tts": False, "timestamp": TS, "pinned": False, "nonce": mid,
            "mentions": [], "mention_roles": [], "mention_everyone": False, "member": member,
            "id": mid, "flags": 0, "embeds": [], "edited_timestamp": None, "content": content,
            "components": [], "channel_type": ch["type"], "channel_id": cid,
            "author": copy.deepcopy(self.users[uid]), "attachments": [], "guild_id": gid})
        return mid

    def interaction_create(self, gid, cid, uid, **member_fields):
        """A slash command by uid in channel cid: Discord sends the member (user inside, plus
        the computed "permissions" REST's member object has not) and a partial channel (with
        its own "permissions"). member_fields: the member as it is now (e.g. a new nick)."""
        g = self.guilds[gid]
        m = g["members"][uid]
        m.update(member_fields)
        member = self._with_user(m, uid)
        perms = self.permissions(gid, uid, cid)["permissions"]
        member["permissions"] = perms
        ch = g["channels"][cid]
        channel = {k: copy.deepcopy(ch[k]) for k in ("id", "type", "guild_id", "name", "topic",
                                                     "nsfw", "parent_id", "position", "flags",
                                                     "last_message_id", "rate_limit_per_user")
                   if k in ch}
        channel["permissions"] = perms
        iid = self.snowflake()
        self.emit("INTERACTION_CREATE", {
            "version": 1, "type": 2, "token": "aW50ZXJhY3Rpb24t" + iid, "member": member,
            "locale": "en-US", "id": iid, "guild_locale": "en-US", "guild_id": gid,
            "guild": {"id": gid, "locale": "en-US", "features": g["fields"]["features"]},
            "entitlements": [], "entitlement_sku_ids": [], "data": {
                "type": 1, "name": "ping", "id": self.snowflake()},
            "context": 0, "channel_id": cid, "channel": channel, "attachment_size_limit": 10485760,
            "authorizing_integration_owners": {"0": gid}, "application_id": "1100000000000000001",
            "app_permissions": "2248473465835073"})

    def voice_join(self, gid, uid, channel_id, **kw):
        g = self.guilds[gid]
        v = self.voice_object(gid, uid, channel_id, **kw)
        g["voice"][uid] = v
        d = copy.deepcopy(v)
        d["member"] = self._with_user(g["members"][uid], uid)
        self.emit("VOICE_STATE_UPDATE", d)

    def voice_update(self, gid, uid, **fields):
        g = self.guilds[gid]
        g["voice"][uid].update(fields)
        d = copy.deepcopy(g["voice"][uid])
        d["member"] = self._with_user(g["members"][uid], uid)
        self.emit("VOICE_STATE_UPDATE", d)

    def voice_leave(self, gid, uid):
        g = self.guilds[gid]
        v = g["voice"].pop(uid)
        d = copy.deepcopy(v)
        d["channel_id"] = None
        d["member"] = self._with_user(g["members"][uid], uid)
        self.emit("VOICE_STATE_UPDATE", d)

    def presence_update(self, gid, uid, status, activities=(), **user_fields):
        """PRESENCE_UPDATE: its user carries only the id, plus the user's fields that changed
        (Discord tells of a new username or avatar this way)."""
        g = self.guilds[gid]
        p = {"user": {"id": uid}, "status": status, "activities": list(activities),
             "client_status": {"desktop": status}}
        g["presences"][uid] = p
        d = copy.deepcopy(p)
        d["guild_id"] = gid
        if user_fields:
            self._set_user(dict(user_fields, id=uid))
            d["user"].update(user_fields)
        self.emit("PRESENCE_UPDATE", d)

    def user_update(self, **fields):
        """USER_UPDATE: the bot's own user changed (Discord sends the whole user, with the
        account fields only the user itself sees)."""
        u = _merge(self.users[self.bot_id], fields)
        u.update({k: v for k, v in (("verified", True), ("mfa_enabled", False), ("email", None))
                  if k not in u})
        self.users[self.bot_id] = u
        self.emit("USER_UPDATE", copy.deepcopy(u))

    # ---- readers: what Discord's REST API answers ----------------------------------------------
    def _g(self, gid):
        g = self.guilds.get(gid)
        return g if g and not g["unavailable"] else None

    def guild(self, gid):
        g = self._g(gid)
        if not g:
            return None
        d = copy.deepcopy(g["fields"])
        d.update({"roles": self.roles(gid), "emojis": self.emojis(gid),
                  "stickers": _by_id(copy.deepcopy(g["stickers"]))})
        return d

    def channels(self, gid):
        g = self._g(gid)
        return _by_id(copy.deepcopy(list(g["channels"].values()))) if g else None

    def threads(self, gid):
        g = self._g(gid)
        if not g:
            return None
        return {"threads": _by_id(copy.deepcopy(list(g["threads"].values()))), "members": []}

    def roles(self, gid):
        g = self._g(gid)
        return _by_id(copy.deepcopy(list(g["roles"].values()))) if g else None

    def emojis(self, gid):
        g = self._g(gid)
        return _by_id(copy.deepcopy(g["emojis"])) if g else None

    def member(self, gid, uid):
        g = self._g(gid)
        return (self._with_user(g["members"][uid], uid, public=True)
                if g and uid in g["members"] else None)

    def members(self, gid, limit=1, after="0"):
        g = self._g(gid)
        if not g:
            return None
        ids = sorted((u for u in g["members"] if int(u) > int(after)), key=int)[:limit]
        return [self._with_user(g["members"][u], u, public=True) for u in ids]

    def voice_states(self, gid):
        g = self._g(gid)
        return (sorted(copy.deepcopy(list(g["voice"].values())), key=lambda v: int(v["user_id"]))
                if g else None)

    def voice_state(self, gid, uid):
        g = self._g(gid)
        return copy.deepcopy(g["voice"][uid]) if g and uid in g["voice"] else None

    def channel(self, cid):
        for g in self.guilds.values():
            if g["unavailable"]:
                continue
            c = g["channels"].get(cid) or g["threads"].get(cid)
            if c:
                return copy.deepcopy(c)
        return None

    def user(self, uid):
        u = self.users.get(uid)
        return _public(u) if u else None

    def cache_guilds(self, limit=100, after="0"):
        """shardhook's own list (not a REST route): the available guilds (a loading or
        unavailable one has no answer yet)."""
        out = []
        for gid in sorted(self.guilds, key=int):
            g = self.guilds[gid]
            if int(gid) <= int(after) or g["unavailable"]:
                continue
            out.append({"id": gid, "name": g["fields"]["name"], "shard": self.shard_of(gid),
                        "member_count": g["member_count"]})
        return {"guilds": out[:limit]}

    def counts(self):
        live = [g for g in self.guilds.values() if not g["unavailable"]]
        return {"guilds": len(live),
                "channels": sum(len(g["channels"]) for g in live),
                "threads": sum(len(g["threads"]) for g in live),
                "roles": sum(len(g["roles"]) for g in live),
                "emojis": sum(len(g["emojis"]) for g in live),
                "stickers": sum(len(g["stickers"]) for g in live),
                "members": sum(len(g["members"]) for g in live),
                "voice_states": sum(len(g["voice"]) for g in live),
                "presences": sum(len(g["presences"]) for g in live)}

    def permissions(self, gid, uid, channel_id=None, now_iso="2026-01-01T00:00:00"):
        """{"permissions": "<decimal>", "names": [...]}, by compute_permissions. A timeout counts
        when communication_disabled_until is a date in the future (tests use year 2099)."""
        g = self._g(gid)
        m = g["members"][uid]
        roles = {rid: int(g["roles"][rid]["permissions"]) for rid in m["roles"]}
        ows = None
        if channel_id:
            ch = g["channels"].get(channel_id) or g["threads"][channel_id]
            if ch["type"] in (10, 11, 12):
                ch = g["channels"][ch["parent_id"]]
            ows = ch["permission_overwrites"]
        until = m.get("communication_disabled_until")
        bits = compute_permissions(gid, g["fields"]["owner_id"],
                                   int(g["roles"][gid]["permissions"]), roles, uid, ows,
                                   bool(until) and until > now_iso)
        return {"permissions": str(bits), "names": perm_names(bits)}
