"""What every command gets: its arguments, the resolved settings, and a way to run a use
case against `Kumix` (imported only when a command runs, so `kumix --version` and the
help never pay for the Matrix client or the extension host)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kumix.app.settings import Settings
from kumix.cli.output import printable

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import TypeVar

    from kumix.app.confinement_report import RunningProbe
    from kumix.app.early_start import EarlyForkServer
    from kumix.app.kumix import Kumix

    T = TypeVar("T")


def progress(message: str) -> None:
    """Notices of the core (offline, device held elsewhere, long operations) go to stderr;
    they may quote another process's command line, so made printable."""
    sys.stderr.write(f"kumix: {printable(message, 2000)}\n")
    sys.stderr.flush()


@dataclass
class CliContext:
    args: argparse.Namespace
    settings: Settings
    early_fork_server: EarlyForkServer | None = None
    """Launched by `main` before it parsed the command line (early_launch.py), if it did."""
    early_probe: RunningProbe | None = None
    """`kumix doctor`'s probe child, forked before the command line was parsed, if it was."""

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def command(self) -> str:
        """Named to another process that finds the device in use."""
        return f"kumix {self.args.command}"

    def run(self, use: Callable[[Kumix], Awaitable[T]], *, live: bool = False, fast_loop: bool = False,
            extensions: bool = False) -> T:
        """Open `Kumix` for one command, run `use` in it, close everything. `extensions`: the
        command calls an extension, so the extension host's fork server is launched before
        anything else is imported (kumix.app.early_start) and boots meanwhile."""
        early = self.early_fork_server if extensions else None
        if extensions:
            from kumix.app.early_start import fits, launch_fork_server

            if early is not None and not fits(early, self.settings):
                early.close()  # launched for another data directory than the one parsed
                early = None
            if early is None:
                try:
                    early = launch_fork_server(self.settings)
                except OSError:
                    early = None  # the host launches its own and reports what went wrong, in order
        try:
            import asyncio

            from kumix.app.kumix import Kumix, event_loop_factory

            async def main() -> T:
                async with Kumix.open(self.settings, live=live, notice=progress, command=self.command,
                                      fork_server=early) as k:
                    return await use(k)

            with asyncio.Runner(loop_factory=event_loop_factory() if fast_loop else None) as runner:
                return runner.run(main())
        finally:
            if early is not None:
                early.close()  # a no-op once the extension host adopted it

    def local(self, use: Callable[[Kumix], T]) -> T:
        """A use case that only reads or writes local state (extensions, policy): no event
        loop to start, so `ext list` starts as fast as the interpreter allows."""
        from kumix.app.kumix import Kumix

        with Kumix.local(self.settings) as k:
            return use(k)
