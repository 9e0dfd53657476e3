// Polls of MSC3381 (stable m.poll.* and the unstable org.matrix.msc3381.* names Element
// sends): each poll with its answers and tally; a vote is a send_event of the matching
// response type, which Kumix confirms with the user before anything is sent.
"use strict";
(() => {
  const w = window.kumixWidget;
  const UNSTABLE = "org.matrix.msc3381.poll";
  const polls = new Map();  // start event id -> poll
  const votes = new Map();  // start event id -> Map(sender -> {ts, answers})
  const statuses = new Map();  // start event id -> what the last vote here came to (kept across renders)

  const textOf = (value) => {
    if (typeof value === "string") return value;
    if (value && typeof value === "object") {
      if (typeof value["org.matrix.msc1767.text"] === "string") return value["org.matrix.msc1767.text"];
      const texts = value["m.text"];
      if (Array.isArray(texts) && texts[0] && typeof texts[0].body === "string") return texts[0].body;
    }
    return "";
  };

  const addStart = (event) => {
    const stable = event.content && event.content["m.poll"];
    const unstable = event.content && event.content[`${UNSTABLE}.start`];
    const body = stable || unstable;
    if (!body || !Array.isArray(body.answers)) return;
    polls.set(event.event_id, {
      id: event.event_id,
      unstable: !stable,
      question: textOf(body.question),
      answers: body.answers.slice(0, 20).map((a) => ({ id: String(a["m.id"] || a.id || ""), text: textOf(a) })),
      ended: false,
    });
  };

  const addResponse = (event) => {
    const relates = event.content && event.content["m.relates_to"];
    const start = relates && relates.event_id;
    if (typeof start !== "string") return;
    const answers = (event.content["m.selections"]) ||
      (event.content[`${UNSTABLE}.response`] && event.content[`${UNSTABLE}.response`].answers) || [];
    const byStart = votes.get(start) || new Map();
    const previous = byStart.get(event.sender);
    if (!previous || previous.ts <= event.origin_server_ts) {
      byStart.set(event.sender, { ts: event.origin_server_ts || 0, answers: Array.isArray(answers) ? answers : [] });
    }
    votes.set(start, byStart);
  };

  const addEnd = (event) => {
    const relates = event.content && event.content["m.relates_to"];
    const poll = relates && polls.get(relates.event_id);
    if (poll) poll.ended = true;
  };

  const add = (event) => {
    if (!event || typeof event.type !== "string") return;
    if (event.type === "m.poll.start" || event.type === `${UNSTABLE}.start`) addStart(event);
    else if (event.type === "m.poll.response" || event.type === `${UNSTABLE}.response`) addResponse(event);
    else if (event.type === "m.poll.end" || event.type === `${UNSTABLE}.end`) addEnd(event);
  };

  const vote = async (poll, answer, status) => {
    const relates = { rel_type: "m.reference", event_id: poll.id };
    const request = poll.unstable
      ? { type: `${UNSTABLE}.response`, content: { "m.relates_to": relates, [`${UNSTABLE}.response`]: { answers: [answer.id] } } }
      : { type: "m.poll.response", content: { "m.relates_to": relates, "m.selections": [answer.id] } };
    const say = (text) => {
      statuses.set(poll.id, text);
      // A render may have replaced the element meanwhile (a pushed vote): update the live one.
      const live = document.querySelector(`section[data-poll="${CSS.escape(poll.id)}"] .vote-status`);
      (live || status).textContent = text;
    };
    say("Waiting for your confirmation in Kumix…");
    try {
      await w.request("send_event", request);
      say(`Voted “${answer.text}”.`);
    } catch (error) {
      say(`Not sent: ${error.message}`);
    }
  };

  const render = () => {
    const container = document.getElementById("polls");
    container.replaceChildren(...[...polls.values()].map((poll) => {
      const tally = new Map();
      for (const { answers } of (votes.get(poll.id) || new Map()).values()) {
        for (const id of answers.slice(0, 1)) tally.set(id, (tally.get(id) || 0) + 1);
      }
      const status = w.el("p", { class: "vote-status" }, statuses.get(poll.id) || "");
      const buttons = poll.answers.map((answer) => {
        const button = w.el("button", { type: "button", "data-answer": answer.id },
          `${answer.text} (${tally.get(answer.id) || 0})`);
        if (poll.ended) button.disabled = true;
        button.addEventListener("click", () => vote(poll, answer, status));
        return button;
      });
      return w.el("section", { class: poll.ended ? "ended" : "", "data-poll": poll.id },
        w.el("h2", {}, poll.question), ...buttons, status);
    }));
    document.getElementById("status").textContent = polls.size === 0 ? "No polls in this room." : "";
  };

  const TYPES = ["m.poll.start", "m.poll.response", "m.poll.end", `${UNSTABLE}.start`, `${UNSTABLE}.response`, `${UNSTABLE}.end`];
  const main = async () => {
    await w.start([
      ...TYPES.map((t) => `org.matrix.msc2762.receive.event:${t}`),
      "org.matrix.msc2762.send.event:m.poll.response",
      `org.matrix.msc2762.send.event:${UNSTABLE}.response`,
    ]);
    w.on("send_event", (event) => { add(event); render(); });
    try {
      for (const type of TYPES) {
        const { events } = await w.request("org.matrix.msc2876.read_events", { type, limit: 100 });
        for (const event of (events || []).slice().reverse()) add(event);
      }
      render();
    } catch (error) {
      document.getElementById("status").textContent = `Cannot read the room: ${error.message}`;
    }
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
