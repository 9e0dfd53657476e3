// The login form: homeserver, user and password or an access token, and the vault key when
// the server asks for one. Errors keep the server's stable code, so the view can say in words
// what went wrong.
import { signal, computed } from "../vendor/signals-core.js";
import { ApiError } from "../lib/api.js";

/** @typedef {"password" | "token"} LoginMethod */
/** @typedef {{code: string, message: string}} Problem */

export class LoginViewModel {
  /** @param {(body: Record<string, string>) => Promise<unknown>} login */
  constructor(login) {
    this.login = login;
    this.homeserver = signal("");
    this.user = signal("");
    this.password = signal("");
    this.token = signal("");
    this.vaultKey = signal("");
    /** @type {import("../vendor/signals-core.js").Signal<LoginMethod>} */
    this.method = signal("password");
    this.needsVaultKey = signal(false);
    this.busy = signal(false);
    /** @type {import("../vendor/signals-core.js").Signal<Problem | null>} */
    this.problem = signal(null);
    this.ready = computed(() => {
      if (!this.homeserver.value.trim() || this.busy.value) return false;
      if (this.needsVaultKey.value && !this.vaultKey.value) return false;
      return this.method.value === "token" ? !!this.token.value.trim() : !!this.user.value.trim() && !!this.password.value;
    });
  }

  /** The homeserver as the server will be given it: a bare name gets https://. */
  homeserverUrl() {
    const raw = this.homeserver.value.trim();
    return /^https?:\/\//i.test(raw) ? raw : `https://${raw}`;
  }

  body() {
    /** @type {Record<string, string>} */
    const body = { homeserver: this.homeserverUrl() };
    if (this.method.value === "token") body.access_token = this.token.value.trim();
    else Object.assign(body, { user: this.user.value.trim(), password: this.password.value });
    if (this.needsVaultKey.value) body.vault_passphrase = this.vaultKey.value;
    return body;
  }

  /** True when logged in; otherwise `problem` says why. */
  async submit() {
    if (!this.ready.value) return false;
    this.busy.value = true;
    this.problem.value = null;
    try {
      await this.login(this.body());
      this.password.value = "";
      this.token.value = "";
      this.vaultKey.value = "";
      return true;
    } catch (err) {
      const code = err instanceof ApiError ? err.code : "network";
      // The server needs the vault passphrase to seal the new session's keys: ask for it here.
      if (code === "vault_locked" || code === "vault_key_needed") this.needsVaultKey.value = true;
      this.problem.value = { code, message: err instanceof Error ? err.message : String(err) };
      return false;
    } finally {
      this.busy.value = false;
    }
  }
}
