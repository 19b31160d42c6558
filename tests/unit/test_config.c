/*
 * tests/unit/test_config.c: config loading, defaults, `${NAME}` expansion and the one-line
 * messages every bad input gets, plus the intents table and docs/configuration.md staying
 * in step with the directive table.
 *
 * Configs are written with ' for " so the tables stay readable (q() swaps them back).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/expand.h"
#include "config/listen.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" /* 24 bytes */
#define ENV_TOKEN "env.token-1234567890"

static char err[512];

/* ' -> " so configs can be written inside C strings without escapes. */
static const char *q(const char *s)
{
    static char buf[8192];
    size_t n = strlen(s);
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = s[i] == '\'' ? '"' : s[i];
    buf[n] = '\0';
    return buf;
}

static int load(const char *json, struct cfg_config *cfg)
{
    const char *j = q(json);
    return cfg_load_string(j, strlen(j), cfg, err, sizeof(err));
}

static void env_reset(void)
{
    setenv("DISCORD_TOKEN", ENV_TOKEN, 1);
    unsetenv("WEBHOOK_SECRET");
    unsetenv("SHARDHOOK_TEST_UNSET");
    unsetenv("SH_TEST_DIR");
    unsetenv("SH_TEST_EVENT");
}

static int is_zero(const struct cfg_config *cfg)
{
    static const struct cfg_config zero;
    return !memcmp(cfg, &zero, sizeof(zero));
}

/* ---- bad inputs: config text and the message it must give ---- */

struct bad {
    const char *json;
    const char *msg; /* ending in "...": the message starts with the rest */
};

#define WH(body) "{'webhooks':[{'url':'https://example.com/h','secret':'" SECRET "'" body "}]}"
#define Q40 "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB" /* 40 chars of base64, 30 bytes */
#define WH_NOSECRET(body) "{'webhooks':[{'url':'https://example.com/h'" body "}]}"

