"""The request recorder is a security check of the browser tests: attacked here with a page
whose image, frame and frame's fetch go to other hosts (answered by Playwright's router, so
nothing leaves the machine), it must name every one of them and pass 127.0.0.1."""

from __future__ import annotations

from playwright.sync_api import Browser, Route

from tests.browser.harness import RequestRecorder, is_local

FOREIGN = "http://198.51.100.7"
"""TEST-NET-2 (RFC 5737): never a real host; the router answers for it."""


def test_the_recorder_names_every_request_to_another_host(browser: Browser) -> None:
    context = browser.new_context()
    recorder = RequestRecorder()
    recorder.attach(context)
    try:
        def answer(route: Route) -> None:
            route.fulfill(status=200, content_type="text/html",
                          body=f"<script>fetch('{FOREIGN}/from-the-frame')</script>")

        context.route(f"{FOREIGN}/**", answer)
        context.route("http://localhost:9/**", answer)
        context.route("http://127.0.0.1:9/**", answer)
        page = context.new_page()
        with page.expect_request(f"{FOREIGN}/from-the-frame"):
            page.set_content(f"<img src='{FOREIGN}/pixel.png'><iframe src='{FOREIGN}/frame'></iframe>"
                             "<img src='http://localhost:9/by-name.png'><img src='http://127.0.0.1:9/fine.png'>")
        page.wait_for_load_state("load")
    finally:
        context.close()
    foreign = recorder.foreign()
    assert f"{FOREIGN}/pixel.png" in foreign
    assert f"{FOREIGN}/frame" in foreign
    assert f"{FOREIGN}/from-the-frame" in foreign  # made by the frame, not the page
    assert "http://localhost:9/by-name.png" in foreign  # only the address itself counts
    assert "http://127.0.0.1:9/fine.png" in recorder.urls
    assert "http://127.0.0.1:9/fine.png" not in foreign


def test_local_means_the_loopback_address_or_bytes_the_page_has() -> None:
    assert is_local("http://127.0.0.1:8080/api/rooms")
    assert is_local("ws://127.0.0.1:8080/api/events")
    assert is_local("data:image/png;base64,AAAA")
    assert is_local("blob:http://127.0.0.1:8080/5f0c")
    for url in ("http://localhost:8080/", "http://127.0.0.2/", "https://cdn.example/x.js", "ws://[::1]:80/",
                "http://127.0.0.1.evil.example/", "file:///etc/passwd", "chrome-extension://abc/x.js"):
        assert not is_local(url), url
