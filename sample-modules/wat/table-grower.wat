;; Grows a table 1024 elements at a time until a growth is refused, then traps:
;; tables count against the memory limit too.
(module
  (table 1 funcref)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (table.grow (ref.null func) (i32.const 1024)) (i32.const -1))))
    unreachable))
