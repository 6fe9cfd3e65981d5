"""`tickstream up --ingestors 2`: a group of ingestors with one leader, led again after a kill."""

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


async def test_up_runs_an_ingestor_group_with_one_leader_through_a_kill(tmp_path: os.PathLike[str]) -> None:
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
        killed = int(stack.child(leader)["pid"])
        os.kill(killed, signal.SIGKILL)

        async def led_again() -> bool:
            # `up` restarts the killed process; whichever of the two holds the lease now, the
            # group has exactly one leader again and it is not the dead process.
            roles = await _roles(stack, names)
            return (sorted(roles.values()) == ["leader", "standby"]
                    and int(stack.child(leader)["pid"]) != killed)

        await until(led_again, 30, "one leader again after the leader was killed")
        assert await stack.stop() == 0
        assert not any(alive(pid) for pid in stack.started_pids())
    finally:
        await stack.cleanup()
