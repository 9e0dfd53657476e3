"""The web client in Chromium against a static page that renders the same rows, in one run.

    .venv/bin/python bench/web_client.py [--rooms 200] [--messages 50] [--long 10000]
                                         [--repeat 5] [--switches 20] [--step 120] [--trace FILE]

The account has ROOMS rooms: ROOMS-1 with MESSAGES messages each and one ("Long room") with
LONG messages. Everything runs here: a Synapse (seeded once through the client API, rooms
and sends concurrent, and cached under bench/results/, gitignored), `kumix serve`'s
application on 127.0.0.1 (the same app and server as `kumix serve`, in a thread), Debian
Chromium through Playwright, and a plain HTTP server on 127.0.0.1 for the baseline page.

The baseline is a static page (no framework, no virtualization, no API: the rows' data as
JSON files next to it, rendered with createElement and the client's own stylesheet) that
renders the same rows the client shows. Figures, each with the baseline's and the ratio:

1. opening the token URL → the room list painted (the first animation frame after all ROOMS
   rows are in the DOM), median of REPEAT fresh browser contexts;
2. switching rooms → the room's newest message painted with its page of 50 loaded, median
   of SWITCHES rooms: "cold" (the server's store holds the 10 events of the initial sync
   and pages the rest from the homeserver) and "warm" (the store holds them: a fresh page
   after the first pass);
3. scrolling the long room from the newest message to the oldest, STEP px per animation
   frame (the page pages back 50 at a time): the longest task (PerformanceObserver
   "longtask", which reports tasks of 50 ms and more) and the 95th percentile of the frame
   time (deltas between requestAnimationFrame timestamps), over all frames and over the
   frames that moved; targets: no task over 50 ms, p95 frame under 16.7 ms;
4. the JS heap (CDP Runtime.getHeapUsage after two forced collections) once every room has
   been opened, i.e. ROOMS x 50 messages loaded; target under 40 MB.

`--trace FILE` adds a Chromium performance trace (CDP Tracing, devtools.timeline) of a second
scroll of the long room and prints the longest main-thread tasks with what ran in them.
A benchmark, not a test: nothing here asserts a threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from web_api import Server, _env, _settings

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CLIENT = ROOT.parent / "src" / "kumix" / "web" / "client"
USER, PASSWORD = "@webclient:localhost", "bench-password"
LONG_ROOM = "Long room"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
         "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris "
         "nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate.")


def body(room: int, j: int) -> str:
    """Message j of room `room`: lengths vary from one line to three, as in a real room."""
    return f"message {j} in room {room}: {LOREM[: (j * 37) % len(LOREM)]}"


def marker_of(event: dict[str, Any]) -> str:
    """What identifies a message's row on screen: "message J in room I:"."""
    return str(event["body"]).split(":")[0] + ":"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------- seeding


async def seed(url: str, rooms: int, messages: int, long: int) -> None:
    """ROOMS-1 rooms of MESSAGES messages and one of LONG, through the client API. Sends to one
    room go several at a time: Synapse persists the events queued for a room in one batch
    (one transaction), which sequential sends never give it. A room's order is then roughly
    the order sent; the benchmark reads each room's newest message from the server."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=64)) as c:
        r = await c.post("/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": USER}, "password": PASSWORD})
        r.raise_for_status()
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        sent = 0
        total = (rooms - 1) * messages + long
        started = time.perf_counter()
        rooms_at_once = asyncio.Semaphore(8)

        async def send(room_id: str, n: int, text: str) -> None:
            nonlocal sent
            r = await c.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/s{n}",
                            json={"msgtype": "m.text", "body": text})
            r.raise_for_status()
            sent += 1
            if sent % 1000 == 0:
                rate = sent / (time.perf_counter() - started)
                print(f"  seeded {sent}/{total} messages ({rate:.0f}/s, load {load()})", file=sys.stderr, flush=True)

        async def create(name: str) -> str:
            async with rooms_at_once:
                r = await c.post("/_matrix/client/v3/createRoom", json={"name": name, "preset": "private_chat"})
                r.raise_for_status()
                return str(r.json()["room_id"])

        async def fill(i: int, room_id: str, count: int, lanes: int) -> None:
            async def lane(k: int) -> None:
                for j in range(k, count, lanes):
                    await send(room_id, j, body(i, j))
            await asyncio.gather(*(lane(k) for k in range(lanes)))

        async def small(i: int, room_id: str) -> None:
            async with rooms_at_once:
                await fill(i, room_id, messages, 10)

        ids = await asyncio.gather(*(create(f"Bench room {i}") for i in range(rooms - 1)), create(LONG_ROOM))
        print(f"  created {rooms} rooms in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        await asyncio.gather(fill(rooms - 1, ids[-1], long, 20), *(small(i, ids[i]) for i in range(rooms - 1)))
        print(f"  seeded {total} messages in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the baseline page

BASELINE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>baseline</title>
<link rel="stylesheet" href="app.css"><script type="module" src="baseline.js"></script></head>
<body><div id="app"></div></body></html>
"""

