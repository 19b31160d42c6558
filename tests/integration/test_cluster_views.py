"""What every node of a cluster shows of the whole cluster (docs/cluster.md, "What every node
shows"): GET /v1/shards lists every shard once, the same on all three nodes, each with the node
that holds it; GET /v1/cluster names the nodes, their leases and shares, the budget, Redis and
whether the whole cluster is ready; a killed node's shards show stale until a live node takes
them over; with Redis down each node answers for its own shards only and says "degraded" in
/v1/shards, /v1/cluster and /readyz; /metrics carries the cluster series.

Three nodes against one real redis-server (cluster_helpers), 12 shards, the fake Discord."""
import re
import time

import cluster_helpers as ch
import harness
from test_api import prometheus_parser

TOTAL = 12
BUCKETS = 4


def start(n=3):
    redis = ch.RedisServer()
    fake = harness.FakeDiscord(shards=TOTAL, max_concurrency=BUCKETS,
                               identify_interval_ms=ch.IDENTIFY_INTERVAL_MS)
    rx = ch.ClusterReceiver()
    cl = ch.Cluster(n, fake, rx, redis, total=TOTAL)
    return redis, fake, rx, cl


def get(node, path):
    code, _, data = node.api("GET", path, timeout=3.0)
    return code, data


def view(answer):
    """{id: (node, status, session_id)} of a /v1/shards answer, and whether any entry is stale."""
    out = {e["id"]: (e["node"], e["status"], e["session_id"]) for e in answer["shards"]}
    assert len(out) == len(answer["shards"]), "a shard listed twice"
    return out, any(e["stale"] for e in answer["shards"])


def same_everywhere(cl, nodes=None):
    """Wait until every node lists every shard, fresh, the same; return that view."""
    nodes = cl.live() if nodes is None else nodes

    def probe():
        views = []
        for node in nodes:
            code, data = get(node, "/v1/shards")
            assert code == 200, (node.name, code, data)
            assert data["cluster"] == "ok" and data["shard_count"] == TOTAL, data
            v, stale = view(data)
            if stale or len(v) != TOTAL:
                return None
            views.append(v)
        return views[0] if all(v == views[0] for v in views) else None
    return harness.wait_for(probe, 20, 0.1, "GET /v1/shards the same on every node")


