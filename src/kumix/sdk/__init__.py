"""What extension authors import: `kumix.sdk.proc` and `kumix.sdk.wasm`."""
