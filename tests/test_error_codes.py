"""Error codes are a public contract: every code Kumix can raise is documented."""

from __future__ import annotations

import importlib
import pkgutil
import re

import kumix
from kumix.core.errors import ALL_ERRORS, KumixError, error_from_code
from tests.conftest import REPO_ROOT


def all_error_classes() -> set[type[KumixError]]:
    for module in pkgutil.walk_packages(kumix.__path__, "kumix."):
        if ".bundled." in module.name or module.name.endswith("__main__"):
            continue
        importlib.import_module(module.name)
    found: set[type[KumixError]] = set()
    pending: list[type[KumixError]] = [KumixError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_code_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", (REPO_ROOT / "docs/errors.md").read_text(), re.M))
    codes = {cls.code for cls in all_error_classes()}
    assert codes <= documented, sorted(codes - documented)


def test_codes_round_trip_over_a_wire() -> None:
    for cls in ALL_ERRORS:
        assert type(error_from_code(cls.code, "m")) is cls
    assert error_from_code("made_up", "m").code == "protocol_error"
