// File upload with progress: fetch() reports no upload progress, XMLHttpRequest does. Same
// origin only (connect-src 'self'), the session cookie goes along.
import { ApiError, roomPath } from "./api.js";

/** @type {import("../vm/app.js").Uploader} */
export function upload(roomId, file, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${roomPath(roomId)}/upload?${new URLSearchParams({ name: file.name })}`);
    xhr.setRequestHeader("content-type", file.type || "application/octet-stream");
    xhr.upload.onprogress = (e) => progress(e.loaded);
    xhr.onerror = () => reject(new ApiError("network", "upload failed", 0));
    xhr.onload = () => {
      /** @type {any} */
      let doc = null;
      try {
        doc = JSON.parse(xhr.responseText);
      } catch {
        reject(new ApiError("internal", xhr.responseText.slice(0, 200), xhr.status));
        return;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(doc);
      else reject(new ApiError(String(doc?.error?.code ?? "internal"), String(doc?.error?.message ?? xhr.statusText), xhr.status));
    };
    xhr.send(file);
  });
}
