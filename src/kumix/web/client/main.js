// Start the page: the Trusted Types policy first, then the catalog, the view models and the
// event feed. Loaded by <script type="module" src>; the page has no inline script.
import { render } from "./vendor/preact.js";
// @preact/signals hooks into Preact's render: a component that reads a signal re-renders
// when it changes. The view models use @preact/signals-core, the same instance.
import { effect, untracked } from "./vendor/signals.js";
import { html } from "./lib/html.js";
import { installPolicy } from "./lib/trusted-html.js";
import { loadLanguage, pickLanguage } from "./lib/i18n.js";
import { Api } from "./lib/api.js";
import { EventFeed } from "./lib/events.js";
import { AppViewModel } from "./vm/app.js";
import { upload } from "./lib/upload.js";
import { App } from "./views/app.js";

installPolicy();
const api = new Api();
const getJson = async (/** @type {URL} */ url) => (await fetch(url, { credentials: "same-origin" })).json();
// This answer's CSP nonce, from the one script tag the server wrote it on (the attribute
// itself reads empty: browsers hide nonces from the DOM, the property keeps it).
const nonce = /** @type {HTMLScriptElement | null} */ (document.querySelector("script[nonce]"))?.nonce ?? "";
const app = new AppViewModel(api, (language) => loadLanguage(pickLanguage(language), getJson), upload, nonce);

// /ext/{id}?room=ROOM: that UI extension alone, with that room (for extension authors).
const solo = location.pathname.match(/^\/ext\/([^/]+)$/);
const soloRoom = new URLSearchParams(location.search).get("room");
if (solo && soloRoom) {
  app.frames.only = decodeURIComponent(solo[1]);
  app.solo.value = { extensionId: app.frames.only, roomId: soloRoom };
  app.rooms.select(soloRoom);
}

/** @param {"en" | "ja"} language */
async function switchLanguage(language) {
  await loadLanguage(language, getJson);
  await api.send("/api/settings", { language }, "PUT").catch(() => undefined);
}

// Theme: the system's preference unless one is chosen; tokens become custom properties.
const dark = matchMedia("(prefers-color-scheme: dark)");
app.theme.systemDark.value = dark.matches;
dark.addEventListener("change", () => { app.theme.systemDark.value = dark.matches; });
effect(() => {
  const root = document.documentElement;
  root.dataset.theme = app.theme.effective.value;
  for (const [name, value] of app.theme.properties.value) root.style.setProperty(name, value);
});

// Keyboard: Alt+Up/Down moves between rooms (with Shift: unread ones), Ctrl+K filters.
document.addEventListener("keydown", (e) => {
  if (e.altKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
    e.preventDefault();
    const id = app.rooms.move(e.key === "ArrowDown" ? 1 : -1, { unreadOnly: e.shiftKey });
    if (id) document.getElementById(`room-${id}`)?.focus();
  } else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k") {
    e.preventDefault();
    document.getElementById("room-filter")?.focus();
  }
});

const feed = new EventFeed((frame) => app.onFrame(frame), (up) => { app.online.value = up; });
app.sendFrame = (frame) => feed.send(frame);
effect(() => {
  if (app.account.value) feed.start();
  else feed.stop();
});
// The UI extensions of the open room, mounted on the current event connection (again after
// a reconnect, which ends the earlier connection's frames on the server).
effect(() => {
  const roomId = app.rooms.selected.value;
  const connection = app.connection.value;
  if (!app.account.value || !connection) return;
  untracked(() => void app.frames.show(roomId));
});

await loadLanguage(pickLanguage(navigator.language), getJson);
const root = document.getElementById("app");
if (root) render(html`<${App} app=${app} onLanguage=${(/** @type {"en" | "ja"} */ l) => void switchLanguage(l)} />`, root);
await app.start();
