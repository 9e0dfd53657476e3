;; text_stats: word, character and line counts and an FNV-1a 64-bit hash of a UTF-8 message.
;;
;; Built into text_stats.wasm by scripts/build-wasm-demo; the manifest pins the result.
;; Calling convention (kumix.sdk.wasm `call_bytes`):
;;   alloc(len) -> ptr         the host writes the message at ptr
;;   text_stats(ptr, len) -> i64   (result_ptr << 32) | result_len
;; Result record, little-endian, 24 bytes at RESULT:
;;   u32 words   maximal runs of bytes that are not ASCII whitespace (9-13, 32),
;;               the same rule as Python's bytes.split()
;;   u32 chars   Unicode code points: bytes that are not UTF-8 continuation bytes
;;   u32 lines   LF-terminated lines, plus a last line without LF; empty text has 0
;;   u32 zero    padding, keeps the hash 8-byte aligned
;;   u64 fnv1a64 FNV-1a 64 over the bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
;; No imports: the module needs nothing from the host.
(module
  (memory (export "memory") 1)

  ;; [16, 40) holds the result record; the input starts at INPUT and grows the memory.
  (global $RESULT i32 (i32.const 16))
  (global $INPUT i32 (i32.const 1024))

  ;; Make room for `len` bytes at INPUT. When the host's memory cap refuses the growth,
  ;; trap: the host reports it as resource_limit.
  (func (export "alloc") (param $len i32) (result i32)
    (local $pages i64)
    (local.set $pages
      (i64.shr_u
        (i64.add (i64.add (i64.extend_i32_u (local.get $len)) (i64.const 1024)) (i64.const 65535))
        (i64.const 16)))
    (if (i64.gt_u (local.get $pages) (i64.extend_i32_u (memory.size)))
      (then
        (if (i64.gt_u (local.get $pages) (i64.const 65536)) (then unreachable))
        (if (i32.eq
              (memory.grow (i32.wrap_i64 (i64.sub (local.get $pages) (i64.extend_i32_u (memory.size)))))
              (i32.const -1))
          (then unreachable))))
    (global.get $INPUT))

  (func (export "text_stats") (param $ptr i32) (param $len i32) (result i64)
    (local $end i32)
    (local $byte i32)
    (local $space i32)
    (local $in_word i32)
    (local $words i32)
    (local $chars i32)
    (local $lines i32)
    (local $hash i64)
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $hash (i64.const 0xcbf29ce484222325))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $ptr) (local.get $end)))
        (local.set $byte (i32.load8_u (local.get $ptr)))
        ;; ASCII whitespace: space, or 9 (tab) through 13 (carriage return).
        (local.set $space
          (i32.or
            (i32.eq (local.get $byte) (i32.const 32))
            (i32.le_u (i32.sub (local.get $byte) (i32.const 9)) (i32.const 4))))
        (if (i32.and (i32.eqz (local.get $space)) (i32.eqz (local.get $in_word)))
          (then (local.set $words (i32.add (local.get $words) (i32.const 1)))))
        (local.set $in_word (i32.eqz (local.get $space)))
        ;; A code point starts at every byte that is not 10xxxxxx.
        (if (i32.ne (i32.and (local.get $byte) (i32.const 0xC0)) (i32.const 0x80))
          (then (local.set $chars (i32.add (local.get $chars) (i32.const 1)))))
        (if (i32.eq (local.get $byte) (i32.const 10))
          (then (local.set $lines (i32.add (local.get $lines) (i32.const 1)))))
        (local.set $hash
          (i64.mul
            (i64.xor (local.get $hash) (i64.extend_i32_u (local.get $byte)))
            (i64.const 0x100000001b3)))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 1)))
        (br $next)))
    ;; A last line without a trailing LF still counts.
    (if (i32.and
          (i32.gt_u (local.get $len) (i32.const 0))
          (i32.ne (i32.load8_u (i32.sub (local.get $end) (i32.const 1))) (i32.const 10)))
      (then (local.set $lines (i32.add (local.get $lines) (i32.const 1)))))
    (i32.store (global.get $RESULT) (local.get $words))
    (i32.store offset=4 (global.get $RESULT) (local.get $chars))
    (i32.store offset=8 (global.get $RESULT) (local.get $lines))
    (i32.store offset=12 (global.get $RESULT) (i32.const 0))
    (i64.store offset=16 (global.get $RESULT) (local.get $hash))
    (i64.or
      (i64.shl (i64.extend_i32_u (global.get $RESULT)) (i64.const 32))
      (i64.const 24)))
)
