// The timeline: @tanstack/virtual-core in chat mode (anchored to the end, following new
// messages, stable keys so paging back does not jump), role="log" for screen readers.
import { html } from "../lib/html.js";
import { Icon } from "./icons.js";
import { Component } from "../vendor/preact.js";
import { useEffect, useRef, useState, useLayoutEffect } from "../vendor/preact-hooks.js";
import { Virtualizer, elementScroll, observeElementOffset, observeElementRect, measureElement } from "../vendor/virtual-core/index.js";
import { t, tn, formatTime, formatDay, formatBytes } from "../lib/i18n.js";
import { messageHtml } from "../lib/trusted-html.js";
import { shieldOf } from "../vm/shield.js";

/** @typedef {import("../vm/timeline.js").Tile} Tile */
/** @typedef {import("../vm/timeline.js").MessageTile} MessageTile */

/** After Reply or Edit, typing goes on in the composer. */
const focusComposer = () => /** @type {HTMLTextAreaElement | null} */ (document.querySelector(".composer textarea"))?.focus();

/** @param {string} userId */
const shortName = (userId) => userId.replace(/^@/, "").split(":")[0];

/**
 * The message a reply quotes, as that message shows (its latest edit, rendered from its
 * sanitized HTML like the message itself, never its markdown source).
 * @param {{tile: MessageTile}} props
 */
function Quote({ tile }) {
  if (tile.redacted) return html`<span class="muted">${t("Message deleted")}</span>`;
  if (tile.undecryptable) return html`<span class="muted">${t("Waiting for this message's keys…")}</span>`;
  if (tile.html) return html`<div class="html quoted" dangerouslySetInnerHTML=${messageHtml(tile.html)}></div>`;
  return html`<span class="quoted">${tile.body}</span>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel, tile: MessageTile}} props */
function Body({ app, tile }) {
  const ev = tile.event;
  if (tile.redacted) return html`<p class="muted redacted">${t("Message deleted")}</p>`;
  if (tile.undecryptable) {
    return html`<p class="muted undecryptable">${shieldOf(ev)?.withheld
      ? t("Not shown: its sender's device is not trusted (exclude insecure devices is on)")
      : t("Waiting for this message's keys…")}</p>`;
  }
  if (ev.kind === "file" && ev.file) {
    const src = `/api/media/${encodeURIComponent(ev.event_id)}`;
    if ((ev.file.mimetype ?? "").startsWith("image/")) {
      return html`<a href=${src} target="_blank" rel="noopener noreferrer" class="image-link">
        <img src=${src} alt=${ev.file.name || t("Image")} loading="lazy" /></a>`;
    }
    return html`<a class="file" href=${src} download=${ev.file.name}><${Icon} name="file" /> ${ev.file.name}${ev.file.size ? html` <span class="muted">(${formatBytes(ev.file.size)})</span>` : null}</a>`;
  }
  const quoted = ev.reply_to ? app.timeline.value?.byEventId.value.get(ev.reply_to) : undefined;
  return html`${ev.reply_to && html`<blockquote class="reply">${quoted
      ? html`<strong class="reply-sender">${shortName(quoted.event.sender)}</strong> <${Quote} tile=${quoted} />`
      : html`<span class="muted">${t("In reply to an earlier message")}</span>`}</blockquote>`}
    ${tile.html ? html`<div class="html" dangerouslySetInnerHTML=${messageHtml(tile.html)}></div>` : html`<p class="text">${tile.body}</p>`}
    ${tile.edited && html`<span class="muted small">${t("(edited)")}</span>`}`;
}

/** The trust of the device a message came from (docs/encryption.md, "What the shields mean").
 * @param {{ev: import("../vm/timeline.js").EventDoc}} props */
function Shield({ ev }) {
  const shield = shieldOf(ev);
  if (!shield) return null;
  const why = {
    unverified_identity: t("Sent by a device of someone you have not verified"),
    unauthenticated: t("The authenticity of this message cannot be guaranteed on this device"),
    not_cross_signed: t("Sent from a device its owner has not verified"),
    unknown_device: t("Sent from an unknown or deleted device"),
    identity_changed: t("The sender's identity changed since you verified them"),
  }[shield.trust];
  return html`<span class=${`shield ${shield.level}`} title=${why}><${Icon} name="shield" label=${why} /></span>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel, tile: Tile}} props */
