/* family.c: the model families qmoe has an architecture adapter for.
 *
 * The policy language names them in `arch` guards and the runtime's
 * adapters (model/arch_*.c) say which one they are, so both sides of the
 * pipeline share this one list without the language knowing the runtime.
 */
#include "config.h"

#include "base/base.h"

const char *const qm_family_names[QM_FAMILY_COUNT] = {
    [QM_FAMILY_MIXTRAL] = "mixtral",   [QM_FAMILY_DEEPSEEK] = "deepseek",
    [QM_FAMILY_QWEN2MOE] = "qwen2moe", [QM_FAMILY_QWEN3MOE] = "qwen3moe",
    [QM_FAMILY_OLMOE] = "olmoe",
};
_Static_assert(sizeof qm_family_names / sizeof *qm_family_names == QM_FAMILY_COUNT, "a name per family");

const char *qm_family_name(qm_family f)
{
    return (unsigned)f < QM_FAMILY_COUNT ? qm_family_names[f] : "?";
}