BASELINE_JS = r"""
// The same rows as the client, from JSON files, with createElement: no framework, no
// virtualization, no API.
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const shortName = (u) => u.replace(/^@/, "").split(":")[0];
const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const cache = new Map();
window.__baseline = { cache };
const shell = el("div", "shell has-room");
const rail = el("nav", "workspaces"); rail.append(el("button", "workspace current", "⌂"));
const side = el("aside", "sidebar");
const list = el("div", "roomlist");
const main = el("main", "main");
const pane = el("div", "room-pane");
const head = el("header", "room-head"); const title = el("h1", "", ""); head.append(title);
const wrap = el("div", "timeline-wrap");
const box = el("div", "timeline"); box.setAttribute("role", "log");
wrap.append(box); pane.append(head, wrap); main.append(pane); side.append(list);
shell.append(rail, side, main);
document.getElementById("app").append(shell);

function message(ev, prev) {
  const cont = prev && prev.sender === ev.sender && ev.ts - prev.ts < 300000;
  const a = el("article", cont ? "message continuation" : "message");
  a.dataset.eventId = ev.event_id;
  if (!cont) {
    const h = el("header");
    h.append(el("span", "avatar", shortName(ev.sender).slice(0, 1).toUpperCase()),
      el("strong", "sender", shortName(ev.sender)), " ", el("time", "muted small", time.format(ev.ts)));
    a.append(h);
  }
  const c = el("div", "content"); c.append(el("p", "text", ev.body)); a.append(c);
  return a;
}

async function open(room) {
  title.textContent = room.name;
  let events = cache.get(room.room_id);
  // ?long: the long room with every message (the scroll); otherwise its newest 50, like the others.
  const file = room.long && new URLSearchParams(location.search).has("long") ? "long.json" : `rooms/${room.index}.json`;
  if (!events) { events = await (await fetch(file)).json(); cache.set(room.room_id, events); }
  const rows = document.createDocumentFragment();
  let prev = null;
  for (const ev of events) { rows.append(message(ev, prev)); prev = ev; }
  box.replaceChildren(rows);
  box.scrollTop = box.scrollHeight;
}

const rooms = await (await fetch("rooms.json")).json();
const section = el("section", "section"); section.append(el("h2", "section-title", "Other rooms"));
const ul = el("ul"); ul.setAttribute("role", "listbox");
for (const room of rooms) {
  const li = el("li", "room"); li.id = `room-${room.room_id}`; li.setAttribute("role", "option");
  li.append(el("span", "avatar", room.name.slice(0, 1).toUpperCase()), el("span", "room-name", room.name));
  li.addEventListener("click", () => void open(room));
  ul.append(li);
}
section.append(ul); list.append(section);
"""