function Row({ app, tile }) {
  if (tile.type === "day") return html`<div class="day" role="separator"><span>${formatDay(tile.ts)}</span></div>`;
  if (tile.type === "notice") {
    const who = { user: shortName(tile.subject) };
    /** @type {Record<string, string>} */
    const lines = {
      join: t("{user} joined", who), leave: t("{user} left", who), invite: t("{user} was invited", who), ban: t("{user} was banned", who),
      name: t("{user} renamed the room", who), topic: t("{user} changed the topic", who),
      encryption: t("{user} turned on encryption", who), create: t("{user} created the room", who),
    };
    return html`<p class="notice muted small">${lines[tile.change]}</p>`;
  }
  const ev = tile.event;
  const own = ev.sender === app.account.value?.user_id;
  const focused = app.timeline.value?.focused.value === ev.event_id;
  return html`<article class=${`message${tile.continuation ? " continuation" : ""}${focused ? " focused" : ""}`} aria-label=${t("Message from {user}", { user: shortName(ev.sender) })}
      data-event-id=${ev.event_id} tabindex="-1">
    ${!tile.continuation && html`<header><span class="avatar" aria-hidden="true">${shortName(ev.sender).slice(0, 1).toUpperCase()}</span>
      <strong class="sender">${shortName(ev.sender)}</strong> <time class="muted small">${formatTime(ev.ts)}</time>
      ${ev.encrypted && html`<span class="lock small" title=${t("Encrypted")}><${Icon} name="lock" label=${t("Encrypted")} /></span>`}</header>`}
    <div class="content"><${Shield} ev=${ev} /><${Body} app=${app} tile=${tile} /></div>
    ${tile.reactions.length > 0 && html`<div class="reactions">${tile.reactions.map((r) => html`<button class=${r.mine ? "reaction mine" : "reaction"} aria-pressed=${!!r.mine}
        aria-label=${tn("{key}: {count} reaction", "{key}: {count} reactions", r.count, { key: r.key })}
        onClick=${() => void app.toggleReaction(ev.event_id, r.key, r.mine)}>${r.key} ${r.count}</button>`)}</div>`}
    ${tile.sending === "sending" && html`<span class="muted small">${t("Sending…")}</span>`}
    ${tile.sending === "failed" && html`<span class="error small">${t("Not sent.")} <button class="link" onClick=${() => void app.retry(tile.key.slice(4))}>${t("Retry")}</button></span>`}
    ${tile.readBy.length > 0 && html`<span class="receipts muted small">${tn("Read by {count} person", "Read by {count} people", tile.readBy.length)}</span>`}
    ${tile.sending === null && !tile.redacted && html`<span class="hover-actions">
      <button class="link" onClick=${() => { app.composer.replyTo(ev.event_id); focusComposer(); }}>${t("Reply")}</button>
      <button class="link" onClick=${() => void app.toggleReaction(ev.event_id, "👍", tile.reactions.find((r) => r.key === "👍")?.mine ?? null)} aria-label=${t("React with a thumbs up")}>👍</button>
      ${own && ev.kind === "text" && !tile.undecryptable && html`<button class="link" onClick=${() => { app.composer.startEdit(ev.event_id, tile.body); focusComposer(); }}>${t("Edit")}</button>`}
      ${own && html`<button class="link" onClick=${() => { app.deleting.value = ev.event_id; }}>${t("Delete")}</button>`}
    </span>`}
  </article>`;
}

/** @typedef {{app: import("../vm/app.js").AppViewModel, tile: Tile}} RowProps */

/**
 * A row renders again only when its tile does: the view model hands out the same tile object
 * while its content is the same, and the virtualizer re-renders the list on every range change
 * (every frame of a scroll). What a row reads from signals (the focused message, the catalog)
 * still re-renders it by itself.
 * @extends {Component<RowProps>}
 */
class KeptRow extends Component {
  /** @param {RowProps} next */
  shouldComponentUpdate(next) {
    return next.tile !== this.props.tile || next.app !== this.props.app;
  }

  /** @param {RowProps} props */
  render({ app, tile }) {
    return html`<${Row} app=${app} tile=${tile} />`;
  }
}

/**
 * elementScroll, except for a correction (a row above the fold measured at another size than
 * its estimate, which would move what the reader sees): that moves the scroll position by the
 * difference from where it is now. The virtualizer knows the position of the last scroll event
 * only; an absolute write from there takes back whatever the reader scrolled since, which
 * happened on every other frame of a scroll up through rows being measured for the first time.
 * @type {import("../vendor/virtual-core/index.js").VirtualizerOptions<HTMLDivElement, HTMLElement>["scrollToFn"]}
 */
const scrollKeepingReader = (offset, options, instance) => {
  const box = instance.scrollElement;
  if (box && options.adjustments && options.behavior !== "smooth") box.scrollTop += options.adjustments;
  else elementScroll(offset, options, instance);
};

/** Start paging back while this many tiles are still above the first rendered one (a page is 50). */
const PREFETCH_TILES = 40;

