// Local full-text search (encrypted rooms included: the server searches its own store).
import { signal } from "../vendor/signals-core.js";

/** @typedef {{event_id: string, room_id: string, sender: string, ts: number, snippet: string}} Hit */

export class SearchViewModel {
  /** @param {(query: string, roomId: string | null) => Promise<Hit[]>} search */
  constructor(search) {
    this.search = search;
    this.query = signal("");
    this.roomId = signal(/** @type {string | null} */ (null));
    /** @type {import("../vendor/signals-core.js").Signal<Hit[]>} */
    this.results = signal([]);
    this.busy = signal(false);
    this.error = signal(/** @type {string | null} */ (null));
    this.searched = signal(false);
    this.generation = 0;
  }

  /** Run the query; an answer to an older query that arrives late is dropped. */
  async run() {
    const query = this.query.value.trim();
    const mine = ++this.generation;
    if (!query) {
      this.results.value = [];
      this.searched.value = false;
      return;
    }
    this.busy.value = true;
    this.error.value = null;
    try {
      const found = await this.search(query, this.roomId.value);
      if (mine !== this.generation) return;
      this.results.value = found;
      this.searched.value = true;
    } catch (err) {
      if (mine === this.generation) this.error.value = err instanceof Error ? err.message : String(err);
    } finally {
      if (mine === this.generation) this.busy.value = false;
    }
  }
}
