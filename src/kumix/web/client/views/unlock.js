import { html } from "../lib/html.js";
import { t } from "../lib/i18n.js";
import { useEffect } from "../vendor/preact-hooks.js";

/** @param {{code: string, message: string}} problem */
export function unlockProblemText(problem) {
  /** @type {Record<string, string>} */
  const known = {
    wrong_passphrase: t("That passphrase does not open the vault. Nothing was changed; try again."),
    network: t("The local Kumix server could not be reached."),
    state_busy: t("Another Kumix process is using this account."),
  };
  return known[problem.code] ?? t("The vault could not be unlocked.");
}

/** @param {{vm: import("../vm/unlock.js").UnlockViewModel, userId: string | null}} props */
export function UnlockView({ vm, userId }) {
  const problem = vm.problem.value;
  // After a refused try the cursor goes back to the (cleared) field, ready for the next one.
  useEffect(() => {
    if (problem) /** @type {HTMLInputElement | null} */ (document.querySelector("input[name=unlock]"))?.focus();
  }, [problem]);
  /** @param {Event} e */
  const submit = (e) => { e.preventDefault(); void vm.submit(); };
  return html`<main class="login">
    <form class="card" onSubmit=${submit} aria-labelledby="unlock-title">
      <h1 id="unlock-title">${t("Unlock the vault")}</h1>
      <p class="notice-box" id="unlock-why">${t("This server keeps your session's keys in a vault sealed with a passphrase. Give it to continue.")}</p>
      ${userId && html`<p class="muted small">${userId}</p>`}
      <label>${t("Vault passphrase")}
        <input name="unlock" type="password" autocomplete="current-password" autofocus aria-describedby="unlock-why"
          aria-invalid=${problem?.code === "wrong_passphrase"} value=${vm.passphrase.value}
          onInput=${(/** @type {Event} */ e) => { vm.passphrase.value = /** @type {HTMLInputElement} */ (e.currentTarget).value; }} /></label>
      ${problem && html`<p class="error" role="alert"><strong>${unlockProblemText(problem)}</strong>${problem.code !== "wrong_passphrase" && html` <span class="muted">${problem.message}</span>`}</p>`}
      <button class="primary" type="submit" disabled=${!vm.ready.value}>${vm.busy.value ? t("Unlocking…") : t("Unlock")}</button>
    </form>
  </main>`;
}
