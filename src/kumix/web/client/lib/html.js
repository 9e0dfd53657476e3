// htm bound to Preact's h: tagged templates instead of JSX, so there is no build step.
import { h } from "../vendor/preact.js";
import htm from "../vendor/htm.js";

export const html = htm.bind(h);