static const struct bad bad_inputs[] = {
    /* cache */
    {"{'cache':1}", "cache: must be an object (got 1)"},
    {"{'cache':{'members':1}}", "cache.members: must be true or false (got 1)"},
    {"{'cache':{'member':true}}", "cache.member: unknown key (did you mean \"members\"?)"},
    {"{'cache':{'members':true}}",
     "cache.members: needs the GUILD_MEMBERS intent (add it to \"intents\" or set \"members\": "
     "false)"},
    {"{'intents':['GUILD_MEMBERS'],'cache':{'guilds':true}}",
     "cache.guilds: needs the GUILDS intent (add it to \"intents\" or set \"guilds\": false)"},
    {"{'cache':{'emojis':true}}", "cache.emojis: needs the GUILD_EXPRESSIONS intent..."},
    {"{'cache':{'voice_states':true}}",
     "cache.voice_states: needs the GUILD_VOICE_STATES intent..."},
    {"{'cache':{'presences':true}}", "cache.presences: needs the GUILD_PRESENCES intent..."},
    {"{'cache':{'max_bytes':1048575}}",
     "cache.max_bytes: must be an integer from 1048576 to 1099511627776 (got 1048575)"},
    {"{'cache':{'snapshot_interval_ms':-1}}", "cache.snapshot_interval_ms: must be an integer..."},
    {"{'max_bytes':1}", "max_bytes: unknown key (did you mean \"cache.max_bytes\"?)"},
    /* cluster */
    {"{'cluster':1}", "cluster: must be an object (got 1)"},
    {"{'cluster':{}}",
     "cluster.redis: missing: the Redis address, \"redis://[:password@]host:port[/db]\" "
     "or \"unix:/path\""},
    {"{'cluster':{'redis':'localhost:6379'}}",
     "cluster.redis: must be \"redis://[:password@]host:port[/db]\" or \"unix:/path\" "
     "(rediss://..."},
    {"{'cluster':{'redis':'redis://h'}}",
     "cluster.redis: must be \"redis://[:password@]host:port[/db]\" or \"unix:/path\": the port is "
     "missing"},
    {"{'cluster':{'redis':'redis://h:0'}}",
     "cluster.redis: must be \"redis://[:password@]host:port[/db]\" or \"unix:/path\": the port "
     "must be a number from 1 to 65535"},
    {"{'cluster':{'redis':'redis://h:1/x'}}",
     "cluster.redis: must be \"redis://[:password@]host:port[/db]\" or \"unix:/path\": the db "
     "after '/'..."},
    {"{'cluster':{'redis':'redis://u:p@h:1'}}",
     "cluster.redis: must be \"redis://[:password@]host:port[/db]\" or \"unix:/path\": credentials "
     "are..."},
    {"{'cluster':{'redis':'unix:sock'}}",
     "cluster.redis: must be \"redis://[:password@]host:port[/db]\" or \"unix:/path\": a unix "
     "socket path must..."},
    {"{'cluster':{'redis':'unix:/s?db=1'}}",
     "cluster.redis: must be \"redis://[:password@]host:port[/db]\" or \"unix:/path\": no query "
     "after..."},
    {"{'cluster':{'redis':7}}", "cluster.redis: must be a string..."},
    {"{'cluster':{'redis':'unix:/s','node':''}}",
     "cluster.node: must be 1 to 64 characters (got \"\")"},
    {"{'cluster':{'redis':'unix:/s','node':'a b'}}",
     "cluster.node: may hold only A-Z a-z 0-9 . _ - (got \"a b\")"},
    {"{'cluster':{'redis':'unix:/s','node':'n:1'}}", "cluster.node: may hold only..."},
    {"{'cluster':{'redis':'unix:/s','node':'"
     "0123456789012345678901234567890123456789012345678901234567890123"
     "4'}}",
     "cluster.node: must be 1 to 64 characters..."},
    {"{'cluster':{'redis':'unix:/s','lease_ms':999}}",
     "cluster.lease_ms: must be an integer from 1000 to 600000 (got 999)"},
    {"{'cluster':{'redis':'unix:/s','max_shards':0}}",
     "cluster.max_shards: must be an integer from 1 to 65536 (got 0)"},
    {"{'cluster':{'redis':'unix:/s','advertise':'10.0.0.1:7878'}}",
     "cluster.advertise: must be an http:// or https:// URL..."},
    {"{'cluster':{'redis':'unix:/s','leas_ms':1}}",
     "cluster.leas_ms: unknown key (did you mean \"lease_ms\"?)"},
    {"{'lease_ms':1}", "lease_ms: unknown key (did you mean \"cluster.lease_ms\"?)"},
    /* unknown keys, with and without a hint */
    {"{'tokn':'x'}", "tokn: unknown key (did you mean \"token\"?)"},
    {"{'webhook':[]}", "webhook: unknown key (did you mean \"webhooks\"?)"},
    {"{'intent':1}", "intent: unknown key (did you mean \"intents\"?)"},
    {"{'zzzz':1}", "zzzz: unknown key"},
    {"{'listen':'127.0.0.1:1'}", "listen: unknown key (did you mean \"http.listen\"?)"},
    {"{'max_in_flight':1}",
     "max_in_flight: unknown key (did you mean \"webhooks[].max_in_flight\"?)"},
    {"{'Log-Level':'info'}", "Log-Level: unknown key (did you mean \"log_level\"?)"},
    {"{'tokne':'x'}", "tokne: unknown key (did you mean \"token\"?)"},
    {"{'log_level':'info','log_level':'debug'}", "log_level: duplicate key"},
    /* token */
    {"{'token':''}", "token: missing (set \"token\" or DISCORD_TOKEN)"},
    {"{'token':'Bot '}", "token: missing (set \"token\" or DISCORD_TOKEN)"},
    {"{'token':'a b'}", "token: must not contain spaces"},
    {"{'token':'a\\nb'}", "token: must not contain control characters such as newlines"},
    {"{'token':5}", "token: must be a string (got a number)"},
    {"{'token':['x']}", "token: must be a string (got a list)"},
    /* api_base */
    {"{'api_base':'ftp://x'}", "api_base: must be an http:// or https:// URL (got \"ftp://x\")"},
    {"{'api_base':'discord.com/api'}",
     "api_base: must be an http:// or https:// URL (got \"discord.com/api\")"},
    {"{'api_base':'https://'}",
     "api_base: must be an http:// or https:// URL with a host (got \"https://\")"},
    {"{'api_base':'http://a b'}", "api_base: must be a URL without spaces (got \"http://a b\")"},
    {"{'api_base':5}", "api_base: must be a string (got 5)"},
    /* what libcurl's URL parser refuses fails here, not on every request */
    {"{'api_base':'http://user:pw@[::1'}",
     "api_base: is not a URL libcurl can use: Bad IPv6 address (got \"http://user:pw@[::1\")"},
    {"{'api_base':'https://exa mple.com'}", "api_base: must be a URL without spaces..."},
    {"{'api_base':'http://host:99999/'}",
     "api_base: is not a URL libcurl can use: Port number was not a decimal number between 0 "
     "and 65535 (got \"http://host:99999/\")"},
    {"{'presence':{'activities':[{'name':'n','type':1,'url':'https://[zz]/'}]}}",
     "presence.activities[0].url: is not a URL libcurl can use: Bad IPv6 address (got "
     "\"https://[zz]/\")"},
    /* every string is UTF-8 text */
    {"{'state_dir':'st\xff'}", "state_dir: must be valid UTF-8 text"},
    {"{'state_dir':'\xc3('}", "state_dir: must be valid UTF-8 text"},
    {"{'state_dir':'\xed\xa0\x80'}", "state_dir: must be valid UTF-8 text"}, /* a surrogate */
    {"{'state_dir':'\xc0\xaf'}", "state_dir: must be valid UTF-8 text"},     /* overlong */
    {"{'http':{'token':'tok\xfe'}}", "http.token: must be valid UTF-8 text"},
    /* intents */
    {"{'intents':['GUILDS','GUILD_MESAGES']}",
     "intents[1]: unknown intent \"GUILD_MESAGES\" (did you mean \"GUILD_MESSAGES\"?)"},
    {"{'intents':['guilds']}", "intents[0]: unknown intent \"guilds\" (did you mean \"GUILDS\"?)"},
    {"{'intents':['NOPE_AT_ALL']}", "intents[0]: unknown intent \"NOPE_AT_ALL\""},
    {"{'intents':131072}", "intents: bit 17 (131072) is not a known intent"},
    {"{'intents':-1}",
     "intents: must be a non-negative integer or a list of intent names (got -1)"},
    {"{'intents':1.5}",
     "intents: must be a non-negative integer or a list of intent names (got 1.5)"},
    {"{'intents':'GUILDS'}",
     "intents: must be an integer or a list of intent names (got \"GUILDS\")"},
    {"{'intents':[5]}", "intents[0]: must be a string (got 5)"},
    /* compress */
    {"{'compress':'gzip'}",
     "compress: must be \"auto\", \"zstd\", \"zlib\", \"none\", true or false (got \"gzip\")"},
    {"{'compress':1}",
     "compress: must be \"auto\", \"zstd\", \"zlib\", \"none\", true or false (got 1)"},
    /* shards */
    {"{'shards':'manual'}",
     "shards: must be \"auto\" or an object such as {\"total\": 16} (got \"manual\")"},
    {"{'shards':16}", "shards: must be \"auto\" or an object such as {\"total\": 16} (got 16)"},
    {"{'shards':{}}", "shards.total: missing (an object for \"shards\" needs \"total\")"},
    {"{'shards':{'total':0}}", "shards.total: must be an integer from 1 to 65536 (got 0)"},
    {"{'shards':{'total':65537}}", "shards.total: must be an integer from 1 to 65536 (got 65537)"},
    {"{'shards':{'total':'4'}}", "shards.total: must be an integer from 1 to 65536 (got \"4\")"},
    {"{'shards':{'total':16,'first':0}}",
     "shards.last: missing (\"first\" and \"last\" go together)"},
    {"{'shards':{'total':16,'last':3}}",
     "shards.first: missing (\"first\" and \"last\" go together)"},
    {"{'shards':{'total':16,'first':16,'last':17}}",
     "shards.first: must be less than shards.total (16) (got 16)"},
    {"{'shards':{'total':16,'first':8,'last':16}}",
     "shards.last: must be less than shards.total (16) (got 16)"},
    {"{'shards':{'total':16,'first':8,'last':7}}",
     "shards.last: must not be less than shards.first (8) (got 7)"},
    {"{'shards':{'total':16,'first':-1,'last':7}}",
     "shards.first: must be an integer from 0 to 65535 (got -1)"},
    {"{'shards':{'total':16,'ids':[]}}", "shards.ids: must not be empty"},
    {"{'shards':{'total':16,'ids':3}}", "shards.ids: must be a list of shard ids (got 3)"},
    {"{'shards':{'total':16,'ids':[1,2,1]}}", "shards.ids[2]: duplicate shard id 1"},
    {"{'shards':{'total':16,'ids':[1,16]}}",
     "shards.ids[1]: must be less than shards.total (16) (got 16)"},
    {"{'shards':{'total':4,'ids':['a']}}",
     "shards.ids[0]: must be an integer from 0 to 65535 (got \"a\")"},
    {"{'shards':{'total':16,'ids':[0],'first':0,'last':1}}",
     "shards: use either \"first\" and \"last\", or \"ids\", not both"},
    {"{'shards':{'totl':4}}", "shards.totl: unknown key (did you mean \"total\"?)"},
    /* identify_concurrency, ranges of plain integers */
    {"{'identify_concurrency':'x'}",
     "identify_concurrency: must be \"auto\" or an integer from 1 to 1024 (got \"x\")"},
    {"{'identify_concurrency':0}",
     "identify_concurrency: must be \"auto\" or an integer from 1 to 1024 (got 0)"},
    {"{'identify_concurrency':true}",
     "identify_concurrency: must be \"auto\" or an integer from 1 to 1024 (got true)"},
    {"{'large_threshold':'x'}", "large_threshold: must be an integer from 50 to 250 (got \"x\")"},
    {"{'large_threshold':49}", "large_threshold: must be an integer from 50 to 250 (got 49)"},
    {"{'large_threshold':251}", "large_threshold: must be an integer from 50 to 250 (got 251)"},
    {"{'large_threshold':50.5}", "large_threshold: must be an integer from 50 to 250 (got 50.5)"},
    {"{'large_threshold':null}", "large_threshold: must be an integer from 50 to 250 (got null)"},
    {"{'large_threshold':1e400}",
     "large_threshold: must be an integer from 50 to 250 (got a number out of range)"},
    {"{'guild_create_timeout_ms':600001}",
     "guild_create_timeout_ms: must be an integer from 0 to 600000 (got 600001)"},
    {"{'max_resume_attempts':0}", "max_resume_attempts: must be an integer from 1 to 100 (got 0)"},
    {"{'shutdown_timeout_ms':-1}",
     "shutdown_timeout_ms: must be an integer from 0 to 600000 (got -1)"},
    {"{'reconnect_base_ms':9}", "reconnect_base_ms: must be an integer from 10 to 60000 (got 9)"},
    {"{'reconnect_max_ms':99}",
     "reconnect_max_ms: must be an integer from 100 to 3600000 (got 99)"},
    {"{'reconnect_base_ms':5000,'reconnect_max_ms':1000}",
     "reconnect_max_ms: must not be less than reconnect_base_ms (5000) (got 1000)"},
    {"{'max_payload_bytes':65535}",
     "max_payload_bytes: must be an integer from 65536 to 1073741824 (got 65535)"},
    {"{'state_dir':''}", "state_dir: must not be empty"},
    {"{'state_dir':true}", "state_dir: must be a string (got true)"},
    {"{'log_level':'verbose'}",
     "log_level: must be one of debug, info, warn, error (got \"verbose\")"},
    {"{'testing':{'identify_interval_ms':5001}}",
     "testing.identify_interval_ms: must be an integer from 0 to 5000 (got 5001)"},
    {"{'testing':{'identify_interval':1}}",
     "testing.identify_interval: unknown key (did you mean \"identify_interval_ms\"?)"},
    {"{'testing':[]}", "testing: must be an object (got a list)"},
    /* presence */
    {"{'presence':[]}", "presence: must be an object or null (got a list)"},
    {"{'presence':{'status':'away'}}",
     "presence.status: must be one of online, dnd, idle, invisible, offline (got \"away\")"},
    {"{'presence':{'activities':'x'}}",
     "presence.activities: must be a list of activity objects (got \"x\")"},
    {"{'presence':{'activities':[5]}}", "presence.activities[0]: must be an object (got 5)"},
    {"{'presence':{'activities':[{'type':1}]}}", "presence.activities[0].name: missing"},
    {"{'presence':{'activities':[{'name':'x'}]}}", "presence.activities[0].type: missing"},
    {"{'presence':{'activities':[{'name':5,'type':0}]}}",
     "presence.activities[0].name: must be a string (got 5)"},
    {"{'presence':{'activities':[{'name':'x','type':6}]}}",
     "presence.activities[0].type: must be an integer from 0 to 5 (got 6)"},
    {"{'presence':{'activities':[{'name':'x','type':0,'emoji':1}]}}",
     "presence.activities[0].emoji: unknown key"},
    {"{'presence':{'since':'x'}}",
     "presence.since: must be null or a unix time in milliseconds (got \"x\")"},
    {"{'presence':{'afk':1}}", "presence.afk: must be true or false (got 1)"},
    {"{'presence':{'stauts':'idle'}}", "presence.stauts: unknown key (did you mean \"status\"?)"},
    /* webhooks */
    {"{'webhooks':{}}", "webhooks: must be a list of webhook objects (got an object)"},
    {"{'webhooks':[5]}", "webhooks[0]: must be an object (got 5)"},
    {"{'webhooks':[{'url':'https://x/','secret':null,'when_full':'drop'}]}",
     "webhooks[0].when_full: must be one of pause, dead_letter (got \"drop\")"},
    {"{'webhooks':[{'url':'https://x/','secret':null,'retry_after_max_ms':99}]}",
     "webhooks[0].retry_after_max_ms: must be an integer from 100 to 3600000 (got 99)"},
    {"{'webhooks':[{'url':'https://x/','secret':null,'spool_max_bytes':1024}]}",
     "webhooks[0].spool_max_bytes: must be an integer from 65536 to 1099511627776 (got 1024)"},
    {"{'webhooks':[{'url':'https://x/','secret':null,'dead_letter_max_bytes':-1}]}",
     "webhooks[0].dead_letter_max_bytes: must be an integer from 0 to 1099511627776 (got -1)"},
    {"{'webhooks':[{'secret':null}]}", "webhooks[0].url: missing"},
    {"{'webhooks':[{'url':'example.com/h','secret':null}]}",
     "webhooks[0].url: must be an http:// or https:// URL"},
    {"{'webhooks':[{'url':5,'secret':null}]}", "webhooks[0].url: must be a string (got a number)"},
    {"{'webhooks':[{'url':'http://user:pw@[::1','secret':null}]}",
     "webhooks[0].url: is not a URL libcurl can use: Bad IPv6 address"},
    {"{'webhooks':[{'url':'https://h/\x80','secret':null}]}",
     "webhooks[0].url: must be valid UTF-8 text"},
    {"{'webhooks':[{'url':'https://h/','secret':null,'headers':{'X-A':'v\xff'}}]}",
     "webhooks[0].headers.X-A: must be valid UTF-8 text"},
    {"{'webhooks':[{'url':'https://h/','secret':null,'events':['A\xff']}]}",
     "webhooks[0].events[0]: must be valid UTF-8 text"},
    {WH_NOSECRET(""), "webhooks[0].secret: missing: set a \"whsec_...\" secret, or \"secret\": "
                      "null to send unsigned requests"},
    {WH_NOSECRET(",'secret':'whsec_!!!!'"),
     "webhooks[0].secret: the part after \"whsec_\" must be standard base64 (A-Z a-z 0-9 + /, "
     "optional = padding)"},
    {WH_NOSECRET(",'secret':'whsec_QUJD='"),
     "webhooks[0].secret: the part after \"whsec_\" must be standard base64..."},
    {WH_NOSECRET(",'secret':'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'"),
     "webhooks[0].secret: must start with \"whsec_\" followed by the base64 key"},
    {WH_NOSECRET(",'secret':'whsec_'"),
     "webhooks[0].secret: the base64 after \"whsec_\" must decode to 1 to 64 bytes (decodes "
     "to 0)"},
    {WH_NOSECRET(",'secret':'whsec_" Q40 Q40 "QUFBQUFB'"), /* 66 bytes */
     "webhooks[0].secret: the base64 after \"whsec_\" must decode to 1 to 64 bytes (decodes "
     "to 66)"},
    {WH_NOSECRET(",'secret':['" SECRET "','nope']"),
     "webhooks[0].secret[1]: must start with \"whsec_\"..."},
    {WH_NOSECRET(",'secret':[]"), "webhooks[0].secret: must not be empty"},
    {WH_NOSECRET(",'secret':5"),
     "webhooks[0].secret: must be a \"whsec_...\" string, a list of them, or null (got a "
     "number)"},
    {WH_NOSECRET(",'secret':'${WEBHOOK_SECRET}'"),
     "webhooks[0].secret: environment variable WEBHOOK_SECRET is not set"},
    {WH(",'secrets':1"), "webhooks[0].secrets: unknown key (did you mean \"secret\"?)"},
    {WH(",'events':[]"), "webhooks[0].events: must not be empty"},
    {WH(",'events':'*'"), "webhooks[0].events: must be a list of event names (got \"*\")"},
    {WH(",'events':['message_create']"),
     "webhooks[0].events[0]: must be an event name in upper case like \"MESSAGE_CREATE\", a "
     "prefix like \"GUILD_*\", or \"*\" (got \"message_create\")"},
    {WH(",'events':['MESSAGE_CREATE','GUILD*X']"), "webhooks[0].events[1]: must be an event..."},
    {WH(",'events':['**']"), "webhooks[0].events[0]: must be an event..."},
    {WH(",'events':['']"), "webhooks[0].events[0]: must be an event..."},
    {"{'webhooks':[{'url':'https://a.example','secret':null},"
     "{'url':'https://b.example','secret':null,'max_in_flight':'x'}]}",
     "webhooks[1].max_in_flight: must be an integer from 1 to 64 (got \"x\")"},
    {WH(",'max_in_flight':65"), "webhooks[0].max_in_flight: must be an integer from 1 to 64 "
                                "(got 65)"},
    {WH(",'max_batch_events':0"),
     "webhooks[0].max_batch_events: must be an integer from 1 to 10000 (got 0)"},
    {WH(",'max_batch_bytes':1023"),
     "webhooks[0].max_batch_bytes: must be an integer from 1024 to 16777216 (got 1023)"},
    {WH(",'max_batch_delay_ms':60001"),
     "webhooks[0].max_batch_delay_ms: must be an integer from 0 to 60000 (got 60001)"},
    {WH(",'timeout_ms':99"), "webhooks[0].timeout_ms: must be an integer from 100 to 300000 "
                             "(got 99)"},
    {WH(",'headers':[]"),
     "webhooks[0].headers: must be an object of header names to string values (got a list)"},
    {WH(",'headers':{'X Bad':'v'}"), "webhooks[0].headers.X Bad: not a valid header name..."},
    {WH(",'headers':{'X-A':'a\\r\\nInjected: 1'}"),
     "webhooks[0].headers.X-A: must not contain control characters such as newlines"},
    {WH(",'headers':{'X-A':5}"), "webhooks[0].headers.X-A: must be a string (got a number)"},
    {WH(",'headers':{'content-type':'text/plain'}"),
     "webhooks[0].headers.content-type: set by shardhook itself; it cannot be configured"},
    {WH(",'headers':{'Webhook-Signature':'x'}"),
     "webhooks[0].headers.Webhook-Signature: set by shardhook itself..."},
    {WH(",'headers':{'X-A':'1','x-a':'2'}"),
     "webhooks[0].headers.x-a: duplicate header (names are case-insensitive)"},
    /* disable_events */
    {"{'disable_events':['*']}", "disable_events[0]: must be an event name in upper case like "
                                 "\"MESSAGE_CREATE\" (got \"*\")"},
    {"{'disable_events':'TYPING_START'}",
     "disable_events: must be a list of event names (got \"TYPING_START\")"},
    /* http */
    {"{'http':5}", "http: must be an object (got 5)"},
    {"{'http':{'port':1}}", "http.port: unknown key"},
    {"{'http':{'listen':'0.0.0.0:7878'}}", "http.token: required when http.listen is not a "
                                           "loopback address (listen is \"0.0.0.0:7878\")"},
    {"{'http':{'listen':'[fe80::1]:80'}}", "http.token: required when..."},
    {"{'http':{'listen':'[::ffff:10.0.0.1]:80'}}", "http.token: required when..."},
    {"{'http':{'listen':'localhost'}}",
     "http.listen: must be \"host:port\" with an IPv4 address, [IPv6] or localhost: the port "
     "is missing (got \"localhost\")"},
    {"{'http':{'listen':'::1:80'}}",
     "http.listen: must be \"host:port\" with an IPv4 address, [IPv6] or localhost: put IPv6 "
     "addresses in brackets (\"[::1]:7878\") (got \"::1:80\")"},
    {"{'http':{'listen':'127.0.0.1:65536'}}",
     "http.listen: must be \"host:port\" with an IPv4 "
     "address, [IPv6] or localhost: the port must be a number from 0 to 65535..."},
    {"{'http':{'listen':'127.0.0.1:'}}", "http.listen: must be \"host:port\"..."},
    {"{'http':{'listen':':7878'}}",
     "http.listen: must be \"host:port\" with an IPv4 address, "
     "[IPv6] or localhost: the host is missing (0.0.0.0 listens everywhere) (got \":7878\")"},
    {"{'http':{'listen':'example.com:80'}}",
     "http.listen: must be \"host:port\" with an IPv4 "
     "address, [IPv6] or localhost: \"example.com\" is not an IPv4 address..."},
    {"{'http':{'listen':'[nope]:80'}}",
     "http.listen: must be \"host:port\" with an IPv4 "
     "address, [IPv6] or localhost: \"nope\" is not an IPv6 address..."},
    {"{'http':{'listen':'[::1]80'}}", "http.listen: must be \"host:port\"..."},
    {"{'http':{'token':''}}",
     "http.token: must not be empty (leave it out, or null, to turn authentication off)"},
    {"{'http':{'token':7}}", "http.token: must be a string (got a number)"},
    {"{'http':{'allowed_hosts':'a.example'}}",
     "http.allowed_hosts: must be a list of host names (got \"a.example\")"},
    {"{'http':{'allowed_hosts':['http://a.example/']}}",
     "http.allowed_hosts[0]: must be a host name as a Host header carries it, like "
     "\"shardhook.internal\" or \"shardhook.internal:7878\" (got \"http://a.example/\")"},
    {"{'http':{'allowed_hosts':['ok.example', '']}}", "http.allowed_hosts[1]: must be a host..."},
    {"{'http':{'max_connections_per_ip':0}}",
     "http.max_connections_per_ip: must be an integer from 1 to 65536 (got 0)"},
    {"{'http':{'connection_timeout_ms':10}}", "http.connection_timeout_ms: must be an integer..."},
    {"{'http':{'reconnect_interval_ms':-1}}", "http.reconnect_interval_ms: must be an integer..."},
    {"{'testing':{'send_window_ms':100}}", "testing.send_window_ms: must be an integer..."},
    /* ${NAME} expansion */
    {"{'state_dir':'${SHARDHOOK_TEST_UNSET}/x'}",
     "state_dir: environment variable SHARDHOOK_TEST_UNSET is not set"},
    {"{'intents':['${SHARDHOOK_TEST_UNSET}']}",
     "intents[0]: environment variable SHARDHOOK_TEST_UNSET is not set"},
    {"{'state_dir':'${ABC'}", "state_dir: unterminated \"${\" (write \"$${\" for a literal "
                              "\"${\")"},
    {"{'state_dir':'${}'}", "state_dir: empty variable name in \"${}\""},
    {"{'state_dir':'${A-B}'}",
     "state_dir: invalid variable name in \"${...}\" (letters, digits and _ only)"},
    /* JSON itself */
    {"{\n  'log_level': 'info',\n}", "config: invalid JSON at line 3, column 1 (trailing comma)"},
    {"{'log_level':", "config: invalid JSON at line 1, column 14 (unexpected end of input)"},
    {"{'log_level':'info", "config: invalid JSON at line 1, column 19 (unexpected end of input)"},
    {"{\n // note\n 'log_level':'info'}",
     "config: invalid JSON at line 2, column 2 (comments are not allowed in JSON)"},
    {"{'a':1, /* c */ 'b':2}", "config: invalid JSON at line 1, column 9 (comments are not "
                               "allowed in JSON)"},
    {"{'a':1 # x\n}", "config: invalid JSON at line 1, column 8 (comments are not allowed in "
                      "JSON)"},
    {"{a:1}", "config: invalid JSON at line 1, column 2"},
    {"{'a':[1,2x]}", "config: invalid JSON at line 1, column 10"},
    {"{'a':tru}", "config: invalid JSON at line 1, column 6"},
    {"{'a' 1}", "config: invalid JSON at line 1, column 6"},
    {"{'a':1]", "config: invalid JSON at line 1, column 7"},
    {"{} x", "config: invalid JSON at line 1, column 4 (unexpected text after the end)"},
    {"", "config: invalid JSON at line 1, column 1 (unexpected end of input)"},
    {"[]", "config: must be a JSON object (got a list)"},
    {"'x'", "config: must be a JSON object (got a string)"},
    {"{'state_dir':'a\\u0000b'}", "config: NUL character at line 1, column 16"},
};

