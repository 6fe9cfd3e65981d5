"""`tickstream up --ingestors 2`: a group of ingestors, one leader, a standby that takes over."""

from __future__ import annotations

import os
import signal

import httpx

from tests.stack.support import UpStack, alive
from tests.support.waiting import until


async def _roles(stack: UpStack, names: list[str]) -> dict[str, str]:
    roles: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=2.0) as client:
        for name in names:
            address = stack.child(name)["address"]
            try:
                roles[name] = str((await client.get(address)).json().get("role"))
            except (httpx.TransportError, ValueError):
                roles[name] = "down"
    return roles


async def test_up_runs_an_ingestor_group_and_the_standby_takes_over(tmp_path: os.PathLike[str]) -> None:
    stack = UpStack(tmp_path / "state", "--ingestors", "2")  # type: ignore[operator]
    await stack.start()
    try:
        await stack.ready()
        names = ["ingestor", "ingestor-2"]
        assert set(names) <= set(stack.state()["children"])

        async def one_leader() -> bool:
            return sorted((await _roles(stack, names)).values()) == ["leader", "standby"]

        await until(one_leader, 30, "one leader and one standby")
        leader = next(n for n, r in (await _roles(stack, names)).items() if r == "leader")
        other = next(n for n in names if n != leader)
        os.kill(int(stack.child(leader)["pid"]), signal.SIGKILL)

        async def taken_over() -> bool:
            return (await _roles(stack, [other]))[other] == "leader"

        await until(taken_over, 30, "the standby to take the lease")
        assert await stack.stop() == 0
        assert not any(alive(pid) for pid in stack.started_pids())
    finally:
        await stack.cleanup()
