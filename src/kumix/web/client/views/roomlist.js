import { html } from "../lib/html.js";
import { Icon } from "./icons.js";
import { t, tn, formatNumber } from "../lib/i18n.js";

/** @typedef {import("../vm/rooms.js").RoomSummary} RoomSummary */

/** @param {{unread: number, highlights: number}} props */
function Badge({ unread, highlights }) {
  if (!unread && !highlights) return null;
  const label = highlights ? tn("{count} mention", "{count} mentions", highlights) : tn("{count} unread message", "{count} unread messages", unread);
  return html`<span class=${highlights ? "badge highlight" : "badge"} aria-label=${label}>${formatNumber(highlights || unread)}</span>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel, room: RoomSummary}} props */
function RoomRow({ app, room }) {
  const vm = app.rooms;
  const selected = vm.selected.value === room.room_id;
  if (room.membership === "invite") {
    return html`<li class="room invite">
      <span class="room-name">${room.name || room.room_id}</span>
      <span class="muted small">${room.inviter ? t("Invited by {user}", { user: room.inviter }) : t("Invitation")}</span>
      <span class="actions">
        <button onClick=${() => void app.answerInvite(room.room_id, true)}>${t("Accept")}</button>
        <button onClick=${() => void app.answerInvite(room.room_id, false)}>${t("Decline")}</button>
      </span>
    </li>`;
  }
  return html`<li class=${selected ? "room selected" : "room"} role="option" aria-selected=${selected} id=${`room-${room.room_id}`}
      tabindex=${selected ? 0 : -1} onClick=${() => vm.select(room.room_id)}
      onKeyDown=${(/** @type {KeyboardEvent} */ e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); vm.select(room.room_id); } }}>
    <span class="avatar" aria-hidden="true">${(room.name || "#").slice(0, 1).toUpperCase()}</span>
    <span class="room-name">${room.name || room.room_id}</span>
    ${room.encrypted && html`<span class="lock" title=${t("Encrypted")}><${Icon} name="lock" label=${t("Encrypted")} /></span>`}
    <${Badge} unread=${room.unread} highlights=${room.highlights} />
  </li>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel, title: string, rooms: RoomSummary[]}} props */
function Section({ app, title, rooms }) {
  if (!rooms.length) return null;
  return html`<section class="section">
    <h2 class="section-title">${title}</h2>
    ${/* Invites hold buttons, so they are a plain list; joined rooms are a listbox of options. */ ""}
    <ul role=${rooms.every((r) => r.membership === "invite") ? undefined : "listbox"} aria-label=${title}>
      ${rooms.map((r) => html`<${RoomRow} key=${r.room_id} app=${app} room=${r} />`)}</ul>
  </section>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel}} props */
export function Workspaces({ app }) {
  const vm = app.rooms;
  return html`<nav class="workspaces" aria-label=${t("Workspaces")}>
    ${vm.workspaces.value.map((w) => {
      const id = w.space?.room_id ?? null;
      const name = w.space ? w.space.name || w.space.room_id : t("Home");
      const current = vm.workspace.value === id;
      return html`<button key=${id ?? "home"} class=${current ? "workspace current" : "workspace"} aria-pressed=${current} title=${name}
          aria-label=${w.unread ? t("{name}, {count} unread", { name, count: w.unread }) : name} onClick=${() => vm.chooseWorkspace(id)}>
        ${w.space ? html`<span aria-hidden="true">${name.slice(0, 1).toUpperCase()}</span>` : html`<${Icon} name="home" />`}
        ${w.highlights ? html`<span class="dot highlight" aria-hidden="true"></span>` : w.unread ? html`<span class="dot" aria-hidden="true"></span>` : null}
      </button>`;
    })}
  </nav>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel}} props */
export function RoomList({ app }) {
  const vm = app.rooms;
  const s = vm.sections.value;
  const empty = !s.invites.length && !s.direct.length && !s.rooms.length && !s.other.length;
  return html`<div class="roomlist">
    <div class="roomlist-head">
      <input class="filter" type="search" id="room-filter" aria-label=${t("Filter rooms")} placeholder=${t("Filter rooms")}
        value=${vm.filter.value} onInput=${(/** @type {Event} */ e) => { vm.filter.value = /** @type {HTMLInputElement} */ (e.currentTarget).value; }} />
      <button class="icon" aria-label=${t("Create a room")} title=${t("Create a room")} onClick=${() => { app.creating.value = true; }}><${Icon} name="plus" /></button>
    </div>
    <${Section} app=${app} title=${t("Invites")} rooms=${s.invites} />
    <${Section} app=${app} title=${t("Direct messages")} rooms=${s.direct} />
    <${Section} app=${app} title=${vm.workspace.value ? t("Rooms") : t("Rooms in spaces")} rooms=${s.rooms} />
    <${Section} app=${app} title=${t("Other rooms")} rooms=${s.other} />
    ${empty && html`<p class="muted empty">${vm.filter.value ? t("No room matches the filter.") : t("No rooms yet.")}</p>`}
  </div>`;
}