TEST(bad_inputs_name_the_key)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof(bad_inputs) / sizeof(bad_inputs[0]); i++) {
        const struct bad *b = &bad_inputs[i];
        struct cfg_config cfg;
        env_reset();
        memset(&cfg, 0xa5, sizeof(cfg));
        int rc = load(b->json, &cfg);
        size_t n = strlen(b->msg);
        int prefix = n > 3 && !strcmp(b->msg + n - 3, "...");
        int wrong = rc != SH_ECONFIG || !is_zero(&cfg) || strchr(err, '\n') ||
                    (prefix ? strncmp(err, b->msg, n - 3) : strcmp(err, b->msg));
        if (wrong) {
            /* report every wrong case, not only the first */
            fprintf(stderr, "  case %zu: %s\n    rc %d%s\n    got:  %s\n    want: %s\n", i,
                    q(b->json), rc, is_zero(&cfg) ? "" : " (*out not zeroed)", err, b->msg);
            bad++;
        }
    }
    ASSERT_EQ(bad, 0);
}

TEST(missing_token)
{
    struct cfg_config cfg;
    env_reset();
    unsetenv("DISCORD_TOKEN");
    ASSERT_EQ(load("{}", &cfg), SH_ECONFIG);
    ASSERT_STR_EQ(err, "token: missing (set \"token\" or DISCORD_TOKEN)");
    setenv("DISCORD_TOKEN", "", 1);
    ASSERT_EQ(load("{}", &cfg), SH_ECONFIG);
    ASSERT_STR_EQ(err, "token: missing (set \"token\" or DISCORD_TOKEN)");
    setenv("DISCORD_TOKEN", "has space", 1);
    ASSERT_EQ(load("{}", &cfg), SH_ECONFIG);
    ASSERT_STR_EQ(err, "token: DISCORD_TOKEN must be at most 1024 bytes, without spaces or "
                       "control characters");
    /* the token key wins over the environment */
    unsetenv("DISCORD_TOKEN");
    ASSERT_EQ(load("{'token':'cfg-token'}", &cfg), 0);
    ASSERT_STR_EQ(cfg.token, "cfg-token");
    cfg_free(&cfg);
    env_reset();
}

