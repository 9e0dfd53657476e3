// The page's only way to the local server: JSON over fetch to same-origin /api/ paths (the
// session cookie goes along; no token is ever visible to the page). Errors come back as
// {error: {code, message}} and become ApiError with that stable code.

export class ApiError extends Error {
  /** @param {string} code @param {string} message @param {number} status @param {unknown} [details] */
  constructor(code, message, status, details) {
    super(message);
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

/**
 * @typedef {object} Transport
 * @property {(path: string, init?: RequestInit) => Promise<Response>} fetch
 */

/** @param {Response} response */
async function decode(response) {
  const text = await response.text();
  /** @type {any} */
  let doc = null;
  try {
    doc = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError("internal", text.slice(0, 200), response.status);
  }
  if (!response.ok) {
    const error = doc && typeof doc === "object" && doc.error ? doc.error : {};
    throw new ApiError(String(error.code ?? "internal"), String(error.message ?? response.statusText), response.status, error.details);
  }
  return doc;
}

export class Api {
  /** @param {(input: string, init?: RequestInit) => Promise<Response>} [fetcher] */
  constructor(fetcher) {
    this.fetcher = fetcher ?? ((input, init) => fetch(input, init));
  }

  /** @param {string} path @param {Record<string, string | number | undefined>} [query] */
  async get(path, query) {
    return decode(await this.fetcher(withQuery(path, query), { credentials: "same-origin", headers: { accept: "application/json" } }));
  }

  /** @param {string} path @param {unknown} body @param {"POST" | "PUT"} [method] */
  async send(path, body, method = "POST") {
    return decode(await this.fetcher(path, {
      method, credentials: "same-origin",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(body ?? {}),
    }));
  }
}

/** @param {string} path @param {Record<string, string | number | undefined>} [query] */
export function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** @param {string} roomId */
export function roomPath(roomId) {
  return `/api/rooms/${encodeURIComponent(roomId)}`;
}
