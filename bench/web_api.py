"""The web server's cost over the bare application core (`kumix.app.Kumix`), in one run.

    .venv/bin/python bench/web_api.py [--rooms 200] [--messages 50] [--repeat 2] [--latency 200] [--pages 20]

1. A 50-event timeline page: `GET /api/rooms/{id}/events?limit=50` through uvicorn (httpx,
   keep-alive) against `Kumix.timeline(room, limit=50)` called in-process on the server's loop.
2. Latency from a message's update being published (the sync batch stored, the moment the
   in-process subscriber sees it) to its WebSocket frame arriving at a page, p50/p99.
   The figure includes the page's receive and JSON parse: an upper bound of what the
   server adds.
3. Memory (VmRSS after the initial sync, and VmHWM) of a process that logs in and syncs
   ROOMS x MESSAGES with `Kumix` alone, against one that also serves the web app with one
   page connected; each in a fresh child process, alternating.
4. Fan-out: the same latency with PAGES WebSockets connected (first and last arrival).

Pages and API clients run in child processes (as a browser would: not competing with the
server for this process's GIL); arrival times use CLOCK_MONOTONIC, shared by all processes.

The homeserver is seeded once through the client API and cached under bench/results/
(gitignored). A benchmark, not a test: it prints figures and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
USER, PASSWORD = "@webbench:localhost", "bench-password"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _seed(url: str, rooms: int, messages: int) -> None:
    import nio

    client = nio.AsyncClient(url, USER, config=nio.AsyncClientConfig(encryption_enabled=False))
    await client.login(PASSWORD)
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            resp = await client.room_create(name=f"Bench room {i}")
            for j in range(messages):
                await client.room_send(resp.room_id, "m.room.message",
                                       {"msgtype": "m.text", "body": f"message {j} in room {i}: lorem ipsum dolor"})

    await asyncio.gather(*(one(i) for i in range(rooms)))
    await client.close()


def _settings(data: Path) -> Any:
    from kumix.app.settings import Settings

    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    (data / "pass").write_text("bench passphrase")
    (data / "pass").chmod(0o600)
    return Settings(data_dir=data)


def _env(data: Path) -> dict[str, str]:
    return {"KUMIX_VAULT_PASSPHRASE_FILE": str(data / "pass")}


def _rss() -> tuple[int, int]:
    status = Path("/proc/self/status").read_text().splitlines()
    get = lambda key: next(int(line.split()[1]) for line in status if line.startswith(key))  # noqa: E731
    return get("VmRSS:"), get("VmHWM:")


def _child(kind: str, url: str) -> None:
    """Log in (a new device), initial sync, go live; with `serve` also serve one page. Prints RSS."""
    from kumix.app.kumix import Kumix
    from kumix.web.routes import build_app
    from kumix.web.server import bind, port_of, serve
    from kumix.web.sessions import Sessions

    data = Path(tempfile.mkdtemp(prefix="kumix-webbench-child-")) / "data"
    settings = _settings(data)

    async def main() -> tuple[int, int]:
        async with Kumix.open(settings, env=_env(data), interactive=False) as k:
            await k.login_password(url, USER, PASSWORD)
            await k.start_live()
            if kind == "bare":
                await asyncio.sleep(3)
                return _rss()
            sock = bind(None)
            sessions = Sessions(port_of(sock))
            app, _ = build_app(k, sessions)
            stop = asyncio.Event()
            server = asyncio.create_task(serve(app, sock, stop))
            rss = await asyncio.to_thread(_one_page, port_of(sock), sessions.token)
            stop.set()
            await server
            return rss

    rss, hwm = asyncio.run(main())
    print(json.dumps({"rss_kib": rss, "hwm_kib": hwm}))


def _one_page(port: int, token: str) -> tuple[int, int]:
    import httpx
    from websockets.sync.client import connect

    origin = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=origin, headers={"origin": origin}) as c:
        c.get("/", params={"token": token})
        assert c.get("/api/rooms").status_code == 200
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
        with connect(f"ws://127.0.0.1:{port}/api/events", origin=origin,  # type: ignore[arg-type]
                     additional_headers={"Cookie": cookie}, proxy=None) as ws:
            ws.recv(timeout=30)
            time.sleep(3)
            return _rss()


def _page_client(port: str, token: str, room: str, n: str) -> None:
    """Child: time `n` timeline pages through the API (a separate process, as a browser is)."""
    import httpx

    origin = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=origin, headers={"origin": origin}) as c:
        c.get("/", params={"token": token})
        assert len(c.get(f"/api/rooms/{room}/events", params={"limit": 50}).json()["events"]) == 50
        t = time.perf_counter()
        for _ in range(int(n)):
            c.get(f"/api/rooms/{room}/events", params={"limit": 50})
        print(json.dumps({"ms": (time.perf_counter() - t) / int(n) * 1000}))


def _ws_client(port: str, token: str, pages: str, count: str) -> None:
    """Child: `pages` WebSockets; prints each "lat" event's arrival (CLOCK_MONOTONIC, shared
    with the parent) per page once `count` have arrived everywhere."""
    origin = f"http://127.0.0.1:{port}"

    import httpx
    from websockets.sync.client import connect

    with httpx.Client(base_url=origin, headers={"origin": origin}) as c:
        c.get("/", params={"token": token})
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    stack = contextlib.ExitStack()
    conns = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/api/events", origin=origin,  # type: ignore[arg-type]
                                         additional_headers={"Cookie": cookie}, proxy=None, compression=None))
             for _ in range(int(pages))]
    for ws in conns:
        ws.recv(timeout=30)
    arrivals: list[dict[str, float]] = [{} for _ in conns]

    def read(i: int) -> None:
        while len(arrivals[i]) < int(count):
            doc = json.loads(conns[i].recv(timeout=120))
            if doc.get("type") == "event" and doc["event"]["body"].startswith("lat "):
                arrivals[i][doc["event"]["event_id"]] = time.perf_counter()

    readers = [threading.Thread(target=read, args=(i,)) for i in range(len(conns))]
    for t in readers:
        t.start()
    print("ready", flush=True)
    for t in readers:
        t.join()
    stack.close()
    print(json.dumps(arrivals), flush=True)


class Server:
    """The web app under uvicorn in a thread with its own loop (the page clients run here)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.published: dict[str, float] = {}

    async def _main(self) -> None:
        from kumix.app.kumix import Kumix
        from kumix.core.models import TimelineUpdate
        from kumix.web.routes import build_app
        from kumix.web.server import bind, port_of, serve
        from kumix.web.sessions import Sessions

        async with Kumix.open(_settings(self.data), env=_env(self.data), interactive=False) as k:
            await k.start_live()
            self.k = k
            sock = bind(None)
            self.port = port_of(sock)
            self.sessions = Sessions(self.port)
            app, _ = build_app(k, self.sessions)
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()

            async def watch() -> None:
                async with k.subscribe() as sub:
                    async for update in sub:
                        if isinstance(update, TimelineUpdate):
                            self.published.setdefault(update.event.event_id, time.perf_counter())

            watcher = asyncio.create_task(watch())
            self.ready.set()
            await serve(app, sock, self.stop)
            watcher.cancel()

    def start(self) -> Server:
        self.thread.start()
        self.ready.wait(120)
        return self

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(300)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