TEST(defaults)
{
    struct cfg_config cfg;
    env_reset();
    ASSERT_EQ(load("{}", &cfg), 0);
    ASSERT_STR_EQ(cfg.token, ENV_TOKEN);
    ASSERT_STR_EQ(cfg.api_base, "https://discord.com/api/v10");
    ASSERT_EQ(cfg.intents, 1);
    ASSERT_EQ(cfg.compress, CFG_COMPRESS_AUTO);
    ASSERT_EQ(cfg.shards.mode, CFG_SHARDS_AUTO);
    ASSERT_EQ(cfg.shards.total, 0);
    ASSERT(cfg.shards.ids == NULL);
    ASSERT_EQ(cfg.identify_concurrency, 0);
    ASSERT_EQ(cfg.large_threshold, 50);
    ASSERT_EQ(cfg.guild_create_timeout_ms, 2000);
    ASSERT(cfg.presence_json == NULL);
    ASSERT_EQ(cfg.n_webhooks, 0);
    ASSERT_EQ(cfg.n_disable_events, 0);
    ASSERT_STR_EQ(cfg.http_listen, "127.0.0.1:7878");
    ASSERT(cfg.http_token == NULL);
    ASSERT_EQ(cfg.n_http_allowed_hosts, 0);
    ASSERT_EQ(cfg.http_max_connections, 1024);
    ASSERT_EQ(cfg.http_max_connections_per_ip, 256);
    ASSERT_EQ(cfg.http_connection_timeout_ms, 10000);
    ASSERT_EQ(cfg.http_reconnect_interval_ms, 10000);
    ASSERT_EQ(cfg.testing_send_window_ms, 60000);
    ASSERT_STR_EQ(cfg.state_dir, "./state");
    ASSERT_STR_EQ(cfg.log_level, "info");
    /* readers use these as loaded, with no fallback of their own */
    ASSERT_STR_EQ(cfg.log_format, "logfmt");
    ASSERT_EQ(cfg.http_request_timeout_ms, 10000);
    ASSERT_EQ(cfg.testing_member_window_ms, 30000);
    ASSERT_EQ(cfg.max_resume_attempts, 5);
    ASSERT_EQ(cfg.shutdown_timeout_ms, 10000);
    ASSERT_EQ(cfg.reconnect_base_ms, 1000);
    ASSERT_EQ(cfg.reconnect_max_ms, 60000);
    ASSERT_EQ(cfg.max_payload_bytes, 67108864);
    ASSERT_EQ(cfg.testing_identify_interval_ms, 5000);
    cfg_free(&cfg);
    ASSERT(is_zero(&cfg));

    /* a webhook with only the required keys */
    ASSERT_EQ(load("{'webhooks':[{'url':'https://example.com/h','secret':null}]}", &cfg), 0);
    ASSERT_EQ(cfg.n_webhooks, 1);
    const struct cfg_webhook *w = &cfg.webhooks[0];
    ASSERT_STR_EQ(w->url, "https://example.com/h");
    ASSERT_EQ(w->n_events, 1);
    ASSERT_STR_EQ(w->events[0], "*");
    ASSERT_EQ(w->n_secrets, 0);
    ASSERT_EQ(w->unsigned_ok, 1);
    ASSERT_EQ(w->max_batch_events, 100);
    ASSERT_EQ(w->max_batch_bytes, 262144);
    ASSERT_EQ(w->max_batch_delay_ms, 25);
    ASSERT_EQ(w->max_in_flight, 4);
    ASSERT_EQ(w->timeout_ms, 10000);
    ASSERT_EQ(w->n_headers, 0);
    ASSERT_EQ(w->retry_after_max_ms, 300000);
    ASSERT_EQ(w->spool_max_bytes, 0); /* unset: an equal share of spool_max_bytes */
    ASSERT_STR_EQ(w->when_full, "pause");
    ASSERT_EQ(w->dead_letter_max_bytes, 1073741824);
    cfg_free(&cfg);
}

TEST(full_config)
{
    static const char *json =
        "{'token':'Bot abc.def','api_base':'http://127.0.0.1:9000/api/v10/',"
        "'intents':['GUILDS','GUILD_MESSAGES','MESSAGE_CONTENT'],'compress':'zlib',"
        "'shards':{'total':16,'first':4,'last':7},'identify_concurrency':16,"
        "'large_threshold':250,'guild_create_timeout_ms':0,"
        "'presence':{'status':'idle','activities':[{'name':'webhooks','type':3}],"
        "'since':1700000000000,'afk':true},"
        "'webhooks':[{'url':'https://a.example/in','events':['MESSAGE_CREATE','GUILD_*'],"
        "'secret':['" SECRET "','whsec_QUJD'],'max_batch_events':1,'max_batch_bytes':1024,"
        "'max_batch_delay_ms':0,'max_in_flight':64,'timeout_ms':300000,"
        "'headers':{'Authorization':'Bearer x','X-Env':'prod'}},"
        "{'url':'http://127.0.0.1:1/','secret':'" SECRET "'}],"
        "'disable_events':['TYPING_START','PRESENCE_UPDATE'],"
        "'http':{'listen':'0.0.0.0:0','token':'api-token'},'state_dir':'/var/lib/sh',"
        "'log_level':'debug','max_resume_attempts':100,'shutdown_timeout_ms':0,"
        "'reconnect_base_ms':10,'reconnect_max_ms':3600000,'max_payload_bytes':65536,"
        "'testing':{'identify_interval_ms':0}}";
    struct cfg_config cfg;
    env_reset();
    ASSERT_EQ(load(json, &cfg), 0);
    ASSERT_STR_EQ(cfg.token, "abc.def");
    ASSERT_STR_EQ(cfg.api_base, "http://127.0.0.1:9000/api/v10");
    ASSERT_EQ(cfg.intents, (1 << 0) | (1 << 9) | (1 << 15));
    ASSERT_EQ(cfg.compress, CFG_COMPRESS_ZLIB);
    ASSERT_EQ(cfg.shards.mode, CFG_SHARDS_RANGE);
    ASSERT_EQ(cfg.shards.total, 16);
    ASSERT_EQ(cfg.shards.first, 4);
    ASSERT_EQ(cfg.shards.last, 7);
    ASSERT_EQ(cfg.identify_concurrency, 16);
    ASSERT_EQ(cfg.large_threshold, 250);
    ASSERT_EQ(cfg.guild_create_timeout_ms, 0);
    ASSERT_STR_EQ(cfg.presence_json, "{\"since\":1700000000000,\"activities\":[{\"name\":"
                                     "\"webhooks\",\"type\":3}],\"status\":\"idle\",\"afk\":true}");
    ASSERT_EQ(cfg.n_webhooks, 2);
    const struct cfg_webhook *w = &cfg.webhooks[0];
    ASSERT_STR_EQ(w->url, "https://a.example/in");
    ASSERT_EQ(w->n_events, 2);
    ASSERT_STR_EQ(w->events[0], "MESSAGE_CREATE");
    ASSERT_STR_EQ(w->events[1], "GUILD_*");
    ASSERT_EQ(w->n_secrets, 2);
    ASSERT_STR_EQ(w->secrets[0], SECRET);
    ASSERT_STR_EQ(w->secrets[1], "whsec_QUJD");
    ASSERT_EQ(w->unsigned_ok, 0);
    ASSERT_EQ(w->max_batch_events, 1);
    ASSERT_EQ(w->max_batch_bytes, 1024);
    ASSERT_EQ(w->max_batch_delay_ms, 0);
    ASSERT_EQ(w->max_in_flight, 64);
    ASSERT_EQ(w->timeout_ms, 300000);
    ASSERT_EQ(w->n_headers, 2);
    ASSERT_STR_EQ(w->headers[0].name, "Authorization");
    ASSERT_STR_EQ(w->headers[0].value, "Bearer x");
    ASSERT_STR_EQ(w->headers[1].name, "X-Env");
    ASSERT_STR_EQ(w->headers[1].value, "prod");
    w = &cfg.webhooks[1];
    ASSERT_STR_EQ(w->url, "http://127.0.0.1:1/"); /* webhook URLs are kept as written */
    ASSERT_EQ(w->n_secrets, 1);
    ASSERT_EQ(w->unsigned_ok, 0);
    ASSERT_EQ(w->n_events, 1);
    ASSERT_EQ(cfg.n_disable_events, 2);
    ASSERT_STR_EQ(cfg.disable_events[0], "TYPING_START");
    ASSERT_STR_EQ(cfg.disable_events[1], "PRESENCE_UPDATE");
    ASSERT_STR_EQ(cfg.http_listen, "0.0.0.0:0");
    ASSERT_STR_EQ(cfg.http_token, "api-token");
    ASSERT_STR_EQ(cfg.state_dir, "/var/lib/sh");
    ASSERT_STR_EQ(cfg.log_level, "debug");
    ASSERT_EQ(cfg.max_resume_attempts, 100);
    ASSERT_EQ(cfg.shutdown_timeout_ms, 0);
    ASSERT_EQ(cfg.reconnect_base_ms, 10);
    ASSERT_EQ(cfg.reconnect_max_ms, 3600000);
    ASSERT_EQ(cfg.max_payload_bytes, 65536);
    ASSERT_EQ(cfg.testing_identify_interval_ms, 0);
    cfg_free(&cfg);
    cfg_free(&cfg); /* twice is harmless */
}

