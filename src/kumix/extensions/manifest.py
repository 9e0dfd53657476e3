"""Extension manifests: the schema-checked description of what an extension is and needs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType

from kumix.core.errors import InvalidManifest
from kumix.extensions.jsondoc import (
    DocumentError,
    DocumentProblem,
    load_schema,
    parse_document,
    read_document_bytes,
    schema_problem,
    shipped_and_valid,
)

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any, Literal

    # Imported where documents are validated: its import alone costs a command-line
    # start (`kumix --version`) ~90 ms.
    import jsonschema

    Kind = Literal["proc", "ui"]

MANIFEST_FILE = "manifest.json"
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
RESERVED_METHODS = frozenset({"ping"})
"""Methods the runtime answers itself; an extension may not claim them."""


@dataclass(frozen=True)
class WasmModuleSpec:
    """One WASM module an extension may load, pinned by its sha256."""

    path: str
    sha256: str
    exports: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectSource:
    """One network origin a UI extension wants to reach, with the reason shown to the user."""

    source: str
    reason: str


DEFAULT_UI_SANDBOX = ("allow-scripts",)
"""What a UI extension asks for when its manifest names no sandbox flags."""


@dataclass(frozen=True)
class UiAsk:
    """What a UI extension's frame asks for; the policy decides how much of it is granted."""

    sandbox: tuple[str, ...] = DEFAULT_UI_SANDBOX
    connect_src: tuple[ConnectSource, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. Field names follow Python; `to_json` gives the on-disk shape."""

    id: str
    name: str
    version: str
    kind: Kind
    capabilities: tuple[str, ...]
    entry: str
    description: str = ""
    timeout_ms: int | None = None
    methods: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    wasm: tuple[WasmModuleSpec, ...] = ()
    ui: UiAsk | None = None
    """ui only: the manifest's `ui` field, or None when it has none (then the defaults apply)."""

    @property
    def ui_ask(self) -> UiAsk:
        return self.ui if self.ui is not None else UiAsk()

    def capability_for(self, method: str) -> str | None:
        return self.methods.get(method)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "capabilities": list(self.capabilities),
            "entry": self.entry,
        }
        if self.description:
            doc["description"] = self.description
        if self.timeout_ms is not None:
            doc["timeoutMs"] = self.timeout_ms
        if self.kind == "proc":
            doc["methods"] = dict(self.methods)
        if self.wasm:
            doc["wasm"] = [
                {"path": w.path, "sha256": w.sha256, "exports": list(w.exports), "imports": list(w.imports)}
                for w in self.wasm
            ]
        if self.ui is not None:
            doc["ui"] = {
                "sandbox": list(self.ui.sandbox),
                "connectSrc": [{"source": c.source, "reason": c.reason} for c in self.ui.connect_src],
            }
        return doc


@cache
def _validator() -> jsonschema.protocols.Validator:
    import jsonschema

    schema = load_schema("manifest.schema.json")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def _invalid(problem: DocumentProblem) -> InvalidManifest:
    return InvalidManifest(str(problem), details=problem.as_dict())


def manifest_from_document(doc: Any, *, display: str) -> Manifest:
    """Validate a parsed manifest document; raises InvalidManifest naming file and pointer."""
    problem = None if shipped_and_valid("manifest.schema.json", doc) else schema_problem(_validator(), doc, display)
    if problem is not None:
        raise _invalid(problem)
    assert isinstance(doc, dict)
    return _build(doc, display)


def manifest_from_host(doc: dict[str, Any], *, display: str) -> Manifest:
    """A manifest the host already validated, rebuilt in a proc worker from the host's own
    `Manifest.to_json()` (it arrives in the spawn request on the host's control socket, never
    from the extension). The schema is not run again: that would mean importing jsonschema
    and compiling the validator in every fork server before its first worker (a quarter of a
    cold start on a busy machine), to re-check the host's own serialization. The checks
    across fields still run; they are cheap."""
    return _build(doc, display)


def _build(doc: dict[str, Any], display: str) -> Manifest:
    """The cross-field checks and the `Manifest`, for a document that conforms to the schema."""
    methods: dict[str, str] = dict(doc.get("methods", {}))
    capabilities = tuple(doc["capabilities"])
    for method, capability in methods.items():
        if method in RESERVED_METHODS:
            raise _invalid(DocumentProblem(display, f"/methods/{method}", f"method {method!r} is reserved"))
        if capability not in capabilities:
            raise _invalid(
                DocumentProblem(
                    display,
                    f"/methods/{method}",
                    f"method needs capability {capability!r}, which is not listed in /capabilities",
                )
            )
    wasm = tuple(
        WasmModuleSpec(
            path=item["path"],
            sha256=item["sha256"],
            exports=tuple(item.get("exports", ())),
            imports=tuple(item.get("imports", ())),
        )
        for item in doc.get("wasm", ())
    )
    seen_paths: set[str] = set()
    for index, module in enumerate(wasm):
        if module.path in seen_paths:
            raise _invalid(DocumentProblem(display, f"/wasm/{index}/path", "duplicate WASM path"))
        seen_paths.add(module.path)
    ui_doc = doc.get("ui")
    ui = None
    if ui_doc is not None:
        sources = tuple(ConnectSource(c["source"], c["reason"]) for c in ui_doc.get("connectSrc", ()))
        for index, item in enumerate(sources):
            if item.source in (c.source for c in sources[:index]):
                raise _invalid(DocumentProblem(display, f"/ui/connectSrc/{index}/source", "duplicate source"))
        ui = UiAsk(sandbox=tuple(ui_doc.get("sandbox", DEFAULT_UI_SANDBOX)), connect_src=sources)
    return Manifest(
        id=doc["id"],
        name=doc["name"],
        version=doc["version"],
        kind=doc["kind"],
        capabilities=capabilities,
        entry=doc["entry"],
        description=doc.get("description", ""),
        timeout_ms=doc.get("timeoutMs"),
        methods=MappingProxyType(methods),
        wasm=wasm,
        ui=ui,
    )


def parse_manifest(data: bytes, *, display: str) -> Manifest:
    try:
        doc = parse_document(data, display=display)
    except DocumentError as exc:
        raise _invalid(exc.problem) from None
    return manifest_from_document(doc, display=display)


def load_manifest(extension_dir: Path, *, display: str | None = None) -> Manifest:
    """Read `<dir>/manifest.json` (regular file, bounded, no symlink) and validate it."""
    path = extension_dir / MANIFEST_FILE
    name = display or str(path)
    try:
        data = read_document_bytes(path, display=name)
    except DocumentError as exc:
        raise _invalid(exc.problem) from None
    return parse_manifest(data, display=name)


def is_valid_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None
