/* engine.h: the serving engines a plan's checkpoint is for, and what each
 * cannot serve or would serve wrongly.
 *
 * A plan that no engine can run is a trap, and one that an engine loads
 * but computes with the wrong weights is worse.  Each engine is a table of
 * constraints (one small file per engine, model/engine_NAME.c), each
 * stating what the engine does and the source it was read from, with the
 * engine's version.  qm_engine_check() matches a plan against one engine:
 * every constraint kind is one check function (engine.c), and violations
 * are reported grouped by the policy rule that set the tensors, so that a
 * model of 10,000 experts gives a few lines, each at the rule to change.
 *
 * Two severities: the engine refuses the checkpoint (it fails to load, or
 * cannot run that part): a warning, an error under --strict; the engine
 * loads it and serves it wrongly (weights read differently from how they
 * were quantized): always an error.
 */
#ifndef QM_MODEL_ENGINE_H
#define QM_MODEL_ENGINE_H

#include "base/base.h"
#include "model/model.h"
#include "model/plan.h"

/* What a constraint checks, over the linears its scope and widths select. */
typedef enum qm_eng_kind {
    QM_EC_ARCH,           /* param: the families (1 << qm_family) it runs */
    QM_EC_WIDTHS,         /* param: the widths (1 << bits) it takes */
    QM_EC_SYM,            /* symmetric only */
    QM_EC_NO_ACT,         /* no act-order */
    QM_EC_GROUPS,         /* param: group sizes, bit 0 per channel, bit k a group of 2^k */
    QM_EC_INPUT_MULTIPLE, /* param: input widths a multiple of it */
    QM_EC_ONE_SCHEME,     /* param 0: width and group size the plan's base (the one a GPTQ
                             checkpoint states); 1: sym and act-order the base's */
    QM_EC_FUSED,          /* q, k, v one scheme; each gate and its up one scheme */
    QM_EC_LAYER_EXPERTS,  /* param 0: each routed projection one scheme over a layer's experts;
                             1: all routed projections of a layer one scheme */
    QM_EC_KIND_COUNT
} qm_eng_kind;

typedef enum qm_eng_scope {
    QM_ENG_ALL,    /* every quantized linear */
    QM_ENG_ROUTED, /* routed experts' linears */
    QM_ENG_OTHERS  /* the rest: attention, shared experts, dense MLPs */
} qm_eng_scope;

typedef enum qm_eng_sev {
    QM_ENG_REFUSES, /* will not load or run it */
    QM_ENG_WRONG    /* loads it and computes with other weights than quantized */
} qm_eng_sev;

typedef struct qm_eng_rule {
    qm_eng_kind kind;
    qm_eng_scope scope;
    unsigned only_bits; /* the widths (1 << bits) it applies to; 0: all */
    unsigned param;
    qm_eng_sev sev;
    const char *does;   /* what the engine does, e.g. "its MoE kernels take int4 and int8 only" */
    const char *source; /* where that is, e.g. "vllm/model_executor/layers/quantization/moe_wna16.py" */
} qm_eng_rule;

/* For the engine tables: a width, a family, a group size as masks. */
#define QM_ENG_W(b) (1u << (b))
#define QM_ENG_F(f) (1u << (f))
#define QM_ENG_PER_CHANNEL 1u
#define QM_ENG_G(log2) (1u << (log2)) /* a group of 2^log2 columns */

typedef struct qm_engine {
    const char *name;    /* as --engine takes it */
    const char *version; /* the version or commit the rules were read from */
    const char *format;  /* the checkpoint format it reads: "gptq" or "gguf" */
    const qm_eng_rule *rules;
    size_t n_rules;
} qm_engine;

/* The engines, in the order `--format table` lists them. */
extern const qm_engine *const qm_engines[];
extern const size_t qm_n_engines;
/* The engine called name, or NULL. */
const qm_engine *qm_engine_find(const char *name);
/* Append "vllm, sglang, ..." to b, for messages. */
void qm_engine_list(qm_buf *b);

typedef struct qm_engine_verdict {
    size_t refuses, wrong; /* violated constraints of each severity */
    char why[160];         /* the first violation in a few words, "" when none */
} qm_engine_verdict;

/* Check plan p for model m against engine e; by_tensor (m->n) is each model
 * tensor's plan entry (NULL: not quantized).  Each violated constraint adds
 * one diagnostic to d per policy rule that set violating tensors (located at
 * the rule; NULL d: none): an error when the engine would serve them
 * wrongly, or when strict; else a warning.  Fills v; QM_ENOMEM is the only
 * failure. */
qm_status qm_engine_check(const qm_engine *e, const qm_model *m, const qm_plan *p,
                          const qm_plan_tensor *const *by_tensor, int strict, qm_engine_verdict *v, qm_diag *d);

/* Change the schemes of t (m->n plan entries in model order; kept tensors
 * have bits 0) until e serves them, each change the smallest that meets
 * the constraint it answers, in the engine's rule order:
 *   a width e does not take      the nearest width it takes, above first;
 *   sym, act-order, group size   sym, no act-order, the nearest group size
 *                                it takes that divides the input width;
 *   an input width too narrow    the next width up the rule does not cover;
 *   one scheme for all           the plan's base width, group, sym, act-order;
 *   a fused projection           the scheme of its widest part;
 *   a layer's experts            one width: their parameter-weighted mean
 *                                rounded to a width e takes (up on a tie),
 *                                with the first expert's group and sym.
 * why[i] (m->n, zeroed by the caller) says which rules changed tensor i.
 * e has at most 255 rules.  QM_OK when e serves the
 * result; else an error in d says what could not be fitted and why. */
typedef struct qm_engine_why {
    unsigned char width;  /* 1 + the index in e->rules of the rule that last changed the width; 0 none */
    unsigned char scheme; /* the same for group size, sym or act-order */
} qm_engine_why;
qm_status qm_engine_fit(const qm_engine *e, const qm_model *m, qm_plan_tensor *t, qm_engine_why *why, qm_diag *d);

/* For moving widths after fitting (a budget solved again): the widths e
 * takes for linear i of m whatever the rest of its scheme (fitting settles
 * sym, act-order and group size but not these), a mask of 1 << bits. */
unsigned qm_engine_widths(const qm_engine *e, const qm_model *m, size_t i);

/* Calls join(arg, i, j) for pairs of linears of m that e needs at one width
 * (the parts of a fused projection, a layer's experts, all the linears one
 * scheme covers), enough pairs to connect each such set.  QM_ENOMEM is the
 * only failure. */
qm_status qm_engine_width_sets(const qm_engine *e, const qm_model *m, void (*join)(void *arg, size_t i, size_t j),
                               void *arg);

/* What a command that writes a checkpoint in `format` checks before any
 * work: each engine in names (n of them) and in the plan's p->engines as
 * qm_engine_check() does, failing
 * with QM_EINVAL when one gives an error; with none named, one warning
 * naming the engines reading that format that would refuse or misread the
 * checkpoint, and why. */
qm_status qm_engine_gate(const char *const *names, size_t n, int strict, const qm_model *m, const qm_plan *p,
                         const qm_plan_tensor *const *by_tensor, const char *format, qm_diag *d);

#endif