TEST(intents_forms)
{
    struct cfg_config cfg;
    env_reset();
    ASSERT_EQ(load("{'intents':513}", &cfg), 0);
    ASSERT_EQ(cfg.intents, 513);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'intents':0}", &cfg), 0);
    ASSERT_EQ(cfg.intents, 0);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'intents':[]}", &cfg), 0);
    ASSERT_EQ(cfg.intents, 0);
    cfg_free(&cfg);
    /* every documented intent, by name and as the integer they add up to */
    ASSERT_EQ(load("{'intents':['GUILDS','GUILD_MEMBERS','GUILD_MODERATION','GUILD_EXPRESSIONS',"
                   "'GUILD_INTEGRATIONS','GUILD_WEBHOOKS','GUILD_INVITES','GUILD_VOICE_STATES',"
                   "'GUILD_PRESENCES','GUILD_MESSAGES','GUILD_MESSAGE_REACTIONS',"
                   "'GUILD_MESSAGE_TYPING','DIRECT_MESSAGES','DIRECT_MESSAGE_REACTIONS',"
                   "'DIRECT_MESSAGE_TYPING','MESSAGE_CONTENT','GUILD_SCHEDULED_EVENTS',"
                   "'AUTO_MODERATION_CONFIGURATION','AUTO_MODERATION_EXECUTION',"
                   "'GUILD_MESSAGE_POLLS','DIRECT_MESSAGE_POLLS','GUILDS']}",
                   &cfg),
              0);
    ASSERT_EQ(cfg.intents, 0x331ffff);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'intents':53608447}", &cfg), 0); /* 0x331ffff */
    ASSERT_EQ(cfg.intents, 0x331ffff);
    cfg_free(&cfg);
    setenv("SH_TEST_EVENT", "GUILD_MEMBERS", 1);
    ASSERT_EQ(load("{'intents':['${SH_TEST_EVENT}']}", &cfg), 0);
    ASSERT_EQ(cfg.intents, 2);
    cfg_free(&cfg);
}

TEST(intent_table)
{
    ASSERT_EQ(cfg_intent_bit("GUILDS"), 0);
    ASSERT_EQ(cfg_intent_bit("GUILD_MESSAGES"), 9);
    ASSERT_EQ(cfg_intent_bit("MESSAGE_CONTENT"), 15);
    ASSERT_EQ(cfg_intent_bit("AUTO_MODERATION_CONFIGURATION"), 20);
    ASSERT_EQ(cfg_intent_bit("DIRECT_MESSAGE_POLLS"), 25);
    ASSERT_EQ(cfg_intent_bit("guilds"), -1);
    ASSERT_EQ(cfg_intent_bit(""), -1);
    ASSERT_EQ(cfg_intent_bit(NULL), -1);
    ASSERT_STR_EQ(cfg_intent_name(8), "GUILD_PRESENCES");
    ASSERT_STR_EQ(cfg_intent_name(24), "GUILD_MESSAGE_POLLS");
    ASSERT(cfg_intent_name(17) == NULL);
    ASSERT(cfg_intent_name(-1) == NULL);
    ASSERT(cfg_intent_name(64) == NULL);
    int privileged = 0;
    for (int bit = -1; bit < 70; bit++) {
        if (cfg_intent_privileged(bit))
            privileged |= 1 << bit;
        if (cfg_intent_name(bit))
            ASSERT_EQ(cfg_intent_bit(cfg_intent_name(bit)), bit);
    }
    ASSERT_EQ(privileged, (1 << 1) | (1 << 8) | (1 << 15));
}

TEST(compress_forms)
{
    static const struct {
        const char *json;
        enum cfg_compress want;
    } cases[] = {
        {"{'compress':'auto'}", CFG_COMPRESS_AUTO}, {"{'compress':'zstd'}", CFG_COMPRESS_ZSTD},
        {"{'compress':'zlib'}", CFG_COMPRESS_ZLIB}, {"{'compress':'none'}", CFG_COMPRESS_NONE},
        {"{'compress':true}", CFG_COMPRESS_AUTO},   {"{'compress':false}", CFG_COMPRESS_NONE},
    };
    env_reset();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cfg_config cfg;
        ASSERT_EQ(load(cases[i].json, &cfg), 0);
        ASSERT_EQ(cfg.compress, cases[i].want);
        cfg_free(&cfg);
    }
}

TEST(shards_forms)
{
    struct cfg_config cfg;
    env_reset();
    ASSERT_EQ(load("{'shards':'auto'}", &cfg), 0);
    ASSERT_EQ(cfg.shards.mode, CFG_SHARDS_AUTO);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'shards':{'total':16}}", &cfg), 0);
    ASSERT_EQ(cfg.shards.mode, CFG_SHARDS_TOTAL);
    ASSERT_EQ(cfg.shards.total, 16);
    ASSERT_EQ(cfg.shards.first, 0);
    ASSERT_EQ(cfg.shards.last, 15);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'shards':{'total':1,'first':0,'last':0}}", &cfg), 0);
    ASSERT_EQ(cfg.shards.mode, CFG_SHARDS_RANGE);
    ASSERT_EQ(cfg.shards.last, 0);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'shards':{'ids':[9,0,4],'total':65536}}", &cfg), 0);
    ASSERT_EQ(cfg.shards.mode, CFG_SHARDS_IDS);
    ASSERT_EQ(cfg.shards.total, 65536);
    ASSERT_EQ(cfg.shards.n_ids, 3);
    ASSERT_EQ(cfg.shards.ids[0], 0); /* sorted */
    ASSERT_EQ(cfg.shards.ids[1], 4);
    ASSERT_EQ(cfg.shards.ids[2], 9);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'identify_concurrency':'auto'}", &cfg), 0);
    ASSERT_EQ(cfg.identify_concurrency, 0);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'identify_concurrency':1024}", &cfg), 0);
    ASSERT_EQ(cfg.identify_concurrency, 1024);
    cfg_free(&cfg);
}

TEST(presence_defaults_filled)
{
    struct cfg_config cfg;
    env_reset();
    ASSERT_EQ(load("{'presence':{}}", &cfg), 0);
    ASSERT_STR_EQ(cfg.presence_json,
                  "{\"since\":null,\"activities\":[],\"status\":\"online\",\"afk\":false}");
    cfg_free(&cfg);
    ASSERT_EQ(load("{'presence':null}", &cfg), 0);
    ASSERT(cfg.presence_json == NULL);
    cfg_free(&cfg);
    setenv("SH_TEST_DIR", "v1.2", 1);
    ASSERT_EQ(
        load("{'presence':{'status':'dnd','since':null,'activities':[{'name':'x ${SH_TEST_DIR}',"
             "'type':4,'state':'quoted \\\\ \\u00e9'},{'name':'s','type':1,"
             "'url':'https://twitch.tv/x'}]}}",
             &cfg),
        0);
    ASSERT_STR_EQ(cfg.presence_json,
                  "{\"since\":null,\"activities\":[{\"name\":\"x v1.2\",\"type\":4,\"state\":"
                  "\"quoted \\\\ \xc3\xa9\"},{\"name\":\"s\",\"type\":1,\"url\":"
                  "\"https://twitch.tv/x\"}],\"status\":\"dnd\",\"afk\":false}");
    cfg_free(&cfg);
}

TEST(env_expansion)
{
    struct cfg_config cfg;
    env_reset();
    setenv("SH_TEST_DIR", "/srv/bot", 1);
    setenv("WEBHOOK_SECRET", SECRET, 1);
    setenv("SH_TEST_EVENT", "MESSAGE_CREATE", 1);
    ASSERT_EQ(load("{'state_dir':'${SH_TEST_DIR}/state','log_level':'${SHARDHOOK_LOG}info',"
                   "'webhooks':[{'url':'https://x.example${SH_TEST_DIR}',"
                   "'events':['${SH_TEST_EVENT}','$${LITERAL}'],"
                   "'secret':'${WEBHOOK_SECRET}','headers':{'X-Dir':'${SH_TEST_DIR}'}}]}",
                   &cfg),
              SH_ECONFIG);
    /* SHARDHOOK_LOG is unset: the first problem is named, not the later ones */
    ASSERT_STR_EQ(err, "log_level: environment variable SHARDHOOK_LOG is not set");
    setenv("SHARDHOOK_LOG", "", 1);
    ASSERT_EQ(load("{'state_dir':'${SH_TEST_DIR}/state','log_level':'${SHARDHOOK_LOG}info',"
                   "'webhooks':[{'url':'https://x.example${SH_TEST_DIR}',"
                   "'events':['${SH_TEST_EVENT}','GUILD_*'],"
                   "'secret':'${WEBHOOK_SECRET}','headers':{'X-Dir':'${SH_TEST_DIR}'}}]}",
                   &cfg),
              0);
    unsetenv("SHARDHOOK_LOG");
    ASSERT_STR_EQ(cfg.state_dir, "/srv/bot/state");
    ASSERT_STR_EQ(cfg.log_level, "info");
    ASSERT_STR_EQ(cfg.webhooks[0].url, "https://x.example/srv/bot");
    ASSERT_STR_EQ(cfg.webhooks[0].events[0], "MESSAGE_CREATE");
    ASSERT_STR_EQ(cfg.webhooks[0].secrets[0], SECRET);
    ASSERT_STR_EQ(cfg.webhooks[0].headers[0].value, "/srv/bot");
    cfg_free(&cfg);

    /* $${ is a literal ${; other dollars stay as they are; values are not expanded again */
    setenv("SH_TEST_DIR", "${SHARDHOOK_TEST_UNSET}", 1);
    ASSERT_EQ(load("{'state_dir':'$${HOME}/a$b/$$/$/${SH_TEST_DIR}$'}", &cfg), 0);
    ASSERT_STR_EQ(cfg.state_dir, "${HOME}/a$b/$$/$/${SHARDHOOK_TEST_UNSET}$");
    cfg_free(&cfg);

    /* the expansion cap applies to the expanded value */
    char *big = malloc(5000);
    ASSERT(big);
    memset(big, 'x', 4999);
    big[4999] = '\0';
    setenv("SH_TEST_DIR", big, 1);
    free(big);
    ASSERT_EQ(load("{'state_dir':'${SH_TEST_DIR}'}", &cfg), SH_ECONFIG);
    ASSERT_STR_EQ(err, "state_dir: must be at most 4096 bytes long");
    env_reset();
}

