// Kumix UI frame bootstrap: the first script of every frame, before any extension code.
// It publishes the frame's configuration and removes what a CSP cannot stop (web.md):
// WebRTC (ICE/STUN ignores CSP), XSLT (sets srcdoc past Trusted Types) and every way to
// make a nested frame, whose fresh realm would have those constructors back: frame
// elements cannot be created by name, and the Trusted Types default policy (the only one
// the frame's CSP allows, taken here before anyone else can) refuses any markup that
// names one, so innerHTML, DOMParser, document.write and srcdoc cannot make one either.
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
  // A tag name can be neither escaped nor split in HTML or XML, so "<" or a namespace
  // prefix's ":" directly before the name is the only way markup makes such an element.
  const frameMarkup = /[<:](?:i?frame|object|embed|portal|fencedframe)/i;
  try {
    trustedTypes.createPolicy("default", {
      createHTML: (html) => (frameMarkup.test(String(html)) ? null : String(html)),
    });
  } catch {
    // The host page's CSP does not list "default": then no policy exists in this frame at
    // all and every string-to-HTML sink throws, which is safe (only less convenient).
  }
  // Markup that reaches the DOM without a Trusted Types sink: editing commands, and XHR's
  // own document parser (only reachable with connectSrc, but then it would parse frames).
  lock(Document.prototype, "execCommand", (original) => function execCommand(command, showUI, value) {
    const text = value === undefined ? undefined : String(value);
    if (String(command).toLowerCase() === "inserthtml" && text !== undefined && frameMarkup.test(text)) {
      throw new DOMException("Kumix UI frames refuse markup that makes a nested frame", "NotSupportedError");
    }
    return original.call(this, command, showUI, text);
  });
  const responseType = Object.getOwnPropertyDescriptor(XMLHttpRequest.prototype, "responseType");
  if (responseType && responseType.set && responseType.get) {
    const { get, set } = responseType;
    Object.defineProperty(XMLHttpRequest.prototype, "responseType", {
      get() { return get.call(this); },
      set(kind) {
        const value = String(kind);
        if (value === "document") throw new DOMException("Kumix UI frames do not parse documents from XHR", "NotSupportedError");
        set.call(this, value);
      },
      configurable: false,
    });
  }
  Object.defineProperty(XMLHttpRequest.prototype, "responseXML", { get() { return null; }, configurable: false });
  lock(DOMImplementation.prototype, "createDocument", (original) => function createDocument(ns, name, doctype) {
    const tag = name === null || name === undefined ? "" : String(name);
    refuse(tag);
    return original.call(this, ns, tag, doctype);
  });
})();
