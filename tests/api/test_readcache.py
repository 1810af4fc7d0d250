"""The read cache (api.http.readcache) and the request coalescing behind it (api.http.deps.SingleFlight):
answers stay exact when other connections commit, a cached answer still needs a valid token,
and concurrent misses share one query. On SQLite and PostgreSQL, against a real server."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import create_engine, text

from api.http.deps import SingleFlight
from api.http.readcache import PostgresChangeWatch, ReadCache, SqliteChangeWatch, change_watch
from api.http.schemas import SceneDetail, SceneOut
from core import migrate
from core.db import session_factory
from core.models import Scene

INSERT_TOKEN = (
    "INSERT INTO api_tokens (name, role, token_hash, prefix, created_at) "
    "VALUES ('x', 'viewer', 'h', 'p', :at)"
)


def _scene_names(client: httpx.Client) -> set[str]:
    r = client.get("/api/v1/scenes")
    assert r.status_code == 200, r.text
    return {s["name"] for s in r.json()}


def test_answers_follow_commits_made_by_other_connections(live):
    """A scene added (then renamed) through another connection shows at the next read."""
    is_sqlite = live.settings.resolved_database_url.startswith("sqlite")
    with live.client("viewer") as c:
        before = _scene_names(c)
        assert _scene_names(c) == before  # now from the cache
        with session_factory(live.engine)() as s:
            s.add(Scene(name="added-elsewhere", rig_id=live.ids["rig"],
                        description="not through the API"))
            s.commit()
        deadline = time.monotonic() + 2.0
        seen = _scene_names(c)
        while "added-elsewhere" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)  # PostgreSQL: the notification is on its way
            seen = _scene_names(c)
        assert seen == before | {"added-elsewhere"}
        if is_sqlite:  # data_version is exact: the very next read saw it
            assert _scene_names(c) == seen
        detail = c.get("/api/v1/scenes/added-elsewhere")
        assert detail.status_code == 200 and detail.json()["description"] == "not through the API"
        with live.engine.begin() as connection:
            connection.execute(
                text("UPDATE scenes SET description = 'changed' WHERE name = 'added-elsewhere'")
            )
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if c.get("/api/v1/scenes/added-elsewhere").json()["description"] == "changed":
                break
            time.sleep(0.01)
        assert c.get("/api/v1/scenes/added-elsewhere").json()["description"] == "changed"


def test_cached_answers_are_the_response_models(live):
    """A cached answer parses as the endpoint's response model, field for field the same as the
    first (uncached) answer."""
    with live.client("viewer") as c:
        first = c.get("/api/v1/scenes/scene1")
        again = c.get("/api/v1/scenes/scene1")
        assert first.status_code == again.status_code == 200
        assert first.content == again.content
        assert first.headers["content-type"] == again.headers["content-type"] == "application/json"
        assert int(again.headers["content-length"]) == len(again.content)
        detail = SceneDetail.model_validate_json(again.content)
        assert detail.name == "scene1" and detail.products
        listed = [SceneOut.model_validate(s) for s in c.get("/api/v1/scenes").json()]
        assert any(s.name == "scene1" and s.n_pairs == 1 for s in listed)


def test_a_cached_answer_still_needs_a_valid_token(live):
    with live.client("viewer") as c:
        assert c.get("/api/v1/scenes").status_code == 200
        assert c.get("/api/v1/scenes").status_code == 200  # cached
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eDp5"},
                    {"Authorization": f"Bearer {live.tokens['revoked']}"}):
        r = httpx.get(f"{live.url}/api/v1/scenes", headers=headers)
        assert r.status_code == 401, (headers, r.text)
    with live.client("admin") as admin:
        created = admin.post("/api/v1/tokens", json={"name": "brief", "role": "viewer"}).json()
        brief = {"Authorization": f"Bearer {created['secret']}"}
        assert httpx.get(f"{live.url}/api/v1/scenes", headers=brief).status_code == 200
        assert httpx.get(f"{live.url}/api/v1/scenes", headers=brief).status_code == 200
        assert admin.delete(f"/api/v1/tokens/{created['id']}").status_code == 200
    r = httpx.get(f"{live.url}/api/v1/scenes", headers=brief)  # revoked here: at once
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_a_write_through_the_api_is_read_back_at_once(live):
    """Read-your-writes: a job submitted through the API is in the next listing."""
    with live.client("operator") as c:
        listed = c.get("/api/v1/jobs").json()
        assert c.get("/api/v1/jobs").json() == listed
        r = c.post("/api/v1/jobs/reprocess", json={})
        assert r.status_code == 202, r.text
        assert r.json()["id"] in {j["id"] for j in c.get("/api/v1/jobs").json()}


# ---- the pieces ------------------------------------------------------------------------------


def test_sqlite_data_version_moves_with_commits_of_other_connections(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate.upgrade(url)
    watch = SqliteChangeWatch(str(tmp_path / "db.sqlite"))
    engine = create_engine(url)
    try:
        v0 = watch.version()
        assert v0 is not None and watch.version() == v0
        with engine.connect() as c:
            c.execute(text("SELECT count(*) FROM scenes")).scalar()
        assert watch.version() == v0  # reading changes nothing
        with engine.begin() as c:
            c.execute(text(INSERT_TOKEN), {"at": "2026-01-01 00:00:00"})
        assert watch.version() != v0
    finally:
        watch.close()
        engine.dispose()


@pytest.mark.postgres
def test_postgres_notifications_move_the_version(postgres_url):
    migrate.upgrade(postgres_url)
    watch = change_watch(postgres_url)
    assert isinstance(watch, PostgresChangeWatch)
    engine = create_engine(postgres_url)
    try:
        v0 = watch.version()
        assert v0 is not None
        with engine.begin() as c:
            c.execute(text(INSERT_TOKEN), {"at": datetime.now(UTC)})
        deadline = time.monotonic() + 2.0
        while watch.version() == v0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert watch.version() not in (None, v0)
    finally:
        watch.close()
        engine.dispose()


def test_no_watch_means_no_caching():
    """An unreachable PostgreSQL (nothing listens on port 1): the watch reports None and the
    cache stores nothing; an in-memory SQLite database has no watch at all."""
    watch = PostgresChangeWatch("postgresql://nobody@127.0.0.1:1/none", retry_s=0.05)
    try:
        cache = ReadCache(watch)
        assert watch.version() is None and cache.version() is None
        cache.put("/x?", cache.version(), b"[]")
        assert cache.get("/x?", cache.version()) is None
    finally:
        watch.close()
    assert change_watch("sqlite://") is None


def test_read_cache_entries_expire_with_their_version_and_max_age():
    class FixedWatch(SqliteChangeWatch):
        def __init__(self) -> None:
            self.value = 1

        def version(self) -> int:
            return self.value

        def close(self) -> None:
            pass

    watch = FixedWatch()
    cache = ReadCache(watch, max_entries=2)
    v = cache.version()
    cache.put("/a?", v, b"A")
    cache.put("/b?", v, b"B", max_age=0.0)
    assert cache.get("/a?", cache.version()) == (b"A", False)
    time.sleep(0.001)
    assert cache.get("/b?", cache.version()) == (b"B", True)  # past its max age: stale-usable
    cache.put("/c?", v, b"C")  # over max_entries: the least recently used (/a was read, /b
    assert cache.get("/a?", v) is None or cache.get("/b?", v) is None  # ... one of them) goes
    cache.bump()  # a write through this process
    assert cache.get("/c?", cache.version()) is None
    watch.value = 2
    cache.put("/d?", cache.version(), b"D")
    watch.value = 3
    assert cache.get("/d?", cache.version()) is None
    small = ReadCache(watch, max_bytes=100)
    small.put("/big?", small.version(), b"x" * 26)  # over a quarter of the budget: not kept
    assert small.get("/big?", small.version()) is None
    for k in range(10):
        small.put(f"/{k}?", small.version(), b"y" * 20)
    assert small.stats()["bytes"] <= 100 and small.stats()["entries"] == 5
    assert small.get("/9?", small.version()) == (b"y" * 20, False)


def test_single_flight_shares_one_execution():
    async def main() -> None:
        flights = SingleFlight()
        calls = 0

        async def slow() -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return 42

        results = await asyncio.gather(*(flights.run("k", slow) for _ in range(20)))
        assert results == [42] * 20 and calls == 1
        assert "k" not in flights  # done: the next call runs again
        assert await flights.run("k", slow) == 42 and calls == 2

        async def failing() -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.02)
            raise LookupError("shared failure")

        calls = 0
        outcomes = await asyncio.gather(*(flights.run("f", failing) for _ in range(5)),
                                        return_exceptions=True)
        assert calls == 1 and all(isinstance(o, LookupError) for o in outcomes)

        # the leader's client goes away: the others run the call themselves
        calls = 0
        leader = asyncio.create_task(flights.run("c", slow))
        await asyncio.sleep(0.01)
        followers = [asyncio.create_task(flights.run("c", slow)) for _ in range(3)]
        await asyncio.sleep(0.01)
        leader.cancel()
        assert await asyncio.gather(*followers) == [42] * 3
        with pytest.raises(asyncio.CancelledError):
            await leader

    asyncio.run(main())
