import { html } from "../lib/html.js";
import { Icon } from "./icons.js";
import { t, tn, formatNumber } from "../lib/i18n.js";
import { useState } from "../vendor/preact-hooks.js";
import { roomPath } from "../lib/api.js";

/** @typedef {import("../vm/rooms.js").RoomSummary} RoomSummary */

/**
 * A room's or space's avatar: its m.room.avatar through the server's authenticated media,
 * else (none, or not an image the browser shows) its initial.
 * @param {{room: RoomSummary, className?: string}} props
 */
export function Avatar({ room, className = "avatar" }) {
  const [failed, setFailed] = useState(/** @type {string | null} */ (null));
  const initial = (room.name || room.room_id).replace(/^[#!@]/, "").slice(0, 1).toUpperCase();
  if (room.avatar && failed !== room.avatar) {
    const mxc = room.avatar;
    return html`<img class=${`${className} avatar-img`} src=${`${roomPath(room.room_id)}/avatar?v=${encodeURIComponent(mxc)}`} alt="" aria-hidden="true"
      onError=${() => setFailed(mxc)} />`;
  }
  return html`<span class=${className} aria-hidden="true">${initial}</span>`;
}

/** @param {{unread: number, highlights: number}} props */
function Badge({ unread, highlights }) {
  if (!unread && !highlights) return null;
  const label = highlights ? tn("{count} mention", "{count} mentions", highlights) : tn("{count} unread message", "{count} unread messages", unread);
  return html`<span class=${highlights ? "badge highlight" : "badge"} aria-label=${label}>${formatNumber(highlights || unread)}</span>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel, room: RoomSummary, tabbable: boolean}} props */
function RoomRow({ app, room, tabbable }) {
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
      tabindex=${tabbable ? 0 : -1} onClick=${() => vm.select(room.room_id)}
      onKeyDown=${(/** @type {KeyboardEvent} */ e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); vm.select(room.room_id); } }}>
    <${Avatar} room=${room} />
    <span class="room-name">${room.name || room.room_id}</span>
    ${room.encrypted && html`<span class="lock" title=${t("Encrypted")}><${Icon} name="lock" label=${t("Encrypted")} /></span>`}
    <${Badge} unread=${room.unread} highlights=${room.highlights} />
  </li>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel, title: string, rooms: RoomSummary[]}} props */
function Section({ app, title, rooms }) {
  if (!rooms.length) return null;
  // One Tab stop per list: the selected room, or the first when the selection is elsewhere.
  const selected = app.rooms.selected.value;
  const stop = rooms.some((r) => r.room_id === selected) ? selected : rooms[0].room_id;
  return html`<section class="section">
    <h2 class="section-title">${title}</h2>
    ${/* Invites hold buttons, so they are a plain list; joined rooms are a listbox of options. */ ""}
    <ul role=${rooms.every((r) => r.membership === "invite") ? undefined : "listbox"} aria-label=${title}>
      ${rooms.map((r) => html`<${RoomRow} key=${r.room_id} app=${app} room=${r} tabbable=${r.room_id === stop} />`)}</ul>
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
        ${w.space ? html`<${Avatar} room=${w.space} className="workspace-avatar" />` : html`<${Icon} name="home" />`}
        ${w.highlights ? html`<span class="dot highlight" aria-hidden="true"></span>` : w.unread ? html`<span class="dot" aria-hidden="true"></span>` : null}
      </button>`;
    })}
  </nav>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel}} props */
export function RoomList({ app }) {
  const vm = app.rooms;
  const s = vm.sections.value;
  const empty = !s.invites.length && !s.direct.length && !s.groups.length && !s.other.length;
  const space = vm.workspace.value ? vm.byId.value.get(vm.workspace.value) : null;
  return html`<div class="roomlist">
    <div class="roomlist-head">
      <input class="filter" type="search" id="room-filter" aria-label=${t("Filter rooms")} placeholder=${t("Filter rooms")}
        value=${vm.filter.value} onInput=${(/** @type {Event} */ e) => { vm.filter.value = /** @type {HTMLInputElement} */ (e.currentTarget).value; }} />
      <button class="icon" aria-label=${t("Create a room")} title=${t("Create a room")} onClick=${() => { app.creating.value = true; }}><${Icon} name="plus" /></button>
    </div>
    <${Section} app=${app} title=${t("Invites")} rooms=${s.invites} />
    <${Section} app=${app} title=${t("Direct messages")} rooms=${s.direct} />
    ${space && html`<h2 class="workspace-title">${space.name || space.room_id}</h2>`}
    ${s.groups.map((g) => html`<${Section} key=${g.space.room_id} app=${app} title=${vm.workspace.value ? t("Rooms") : g.space.name || g.space.room_id} rooms=${g.rooms} />`)}
    <${Section} app=${app} title=${t("Other rooms")} rooms=${s.other} />
    ${empty && html`<p class="muted empty">${vm.filter.value ? t("No room matches the filter.") : t("No rooms yet.")}</p>`}
  </div>`;
}
