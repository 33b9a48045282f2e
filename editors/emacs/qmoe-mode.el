;;; qmoe-mode.el --- major mode for qmoe policies  -*- lexical-binding: t -*-

;; Policies of the qmoe mixed-precision quantizer (man qmoe-policy(5)):
;; font-lock for statements, keywords, scorers, actions, modules, widths,
;; numbers and strings, and `#' comments.  The word lists follow
;; lang/lexer.l (reserved words) and lang/check.c (scorers, actions,
;; modules, scopes, families); tests/editors.sh checks them.

;;; Code:

(defgroup qmoe nil "Editing qmoe policies." :group 'languages)

(defconst qmoe-statements '("import" "arch" "budget" "engine" "default"))
(defconst qmoe-keywords '("top" "bottom" "random" "per" "layer" "by" "seed" "group" "none" "bit" "bits"))
(defconst qmoe-scorers '("frequency" "importance" "importance_residual" "outlier" "measured"))
(defconst qmoe-actions '("keep" "sym" "asym" "act_order" "no_act_order"))
(defconst qmoe-scopes '("layers" "moe_layers"))
(defconst qmoe-modules
  '("attn" "router" "experts" "shared" "shared_experts" "shared_gate" "mlp" "norms" "norm"
    "attn_norm" "ffn_norm" "embed" "lm_head" "q" "k" "v" "o" "gate" "up" "down"))
(defconst qmoe-families '("mixtral" "deepseek" "qwen2moe" "qwen3moe" "olmoe"))

(defconst qmoe-font-lock-keywords
  `((,(regexp-opt qmoe-statements 'symbols) . font-lock-keyword-face)
    (,(regexp-opt qmoe-keywords 'symbols) . font-lock-builtin-face)
    (,(regexp-opt qmoe-scorers 'symbols) . font-lock-function-name-face)
    (,(regexp-opt qmoe-actions 'symbols) . font-lock-type-face)
    (,(regexp-opt (append qmoe-scopes qmoe-modules) 'symbols) . font-lock-variable-name-face)
    (,(regexp-opt qmoe-families 'symbols) . font-lock-constant-face)
    ("\\_<[+-]?[0-9]+bit\\_>" . font-lock-constant-face)
    ("\\_<[0-9]+\\(?:\\.[0-9]+\\)?%?" . font-lock-constant-face))
  "Highlighting for `qmoe-mode'.")

(defvar qmoe-mode-syntax-table
  (let ((st (make-syntax-table)))
    (modify-syntax-entry ?# "<" st)
    (modify-syntax-entry ?\n ">" st)
    (modify-syntax-entry ?_ "_" st)
    (modify-syntax-entry ?\" "\"" st)
    st)
  "Syntax table for `qmoe-mode': `#' starts a comment to the end of the line.")

;;;###autoload
(define-derived-mode qmoe-mode prog-mode "qmoe"
  "Major mode for qmoe quantization policies (qmoe-policy(5))."
  :syntax-table qmoe-mode-syntax-table
  (setq-local comment-start "# ")
  (setq-local comment-end "")
  (setq-local comment-start-skip "#+[ \t]*")
  (setq-local font-lock-defaults '(qmoe-font-lock-keywords)))

;;;###autoload
(add-to-list 'auto-mode-alist '("\\.qmoe\\'" . qmoe-mode))

(provide 'qmoe-mode)
;;; qmoe-mode.el ends here
