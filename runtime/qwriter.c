/* qwriter.c: the table of output formats (see qwriter.h), looked up by name. */
#include "config.h"

#include <string.h>

#include "runtime/qwriter.h"

static const qwriter_ops *const formats[] = {&qwriter_gptq, &qwriter_fake, &qwriter_gguf};

const qwriter_ops *qwriter_find(const char *name)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(formats[i]->name, name) == 0)
            return formats[i];
    return NULL;
}
