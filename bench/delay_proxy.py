"""A WAN on loopback: TCP relays on 127.0.0.1 that hold every chunk D ms in each direction (this kernel has
no netem). No bandwidth cap: a chunk read at t is written at t + D, in order; a round trip through a relay
costs 2D more than without it, and so does a new connection (the relay opens its own to the target 2D
after it accepted one, as a TCP handshake would cost). For bench/bench_wan.py.

    proxy = DelayProxy([2201, 2202])      # one relay per target port, started in a thread of this process
    proxy.port_of(2201)                   # where to connect instead of 127.0.0.1:2201
    proxy.delay_ms = 25                   # applies to every chunk read from now on
    proxy.measure_rtt()                   # a ping-pong's median seconds through a relay (calibration)
    proxy.take_connections()              # [{"target": 2201, "turns": 31}, ...]: round trips each waited for
    proxy.stop()
"""
from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time

CHUNK = 1 << 16


class DelayProxy:
    def __init__(self, targets: list[int], delay_ms: float = 0.0):
        self.delay_ms = delay_ms
        self.loop = asyncio.new_event_loop()
        self._servers: dict[int, asyncio.base_events.Server] = {}
        self.connections: list[dict] = []   # {"target": port, "turns": round trips the client waited for}
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="delay-proxy")
        self._thread.start()
        for port in targets:
            self.add(port)

    def add(self, target: int) -> int:
        """A relay to 127.0.0.1:target (one more); its own port."""
        if target not in self._servers:
            fut = asyncio.run_coroutine_threadsafe(
                asyncio.start_server(lambda r, w: self._relay(r, w, target), "127.0.0.1", 0), self.loop)
            self._servers[target] = fut.result(10)
        return self.port_of(target)

    def port_of(self, target: int) -> int:
        return self._servers[target].sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: int) -> None:
        # the TCP handshake is the first round trip; "at": when each turn began (time.monotonic, as any process
        # on this machine reads it: bench_wan.py puts each turn into the doit node that was running)
        conn = {"target": target, "turns": 1, "heard": False, "at": [self.loop.time()]}
        self.connections.append(conn)
        try:
            await asyncio.sleep(2 * self.delay_ms / 1000)   # it costs one: what the client sends meanwhile waits
            up_r, up_w = await asyncio.open_connection("127.0.0.1", target)
        except (OSError, asyncio.CancelledError):
            writer.close()
            return
        for w in (writer, up_w):    # a relay forwards each chunk as it is due: no Nagle wait of its own
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(self._pipe(reader, up_w, conn, True), self._pipe(up_r, writer, conn, False),
                                 return_exceptions=True)
        except asyncio.CancelledError:   # stop()
            pass
        writer.close()
        up_w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: dict, up: bool) -> None:
        """Read chunks as they come, each stamped with when it is due; a second task writes each when due.
        Turns: the client's chunks that come after the server said something since the client's last one (so
        at D >> the hosts' think time, the round trips the client waited for; pipelined chunks are not)."""
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver():
            while True:
                due, data = await queue.get()
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    break
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        writer = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await src.read(CHUNK)
                if up and conn["heard"]:     # it heard, then spoke (or closed: it waited for the last answer)
                    conn["turns"] += 1
                    conn["at"].append(self.loop.time())
                conn["heard"] = not up if data else conn["heard"]
                queue.put_nowait((self.loop.time() + self.delay_ms / 1000, data or None))
                if not data:
                    break
            await writer                 # EOF passed on (a half-close): the other direction goes on
        except (OSError, asyncio.CancelledError):
            writer.cancel()
            dst.close()                  # a reset: the other direction ends too

    def take_connections(self) -> list[dict]:
        """The connections relayed since the last call (their turns so far), forgotten here."""
        got, self.connections = self.connections, []
        return got

    def measure_rtt(self, count: int = 30) -> float:
        """Median seconds of a 1-byte ping-pong through a relay to an echo server on 127.0.0.1."""
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            port = srv.getsockname()[1]

            def echo():
                conn, _ = srv.accept()
                with conn:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    while data := conn.recv(64):
                        conn.sendall(data)
            th = threading.Thread(target=echo, daemon=True)
            th.start()
            relay = self.add(port)
            times = []
            with socket.create_connection(("127.0.0.1", relay)) as c:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for _ in range(count):
                    t = time.perf_counter()
                    c.sendall(b"x")
                    c.recv(1)
                    times.append(time.perf_counter() - t)
            th.join(5)
            self._close_server(port)
        return statistics.median(times)

    def _close_server(self, target: int) -> None:
        server = self._servers.pop(target)
        self.loop.call_soon_threadsafe(server.close)

    def stop(self) -> None:
        for target in list(self._servers):
            self._close_server(target)

        async def end():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(end(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