def _latencies(server: Server, bob: Any, room_id: str, pages: int, count: int) -> tuple[list[float], list[float]]:
    """Per message: publish → first page and publish → last page, in ms."""
    child = subprocess.Popen([sys.executable, __file__, "--ws-client", str(server.port), server.sessions.token,
                              str(pages), str(count)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    ids = []
    for i in range(count):
        ids.append(bob.send(room_id, f"lat {i}"))
        while ids[-1] not in server.published:
            time.sleep(0.001)
        time.sleep(0.01)  # one message at a time: latency, not throughput
    arrivals: list[dict[str, float]] = json.loads(child.stdout.readline())
    child.wait(60)
    first = [(min(a[e] for a in arrivals) - server.published[e]) * 1000 for e in ids]
    last = [(max(a[e] for a in arrivals) - server.published[e]) * 1000 for e in ids]
    return first, last


class Bob:
    def __init__(self, url: str, user: str, password: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, timeout=60)
        r = self.http.post("/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        self.n = 0

    def join(self, room_id: str) -> None:
        self.http.post(f"/_matrix/client/v3/join/{room_id}", json={}).raise_for_status()

    def send(self, room_id: str, body: str) -> str:
        self.n += 1
        r = self.http.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/b{self.n}x{time.time_ns()}",
                          json={"msgtype": "m.text", "body": body})
        return str(r.json()["event_id"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rooms", type=int, default=200)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--latency", type=int, default=200)
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--page-client", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--ws-client", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    if args.page_client:
        _page_client(*args.page_client)
        return
    if args.ws_client:
        _ws_client(*args.ws_client)
        return
    from kumix.app.kumix import Kumix
    from kumix.matrix.homeserver import Homeserver, HomeserverConfig, free_port

    RESULTS.mkdir(exist_ok=True)
    directory = RESULTS / f"web-synapse-{args.rooms}x{args.messages}"
    hs = Homeserver(HomeserverConfig(directory, free_port()))
    seeded = directory / "seeded.json"
    hs.start()
    try:
        if not seeded.exists():
            print(f"seeding {args.rooms} rooms x {args.messages} messages (cached for later runs)…", file=sys.stderr)
            hs.register("webbench", PASSWORD)
            hs.register("webbob", PASSWORD)
            asyncio.run(_seed(hs.url, args.rooms, args.messages))
            seeded.write_text(json.dumps({"rooms": args.rooms, "messages": args.messages}))

        # -- 3. memory, in child processes -------------------------------------------------
        mem: dict[str, list[dict[str, int]]] = {"bare": [], "serve": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")}
        for _ in range(args.repeat):
            for kind in ("bare", "serve"):
                out = subprocess.run([sys.executable, __file__, "--child", kind, hs.url], capture_output=True,
                                     text=True, env=env, check=True)
                mem[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))

        # -- 1, 2, 4: one server in this process ----------------------------------------------
        data = Path(tempfile.mkdtemp(prefix="kumix-webbench-")) / "data"

        async def login() -> None:
            async with Kumix.open(_settings(data), env=_env(data), interactive=False) as k:
                await k.login_password(hs.url, USER, PASSWORD)

        asyncio.run(login())
        server = Server(data).start()
        try:
            import httpx

            origin = f"http://127.0.0.1:{server.port}"
            c = httpx.Client(base_url=origin, headers={"origin": origin}, timeout=60)
            c.get("/", params={"token": server.sessions.token})
            rooms = c.get("/api/rooms").json()["rooms"]
            seeded_room = next(r["room_id"] for r in rooms if r["name"].startswith("Bench room"))

            n = 300
            out = subprocess.run([sys.executable, __file__, "--page-client", str(server.port), server.sessions.token,
                                  seeded_room, str(n)], capture_output=True, text=True, check=True)
            api_ms = json.loads(out.stdout.strip().splitlines()[-1])["ms"]

            async def in_process() -> float:
                start = time.perf_counter()
                for _ in range(n):
                    await server.k.timeline(seeded_room, limit=50)
                return (time.perf_counter() - start) / n * 1000

            core_ms = server.run(in_process())

            room_id = c.post("/api/rooms", json={"name": "latency", "encrypted": False,
                                                 "invite": ["@webbob:localhost"]}).json()["room_id"]
            bob = Bob(hs.url, "@webbob:localhost", PASSWORD)
            bob.join(room_id)
            time.sleep(2)
            one_first, _ = _latencies(server, bob, room_id, 1, args.latency)
            fan_first, fan_last = _latencies(server, bob, room_id, args.pages, max(30, args.latency // 4))
            c.close()
        finally:
            server.close()
    finally:
        hs.stop()

    med = {k: statistics.median(r["rss_kib"] for r in v) / 1024 for k, v in mem.items()}
    hwm = {k: statistics.median(r["hwm_kib"] for r in v) / 1024 for k, v in mem.items()}
    print(f"web API, {args.rooms} rooms x {args.messages} messages:")
    print(f"  50-event page: API {api_ms:.2f} ms, Kumix.timeline in-process {core_ms:.2f} ms, "
          f"ratio {api_ms / core_ms:.1f}x")
    print(f"  publish -> WebSocket frame at the page, 1 page, {len(one_first)} messages: "
          f"p50 {_pct(one_first, 0.5):.2f} ms, p99 {_pct(one_first, 0.99):.2f} ms (target p50 < 5 ms)")
    print(f"  fan-out to {args.pages} pages, {len(fan_first)} messages: first page p50 {_pct(fan_first, 0.5):.2f} ms, "
          f"last page p50 {_pct(fan_last, 0.5):.2f} ms, p99 {_pct(fan_last, 0.99):.2f} ms")
    print(f"  memory after initial sync (median of {args.repeat}): Kumix alone RSS {med['bare']:.0f} MiB "
          f"(peak {hwm['bare']:.0f}), with web server + 1 page RSS {med['serve']:.0f} MiB (peak {hwm['serve']:.0f}), "
          f"ratio {med['serve'] / med['bare']:.2f}x RSS, {hwm['serve'] / hwm['bare']:.2f}x peak (target <= 1.2x)")


if __name__ == "__main__":
    main()
