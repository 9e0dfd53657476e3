// Light and dark from the theme-default extension's token maps, following the system unless
// the person chose one. The view writes the tokens as CSS custom properties (CSSOM, which
// the CSP allows without 'unsafe-inline').
import { signal, computed } from "../vendor/signals-core.js";

/** @typedef {"system" | "light" | "dark"} ThemeChoice */
/** @typedef {{light: Record<string, string>, dark: Record<string, string>}} TokenMaps */

const TOKEN = /^[a-z][a-z0-9-]{0,40}$/;
// A token value must not be able to pull anything in or break out of its property.
const VALUE = /^[^;{}<>\\]*$/;
const REMOTE = /url\s*\(|@import|expression\s*\(/i;

export class ThemeViewModel {
  constructor() {
    /** @type {import("../vendor/signals-core.js").Signal<ThemeChoice>} */
    this.choice = signal("system");
    this.systemDark = signal(false);
    /** @type {import("../vendor/signals-core.js").Signal<TokenMaps | null>} */
    this.tokens = signal(null);
    this.effective = computed(() => (this.choice.value === "system" ? (this.systemDark.value ? "dark" : "light") : this.choice.value));
    /** [custom property, value] pairs for the effective theme, checked one by one. */
    this.properties = computed(() => {
      const maps = this.tokens.value;
      if (!maps) return [];
      const map = maps[this.effective.value] ?? {};
      return Object.entries(map)
        .filter(([name, value]) => TOKEN.test(name) && typeof value === "string" && VALUE.test(value) && !REMOTE.test(value))
        .map(([name, value]) => /** @type {[string, string]} */ ([`--${name}`, value]));
    });
  }

  /** @param {unknown} choice */
  choose(choice) {
    this.choice.value = choice === "light" || choice === "dark" ? choice : "system";
  }
}
