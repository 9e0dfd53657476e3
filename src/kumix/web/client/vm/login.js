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
    /** The passphrase typed again: a new vault's passphrase is asked twice, as on a terminal. */
    this.vaultKeyAgain = signal("");
    /** @type {import("../vendor/signals-core.js").Signal<LoginMethod>} */
    this.method = signal("password");
    this.needsVaultKey = signal(false);
    this.vaultMismatch = computed(() => this.needsVaultKey.value && !!this.vaultKeyAgain.value && this.vaultKey.value !== this.vaultKeyAgain.value);
    this.busy = signal(false);
    /** @type {import("../vendor/signals-core.js").Signal<Problem | null>} */
    this.problem = signal(null);
    this.ready = computed(() => {
      if (!this.homeserver.value.trim() || this.busy.value) return false;
      if (this.needsVaultKey.value && (!this.vaultKey.value || this.vaultKey.value !== this.vaultKeyAgain.value)) return false;
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
      this.vaultKeyAgain.value = "";
      return true;
    } catch (err) {
      let code = err instanceof ApiError ? err.code : "network";
      // The server has no passphrase file and no keyring to seal the new session's keys
      // with (it asked before creating a device): the passphrase is asked for here.
      const details = err instanceof ApiError && err.details && typeof err.details === "object" ? /** @type {Record<string, unknown>} */ (err.details) : {};
      if (code === "unauthorized" && details.reason === "vault_passphrase_required") {
        this.needsVaultKey.value = true;
        code = "vault_passphrase_required";
      }
      this.problem.value = { code, message: err instanceof Error ? err.message : String(err) };
      return false;
    } finally {
      this.busy.value = false;
    }
  }
}