class StaticServer:
    """A plain HTTP server on 127.0.0.1 for the baseline page, in a thread."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def baseline_dir(rooms: list[dict[str, Any]], pages: dict[str, list[dict[str, Any]]]) -> Path:
    """The static page and its data: the room list and each room's events as the client got them."""
    d = Path(tempfile.mkdtemp(prefix="kumix-webclient-baseline-"))
    (d / "rooms").mkdir()
    shutil.copy(CLIENT / "css" / "app.css", d / "app.css")
    (d / "index.html").write_text(BASELINE_HTML)
    (d / "baseline.js").write_text(BASELINE_JS)
    listed = [{"room_id": r["room_id"], "name": r["name"], "index": i, "long": r["name"] == LONG_ROOM}
              for i, r in enumerate(rooms)]
    (d / "rooms.json").write_text(json.dumps(listed))
    for i, r in enumerate(rooms):
        events = pages[r["room_id"]]
        (d / "rooms" / f"{i}.json").write_text(json.dumps(events[-50:]))
        if r["name"] == LONG_ROOM:
            (d / "long.json").write_text(json.dumps(events))
    return d


# ---------------------------------------------------------------- in the page

PROBE = """
(() => {
  // Installed before any of the page's own scripts (Playwright init script, through CDP).
  const b = window.__bench = { longtasks: [], roomsPainted: null };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) b.longtasks.push([e.startTime, e.duration]);
  }).observe({ type: "longtask", buffered: true });
  const want = __ROOMS__;
  // The room list is painted in the frame after the one whose start finds every row in the DOM.
  const poll = () => {
    if (document.querySelectorAll(".roomlist li.room").length >= want) {
      requestAnimationFrame(() => { b.roomsPainted = performance.timeOrigin + performance.now(); });
    } else requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
})();
"""

SWITCH = """
async ([roomId, marker]) => {
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const row = document.getElementById(`room-${roomId}`);
  if (!row) throw new Error(`no row for ${roomId}`);
  await frame();
  const t0 = performance.now();
  row.click();
  const shown = () => [...document.querySelectorAll(".timeline article.message")]
    .some((a) => a.textContent.includes(marker));
  for (;;) {
    await frame();
    if (shown()) break;
    if (performance.now() - t0 > 60000) throw new Error(`room ${roomId} never showed ${marker}`);
  }
  await frame();
  return performance.now() - t0;
}
"""

SCROLL = """
async ([step, limitMs, app]) => {
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const box = document.querySelector(".timeline");
  box.scrollTop = box.scrollHeight;
  for (let i = 0; i < 30; i++) await frame();
  const b = window.__bench;
  const before = b.longtasks.length;
  const t0 = performance.now();
  const deltas = [], moving = [];
  let last = null, moved = false, maxNodes = 0, frames = 0;
  const atStart = () => !app || box.textContent.includes("This is the start of the room.");
  return await new Promise((resolve) => {
    const tick = (ts) => {
      if (last !== null) { deltas.push(ts - last); if (moved) moving.push(ts - last); }
      last = ts;
      if (++frames % 30 === 0) maxNodes = Math.max(maxNodes, box.querySelectorAll("article.message").length);
      const top = box.scrollTop;
      if ((top <= 0 && atStart()) || ts - t0 > limitMs) {
        maxNodes = Math.max(maxNodes, box.querySelectorAll("article.message").length);
        const tasks = b.longtasks.slice(before).filter(([start]) => start >= t0).map(([, d]) => d);
        resolve({ deltas, moving, maxNodes, tasks, ms: ts - t0, reached: top <= 0 && atStart() });
        return;
      }
      box.scrollTop = Math.max(0, top - step);
      moved = box.scrollTop !== top;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}
"""


class Browser:
    def __init__(self, rooms: int) -> None:
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        self.probe = PROBE.replace("__ROOMS__", str(rooms))

    def page(self) -> Any:
        context = self.browser.new_context(viewport=VIEWPORT, locale="en-US")
        context.add_init_script(self.probe)
        page = context.new_page()
        page.set_default_timeout(120_000)
        return page

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()


def open_url(browser: Browser, url: str) -> tuple[Any, float]:
    """A fresh context opens `url`; ms from the call to the room list painted."""
    page = browser.page()
    t0 = time.time() * 1000
    page.goto(url)
    while True:
        at = page.evaluate("() => window.__bench.roomsPainted")
        if at is not None:
            return page, at - t0
        time.sleep(0.02)


def heap(page: Any) -> float:
    cdp = page.context.new_cdp_session(page)
    for _ in range(2):
        cdp.send("HeapProfiler.collectGarbage")
    used = cdp.send("Runtime.getHeapUsage")["usedSize"]
    cdp.detach()
    return float(used) / 1e6


