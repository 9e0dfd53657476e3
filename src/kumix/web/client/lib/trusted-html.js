// The page's one Trusted Types policy. The server sanitizes message HTML (nh3) before it
// reaches the page; this policy sanitizes it again with DOMPurify, so even a server bug
// cannot put script into the DOM. The CSP's `trusted-types kumix` allows this policy name
// only, and `require-trusted-types-for 'script'` makes every other string → HTML sink throw.
import DOMPurify from "../vendor/purify.js";

export const POLICY_NAME = "kumix";

const PURIFY = {
  ALLOWED_TAGS: ["a", "b", "strong", "i", "em", "u", "s", "del", "code", "pre", "blockquote",
    "p", "br", "hr", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "span", "sup", "sub",
    "table", "thead", "tbody", "tr", "th", "td", "details", "summary", "img"],
  ALLOWED_ATTR: ["href", "title", "alt", "src", "width", "height", "start", "data-mx-spoiler"],
  ALLOW_DATA_ATTR: false,
  // Only links to the web and to matrix.to; images only from this server (authenticated media).
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|\/api\/media\/)/i,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
  if (node.tagName === "IMG" && !(node.getAttribute("src") ?? "").startsWith("/api/media/")) {
    node.removeAttribute("src");
  }
});

/** @type {{createHTML: (input: string) => TrustedHTML | string} | null} */
let policy = null;

/** The one frame document being mounted (`frameDocument`), for the duration of one call. */
/** @type {string | null} */
let frameInFlight = null;

/**
 * Create the policy once, at start; a second creation fails under the CSP (by design).
 *
 * DOMPurify parses its input with DOMParser, itself a Trusted Types sink: under the CSP a
 * plain string there is refused (measured in Chromium: with TRUSTED_TYPES_POLICY null every
 * message came out empty). So DOMPurify is given this same policy for its own parsing, and
 * while one sanitize call runs, the policy passes DOMPurify's strings through as they are:
 * DOMParser documents are inert (no script runs, nothing loads), and what leaves the policy
 * is only ever DOMPurify's output. The pass-through lasts for one synchronous call, so no
 * other code can reach it.
 */
export function installPolicy() {
  if (policy) return policy;
  const factory = typeof window === "undefined" ? undefined : window.trustedTypes;
  let sanitizing = false;
  /** @type {any} the policy itself, for DOMPurify's own parsing (its typings want a full policy) */
  let trusted = null;
  const createHTML = (/** @type {string} */ input) => {
    if (frameInFlight !== null) {
      // A UI frame's srcdoc, built and cleaned by the server: DOMPurify would take a whole
      // document apart, so exactly the string frameDocument was given passes, once.
      const expected = frameInFlight;
      frameInFlight = null;
      if (input !== expected) throw new TypeError("not the frame document being mounted");
      return input;
    }
    if (sanitizing) return input; // DOMPurify parsing its input, inside the call below
    sanitizing = true;
    try {
      return DOMPurify.sanitize(input, {
        ...PURIFY,
        // null: never try to create DOMPurify's own policy (the CSP allows "kumix" only).
        TRUSTED_TYPES_POLICY: trusted ?? null,
        RETURN_TRUSTED_TYPE: false,
      });
    } finally {
      sanitizing = false;
    }
  };
  /** @type {{createHTML: (input: string) => TrustedHTML | string}} */
  const made = factory ? factory.createPolicy(POLICY_NAME, { createHTML }) : { createHTML };
  trusted = factory ? made : null;
  policy = made;
  return made;
}

/**
 * Sanitized message HTML as a value Preact's dangerouslySetInnerHTML accepts under
 * Trusted Types.
 * @param {string} html
 */
export function messageHtml(html) {
  const trusted = installPolicy().createHTML(html);
  return { __html: /** @type {string} */ (/** @type {unknown} */ (trusted)) };
}

/**
 * A UI frame document from the server's mount answer as a value `iframe.srcdoc` accepts
 * under Trusted Types. Through the page's one policy, which lets exactly this string pass
 * during this synchronous call and nothing else; the server built the document (its CSP,
 * bootstrap and cleaned extension HTML) and the frame runs sandboxed in an opaque origin.
 * @param {string} documentHtml
 */
export function frameDocument(documentHtml) {
  const made = installPolicy();
  frameInFlight = documentHtml;
  try {
    return /** @type {string} */ (/** @type {unknown} */ (made.createHTML(documentHtml)));
  } finally {
    frameInFlight = null;
  }
}
