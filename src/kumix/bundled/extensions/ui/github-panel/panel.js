// Finds GitHub issue and pull-request references in the room's messages and lists them.
// Everything comes through the bridge; the frame has no network access at all.
"use strict";
(() => {
  const w = window.kumixWidget;
  const URL_REF = /https:\/\/github\.com\/([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)\/(issues|pull)\/([0-9]{1,9})/g;
  const SHORT_REF = /(?:^|[\s(])([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)#([0-9]{1,9})\b/g;
  const found = new Map();

  const scan = (body) => {
    if (typeof body !== "string") return;
    for (const m of body.matchAll(URL_REF)) {
      const kind = m[3] === "pull" ? "pull" : "issue";
      found.set(`${m[1]}/${m[2]}#${m[4]}`, { repo: `${m[1]}/${m[2]}`, number: m[4], kind });
    }
    for (const m of body.matchAll(SHORT_REF)) {
      const key = `${m[1]}/${m[2]}#${m[3]}`;
      if (!found.has(key)) found.set(key, { repo: `${m[1]}/${m[2]}`, number: m[3], kind: "ref" });
    }
  };

  const render = () => {
    const list = document.getElementById("refs");
    list.replaceChildren(...[...found.entries()].sort().map(([key, ref]) => {
      const path = ref.kind === "pull" ? "pull" : "issues";
      const link = w.el("a", { href: `https://github.com/${ref.repo}/${path}/${ref.number}`, rel: "noreferrer" }, key);
      return w.el("li", {}, w.el("span", { class: "kind" }, ref.kind), link);
    }));
    document.getElementById("status").textContent =
      found.size === 0 ? "No GitHub references in this room yet." : `${found.size} reference(s)`;
  };

  const main = async () => {
    await w.start(["org.matrix.msc2762.receive.event:m.room.message"]);
    w.on("send_event", (event) => { scan(event && event.content && event.content.body); render(); });
    try {
      const { events } = await w.request("org.matrix.msc2876.read_events", { type: "m.room.message", limit: 100 });
      for (const event of events || []) scan(event.content && event.content.body);
      render();
    } catch (error) {
      document.getElementById("status").textContent = `Cannot read the room: ${error.message}`;
    }
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