def switch_all(page: Any, targets: list[tuple[str, str]], progress: str = "") -> list[float]:
    times = []
    for n, (room_id, marker) in enumerate(targets, 1):
        times.append(page.evaluate(SWITCH, [room_id, marker]))
        if progress and n % 50 == 0:
            print(f"  {progress}: {n}/{len(targets)} rooms opened", file=sys.stderr, flush=True)
    return times


def scroll(page: Any, room_id: str, marker: str, step: int, app: bool) -> dict[str, Any]:
    page.evaluate(SWITCH, [room_id, marker])
    result: dict[str, Any] = page.evaluate(SCROLL, [step, 600_000, app])
    return result


def trace_scroll(browser: Browser, url: str, room_id: str, marker: str, step: int, out: Path) -> None:
    """A second scroll of the long room under CDP tracing; the longest main-thread tasks."""
    page, _ = open_url(browser, url)
    cdp = page.context.new_cdp_session(page)
    page.evaluate(SWITCH, [room_id, marker])
    events: list[dict[str, Any]] = []
    done = threading.Event()
    cdp.on("Tracing.dataCollected", lambda e: events.extend(e["value"]))
    cdp.on("Tracing.tracingComplete", lambda e: done.set())
    cdp.send("Tracing.start", {"transferMode": "ReportEvents", "traceConfig": {"includedCategories": [
        "devtools.timeline", "disabled-by-default-devtools.timeline", "v8.execute", "blink.user_timing"]}})
    page.evaluate(SCROLL, [step, 600_000, True])
    cdp.send("Tracing.end")
    while not done.is_set():
        page.wait_for_timeout(100)
    out.write_text(json.dumps({"traceEvents": events}))
    main = {e["tid"] for e in events if e.get("name") == "thread_name" and e["args"].get("name") == "CrRendererMain"}
    tasks = sorted((e for e in events if e.get("name") == "RunTask" and e.get("ph") == "X" and e["tid"] in main),
                   key=lambda e: -e.get("dur", 0))
    print(f"trace written to {out}; longest main-thread tasks during the scroll (what ran inside, ms):")
    for task in tasks[:8]:
        start, end = task["ts"], task["ts"] + task["dur"]
        inside: dict[str, float] = {}
        for e in events:
            if e.get("ph") == "X" and e["tid"] == task["tid"] and start <= e["ts"] < end and e is not task:
                inside[e["name"]] = inside.get(e["name"], 0.0) + e.get("dur", 0) / 1000
        top = sorted(inside.items(), key=lambda kv: -kv[1])[:6]
        # tdur is the thread's own CPU time: on a loaded machine, wall time minus preemption.
        print(f"  {task['dur'] / 1000:6.1f} ms wall, {task.get('tdur', 0) / 1000:6.1f} ms CPU: "
              + ", ".join(f"{k} {v:.1f}" for k, v in top))
    page.context.close()


# ---------------------------------------------------------------- the run