TEST(expand_directly)
{
    char *out, why[128];
    setenv("SH_TEST_DIR", "v", 1);
    ASSERT_EQ(cfg_expand("a${SH_TEST_DIR}b$${c}$", 100, &out, why, sizeof(why)), 0);
    ASSERT_STR_EQ(out, "avb${c}$");
    free(out);
    ASSERT_EQ(cfg_expand("", 0, &out, why, sizeof(why)), 0);
    ASSERT_STR_EQ(out, "");
    free(out);
    ASSERT_EQ(cfg_expand("abcd", 3, &out, why, sizeof(why)), SH_ETOOBIG);
    ASSERT(out == NULL);
    ASSERT_EQ(cfg_expand("${SHARDHOOK_TEST_UNSET", 100, &out, why, sizeof(why)), SH_ECONFIG);
    ASSERT(out == NULL);
    unsetenv("SH_TEST_DIR");
}

TEST(listen_forms)
{
    static const struct {
        const char *s;
        const char *host;
        int port, loopback;
    } good[] = {
        {"127.0.0.1:7878", "127.0.0.1", 7878, 1},
        {"127.9.9.9:1", "127.9.9.9", 1, 1},
        {"[::1]:0", "::1", 0, 1},
        {"localhost:80", "localhost", 80, 1},
        {"LOCALHOST:80", "LOCALHOST", 80, 1},
        {"0.0.0.0:65535", "0.0.0.0", 65535, 0},
        {"10.1.2.3:8080", "10.1.2.3", 8080, 0},
        {"[::]:80", "::", 80, 0},
        {"[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", 80, 1},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct cfg_listen l;
        ASSERT_EQ(cfg_listen_parse(good[i].s, &l, err, sizeof(err)), 0);
        ASSERT_STR_EQ(l.host, good[i].host);
        ASSERT_EQ(l.port, good[i].port);
        ASSERT_EQ(l.loopback, good[i].loopback);
    }
    struct cfg_config cfg;
    env_reset();
    ASSERT_EQ(load("{'http':{'listen':'[::1]:0'}}", &cfg), 0);
    ASSERT_STR_EQ(cfg.http_listen, "[::1]:0");
    cfg_free(&cfg);
    ASSERT_EQ(load("{'http':{'listen':'localhost:9','token':null}}", &cfg), 0);
    ASSERT(cfg.http_token == NULL);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'http':{'listen':'[2001:db8::1]:443','token':'t0k'}}", &cfg), 0);
    ASSERT_STR_EQ(cfg.http_token, "t0k");
    cfg_free(&cfg);
}

/* Every failure that involves a token or secret, with a recognisable value in it. */
TEST(no_secret_in_messages)
{
    static const char *const cases[] = {
        "{'token':'SEKRET TOKEN'}",
        "{'token':'SEKRET\\tTOKEN'}",
        "{'token':'SEKRET\\nTOKEN'}",
        "{'token':'SEKRET-TOKEN','large_threshold':1}",
        "{'token':'SEKRET-TOKEN','http':{'listen':'0.0.0.0:1'}}",
        "{'http':{'token':'SEKRET TOKEN'}}",
        "{'http':{'token':'SEKRET\\u0001'}}",
        WH_NOSECRET(",'secret':'SEKRETVALUE'"),
        WH_NOSECRET(",'secret':'whsec_SEKRET!'"),
        WH_NOSECRET(",'secret':'whsec_SEKRETSEKRETSEKRETSEKRETSEKRETSEKRETSEKRETSEKRETSEKRETSE"
                    "KRETSEKRETSEKRETSEKRETSEKRETSEKRETSEKRET'"),
        WH_NOSECRET(",'secret':['whsec_SEKRET','SEKRET']"),
        WH_NOSECRET(",'secret':'SEKRET${'"),
        WH(",'headers':{'Authorization':'Bearer SEKRET\\r\\n'}"),
        "{'webhooks':[{'url':'ftp://user:SEKRET@example.com','secret':null}]}",
        "{'webhooks':[{'url':'https://SEKRET host','secret':null}]}",
    };
    env_reset();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cfg_config cfg;
        ASSERT_EQ(load(cases[i], &cfg), SH_ECONFIG);
        if (strstr(err, "SEKRET"))
            T_FAIL_("case %zu leaks: %s", i, err);
    }
    /* nor the environment's token, when something else is wrong */
    setenv("DISCORD_TOKEN", "SEKRET TOKEN", 1);
    struct cfg_config cfg;
    ASSERT_EQ(load("{}", &cfg), SH_ECONFIG);
    ASSERT(!strstr(err, "SEKRET"));
    env_reset();
}

/* Caps on list lengths and on the serialised presence, with configs built here. */
TEST(caps)
{
    static char json[65536];
    struct cfg_config cfg;
    size_t n;
    env_reset();

    n = (size_t)snprintf(json, sizeof(json), "{'webhooks':[");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "%s{'url':'http://h','secret':null}",
                              i ? "," : "");
    snprintf(json + n, sizeof(json) - n, "]}");
    ASSERT_EQ(load(json, &cfg), SH_ECONFIG);
    ASSERT_STR_EQ(err, "webhooks: must have at most 64 items (got 65)");

    n = (size_t)snprintf(json, sizeof(json), WH_NOSECRET(",'secret':null,'headers':{"));
    n -= 3; /* drop the closing "}]}" of the macro */
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "%s'X-%d':'v'", i ? "," : "", i);
    snprintf(json + n, sizeof(json) - n, "}}]}");
    ASSERT_EQ(load(json, &cfg), SH_ECONFIG);
    ASSERT_STR_EQ(err, "webhooks[0].headers: must have at most 64 headers (got 65)");

    char name[129];
    memset(name, 'n', 128);
    name[128] = '\0';
    n = (size_t)snprintf(json, sizeof(json), "{'presence':{'activities':[");
    for (int i = 0; i < 16; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "%s{'name':'%s','type':0,'state':'%s'}",
                              i ? "," : "", name, name);
    snprintf(json + n, sizeof(json) - n, "]}}");
    ASSERT_EQ(load(json, &cfg), SH_ECONFIG);
    ASSERT_STR_EQ(err, "presence: too large: 4667 bytes once serialised (at most 3072, so that it "
                       "fits in a gateway payload)");
    /* and 129 bytes is one too many for a name */
    snprintf(json, sizeof(json), "{'presence':{'activities':[{'name':'%sx','type':0}]}}", name);
    ASSERT_EQ(load(json, &cfg), SH_ECONFIG);
    ASSERT_STR_EQ(err, "presence.activities[0].name: must be at most 128 bytes long");

    ASSERT_EQ(cfg_load_string(NULL, 0, &cfg, err, sizeof(err)), SH_ECONFIG);
    ASSERT_STR_EQ(err, "config: no input");
}

static const char *tmp_path(const char *name)
{
    static char path[256];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/shardhook-test-config-%ld-%s", dir && *dir ? dir : "/tmp",
             (long)getpid(), name);
    return path;
}

TEST(load_file)
{
    struct cfg_config cfg;
    env_reset();
    const char *path = tmp_path("ok.json");
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fputs("{\n  \"log_level\": \"warn\",\n  \"webhooks\": []\n}\n", f);
    fclose(f);
    ASSERT_EQ(cfg_load(path, &cfg, err, sizeof(err)), 0);
    ASSERT_STR_EQ(cfg.log_level, "warn");
    cfg_free(&cfg);

    /* a syntax error names the file, line and column */
    f = fopen(path, "w");
    ASSERT(f);
    fputs("{\n  \"log_level\": \"warn\"\n  \"state_dir\": \"x\"\n}\n", f);
    fclose(f);
    char want[600];
    ASSERT_EQ(cfg_load(path, &cfg, err, sizeof(err)), SH_ECONFIG);
    snprintf(want, sizeof(want), "%s: invalid JSON at line 3, column 3", path);
    ASSERT_STR_EQ(err, want);
    ASSERT(is_zero(&cfg));

    /* over 1 MiB */
    f = fopen(path, "w");
    ASSERT(f);
    fputc('{', f);
    for (int i = 0; i < CFG_MAX_FILE_BYTES; i++)
        fputc(' ', f);
    fputc('}', f);
    fclose(f);
    ASSERT_EQ(cfg_load(path, &cfg, err, sizeof(err)), SH_ECONFIG);
    snprintf(want, sizeof(want), "%s: larger than 1048576 bytes", path);
    ASSERT_STR_EQ(err, want);
    unlink(path);

    ASSERT_EQ(cfg_load(path, &cfg, err, sizeof(err)), SH_ECONFIG);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    ASSERT_STR_EQ(err, want);
    ASSERT(is_zero(&cfg));

    const char *dir = tmp_path("dir");
    ASSERT_EQ(mkdir(dir, 0700), 0);
    ASSERT_EQ(cfg_load(dir, &cfg, err, sizeof(err)), SH_ECONFIG);
    rmdir(dir);
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", dir);
    ASSERT_STR_EQ(err, want);

    /* a short or missing err buffer is not written past */
    char tiny[8];
    ASSERT_EQ(cfg_load_string("{'x'", 4, &cfg, tiny, sizeof(tiny)), SH_ECONFIG);
    ASSERT_STR_EQ(tiny, "config:");
    ASSERT_EQ(cfg_load_string("[]", 2, &cfg, NULL, 0), SH_ECONFIG);
}

