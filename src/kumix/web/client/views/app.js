import { html } from "../lib/html.js";
import { Icon } from "./icons.js";
import { t } from "../lib/i18n.js";
import { LoginView } from "./login.js";
import { UnlockView } from "./unlock.js";
import { RoomList, Workspaces } from "./roomlist.js";
import { Timeline } from "./timeline.js";
import { Composer } from "./composer.js";
import { SearchPage, SettingsPage, ExtensionsPage } from "./pages.js";
import { Dialog } from "./dialog.js";
import { FramesPanel, ConfirmSend } from "./frames.js";

/** @param {{app: import("../vm/app.js").AppViewModel}} props */
function CreateRoomDialog({ app }) {
  const vm = app.createRoom;
  /** @param {import("../vendor/signals-core.js").Signal<string>} s */
  const bind = (s) => (/** @type {Event} */ e) => { s.value = /** @type {HTMLInputElement} */ (e.currentTarget).value; };
  /** @type {Record<string, string>} */
  const problems = {
    name_missing: t("Give the room a name."),
    invite_invalid: t("Invite user ids look like @name:server."),
    direct_needs_one: t("A direct chat invites exactly one person."),
  };
  return html`<${Dialog} label=${t("Create a room")} onClose=${() => { app.creating.value = false; }}>
    <form onSubmit=${(/** @type {Event} */ e) => { e.preventDefault(); void app.submitCreateRoom(); }}>
      <h2>${t("Create a room")}</h2>
      <label><input type="checkbox" checked=${vm.direct.value} onChange=${() => { vm.direct.value = !vm.direct.value; }} /> ${t("Direct chat")}</label>
      ${!vm.direct.value && html`<label>${t("Name")}<input value=${vm.name.value} onInput=${bind(vm.name)} /></label>
        <label>${t("Topic")}<input value=${vm.topic.value} onInput=${bind(vm.topic)} /></label>`}
      <label>${t("Invite")}<input value=${vm.invite.value} onInput=${bind(vm.invite)} placeholder=${t("@alice:example.org")} /></label>
      <label><input type="checkbox" checked=${vm.encrypted.value} onChange=${() => { vm.encrypted.value = !vm.encrypted.value; }} /> ${t("Encrypted")}</label>
      ${vm.problem.value && html`<p class="error" role="alert">${problems[vm.problem.value]}</p>`}
      ${vm.failure.value && html`<p class="error" role="alert">${t("The room could not be created.")} <span class="muted">${vm.failure.value}</span></p>`}
      <div class="buttons"><button type="button" onClick=${() => { app.creating.value = false; }}>${t("Cancel")}</button>
        <button class="primary" type="submit">${t("Create")}</button></div>
    </form>
  <//>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel}} props */
function DeleteDialog({ app }) {
  const close = () => { app.deleting.value = null; app.deleteFailure.value = null; };
  return html`<${Dialog} label=${t("Delete this message?")} onClose=${close}>
    <h2>${t("Delete this message?")}</h2>
    <p>${t("Everyone in the room will see that it was deleted.")}</p>
    ${app.deleteFailure.value && html`<p class="error" role="alert">${t("The message could not be deleted.")} <span class="muted">${app.deleteFailure.value}</span></p>`}
    <div class="buttons"><button type="button" onClick=${close}>${t("Cancel")}</button>
      <button class="primary danger" type="button" onClick=${() => void app.confirmDelete()}>${t("Delete")}</button></div>
  <//>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel}} props */
function RoomPane({ app }) {
  const room = app.rooms.current.value;
  const timeline = app.timeline.value;
  if (!room || !timeline) return html`<div class="room-pane empty muted"><h1 class="empty-title">${t("Choose a room.")}</h1></div>`;
  return html`<div class="room-pane">
    <header class="room-head">
      <button class="icon back" aria-label=${t("Back to the room list")} onClick=${() => app.rooms.select(null)}><${Icon} name="back" /></button>
      <h1>${room.name || room.room_id}</h1>
      ${room.encrypted && html`<span class="muted small"><${Icon} name="lock" /> ${t("Encrypted")}</span>`}
      ${room.topic && html`<p class="muted small topic">${room.topic}</p>`}
    </header>
    <div class="room-body">
      <div class="room-main">
        <${Timeline} app=${app} vm=${timeline} key=${room.room_id} />
        <${Composer} app=${app} />
      </div>
      <${FramesPanel} vm=${app.frames} />
    </div>
  </div>`;
}

/** `/ext/{id}?room=ROOM`: one UI extension alone, for its author. @param {{app: import("../vm/app.js").AppViewModel}} props */
function SoloPage({ app }) {
  const solo = app.solo.value;
  if (!solo) return null;
  const room = app.rooms.byId.value.get(solo.roomId);
  const name = app.frames.available.value.find((e) => e.id === solo.extensionId)?.name ?? solo.extensionId;
  return html`<div class="solo">
    <header class="room-head"><h1>${t("{extension} with {room}", { extension: name, room: room?.name || solo.roomId })}</h1>
      <a href="/" class="small">${t("Open Kumix")}</a></header>
    <${FramesPanel} vm=${app.frames} />
    <${ConfirmSend} vm=${app.frames} roomName=${room?.name || solo.roomId} />
  </div>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel, onLanguage: (lang: "en" | "ja") => void}} props */
export function App({ app, onLanguage }) {
  const account = app.account.value;
  if (account === undefined) return html`<p class="muted center">${t("Loading…")}</p>`;
  const locked = app.locked.value;
  if (locked) return html`<${UnlockView} vm=${app.unlock} userId=${locked.user_id} />`;
  if (account === null) return html`<${LoginView} vm=${app.login} />`;
  if (app.solo.value) return html`<${SoloPage} app=${app} />`;
  const screen = app.screen.value;
  /** @type {[import("../vm/app.js").Screen, string][]} */
  const tabs = [["rooms", t("Rooms")], ["search", t("Search")], ["extensions", t("Extensions")], ["settings", t("Settings")]];
  // On a phone the list and the main pane are separate views: the main pane shows when a
  // room is open or another screen was chosen.
  const mainShown = screen !== "rooms" || !!app.rooms.selected.value;
  return html`<div class=${mainShown ? "shell has-room" : "shell"}>
    <${Workspaces} app=${app} />
    <aside class="sidebar" aria-label=${t("Rooms")}>
      <nav class="tabs" aria-label=${t("Sections")}>${tabs.map(([id, label]) => html`<button key=${id} aria-current=${screen === id ? "page" : undefined} onClick=${() => app.show(id)}>${label}</button>`)}</nav>
      <${RoomList} app=${app} />
      <p class="muted small account">${account.user_id}${app.online.value ? "" : html` · <span class="error">${t("offline")}</span>`}</p>
    </aside>
    <main class="main">
      ${screen !== "rooms" && html`<button class="icon back page-back" aria-label=${t("Back to the room list")} onClick=${() => app.show("rooms")}><${Icon} name="back" /></button>`}
      ${screen === "rooms" && html`<${RoomPane} app=${app} />`}
      ${screen === "search" && html`<${SearchPage} app=${app} />`}
      ${screen === "settings" && html`<${SettingsPage} app=${app} onLanguage=${onLanguage} />`}
      ${screen === "extensions" && html`<${ExtensionsPage} app=${app} />`}
    </main>
    ${app.creating.value && html`<${CreateRoomDialog} app=${app} />`}
    ${app.deleting.value && html`<${DeleteDialog} app=${app} />`}
    <${ConfirmSend} vm=${app.frames} roomName=${app.rooms.current.value?.name || app.rooms.current.value?.room_id || ""} />
  </div>`;
}
