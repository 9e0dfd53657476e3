// The unlock screen: the server restarted with a vault sealed by a passphrase it has no file
// for, and waits for the person to give it. Nothing here keeps the passphrase after a try.
import { signal, computed } from "../vendor/signals-core.js";
import { ApiError } from "../lib/api.js";

/** @typedef {{code: string, message: string}} Problem */

export class UnlockViewModel {
  /** @param {(passphrase: string) => Promise<unknown>} unlock  POST /api/vault/unlock, then the page's start */
  constructor(unlock) {
    this.unlock = unlock;
    this.passphrase = signal("");
    this.busy = signal(false);
    /** @type {import("../vendor/signals-core.js").Signal<Problem | null>} */
    this.problem = signal(null);
    this.ready = computed(() => !!this.passphrase.value && !this.busy.value);
  }

  /** True once the vault is open; otherwise `problem` says why (`wrong_passphrase`, …). */
  async submit() {
    if (!this.ready.value) return false;
    const passphrase = this.passphrase.value;
    this.busy.value = true;
    this.problem.value = null;
    try {
      await this.unlock(passphrase);
      return true;
    } catch (err) {
      this.problem.value = { code: err instanceof ApiError ? err.code : "network", message: err instanceof Error ? err.message : String(err) };
      return false;
    } finally {
      // Cleared after every try, right or wrong: a wrong one is typed again from scratch.
      this.passphrase.value = "";
      this.busy.value = false;
    }
  }
}
