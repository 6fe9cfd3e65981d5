"""A private asyncio event loop running in a daemon thread, driven from other threads.

:class:`LoopThread` owns the thread and the loop. :meth:`~LoopThread.submit` schedules a
coroutine on the loop from any thread; :meth:`~LoopThread.call` waits for its result and
re-raises its exception in the calling thread; :meth:`~LoopThread.stop` cancels whatever still
runs on the loop, closes it and joins the thread. A blocking call made from the loop's own
thread (a status callback, say) would wait for itself forever: it raises RuntimeError instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from shared.client.errors import ClientClosed

log = logging.getLogger("tickstream.client")

T = TypeVar("T")


class LoopThread:
    """One event loop, one daemon thread; started once, stopped once."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()
        self._accepting = True  # False once stop() began: nothing new is scheduled

    @property
    def running(self) -> bool:
        """Started, and not stopping: coroutines submitted now will run."""
        return self._accepting and self.thread.is_alive()

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self.thread.ident

    def start(self) -> None:
        with self._lock:
            if not self._accepting:
                raise ClientClosed("the client is closed")
            if self.thread.ident is None:
                self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; ClientClosed if the loop is not running."""
        with self._lock:
            if not self._accepting or self.thread.ident is None:
                coro.close()
                raise ClientClosed("the client is closed" if not self._accepting
                                   else "the client is not started")
            return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it; its exception is raised here. After
        ``timeout`` seconds (or an interrupt such as KeyboardInterrupt) it is cancelled."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("a blocking Tickstream client method was called from the client's own "
                               "thread (a status or reset callback, or a token provider): it would "
                               "wait for itself forever")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            raise ClientClosed("the client closed while waiting") from None
        except BaseException as exc:
            if future.done() and not future.cancelled() and future.exception() is exc:
                raise  # the coroutine's own exception
            future.cancel()
            if isinstance(exc, TimeoutError):
                raise TimeoutError(f"no result within {timeout} s") from None
            raise

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the loop (cancelling its tasks), close it, join the thread. True once the thread
        has ended; False if it did not within ``timeout`` or if called from the thread itself
        (it then ends as soon as the current callback returns)."""
        with self._lock:
            self._accepting = False
            started = self.thread.ident is not None
            if started and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.loop.stop)
        if not started:
            if not self.loop.is_closed():
                self.loop.close()
            return True
        if self.in_loop_thread():
            return False
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            except Exception:
                log.exception("the client's event loop did not shut down cleanly")
            finally:
                asyncio.set_event_loop(None)
                loop.close()