/** @param {{app: import("../vm/app.js").AppViewModel, vm: import("../vm/timeline.js").TimelineViewModel}} props */
export function Timeline({ app, vm }) {
  const tiles = vm.tiles.value;
  const scroller = useRef(/** @type {HTMLDivElement | null} */ (null));
  const [, redraw] = useState(0);
  const virt = useRef(/** @type {Virtualizer<HTMLDivElement, HTMLElement> | null} */ (null));
  const tilesRef = useRef(tiles);
  tilesRef.current = tiles;
  if (!virt.current) {
    virt.current = new Virtualizer({
      count: tiles.length,
      getScrollElement: () => scroller.current,
      estimateSize: () => 56,
      getItemKey: (i) => tilesRef.current[i]?.key ?? i,
      overscan: 8,
      anchorTo: "end",
      followOnAppend: true,
      scrollToFn: scrollKeepingReader,
      observeElementRect,
      observeElementOffset,
      measureElement,
      onChange: () => redraw((n) => n + 1),
    });
  }
  const v = virt.current;
  v.setOptions({ ...v.options, count: tiles.length });
  useLayoutEffect(() => v._willUpdate());
  useEffect(() => v._didMount(), []);
  const items = v.getVirtualItems();
  // Whether the first page has been anchored to the end: before that the range starts at the
  // first tile without anyone having scrolled, and paging back then would fetch a page nobody
  // asked for while the room opens.
  const anchored = useRef(false);
  useEffect(() => {
    const box = scroller.current;
    if (!box || !items.length) return;
    if (!anchored.current) {
      if (box.scrollTop > 0 || box.scrollHeight <= box.clientHeight) anchored.current = true;
      else return;
    }
    // Near the top: page back, early enough that the page is there before the top is. The
    // stable keys keep the visible message in place.
    if (items[0].index < PREFETCH_TILES && vm.hasMore.value && !vm.loading.value) void vm.loadOlder();
  });
  // Scroll to a message a search hit asked for, and mark it.
  const focused = vm.focused.value;
  useEffect(() => {
    if (!focused) return;
    const index = vm.indexOf(focused);
    if (index >= 0) v.scrollToIndex(index, { align: "center" });
  }, [focused, tiles.length]);
  // The newest message is on screen and the page is visible: it has been read.
  const last = tiles.length ? tiles[tiles.length - 1] : null;
  useEffect(() => {
    const newest = vm.newestEventId.value;
    if (newest && last && v.isAtEnd(48) && document.visibilityState === "visible") app.readUpTo(vm.roomId, newest);
  });
  const typing = vm.typingOthers.value;
  /**
   * Arrow keys move between messages (the rendered ones; the virtualizer keeps the focused one
   * near the viewport), Home/End jump to the oldest loaded and the newest.
   * @param {KeyboardEvent} e
   */
  const onKey = (e) => {
    const box = scroller.current;
    if (!box) return;
    const messages = /** @type {HTMLElement[]} */ ([...box.querySelectorAll("article.message")])
      .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top);
    const at = messages.findIndex((m) => m === document.activeElement);
    if (e.key === "ArrowUp" || e.key === "ArrowDown") {
      e.preventDefault();
      const next = at < 0 ? messages.length - 1 : Math.max(0, Math.min(messages.length - 1, at + (e.key === "ArrowUp" ? -1 : 1)));
      messages[next]?.focus();
      messages[next]?.scrollIntoView({ block: "nearest" });
    } else if (e.key === "End") {
      e.preventDefault();
      v.scrollToEnd();
    } else if (e.key === "Home") {
      e.preventDefault();
      v.scrollToIndex(0, { align: "start" });
    }
  };
  return html`<div class="timeline-wrap">
    <div class="timeline" ref=${scroller} role="log" aria-live="polite" aria-label=${t("Messages")} tabindex="0" onKeyDown=${onKey}>
      ${/* One line of fixed height above the rows, whatever it says: text appearing and going
           there while paging would move every row the virtualizer has placed. */ ""}
      <p class="muted small center timeline-start">${!vm.hasMore.value ? t("This is the start of the room.") : vm.loading.value ? t("Loading older messages…") : ""}</p>
      <div class="timeline-inner" style=${{ height: `${v.getTotalSize()}px` }}>
        ${items.map((item) => {
          const tile = tiles[item.index];
          // The virtualizer's own measureElement is one function for the life of the list, so
          // a row is measured when it mounts and then by the ResizeObserver, not on every render.
          return tile ? html`<div key=${item.key} data-index=${item.index} ref=${v.measureElement}
              class="row" style=${{ transform: `translateY(${item.start}px)` }}><${KeptRow} app=${app} tile=${tile} /></div>` : null;
        })}
      </div>
    </div>
    <p class="typing muted small" aria-live="polite">${typing.length ? tn("{names} is typing…", "{names} are typing…", typing.length, { names: typing.map(shortName).join(", ") }) : ""}</p>
  </div>`;
}
