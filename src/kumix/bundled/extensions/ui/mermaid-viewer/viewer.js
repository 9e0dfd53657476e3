// Renders ```mermaid blocks of the room's messages. mermaid draws into this frame's DOM;
// the finished SVG is shown as an <img> from a data: URL, so whatever the diagram text
// contains, the picture can run no script and load nothing (img-src allows data: only).
"use strict";
(() => {
  const w = window.kumixWidget;
  const BLOCK = /```mermaid[ \t]*\r?\n([\s\S]*?)```/g;
  const MAX_DIAGRAMS = 20;
  const seen = new Set();
  const diagrams = [];
  let counter = 0;

  const collect = (event) => {
    const body = event && event.content && event.content.body;
    if (typeof body !== "string" || seen.has(event.event_id)) return;
    seen.add(event.event_id);
    for (const m of body.matchAll(BLOCK)) diagrams.push({ code: m[1], sender: String(event.sender || "") });
    diagrams.splice(0, Math.max(0, diagrams.length - MAX_DIAGRAMS));
  };

  const render = async () => {
    const container = document.getElementById("diagrams");
    const figures = [];
    for (const diagram of diagrams) {
      counter += 1;
      try {
        const { svg } = await mermaid.render(`kumix-mermaid-${counter}`, diagram.code);
        const img = w.el("img", { alt: "mermaid diagram", src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}` });
        figures.push(w.el("figure", { class: "diagram" }, img, w.el("figcaption", {}, diagram.sender)));
      } catch (error) {
        figures.push(w.el("figure", { class: "diagram" }, w.el("p", { class: "error" }, `Cannot render: ${error.message || error}`)));
      }
    }
    container.replaceChildren(...figures);
    document.getElementById("status").textContent =
      diagrams.length === 0 ? "No mermaid code blocks in this room." : `${diagrams.length} diagram(s)`;
  };

  const main = async () => {
    mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: w.dark() ? "dark" : "default",
      htmlLabels: false, flowchart: { htmlLabels: false } });
    await w.start(["org.matrix.msc2762.receive.event:m.room.message"]);
    w.on("send_event", (event) => { collect(event); render(); });
    try {
      const { events } = await w.request("org.matrix.msc2876.read_events", { type: "m.room.message", limit: 100 });
      for (const event of (events || []).slice().reverse()) collect(event);
      await render();
    } catch (error) {
      document.getElementById("status").textContent = `Cannot read the room: ${error.message}`;
    }
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
