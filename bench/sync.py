"""Initial sync of an account with ROOMS rooms x MESSAGES messages: Kumix vs bare matrix-nio.

    .venv/bin/python bench/sync.py [--rooms 200] [--messages 50] [--repeat 3]

The homeserver is seeded once through the client API (concurrently) and its directory is
cached under bench/results/ (gitignored), so later runs start at once. Each measurement
runs in a fresh child process (peak RSS from getrusage is per process), alternating
Kumix and the baseline; medians are reported with their ratio. Kumix's figure includes
everything `kumix` does on a first sync: decrypt, translate, write timeline + FTS index
+ token in one SQLite transaction. The baseline is nio's AsyncClient.sync() alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def _hs(rooms: int, messages: int):  # type: ignore[no-untyped-def]
    from kumix.matrix.homeserver import Homeserver, HomeserverConfig

    directory = RESULTS / f"synapse-{rooms}x{messages}"
    port_file = directory / "port"
    from kumix.matrix.homeserver import free_port

    port = free_port()
    return Homeserver(HomeserverConfig(directory, port)), directory, port_file


async def _seed(url: str, user: str, password: str, rooms: int, messages: int) -> None:
    import nio

    client = nio.AsyncClient(url, user, config=nio.AsyncClientConfig(encryption_enabled=False))
    await client.login(password)
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            resp = await client.room_create(name=f"Bench room {i}")
            for j in range(messages):
                await client.room_send(resp.room_id, "m.room.message",
                                       {"msgtype": "m.text", "body": f"message {j} in room {i}: lorem ipsum dolor"})

    await asyncio.gather(*(one(i) for i in range(rooms)))
    await client.close()


def _child(kind: str, url: str, user: str, password: str) -> None:
    """One measured initial sync; prints {"seconds", "peak_kib"}."""
    tmp = Path(tempfile.mkdtemp(prefix="kumix-bench-"))

    def reset_peak() -> None:
        # Linux: writing 5 to clear_refs resets VmHWM, so the peak counts only what follows.
        Path("/proc/self/clear_refs").write_text("5")

    async def kumix() -> float:
        from kumix.app.matrix_session import MatrixService
        from kumix.store.database import Database

        data = Path(os.environ["BENCH_KUMIX_DIR"])
        db = Database(data / "state.db")
        with db.transaction() as tx:  # a first sync again: drop the cache and the token
            for table in ("matrix_events", "matrix_rooms", "message_search"):
                tx.execute(f"DELETE FROM {table}")
            tx.execute("DELETE FROM matrix_session WHERE key = 'next_batch'")
        service = MatrixService(data, db, env={"KUMIX_VAULT_PASSPHRASE_FILE": str(data / "pass")}, interactive=False)
        service.vault.load()  # the argon2id unlock (64 MiB by design) is not part of the sync
        async with service.session() as session:
            reset_peak()
            start = time.perf_counter()
            # full_state=True changes nothing in an initial sync's content but keeps Synapse
            # from answering from its 2-minute cache of the setup login's identical request.
            batch = await session.client.sync_once(None, timeout_ms=0, full_state=True)
            await session.apply(batch)
            took = time.perf_counter() - start
        assert len(service.timeline.rooms()) >= 1
        return took

    async def bare() -> float:
        import nio

        client = nio.AsyncClient(url, user, store_path=str(tmp),
                                 config=nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False))
        await client.login(password)
        reset_peak()
        start = time.perf_counter()
        await client.sync(timeout=0)
        if client.should_upload_keys:
            await client.keys_upload()
        took = time.perf_counter() - start
        assert len(client.rooms) >= 1
        await client.close()
        return took

    seconds = asyncio.run(kumix() if kind == "kumix" else bare())
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": seconds, "peak_kib": hwm,
                      "process_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


async def _login_kumix(data: Path, url: str) -> None:
    from kumix.app.matrix_session import MatrixService
    from kumix.store.database import Database

    service = MatrixService(data, Database(data / "state.db"), env={"KUMIX_VAULT_PASSPHRASE_FILE": str(data / "pass")},
                            interactive=False)
    await service.login_password(url, "@bench:localhost", "bench-password")
    service.db.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rooms", type=int, default=200)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    RESULTS.mkdir(exist_ok=True)
    hs, directory, _ = _hs(args.rooms, args.messages)
    seeded = directory / "seeded.json"
    hs.start()
    try:
        if not seeded.exists():
            print(f"seeding {args.rooms} rooms x {args.messages} messages (cached for later runs)…", file=sys.stderr)
            t = time.perf_counter()
            hs.register("bench", "bench-password")
            asyncio.run(_seed(hs.url, "@bench:localhost", "bench-password", args.rooms, args.messages))
            seeded.write_text(json.dumps({"rooms": args.rooms, "messages": args.messages}))
            print(f"seeded in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        results: dict[str, list[dict[str, float]]] = {"kumix": [], "nio": []}
        for _ in range(args.repeat):
            # A new device per repetition: Synapse caches identical sync requests of one device.
            kumix_dir = Path(tempfile.mkdtemp(prefix="kumix-bench-account-"))
            (kumix_dir / "pass").write_text("bench passphrase")
            (kumix_dir / "pass").chmod(0o600)
            asyncio.run(_login_kumix(kumix_dir, hs.url))
            env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")} | {
                "BENCH_KUMIX_DIR": str(kumix_dir)}
            for kind in ("nio", "kumix"):
                out = subprocess.run([sys.executable, __file__, "--child", kind, hs.url, "@bench:localhost",
                                      "bench-password"], capture_output=True, text=True, env=env, check=True)
                results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        hs.stop()
    med = {k: (statistics.median(r["seconds"] for r in v), statistics.median(r["peak_kib"] for r in v))
           for k, v in results.items()}
    for kind, runs in results.items():
        print(f"  {kind} runs: " + ", ".join(f"{r['seconds']:.2f} s/{r['peak_kib'] / 1024:.0f} MiB" for r in runs))
    print(f"initial sync, {args.rooms} rooms x {args.messages} messages, median of {args.repeat}:")
    print(f"  bare matrix-nio : {med['nio'][0]:.2f} s, peak RSS {med['nio'][1] / 1024:.0f} MiB")
    print(f"  kumix           : {med['kumix'][0]:.2f} s, peak RSS {med['kumix'][1] / 1024:.0f} MiB")
    print(f"  (whole-process peak incl. imports and Kumix's argon2id vault unlock: nio "
          f"{statistics.median(r['process_peak_kib'] for r in results['nio']) / 1024:.0f} MiB, kumix "
          f"{statistics.median(r['process_peak_kib'] for r in results['kumix']) / 1024:.0f} MiB)")
    print(f"  ratio           : time {med['kumix'][0] / med['nio'][0]:.2f}x (target <= 1.3x), "
          f"memory {med['kumix'][1] / med['nio'][1]:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
