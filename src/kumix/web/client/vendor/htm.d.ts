// Types for the vendored file next to this one, from the same pinned package.
export * from "htm";
export { default } from "htm";
