// Kumix UI frame bootstrap: the first script of every frame, before any extension code.
// It publishes the frame's configuration and removes what a CSP cannot stop (web.md):
// WebRTC (ICE/STUN ignores CSP), XSLT (sets srcdoc past Trusted Types) and every way to
// make a nested frame, whose fresh realm would have those constructors back.
"use strict";
(() => {
  const freeze = (value) => {
    if (value !== null && typeof value === "object") {
      for (const inner of Object.values(value)) freeze(inner);
      Object.freeze(value);
    }
    return value;
  };
  const config = freeze(/*KUMIX_CONFIG*/);
  Object.defineProperty(window, "__KUMIX_UI_BOOTSTRAP__", {
    value: config, writable: false, enumerable: false, configurable: false,
  });

  const removed = [
    "RTCPeerConnection", "webkitRTCPeerConnection", "RTCDataChannel", "RTCIceCandidate",
    "RTCSessionDescription", "RTCRtpSender", "RTCRtpReceiver", "RTCRtpTransceiver",
    "RTCIceTransport", "RTCDtlsTransport", "RTCSctpTransport", "RTCCertificate",
    "RTCDTMFSender", "RTCRtpScriptTransform", "RTCEncodedAudioFrame", "RTCEncodedVideoFrame",
    "RTCPeerConnectionIceEvent", "RTCDataChannelEvent", "RTCTrackEvent", "RTCError",
    "RTCErrorEvent", "RTCStatsReport",
    "XSLTProcessor",
    "HTMLIFrameElement", "HTMLFrameElement", "HTMLFrameSetElement", "HTMLObjectElement",
    "HTMLEmbedElement", "HTMLPortalElement", "HTMLFencedFrameElement", "FencedFrameConfig",
  ];
  for (const name of removed) {
    if (!(name in window)) continue;
    delete window[name];
    if (name in window) {
      Object.defineProperty(window, name, { value: undefined, writable: false, configurable: false });
    }
  }

  const frameTags = new Set(["iframe", "frame", "frameset", "object", "embed", "portal", "fencedframe"]);
  const refuse = (qualifiedName) => {
    // Converted once by the caller: a hostile toString cannot answer "div" here and
    // "iframe" to the real method.
    const local = qualifiedName.slice(qualifiedName.indexOf(":") + 1).toLowerCase();
    if (frameTags.has(local)) {
      throw new DOMException(`Kumix UI frames cannot create <${local}>: nested frames are refused`, "NotSupportedError");
    }
  };
  const lock = (proto, name, make) => {
    const original = proto[name];
    Object.defineProperty(proto, name, { value: make(original), writable: false, configurable: false });
  };
  lock(Document.prototype, "createElement", (original) => function createElement(name, options) {
    const tag = String(name);
    refuse(tag);
    return original.call(this, tag, options);
  });
  lock(Document.prototype, "createElementNS", (original) => function createElementNS(ns, name, options) {
    const tag = String(name);
    refuse(tag);
    return original.call(this, ns, tag, options);
  });
  lock(DOMImplementation.prototype, "createDocument", (original) => function createDocument(ns, name, doctype) {
    const tag = name === null || name === undefined ? "" : String(name);
    refuse(tag);
    return original.call(this, ns, tag, doctype);
  });
})();
