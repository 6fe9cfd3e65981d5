"""The gateway's HTTP side: health, readiness, metrics and publishing over HTTP."""

from __future__ import annotations

import httpx
import redis.asyncio

from shared.codec import decode_entry
from shared.keys import Keys
from tests.support.gateway import Client, InProcessGateway, token


async def test_health_ready_and_metrics(gw: InProcessGateway) -> None:
    async with httpx.AsyncClient(base_url=gw.http) as http:
        health = (await http.get("/healthz")).json()
        assert health["status"] == "ok" and health["node"] == gw.settings.node
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["redis"] is True
        client = await Client.open(gw.url)
        await client.subscribe("custom")
        metrics = (await http.get("/metrics")).text
        assert "tickstream_connections 1.0" in metrics
        assert "tickstream_subscriptions 1.0" in metrics
        assert "tickstream_publish_to_send_seconds_bucket" in metrics
        await client.close()


async def test_http_publish_requires_the_publisher_role(
    gw: InProcessGateway, aredis: redis.asyncio.Redis
) -> None:
    event = {"event_type": "signal_generated", "symbol": "BTCUSDT",
             "data": {"symbol": "BTCUSDT", "signal": "LONG", "entry_price": 65000, "strategy": "s",
                      "confidence": 0.8}}
    async with httpx.AsyncClient(base_url=gw.http) as http:
        assert (await http.post("/api/publish", json=event)).status_code == 401
        bad = await http.post("/api/publish", json=event, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
        reader = {"Authorization": f"Bearer {token('svc', roles=['reader'])}"}
        assert (await http.post("/api/publish", json=event, headers=reader)).status_code == 403
        auth = {"Authorization": f"Bearer {token('svc', roles=['publisher'])}"}
        one = await http.post("/api/publish", json=event, headers=auth)
        assert one.status_code == 200
        offset = one.json()["offset"]
        many = await http.post("/api/publish", json=[event, dict(event, idempotency_key="k1"),
                                                      dict(event, idempotency_key="k1")], headers=auth)
        offsets = many.json()["offsets"]
        assert len(offsets) == 3 and offsets[1] == offsets[2]
        invalid = await http.post("/api/publish", json={"event_type": "signal_generated", "data": {}},
                                  headers=auth)
        assert invalid.status_code == 400 and "missing field" in invalid.json()["error"]["message"]
        garbage = await http.post("/api/publish", content=b"{oops", headers=auth)
        assert garbage.status_code == 400
        private = await http.post("/api/publish", json={"event_type": "risk_event", "data": {}},
                                  headers=auth)
        assert private.status_code == 400 and "private" in private.json()["error"]["message"]
    raw = await aredis.xrange(Keys().stream("signal_generated"))
    assert [decode_entry("signal_generated", i, f).offset for i, f in raw] == [offset, *offsets[:2]]