TEST(least_batch_delay_across_webhooks)
{
    struct cfg_config cfg;
    env_reset();
    ASSERT_EQ(load("{'webhooks':[]}", &cfg), 0);
    ASSERT_EQ(cfg_least_batch_delay_ms(&cfg), -1);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'webhooks':[{'url':'https://example.com/a','secret':'" SECRET "'},"
                   "{'url':'https://example.com/b','secret':'" SECRET "','max_batch_delay_ms':7},"
                   "{'url':'https://example.com/c','secret':'" SECRET "','max_batch_delay_ms':0}]}",
                   &cfg),
              0);
    ASSERT_EQ(cfg_least_batch_delay_ms(&cfg), 0);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'webhooks':[{'url':'https://example.com/a','secret':'" SECRET "'},"
                   "{'url':'https://example.com/b','secret':'" SECRET "','max_batch_delay_ms':7}]}",
                   &cfg),
              0);
    ASSERT_EQ(cfg_least_batch_delay_ms(&cfg), 7);
    cfg_free(&cfg);
}

TEST(free_is_safe)
{
    struct cfg_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg_free(&cfg);
    cfg_free(NULL);
    ASSERT(is_zero(&cfg));
}

/* Byte flips, truncations and splices of a good config: loading never crashes or leaks. */
TEST(mutations_never_crash)
{
    static const char *base =
        "{'token':'t','intents':['GUILDS','GUILD_MESSAGES'],'shards':{'total':8,'ids':[1,2]},"
        "'presence':{'activities':[{'name':'n','type':1,'url':'https://x'}]},"
        "'webhooks':[{'url':'https://e.x/${SH_TEST_DIR}','secret':['" SECRET "'],"
        "'headers':{'A':'b'},'events':['A*']}],'http':{'listen':'[::1]:1','token':'k'},"
        "'disable_events':['X'],'compress':true,'testing':{}}";
    static const char alphabet[] = "{}[]:,'\"\\$u0 1-e.aZ*\n";
    char buf[1024];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    size_t len = strlen(q(base)), ok = 0;
    env_reset();
    setenv("SH_TEST_DIR", "d", 1);
    for (int i = 0; i < 20000; i++) {
        memcpy(buf, q(base), len + 1);
        size_t n = len;
        for (int k = 0; k < 1 + i % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x >> 8) % n;
            switch (x % 3) {
            case 0:
                buf[at] = alphabet[(x >> 40) % (sizeof(alphabet) - 1)];
                break;
            case 1:
                n = at + 1;
                break;
            default:
                memmove(buf + at, buf + at + 1, n - at);
                n = n > 1 ? n - 1 : n;
                break;
            }
        }
        struct cfg_config cfg;
        int rc = cfg_load_string(buf, n, &cfg, err, sizeof(err));
        if (rc == 0) {
            ok++;
            cfg_free(&cfg);
        } else if (!err[0] || !is_zero(&cfg)) {
            T_FAIL_("mutation %d: rc %d with err \"%s\"", i, rc, err);
        }
    }
    ASSERT(ok > 0);
    /* deep nesting stops at cJSON's limit instead of the stack */
    static char deep[20002];
    memset(deep, '[', 10000);
    memset(deep + 10000, ']', 10000);
    ASSERT_EQ(cfg_load_string(deep, 20000, &(struct cfg_config){0}, err, sizeof(err)), SH_ECONFIG);
    env_reset();
}

TEST(non_utf8_from_the_environment_is_refused)
{
    struct cfg_config cfg;
    env_reset();
    setenv("SH_TEST_DIR", "/srv/\xff", 1);
    ASSERT_EQ(load("{'state_dir':'${SH_TEST_DIR}'}", &cfg), SH_ECONFIG);
    ASSERT_STR_EQ(err, "state_dir: must be valid UTF-8 text");
    setenv("SH_TEST_DIR", "/srv/caf\xc3\xa9", 1); /* valid UTF-8 is kept */
    ASSERT_EQ(load("{'state_dir':'${SH_TEST_DIR}'}", &cfg), 0);
    ASSERT_STR_EQ(cfg.state_dir, "/srv/caf\xc3\xa9");
    cfg_free(&cfg);
    /* an unknown key of stray bytes is named without them */
    ASSERT_EQ(load("{'k\xff':1}", &cfg), SH_ECONFIG);
    ASSERT_STR_EQ(err, "k?: unknown key");
    env_reset();
}

/* A value that came from ${NAME} is shown as written: an error never prints the environment. */
TEST(messages_show_expanded_values_as_written)
{
    static const char *const cases[][2] = {
        {"{'intents':['GUILDS${DISCORD_TOKEN}']}",
         "intents[0]: unknown intent \"GUILDS${DISCORD_TOKEN}\""},
        {"{'compress':'${DISCORD_TOKEN}'}", "(got \"${DISCORD_TOKEN}\")"},
        {"{'webhooks':[{'url':'https://h/a','secret':null,'events':['x${DISCORD_TOKEN}']}]}",
         "(got \"x${DISCORD_TOKEN}\")"},
        {"{'http':{'listen':'${DISCORD_TOKEN}'}}", "${DISCORD_TOKEN}"},
    };
    struct cfg_config cfg;
    env_reset();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ASSERT_EQ(load(cases[i][0], &cfg), SH_ECONFIG);
        if (!strstr(err, cases[i][1]) || strstr(err, ENV_TOKEN))
            T_FAIL_("case %zu: %s", i, err);
    }
}

/* A reload sorts each changed key into "applied live" or "needs a restart". */
TEST(diff_sorts_live_and_restart_keys)
{
    struct cfg_config a, b;
    char live[256], restart[256];
    env_reset();
    ASSERT_EQ(load("{'intents':['GUILDS'],'log_level':'info','http':{'token':'t-one'},"
                   "'webhooks':[{'url':'https://h/a','secret':'" SECRET "'},"
                   "{'url':'https://h/b','secret':null,'headers':{'X-K':'1'}}]}",
                   &a),
              0);
    ASSERT_EQ(load("{'intents':['GUILDS'],'log_level':'info','http':{'token':'t-one'},"
                   "'webhooks':[{'url':'https://h/a','secret':'" SECRET "'},"
                   "{'url':'https://h/b','secret':null,'headers':{'X-K':'1'}}]}",
                   &b),
              0);
    ASSERT_EQ(cfg_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 0);
    ASSERT_STR_EQ(live, "");
    ASSERT_STR_EQ(restart, "");
    cfg_free(&b);
    ASSERT_EQ(load("{'intents':['GUILDS','GUILD_MESSAGES'],'log_level':'debug',"
                   "'log_format':'json','http':{'token':'t-two'},'shards':{'total':2},"
                   "'webhooks':[{'url':'https://h/a','secret':['whsec_QUFB','" SECRET "'],"
                   "'max_in_flight':9},"
                   "{'url':'https://h/c','secret':'whsec_QUFB','headers':{'X-K':'2'}}]}",
                   &b),
              0);
    ASSERT_EQ(cfg_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 4);
    ASSERT_STR_EQ(restart, "intents,webhooks[0].max_in_flight,webhooks[1].url,shards");
    /* webhooks[1] points elsewhere now: its secret and headers are not applied */
    ASSERT_STR_EQ(live, "log_level,http.token,webhooks[0].secret,log_format");
    ASSERT(cfg_webhook_same_target(&a, &b, 0));
    ASSERT(!cfg_webhook_same_target(&a, &b, 1));
    ASSERT(!cfg_webhook_same_target(&a, &b, 2));
    ASSERT(!strstr(live, "t-two") && !strstr(restart, "t-two"));
    cfg_free(&a);
    cfg_free(&b);
}

/*
 * The diff walks the config table: every key is compared, the ones added with the hardening
 * (http.allowed_hosts, connect_timeout_ms, webhooks[].when_full, ...) included; a list that
 * grew is named once; after cfg_take_live the live keys compare against what runs.
 */
TEST(diff_covers_every_key_and_follows_what_runs)
{
    struct cfg_config a, b;
    char live[256], restart[256];
    env_reset();
    ASSERT_EQ(load("{'webhooks':[{'url':'https://h/a','secret':null}]}", &a), 0);
    ASSERT_EQ(load("{'connect_timeout_ms':5000,'http':{'allowed_hosts':['bot.example'],"
                   "'max_connections':100},'webhooks':[{'url':'https://h/a','secret':null,"
                   "'when_full':'dead_letter','dead_letter_max_bytes':0},"
                   "{'url':'https://h/b','secret':null}],'log_level':'debug'}",
                   &b),
              0);
    ASSERT_EQ(cfg_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 6);
    ASSERT_STR_EQ(restart, "webhooks[0].when_full,webhooks[0].dead_letter_max_bytes,"
                           "http.allowed_hosts,http.max_connections,connect_timeout_ms,webhooks");
    ASSERT_STR_EQ(live, "log_level");
    /* the live key applied: compared again, only the restart keys remain */
    ASSERT_EQ(cfg_take_live(&a, &b), 0);
    ASSERT_EQ(cfg_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 6);
    ASSERT_STR_EQ(live, "");
    cfg_free(&a);
    cfg_free(&b);
}

