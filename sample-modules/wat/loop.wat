;; Loops forever without calling the host: only epoch interruption can stop it.
(module
  (func (export "_start")
    (loop $forever (br $forever))))
