"""Property tests: whatever markup an extension writes, the frame document keeps its
promises; whatever a frame sends, the session answers with a decision, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import html5lib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kumix.core.errors import ExtensionFailed
from kumix.extensions.ui.bridge_session import BridgeSession, FrameRights, Perform
from kumix.extensions.ui.html_document import FRAME_ELEMENTS, FrameParts, clean_to_fixpoint, compose

TOKENS = [
    "<math>", "<mtext>", "<table>", "<mglyph>", "<style>", "</style>", "<svg>", "</svg>", "<foreignObject>",
    "<noscript>", "</noscript>", "<template>", "</template>", "<select>", "<option>", "<iframe srcdoc='x'>",
    "</iframe>", "<object data=x>", "<embed src=x>", "<meta http-equiv=refresh content='0;url=https://e.x'>",
    "<base href=https://e.x>", "<script>", "</script>", "<!--", "-->", "<p>", "</p>", "<b>", "<i>", "</b>",
    "<textarea>", "</textarea>", "<title>", "<xmp>", "<plaintext>", "<img src=x>", "<a title='</a><iframe>'>",
    "&lt;iframe&gt;", "x", " ", "<frameset>", "<portal>", "<fencedframe>", "<desc>",
    "<annotation-xml encoding='text/html'>",
    "<form>", "<td>", "<tr>", "</table>", "<![CDATA[", "]]>", "<?x?>", "<br/>", "<hr>", "<listing>", "--!>", "<!-->",
]
PARTS = FrameParts(csp="default-src 'none'", bootstrap_js="void 0", script_nonce="N" * 22, language="en")


def _no_file(ref: str) -> str:
    raise ExtensionFailed(f"no file {ref}")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=30))
def test_any_markup_yields_a_safe_frame_document_or_a_refusal(tokens: list[str]) -> None:
    html = "".join(tokens)
    try:
        cleaned = clean_to_fixpoint(html, _no_file)
        result = compose(cleaned, PARTS)
    except ExtensionFailed:
        return
    doc = html5lib.parse(result, treebuilder="etree", namespaceHTMLElements=False)
    head = doc.find("head")
    assert head is not None
    assert head[0].tag == "meta"
    assert head[1].tag == "script"
    for element in doc.iter():
        name = str(element.tag).rsplit("}", 1)[-1].lower()
        assert name not in FRAME_ELEMENTS
        assert name != "base"
        if name == "meta" and element is not head[0]:
            assert element.get("http-equiv") is None
    body = result.split("<body", 1)[1]
    assert "<script" not in body
    assert "<style" not in body


MESSAGES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.sampled_from(["fromWidget", "toWidget", "W" * 22, "send_event", "org.matrix.msc2876.read_events",
                       "io.kumix.proc_call", "m.room.message", "!here:x", "!other:x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["api", "widgetId", "requestId", "action", "data", "response", "type", "content",
                         "room_id", "room_ids", "state_key", "capabilities", "msgtype", "body", "extension"]),
        inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(MESSAGES, max_size=12))
def test_no_message_sequence_performs_anything_unnegotiated(messages: list[object]) -> None:
    everything = frozenset({"room.context.read", "room.message.send", "room.navigate", "theme.tokens", "proc.call"})
    s = BridgeSession(widget_id="W" * 22, extension_id="p", room_id="!here:x",
                      rights=FrameRights(everything, everything, None),
                      max_message_bytes=65536, max_messages_per_second=1000)
    for message in messages:
        if isinstance(message, dict) and "widgetId" in message:
            message["widgetId"] = "W" * 22
        for effect in s.receive(json.dumps(message), now=0.0):
            # Nothing was negotiated (the host never sent `capabilities`): nothing may run.
            assert not isinstance(effect, Perform)
    assert s.negotiated == frozenset()


def test_property_tests_do_see_frames_removed(tmp_path: Path) -> None:
    # The generator does produce frame markup; otherwise the property above proves nothing.
    cleaned = clean_to_fixpoint("<p><iframe srcdoc='x'></iframe></p>", _no_file)
    assert "iframe" not in cleaned
    assert "<iframe" in "".join(TOKENS)
