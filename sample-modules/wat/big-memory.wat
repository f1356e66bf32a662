;; Asks for 64 MiB of memory up front (1024 pages).
(module
  (memory 1024)
  (func (export "_start")))
