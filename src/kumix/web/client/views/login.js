import { html } from "../lib/html.js";
import { t } from "../lib/i18n.js";
import { useEffect } from "../vendor/preact-hooks.js";

/** @param {{code: string, message: string}} problem */
export function problemText(problem) {
  /** @type {Record<string, string>} */
  const known = {
    unauthorized: t("The homeserver refused these credentials."),
    network: t("The local Kumix server could not be reached."),
    bad_request: t("Something in the form is not right."),
    state_busy: t("Another Kumix process is using this account."),
    vault_passphrase_required: t("Choose a passphrase for the vault that keeps this session's keys on this computer."),
  };
  return known[problem.code] ?? t("Sign-in failed.");
}

/** A problem the form itself explains (the vault question shows with its reason). @param {string} code */
function explained(code) {
  return code === "vault_passphrase_required";
}

/** @param {{vm: import("../vm/login.js").LoginViewModel}} props */
export function LoginView({ vm }) {
  const problem = vm.problem.value;
  const token = vm.method.value === "token";
  const askVault = vm.needsVaultKey.value;
  // The vault question appears after a first try: the cursor goes to it (its reason is the
  // field's description, so a screen reader says why).
  useEffect(() => {
    if (askVault) /** @type {HTMLInputElement | null} */ (document.querySelector("input[name=vault]"))?.focus();
  }, [askVault]);
  /** @param {Event} e */
  const submit = (e) => { e.preventDefault(); void vm.submit(); };
  /** @param {import("../vendor/signals-core.js").Signal<string>} s */
  const bind = (s) => (/** @type {Event} */ e) => { s.value = /** @type {HTMLInputElement} */ (e.currentTarget).value; };
  return html`<main class="login">
    <form class="card" onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title">${t("Sign in to Matrix")}</h1>
      <label>${t("Homeserver")}
        <input name="homeserver" autocomplete="url" required value=${vm.homeserver.value} onInput=${bind(vm.homeserver)} placeholder=${t("example.org")} /></label>
      <div class="segmented" role="radiogroup" aria-label=${t("Sign-in method")}>
        <button type="button" role="radio" aria-checked=${!token} onClick=${() => { vm.method.value = "password"; }}>${t("Password")}</button>
        <button type="button" role="radio" aria-checked=${token} onClick=${() => { vm.method.value = "token"; }}>${t("Access token")}</button>
      </div>
      ${token
        ? html`<label>${t("Access token")}<input name="token" type="password" autocomplete="off" value=${vm.token.value} onInput=${bind(vm.token)} /></label>`
        : html`<label>${t("User")}<input name="user" autocomplete="username" value=${vm.user.value} onInput=${bind(vm.user)} placeholder=${t("@alice:example.org")} /></label>
          <label>${t("Password")}<input name="password" type="password" autocomplete="current-password" value=${vm.password.value} onInput=${bind(vm.password)} /></label>`}
      ${vm.needsVaultKey.value && html`<p class="notice-box" id="vault-why">${problemText({ code: "vault_passphrase_required", message: "" })}</p>
        <label>${t("Vault passphrase")}<input name="vault" type="password" autocomplete="new-password" aria-describedby="vault-why" value=${vm.vaultKey.value} onInput=${bind(vm.vaultKey)} /></label>
        <label>${t("Vault passphrase again")}<input name="vault-again" type="password" autocomplete="new-password" value=${vm.vaultKeyAgain.value} onInput=${bind(vm.vaultKeyAgain)} aria-invalid=${vm.vaultMismatch.value} /></label>
        ${vm.vaultMismatch.value && html`<p class="error small">${t("The two passphrases differ.")}</p>`}`}
      ${problem && !explained(problem.code) && html`<p class="error" role="alert"><strong>${problemText(problem)}</strong> <span class="muted">${problem.message}</span></p>`}
      <button class="primary" type="submit" disabled=${!vm.ready.value}>${vm.busy.value ? t("Signing in…") : t("Sign in")}</button>
    </form>
  </main>`;
}
