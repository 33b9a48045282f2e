" Vim syntax file for qmoe policies (qmoe-policy(5)).
" Keywords: lang/lexer.l's reserved words; scorers, actions, modules,
" scopes and families: lang/check.c's tables (tests/editors.sh checks
" that every one is here).
if exists("b:current_syntax")
  finish
endif

syn keyword qmoeStatement import arch budget engine default
syn keyword qmoeKeyword   top bottom random per layer by seed group none bit bits
syn keyword qmoeScorer    frequency importance importance_residual outlier measured
syn keyword qmoeAction    keep sym asym act_order no_act_order
syn keyword qmoeScope     layers moe_layers
syn keyword qmoeModule    attn router experts shared shared_experts shared_gate mlp norms norm
syn keyword qmoeModule    attn_norm ffn_norm embed lm_head q k v o gate up down
syn keyword qmoeFamily    mixtral deepseek qwen2moe qwen3moe olmoe
" numbers first: a later match wins where both start, so 4bit is a width
syn match   qmoeNumber    "\<\d\+\(\.\d\+\)\=%\="
syn match   qmoeWidth     "\<\d\+bit\>"
syn match   qmoeWidth     "[+-]\d\+bit\>"
syn region  qmoeString    start=+"+ end=+"+ oneline
syn match   qmoeComment   "#.*$" contains=@Spell

hi def link qmoeStatement Statement
hi def link qmoeKeyword   Keyword
hi def link qmoeScorer    Function
hi def link qmoeAction    Type
hi def link qmoeScope     Identifier
hi def link qmoeModule    Identifier
hi def link qmoeFamily    Constant
hi def link qmoeWidth     Constant
hi def link qmoeNumber    Number
hi def link qmoeString    String
hi def link qmoeComment   Comment

let b:current_syntax = "qmoe"