/* The cluster block: absent, nothing is set; present, defaults and the host name fill in. */
TEST(cluster_block)
{
    struct cfg_config cfg;
    env_reset();
    ASSERT_EQ(load("{}", &cfg), 0);
    ASSERT_EQ(cfg.cluster, 0);
    ASSERT(!cfg.cluster_redis && !cfg.cluster_node && !cfg.cluster_advertise);
    ASSERT_EQ(cfg.cluster_lease_ms, 0);
    ASSERT_EQ(cfg.cluster_max_shards, 0);
    cfg_free(&cfg);

    char host[256] = "";
    ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
    ASSERT_EQ(load("{'cluster':{'redis':'redis://:pw@10.0.0.5:6379/2'}}", &cfg), 0);
    ASSERT_EQ(cfg.cluster, 1);
    ASSERT_STR_EQ(cfg.cluster_redis, "redis://:pw@10.0.0.5:6379/2");
    ASSERT_STR_EQ(cfg.cluster_node, host);
    ASSERT_EQ(cfg.cluster_lease_ms, 10000);
    ASSERT_EQ(cfg.cluster_max_shards, 2000);
    ASSERT(cfg.cluster_advertise == NULL);
    cfg_free(&cfg);

    setenv("SH_TEST_DIR", "s3cr3t", 1);
    ASSERT_EQ(load("{'cluster':{'redis':'redis://:${SH_TEST_DIR}@[::1]:7000','node':'node-1.a_b',"
                   "'lease_ms':2000,'max_shards':16,'advertise':'http://10.0.0.6:7878/'}}",
                   &cfg),
              0);
    ASSERT_STR_EQ(cfg.cluster_redis, "redis://:s3cr3t@[::1]:7000");
    ASSERT_STR_EQ(cfg.cluster_node, "node-1.a_b");
    ASSERT_EQ(cfg.cluster_lease_ms, 2000);
    ASSERT_EQ(cfg.cluster_max_shards, 16);
    ASSERT_STR_EQ(cfg.cluster_advertise, "http://10.0.0.6:7878");
    cfg_free(&cfg);
    ASSERT_EQ(load("{'cluster':{'redis':'unix:/run/redis.sock','advertise':null}}", &cfg), 0);
    ASSERT_STR_EQ(cfg.cluster_redis, "unix:/run/redis.sock");
    ASSERT(cfg.cluster_advertise == NULL);
    cfg_free(&cfg);

    /* the password never shows in a message, from the file or the environment */
    static const char *const leaks[] = {
        "{'cluster':{'redis':'redis://:SEKRET@h'}}",
        "{'cluster':{'redis':'redis://:SEKRET@h:1/x'}}",
        "{'cluster':{'redis':'redis://:SEKRET@h:1 '}}",
        "{'cluster':{'redis':'redis://user:SEKRET@h:1'}}",
        "{'cluster':{'redis':'rediss://:SEKRET@h:1'}}",
        "{'cluster':{'redis':'redis://:${SH_TEST_EVENT}@h:99999'}}",
    };
    setenv("SH_TEST_EVENT", "SEKRET", 1);
    for (size_t i = 0; i < sizeof(leaks) / sizeof(leaks[0]); i++) {
        ASSERT_EQ(load(leaks[i], &cfg), SH_ECONFIG);
        ASSERT(!strncmp(err, "cluster.redis: ", 15));
        if (strstr(err, "SEKRET"))
            T_FAIL_("case %zu leaks: %s", i, err);
    }
    env_reset();
}

/* Every cluster key needs a restart; adding or removing the block is a restart too. */
TEST(cluster_diff_needs_restart)
{
    struct cfg_config a, b;
    char live[256], restart[256];
    env_reset();
    ASSERT_EQ(load("{'cluster':{'redis':'unix:/a','node':'n1'}}", &a), 0);
    ASSERT_EQ(load("{'cluster':{'redis':'unix:/b','node':'n2','lease_ms':2000,'max_shards':5,"
                   "'advertise':'http://h:1'}}",
                   &b),
              0);
    ASSERT_EQ(cfg_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 5);
    ASSERT_STR_EQ(live, "");
    ASSERT_CONTAINS(restart, "cluster.redis");
    ASSERT_CONTAINS(restart, "cluster.node");
    ASSERT_CONTAINS(restart, "cluster.lease_ms");
    ASSERT_CONTAINS(restart, "cluster.max_shards");
    ASSERT_CONTAINS(restart, "cluster.advertise");
    ASSERT(!strstr(restart, "unix:"));
    cfg_free(&b);
    ASSERT_EQ(load("{}", &b), 0);
    ASSERT(cfg_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)) > 0);
    ASSERT_CONTAINS(restart, "cluster.redis");
    cfg_free(&a);
    cfg_free(&b);
}

/* The cache block: absent, no cache; present, each kind follows the intents unless set. */
TEST(cache_block)
{
    struct cfg_config cfg;
    env_reset();
    ASSERT_EQ(load("{}", &cfg), 0);
    ASSERT_EQ(cfg.cache, 0);
    ASSERT_EQ(cfg.cache_kinds, 0u);
    ASSERT_EQ(cfg.cache_max_bytes, 0u);
    ASSERT_EQ(cfg.cache_snapshot_interval_ms, 0);
    cfg_free(&cfg);

    /* GUILDS only (the default intents): guilds, channels, roles */
    ASSERT_EQ(load("{'cache':{}}", &cfg), 0);
    ASSERT_EQ(cfg.cache, 1);
    ASSERT_EQ(cfg.cache_kinds,
              1u << CFG_CACHE_GUILDS | 1u << CFG_CACHE_CHANNELS | 1u << CFG_CACHE_ROLES);
    ASSERT_EQ(cfg.cache_max_bytes, (size_t)1073741824);
    ASSERT_EQ(cfg.cache_snapshot_interval_ms, 60000);
    cfg_free(&cfg);

    /* every intent: every kind but presences, which must be asked for; false leaves one out */
    ASSERT_EQ(load("{'cache':{'roles':false,'max_bytes':1048576,'snapshot_interval_ms':0},"
                   "'intents':['GUILDS','GUILD_MEMBERS','GUILD_EXPRESSIONS','GUILD_VOICE_STATES',"
                   "'GUILD_PRESENCES']}",
                   &cfg),
              0);
    ASSERT_EQ(cfg.cache_kinds, 1u << CFG_CACHE_GUILDS | 1u << CFG_CACHE_CHANNELS |
                                   1u << CFG_CACHE_EMOJIS | 1u << CFG_CACHE_MEMBERS |
                                   1u << CFG_CACHE_VOICE_STATES);
    ASSERT_EQ(cfg.cache_max_bytes, (size_t)1048576);
    ASSERT_EQ(cfg.cache_snapshot_interval_ms, 0);
    cfg_free(&cfg);
    ASSERT_EQ(load("{'intents':['GUILDS','GUILD_PRESENCES'],'cache':{'presences':true,"
                   "'channels':false,'guilds':true}}",
                   &cfg),
              0);
    ASSERT_EQ(cfg.cache_kinds,
              1u << CFG_CACHE_GUILDS | 1u << CFG_CACHE_ROLES | 1u << CFG_CACHE_PRESENCES);
    cfg_free(&cfg);
    /* a kind set false needs no intent */
    ASSERT_EQ(load("{'cache':{'members':false,'presences':false}}", &cfg), 0);
    ASSERT_EQ(cfg.cache_kinds,
              1u << CFG_CACHE_GUILDS | 1u << CFG_CACHE_CHANNELS | 1u << CFG_CACHE_ROLES);
    cfg_free(&cfg);
}

/* Every cache key needs a restart; adding or removing the block is a restart too. */
TEST(cache_diff_needs_restart)
{
    struct cfg_config a, b;
    char live[256], restart[256];
    env_reset();
    ASSERT_EQ(load("{'cache':{}}", &a), 0);
    ASSERT_EQ(load("{'cache':{'roles':false,'max_bytes':2097152,'snapshot_interval_ms':5}}", &b),
              0);
    ASSERT_EQ(cfg_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 3);
    ASSERT_STR_EQ(live, "");
    ASSERT_CONTAINS(restart, "cache.roles");
    ASSERT_CONTAINS(restart, "cache.max_bytes");
    ASSERT_CONTAINS(restart, "cache.snapshot_interval_ms");
    cfg_free(&b);
    ASSERT_EQ(load("{}", &b), 0);
    ASSERT(cfg_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)) > 0);
    ASSERT_CONTAINS(restart, "cache");
    ASSERT_STR_EQ(live, "");
    cfg_free(&a);
    cfg_free(&b);
}

static char *read_doc(void)
{
    static const char *const paths[] = {"docs/configuration.md", "../../docs/configuration.md",
                                        "../../../docs/configuration.md"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        FILE *f = fopen(paths[i], "r");
        if (!f)
            continue;
        char *text = calloc(1, 1 << 20);
        size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
        (void)n;
        fclose(f);
        return text;
    }
    return NULL;
}

/* docs/configuration.md holds one table row per directive, exactly as the table says. */
TEST(docs_match_table)
{
    char *doc = read_doc();
    ASSERT(doc);
    struct cfg_doc d;
    size_t i = 0;
    char row[512];
    for (; cfg_doc_entry(i, &d) == 0; i++) {
        snprintf(row, sizeof(row), "| `%s` | %s | %s%s%s | %s |\n", d.key, d.type, d.def ? "`" : "",
                 d.required   ? "required"
                 : d.def      ? d.def
                 : d.def_note ? d.def_note
                              : "none",
                 d.def ? "`" : "", d.doc);
        if (!strstr(doc, row)) {
            free(doc);
            T_FAIL_("docs/configuration.md lacks the row:\n%s", row);
        }
    }
    free(doc);
    ASSERT(i > 40);
    ASSERT_EQ(cfg_doc_entry(i, &d), SH_ENOTFOUND);
}

TEST_MAIN(RUN(bad_inputs_name_the_key); RUN(missing_token); RUN(defaults); RUN(full_config);
          RUN(intents_forms); RUN(intent_table); RUN(compress_forms); RUN(shards_forms);
          RUN(presence_defaults_filled); RUN(env_expansion); RUN(expand_directly);
          RUN(listen_forms); RUN(no_secret_in_messages); RUN(caps); RUN(load_file);
          RUN(least_batch_delay_across_webhooks); RUN(free_is_safe); RUN(mutations_never_crash);
          RUN(non_utf8_from_the_environment_is_refused);
          RUN(messages_show_expanded_values_as_written); RUN(diff_sorts_live_and_restart_keys);
          RUN(diff_covers_every_key_and_follows_what_runs); RUN(docs_match_table);
          RUN(cluster_block); RUN(cluster_diff_needs_restart); RUN(cache_block);
          RUN(cache_diff_needs_restart);)
