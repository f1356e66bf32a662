;; Imports functions no host provides, beside a real WASI one.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "env" "launch_missiles" (func))
  (import "wasi_snapshot_preview1" "not_a_wasi_call" (func))
  (func (export "_start")))
