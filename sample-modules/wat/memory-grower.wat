;; Grows its memory one 64 KiB page at a time until a growth is refused,
;; then traps: an exact probe of the memory limit.
(module
  (memory 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