def fetch_pages(origin: str, token: str, rooms: list[dict[str, Any]], long_id: str) -> dict[str, list[dict[str, Any]]]:
    """Each room's events as the client gets them (GET /api/rooms/{id}/events), oldest first:
    the newest 50, and every event of the long room (paged back from the homeserver, which
    also fills the server's store)."""
    import httpx

    pages: dict[str, list[dict[str, Any]]] = {}
    with httpx.Client(base_url=origin, headers={"origin": origin}, timeout=120) as c:
        c.get("/", params={"token": token})
        for room in rooms:
            rid = room["room_id"]
            collected: list[dict[str, Any]] = []
            before = None
            while True:
                query = {"limit": 50} | ({"before": before} if before else {})
                doc = c.get(f"/api/rooms/{rid}/events", params=query).json()
                collected = [item["event"] for item in doc["events"]] + collected
                if rid != long_id or not doc["events"] or doc["before"] is None:
                    break
                before = doc["before"]
                if len(collected) % 1000 < 50:
                    print(f"  long room: {len(collected)} events paged", file=sys.stderr, flush=True)
            pages[rid] = [e for e in collected if e["kind"] == "text"]
    return pages


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rooms", type=int, default=200)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--long", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--switches", type=int, default=20)
    ap.add_argument("--step", type=int, default=120, help="px scrolled per animation frame")
    ap.add_argument("--trace", type=Path, help="also trace a scroll of the long room into this file")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing (apt-get install chromium)")

    from kumix.app.kumix import Kumix
    from kumix.matrix.homeserver import Homeserver, HomeserverConfig, free_port

    print(f"load average at start: {load()}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    directory = RESULTS / f"webclient-synapse-{args.rooms}x{args.messages}+{args.long}"
    hs = Homeserver(HomeserverConfig(directory, free_port()))
    seeded = directory / "seeded.json"
    hs.start()
    browser: Browser | None = None
    server: Server | None = None
    try:
        if not seeded.exists():
            print(f"seeding {args.rooms - 1} rooms x {args.messages} messages and one of {args.long} "
                  "(cached for later runs)…", file=sys.stderr, flush=True)
            hs.register("webclient", PASSWORD)
            asyncio.run(seed(hs.url, args.rooms, args.messages, args.long))
            seeded.write_text(json.dumps(vars(args) | {"trace": None}))

        data = Path(tempfile.mkdtemp(prefix="kumix-webclient-")) / "data"

        async def login() -> None:
            async with Kumix.open(_settings(data), env=_env(data), interactive=False) as k:
                await k.login_password(hs.url, USER, PASSWORD)

        t = time.perf_counter()
        asyncio.run(login())
        server = Server(data).start()
        origin = f"http://127.0.0.1:{server.port}"
        url = server.sessions.url()
        print(f"signed in and synced {args.rooms} rooms in {time.perf_counter() - t:.1f} s; server at {origin}",
              file=sys.stderr, flush=True)
        import httpx

        with httpx.Client(base_url=origin, headers={"origin": origin}, timeout=60) as c:
            c.get("/", params={"token": server.sessions.token})
            rooms = sorted((r for r in c.get("/api/rooms").json()["rooms"] if r["membership"] == "join"),
                           key=lambda r: r["name"])
        assert len(rooms) == args.rooms, f"{len(rooms)} rooms listed, {args.rooms} seeded"
        long_room = next(r for r in rooms if r["name"] == LONG_ROOM)
        small = [r for r in rooms if r is not long_room]
        with httpx.Client(base_url=origin, headers={"origin": origin}, timeout=60) as c:
            # The newest event of each room, from the server's store (the initial sync's 10:
            # asking for one never pages from the homeserver).
            c.get("/", params={"token": server.sessions.token})
            marker = {r["room_id"]: marker_of(c.get(f"/api/rooms/{r['room_id']}/events",
                                                    params={"limit": 1}).json()["events"][-1]["event"])
                      for r in rooms}

        browser = Browser(args.rooms)
        figures: dict[str, Any] = {}

        # -- 2 (cold): the store holds only what the initial sync brought ---------------------
        page, _ = open_url(browser, url)
        cold_rooms = small[: args.switches]
        figures["switch_cold"] = switch_all(page, [(r["room_id"], marker[r["room_id"]]) for r in cold_rooms])
        page.context.close()

        # -- the baseline's data, through the same API (this fills the store) -----------------
        t = time.perf_counter()
        pages = fetch_pages(origin, server.sessions.token, rooms, long_room["room_id"])
        print(f"baseline data fetched in {time.perf_counter() - t:.1f} s ({len(pages[long_room['room_id']])} "
              "events in the long room)", file=sys.stderr, flush=True)
        long_marker = marker[long_room["room_id"]]
        with StaticServer(baseline_dir(rooms, pages)) as static:
            base_url = f"http://127.0.0.1:{static.port}/index.html"

            # -- 1: token URL → room list painted, alternating ------------------------------------
            figures["list_app"], figures["list_base"] = [], []
            for _ in range(args.repeat):
                for kind, target in (("app", url), ("base", base_url)):
                    page, ms = open_url(browser, target)
                    figures[f"list_{kind}"].append(ms)
                    page.context.close()
            print(f"room list: app {figures['list_app']}, baseline {figures['list_base']}", file=sys.stderr)

            # -- 2 (warm) and 4: open every room in one page, then the heap ----------------------
            every = [(r["room_id"], marker.get(r["room_id"], long_marker)) for r in rooms]
            warm = small[args.switches: 2 * args.switches]
            for kind, target in (("app", url), ("base", base_url)):
                page, _ = open_url(browser, target)
                first = [(r["room_id"], marker[r["room_id"]]) for r in warm]
                figures[f"switch_{kind}"] = switch_all(page, first)
                figures[f"heap_before_{kind}"] = heap(page)
                switch_all(page, [x for x in every if x not in first], progress=kind)
                figures[f"heap_{kind}"] = heap(page)
                page.context.close()

            # -- 3: scrolling the long room ------------------------------------------------------
            for kind, target in (("app", url), ("base", base_url + "?long")):
                page, _ = open_url(browser, target)
                print(f"scrolling the long room ({kind})…", file=sys.stderr, flush=True)
                figures[f"scroll_{kind}"] = scroll(page, long_room["room_id"], long_marker, args.step, kind == "app")
                page.context.close()
            if args.trace:
                trace_scroll(browser, url, long_room["room_id"], long_marker, args.step, args.trace)
        print(f"load average at end: {load()}")
    finally:
        if browser is not None:
            browser.close()
        if server is not None:
            server.close()
        hs.stop()
    report(args, figures)


def report(args: argparse.Namespace, f: dict[str, Any]) -> None:
    med: Callable[[list[float]], float] = statistics.median
    la, lb = med(f["list_app"]), med(f["list_base"])
    print(f"web client in Chromium, {args.rooms} rooms ({args.rooms - 1} x {args.messages} messages, "
          f"one of {args.long}); baseline: a static page rendering the same rows")
    print(f"  token URL -> room list painted (median of {args.repeat}): app {la:.0f} ms, baseline {lb:.0f} ms, "
          f"ratio {ratio(la, lb)}")
    sc, sw, sb = med(f["switch_cold"]), med(f["switch_app"]), med(f["switch_base"])
    print(f"  switch room -> newest of 50 painted (median of {args.switches}): app cold store {sc:.0f} ms "
          f"(p90 {pct(f['switch_cold'], 0.9):.0f}), warm store {sw:.0f} ms (p90 {pct(f['switch_app'], 0.9):.0f}), "
          f"baseline {sb:.0f} ms; ratio warm {ratio(sw, sb)}, cold {ratio(sc, sb)}")
    for kind, label in (("app", "app"), ("base", "baseline")):
        s = f[f"scroll_{kind}"]
        tasks = s["tasks"]
        longest = f"{max(tasks):.0f} ms ({len(tasks)} tasks >= 50 ms)" if tasks else "none >= 50 ms"
        print(f"  scroll {args.long} messages newest -> oldest, {label}: {s['ms'] / 1000:.1f} s, "
              f"{'reached the start' if s['reached'] else 'DID NOT reach the start'}; longest task {longest}; "
              f"frame p95 {pct(s['deltas'], 0.95):.1f} ms, p99 {pct(s['deltas'], 0.99):.1f}, "
              f"max {max(s['deltas'], default=0):.0f} ({len(s['deltas'])} frames); moving frames p95 "
              f"{pct(s['moving'], 0.95):.1f} ms ({len(s['moving'])}); at most {s['maxNodes']} message nodes")
    sa, sb2 = f["scroll_app"], f["scroll_base"]
    print(f"  scroll ratios: frame p95 {ratio(pct(sa['deltas'], 0.95), pct(sb2['deltas'], 0.95))}, "
          f"moving p95 {ratio(pct(sa['moving'], 0.95), pct(sb2['moving'], 0.95))} "
          "(targets: no task over 50 ms, p95 frame under 16.7 ms)")
    print(f"  JS heap after opening all {args.rooms} rooms: app {f['heap_app']:.1f} MB "
          f"(after {args.switches}: {f['heap_before_app']:.1f}), baseline {f['heap_base']:.1f} MB "
          f"(after {args.switches}: {f['heap_before_base']:.1f}); ratio {ratio(f['heap_app'], f['heap_base'])} "
          "(target under 40 MB)")


if __name__ == "__main__":
    main()