def metrics(node):
    code, _, text = node.api("GET", "/metrics")
    assert code == 200
    fams = {f.name: f for f in prometheus_parser()(text)}

    def value(name, **labels):
        found = [s.value for f in fams.values() for s in f.samples
                 if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
        assert found, "no %s in /metrics" % name
        return sum(found)
    return fams, value


@harness.timeout(90)
def test_every_node_shows_the_whole_cluster():
    redis, fake, rx, cl = start()
    held = cl.wait_held(timeout=40)
    owner = {sid: name for name, ids in held.items() for sid in ids}
    v = same_everywhere(cl)
    assert {sid: e[0] for sid, e in v.items()} == owner
    assert all(e[1] == "ready" and e[2] for e in v.values()), v
    # one shard through a node that does not hold it
    sid = held["node-a"][0]
    code, data = get(cl.node("node-b"), "/v1/shards/%d" % sid)
    assert code == 200 and data["node"] == "node-a" and data["stale"] is False, data
    assert data["status"] == "ready" and data["cluster"] == "ok"
    code, data = get(cl.node("node-b"), "/v1/shards/%d" % TOTAL)
    assert code == 404 and data["error"]["code"] == "shard_not_found", data
    # the cluster
    for node in cl.nodes:
        code, c = get(node, "/v1/cluster")
        assert code == 200, c
        assert c["cluster"] == "ok" and c["node"] == node.name and c["shard_count"] == TOTAL
        names = sorted(n["name"] for n in c["nodes"])
        assert names == ["node-a", "node-b", "node-c"], c["nodes"]
        for n in c["nodes"]:
            assert n["alive"] is True and 0 <= n["lease_age_ms"] <= ch.LEASE_MS, n
            assert n["shards_held"] == len(held[n["name"]]) == n["shards_ready"], (n, held)
            assert n["version"] and n["up_since"].endswith("Z") and n["epoch"] > 0, n
        assert c["shards"] == {"total": TOTAL, "held": TOTAL, "ready": TOTAL, "stale": 0,
                               "unheld": 0}, c["shards"]
        assert set(c["budget"]) == {"total", "remaining", "reserve", "identify_stopped",
                                    "reset_at"}, c["budget"]
        assert c["budget"]["total"] > 0 and c["budget"]["remaining"] <= c["budget"]["total"]
        assert c["redis"]["reachable"] is True and c["redis"]["rtt_ms"] >= 0, c["redis"]
        assert c["gaps"] == [] and c["ready"] is True, c
        code, r = get(node, "/readyz")
        assert code == 200 and r["ready"] is True and r["cluster"] == "ok", r
        assert r["shards"] == len(held[node.name]) and r["unclaimed"] == 0, r
    # a line in the gaps stream shows on every node
    redis.cmd("XADD", ch.key("gaps"), "*", "shard", "3", "session_id", "gone", "seq", "41",
              "reason", "invalid_session", "node", "node-b")
    for node in cl.nodes:
        gaps = harness.wait_for(lambda: get(node, "/v1/cluster")[1]["gaps"], 5, 0.1, "a gap")
        assert [(g["shard"], g["session_id"], g["seq"], g["reason"], g["node"]) for g in gaps] \
            == [(3, "gone", 41, "invalid_session", "node-b")], gaps
    # Redis holds one status entry per shard, naming its owner
    st = redis.hgetall(ch.key("status"))
    assert sorted(int(k) for k in st) == list(range(TOTAL)), st.keys()
    # the metrics
    _, c = get(cl.node("node-a"), "/v1/cluster")
    fams, value = metrics(cl.node("node-a"))
    assert value("shardhook_cluster_shards_held") == len(held["node-a"])
    assert value("shardhook_cluster_degraded") == 0
    assert value("shardhook_cluster_nodes_live") == 3
    assert value("shardhook_cluster_budget_remaining") == c["budget"]["remaining"] > 0
    assert value("shardhook_cluster_lease_renewals_total") >= 1
    assert value("shardhook_cluster_claims_total") >= len(held["node-a"])
    assert value("shardhook_cluster_redis_seconds_count") >= 1
    for name in ("shardhook_cluster_takeovers_total", "shardhook_cluster_handoffs_total",
                 "shardhook_cluster_releases_total", "shardhook_cluster_lease_failures_total"):
        assert name in fams or name[:-len("_total")] in fams, sorted(fams)


@harness.timeout(90)
def test_killed_nodes_shards_show_stale_then_their_new_node():
    redis, fake, rx, cl = start()
    held = cl.wait_held(timeout=40)
    same_everywhere(cl)
    victim = cl.node("node-b")
    lost = set(held[victim.name])
    survivors = [n for n in cl.nodes if n is not victim]
    victim.kill()
    seen_stale = set()

    def moved():
        done = True
        for node in survivors:
            code, data = get(node, "/v1/shards")
            assert code == 200
            for e in data["shards"]:
                if e["id"] not in lost:
                    continue
                if e["node"] == victim.name:
                    done = False
                    if e["stale"]:
                        seen_stale.add(e["id"])
                    continue
                done = done and e["node"] in ("node-a", "node-c") and not e["stale"]
        return done
    harness.wait_for(moved, ch.LEASE_MS / 1000.0 + 15, 0.05, "the lost shards on new nodes")
    assert seen_stale, "no lost shard ever showed stale while its node was dead"
    after = cl.wait_held(nodes=survivors, timeout=20)
    v = same_everywhere(cl, survivors)
    assert {sid: e[0] for sid, e in v.items()} == {
        sid: name for name, ids in after.items() for sid in ids}
    code, c = get(survivors[0], "/v1/cluster")
    dead = next(n for n in c["nodes"] if n["name"] == victim.name)
    assert dead["alive"] is False and dead["lease_age_ms"] is None and dead["shards_held"] == 0
    assert c["ready"] is True and c["shards"]["held"] == TOTAL, c


@harness.timeout(120)
def test_redis_down_each_node_answers_for_its_own_shards_and_says_degraded():
    redis, fake, rx, cl = start()
    held = cl.wait_held(timeout=40)
    same_everywhere(cl)
    redis.kill9()

    def degraded(node):
        code, data = get(node, "/v1/shards")
        return code == 200 and data["cluster"] == "degraded" and data
    for node in cl.nodes:
        data = harness.wait_for(lambda: degraded(node), 10, 0.1, "%s degraded" % node.name)
        assert sorted(e["id"] for e in data["shards"]) == held[node.name], data
        assert {e["node"] for e in data["shards"]} == {node.name}
        assert not any(e["stale"] for e in data["shards"])
        other = next(s for s in range(TOTAL) if s not in held[node.name])
        code, one = get(node, "/v1/shards/%d" % other)
        assert code == 404 and "degraded" in one["error"]["message"], one
        code, c = get(node, "/v1/cluster")
        assert code == 200 and c["cluster"] == "degraded" and c["ready"] is False, c
        assert c["redis"]["reachable"] is False
        code, r = get(node, "/readyz")
        assert code == 503 and r["cluster"] == "degraded" and r["ready"] is False, r
        assert "Redis is unreachable" in r["error"]["message"], r
        _, value = metrics(node)
        assert value("shardhook_cluster_degraded") == 1
    redis.restart()
    v = same_everywhere(cl)
    assert {sid: e[0] for sid, e in v.items()} == {
        sid: name for name, ids in held.items() for sid in ids}
    for node in cl.nodes:
        node.wait_http("/readyz", 200, timeout=15)


@harness.timeout(240)
def test_status_page_shows_every_node_and_which_shards_each_holds():
    from test_status_page import dump_dom, screenshot
    redis, fake, rx, cl = start()
    held = cl.wait_held(timeout=40)
    same_everywhere(cl)
    node = cl.node("node-c")
    url = node.http_url + "/"

    def page():
        dom = dump_dom(url)
        rows = re.findall(r'<tr class="alive" data-node="([^"]+)" data-held="(\d+)" '
                          r'data-ready="(\d+)" data-alive="true">', dom)
        tiles = re.findall(r'<div class="shard s-(\w+)" data-shard="(\d+)" data-status="\w+" '
                           r'data-node="([^"]+)">', dom)
        return (dom, rows, tiles) if len(rows) == 3 and len(tiles) == TOTAL else None
    dom, rows, tiles = harness.wait_for(page, 120, 1, "three nodes and every shard on the page")
    assert sorted((n, int(h), int(r)) for n, h, r in rows) == sorted(
        (n, len(ids), len(ids)) for n, ids in held.items()), rows
    owner = {sid: name for name, ids in held.items() for sid in ids}
    assert {int(sid): n for _, sid, n in tiles} == owner
    assert all(st == "ready" for st, _, _ in tiles), tiles
    assert '<section id="cluster">' in dom and "identify budget (cluster-wide)" in dom
    assert "cluster ok" in dom and "this node node-c" in dom
    screenshot(url, harness.test_dir(), "status-page-cluster")
