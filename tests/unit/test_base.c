/* test_base.c: the shared pieces: SHA-256, string map, atomic files, YAML quoting and reading, diagnostics,
 * widths. */
#include "config.h"

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml.h>

#include "base/base.h"
#include "tests/unit/testutil.h"

static void sha_of(const char *msg, size_t n, char out[65])
{
    qm_sha256 s;
    qm_sha256_init(&s);
    qm_sha256_update(&s, msg, n);
    qm_sha256_hex(&s, out);
}

static void test_sha256_vectors(void)
{
    char h[65];
    sha_of("", 0, h); /* FIPS 180-4 examples */
    CU_ASSERT_STRING_EQUAL(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_of("abc", 3, h);
    CU_ASSERT_STRING_EQUAL(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_of(two, strlen(two), h);
    CU_ASSERT_STRING_EQUAL(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a', fed in uneven pieces */
    qm_sha256 s;
    qm_sha256_init(&s);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    while (left) {
        size_t n = left < sizeof a ? left : sizeof a;
        qm_sha256_update(&s, a, n);
        left -= n;
    }
    qm_sha256_hex(&s, h);
    CU_ASSERT_STRING_EQUAL(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    CU_ASSERT_EQUAL(tu_write(tu_path("abc"), "abc", 3), 0);
    CU_ASSERT_EQUAL(qm_sha256_file(tu_path("abc"), h, NULL), QM_OK);
    CU_ASSERT_STRING_EQUAL(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_strmap(void)
{
    qm_strmap m;
    CU_ASSERT_EQUAL_FATAL(qm_strmap_init(&m, 2), QM_OK);
    static char keys[5000][16];
    for (int i = 0; i < 5000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        CU_ASSERT_EQUAL(qm_strmap_put(&m, keys[i], (size_t)i, NULL), QM_OK);
    }
    size_t v, old;
    for (int i = 0; i < 5000; i += 7)
        CU_ASSERT(qm_strmap_get(&m, keys[i], &v) && v == (size_t)i);
    CU_ASSERT(!qm_strmap_get(&m, "k5000", &v));
    CU_ASSERT_EQUAL(qm_strmap_put(&m, "k42", 1, &old), QM_EINVAL);
    CU_ASSERT_EQUAL(old, 42);
    qm_strmap_free(&m);
}

static void test_afile(void)
{
    qm_diag *d = qm_diag_new();
    qm_afile a;
    const char *p = tu_path("atomic.txt");
    CU_ASSERT_EQUAL(tu_write(p, "old", 3), 0);
    CU_ASSERT_EQUAL_FATAL(qm_afile_open(&a, p, d), QM_OK);
    fputs("new", a.f);
    qm_afile_abort(&a); /* abandoned: the old file stays */
    char buf[8] = {0};
    FILE *f = fopen(p, "r");
    CU_ASSERT(fread(buf, 1, 7, f) == 3);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(buf, "old");
    CU_ASSERT_EQUAL_FATAL(qm_afile_open(&a, p, d), QM_OK);
    fputs("new", a.f);
    CU_ASSERT_EQUAL(qm_afile_commit(&a, d), QM_OK);
    f = fopen(p, "r");
    CU_ASSERT(fread(buf, 1, 7, f) == 3);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(buf, "new");
    CU_ASSERT_NOT_EQUAL(qm_afile_open(&a, tu_path("missing/dir/x"), d), QM_OK);
    TU_ASSERT_DIAG(d, "cannot create a temporary file beside it");
    qm_diag_free(d);
}

/* New files have 0666 less the umask, whatever mkstemp() made. */
static void test_afile_mode(void)
{
    qm_diag *d = qm_diag_new();
    const char *p = tu_path("mode.txt");
    mode_t old = umask(027);
    CU_ASSERT_EQUAL(qm_afile_write_bytes(p, "x", 1, 0, d), QM_OK);
    umask(old);
    struct stat sb;
    CU_ASSERT_EQUAL_FATAL(stat(p, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0640);
    qm_diag_free(d);
}

/* A temporary of the same target that nobody holds (its writer died) is
 * removed by the next open; one a writer holds, a young one and other
 * names stay. */
static void test_afile_stale(void)
{
    qm_diag *d = qm_diag_new();
    char *dead = qm_strfmt("%s.tmp.Ab12Cd", tu_path("st.yaml")), *live = qm_strfmt("%s.tmp.Xy34Zw", tu_path("st.yaml"));
    char *young = qm_strfmt("%s.tmp.Yo56Ng", tu_path("st.yaml")), *other = qm_strfmt("%s.tmp.Ab12C", tu_path("st.yaml"));
    char *cmd = qm_strfmt("touch -d '1 hour ago' '%s' '%s' '%s'", dead, live, other);
    CU_ASSERT(tu_write(dead, "x", 1) == 0 && tu_write(live, "x", 1) == 0 && tu_write(young, "x", 1) == 0 &&
              tu_write(other, "x", 1) == 0);
    CU_ASSERT_EQUAL(system(cmd), 0);
    int fd = open(live, O_RDONLY); /* a live writer in another process holds its lock */
    pid_t pid = fork();
    if (pid == 0) {
        flock(fd, LOCK_EX);
        sleep(5);
        _exit(0);
    }
    close(fd);
    for (int i = 0; i < 100; i++) { /* until the child holds it */
        int f = open(live, O_RDONLY);
        int held = flock(f, LOCK_EX | LOCK_NB) != 0;
        close(f);
        if (held)
            break;
        usleep(20000);
    }
    CU_ASSERT_EQUAL(qm_afile_write_bytes(tu_path("st.yaml"), "y", 1, 0, d), QM_OK);
    CU_ASSERT(access(dead, F_OK) != 0);
    CU_ASSERT(access(live, F_OK) == 0);
    CU_ASSERT(access(young, F_OK) == 0);
    CU_ASSERT(access(other, F_OK) == 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    free(dead), free(live), free(young), free(other), free(cmd);
    qm_diag_free(d);
}

static void test_path_check(void)
{
    qm_diag *d = qm_diag_new();
    char *dir = qm_strdup(tu_path("in")), *file = qm_strfmt("%s/config.json", dir);
    char *link = qm_strdup(tu_path("in-link")), *odd = qm_strfmt("%s/../in/config.json", dir);
    char *inside = qm_strfmt("%s/out/x.yaml", dir), *outside = qm_strdup(tu_path("out.yaml"));
    CU_ASSERT_EQUAL(mkdir(dir, 0755), 0);
    CU_ASSERT_EQUAL(tu_write(file, "{}", 2), 0);
    CU_ASSERT_EQUAL(symlink(file, link), 0);
    qm_path_input in[] = {{dir, "the model directory"}, {file, "the config"}, {NULL, "none"}, {"/nonexistent/x", "gone"}};
    CU_ASSERT_EQUAL(qm_path_check_output("-o", outside, 0, in, 4, d), QM_OK);
    CU_ASSERT_EQUAL(qm_path_check_output("-o", link, 0, in + 1, 1, d), QM_EINVAL); /* by identity, not spelling */
    TU_ASSERT_DIAG(d, "is the input");
    qm_diag_clear(d);
    CU_ASSERT_EQUAL(qm_path_check_output("-o", odd, 0, in, 4, d), QM_EINVAL);
    TU_ASSERT_DIAG(d, "(the config)");
    qm_diag_clear(d);
    CU_ASSERT_EQUAL(qm_path_check_output("-o", inside, 0, in, 4, d), QM_EINVAL); /* does not exist yet */
    TU_ASSERT_DIAG(d, "is inside the input directory");
    qm_diag_clear(d);
    CU_ASSERT_EQUAL(qm_path_check_output("-o", dir, 1, in, 4, d), QM_EINVAL);
    TU_ASSERT_DIAG(d, "is the input directory");
    qm_diag_clear(d);
    CU_ASSERT_EQUAL(qm_path_check_output("-o", tu_path("."), 1, in + 1, 1, d), QM_EINVAL);
    TU_ASSERT_DIAG(d, "holds the input");
    qm_diag_clear(d);
    CU_ASSERT_EQUAL(qm_path_check_output("-o", tu_path("."), 0, in + 1, 1, d), QM_OK);
    free(dir), free(file), free(link), free(odd), free(inside), free(outside);
    qm_diag_free(d);
}

/* The lock is exclusive between processes, names its holder, and goes
 * with its holder. */
static void test_dir_lock(void)
{
    qm_diag *d = qm_diag_new();
    const char *dir = tu_path("locked");
    CU_ASSERT_EQUAL(mkdir(dir, 0755), 0);
    int ready[2];
    CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        qm_lock l;
        if (qm_dir_lock(dir, &l, NULL) == QM_OK && write(ready[1], "x", 1) == 1)
            sleep(5);
        _exit(0);
    }
    char c;
    CU_ASSERT_EQUAL(read(ready[0], &c, 1), 1);
    qm_lock l;
    CU_ASSERT_EQUAL(qm_dir_lock(dir, &l, d), QM_EINVAL);
    char *want = qm_strfmt("in use by process %ld", (long)pid);
    TU_ASSERT_DIAG(d, want);
    qm_diag_clear(d);
    free(want);
    kill(pid, SIGKILL); /* a killed holder leaves its file, which blocks nothing */
    waitpid(pid, NULL, 0);
    CU_ASSERT_EQUAL(qm_dir_lock(dir, &l, d), QM_OK);
    qm_dir_unlock(&l);
    qm_dir_unlock(&l);
    char *lf = qm_strfmt("%s/.qmoe-lock", dir);
    CU_ASSERT(access(lf, F_OK) != 0);
    free(lf);
    close(ready[0]), close(ready[1]);
    qm_diag_free(d);
}

static void test_yaml_quoting(void)
{
    FILE *f = fopen(tu_path("q.yaml"), "w+");
    qm_yaml *y = qm_yaml_begin(f);
    qm_yaml_map(y);
    qm_yaml_kstr(y, "a", "true");
    qm_yaml_kstr(y, "b", "12");
    qm_yaml_kstr(y, "c", "layers[0].attn.q");
    qm_yaml_kstr(y, "d", "");
    qm_yaml_kstr(y, "n", "x");
    qm_yaml_str(y, "e");
    qm_yaml_real(y, 0.5, 3);
    CU_ASSERT_EQUAL(qm_yaml_end(y, NULL), QM_OK);
    rewind(f);
    char buf[512] = {0};
    CU_ASSERT(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "a: \"true\"\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "b: \"12\"\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "c: layers[0].attn.q\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "d: \"\"\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"n\": x\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "e: 0.500\n"));
}

/* The scalar at key k of the one-line flow mapping `text`, as libyaml's
 * parser reads it (not qmoe's reader); caller frees. */
static char *parse_k(const char *text)
{
    yaml_parser_t p;
    yaml_document_t doc;
    char *v = NULL;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, strlen(text));
    if (yaml_parser_load(&p, &doc)) {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root && root->type == YAML_MAPPING_NODE && root->data.mapping.pairs.top - root->data.mapping.pairs.start == 1) {
            yaml_node_t *val = yaml_document_get_node(&doc, root->data.mapping.pairs.start->value);
            if (val->type == YAML_SCALAR_NODE)
                v = strdup((const char *)val->data.scalar.value);
        }
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&p);
    return v;
}

/* Names printed with qm_yaml_put_flow_str() inside a flow mapping stay on
 * one line and read back unchanged, quoted as libyaml would quote them
 * where that is one line. */
static void test_yaml_put_flow_str(void)
{
    static const char *const names[] = {"model.layers.0.mlp.gate.weight", "layers[0].attn.q", "a,b: [c]",
                                        "it's", "say \"hi\"", "tab\there", "line\nbreak", "true", "12", "",
                                        "-", "x: y", "{a}", "#c", " lead", "trail ", "caf\xc3\xa9 \xe2\x80\xa8"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *got = NULL;
        size_t gn = 0;
        FILE *f = open_memstream(&got, &gn);
        fputs("{k: ", f);
        CU_ASSERT_EQUAL(qm_yaml_put_flow_str(f, names[i], NULL), QM_OK);
        fputs("}", f);
        fclose(f);
        CU_ASSERT_PTR_NULL(strchr(got, '\n'));
        char *back = parse_k(got);
        CU_ASSERT_PTR_NOT_NULL(back);
        if (back)
            CU_ASSERT_STRING_EQUAL(back, names[i]);
        free(back);
        free(got);
    }
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    qm_yaml_put_flow_str(f, "layers[0].attn.q", NULL);
    fputc(' ', f);
    qm_yaml_put_flow_str(f, "a\"b", NULL);
    CU_ASSERT_EQUAL(qm_yaml_put_flow_str(f, "bad \xff", NULL), QM_EIO);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(out, "'layers[0].attn.q' \"a\\\"b\"");
    free(out);
}

static qm_status put_text(const void *ctx, FILE *f, qm_diag *d)
{
    fputs(ctx, f);
    return strcmp(ctx, "fail") == 0 ? qm_diag_fail(d, QM_EINVAL, "refused") : QM_OK;
}

static void test_afile_write(void)
{
    qm_diag *d = qm_diag_new();
    const char *p = tu_path("whole.txt");
    char buf[8] = {0};
    CU_ASSERT_EQUAL(qm_afile_write(p, put_text, "new", 1, d), QM_OK);
    CU_ASSERT_EQUAL(qm_afile_write(p, put_text, "fail", 0, d), QM_EINVAL); /* the old file stays */
    FILE *f = fopen(p, "r");
    CU_ASSERT(fread(buf, 1, 7, f) == 3);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(buf, "new");
    CU_ASSERT_EQUAL(qm_afile_write(tu_path("missing/dir/x"), put_text, "new", 1, d), QM_EIO);
    TU_ASSERT_DIAG(d, "cannot create a temporary file beside it");
    qm_diag_free(d);
}

/* Load text as y.yaml into a; the root, or NULL (and a failed assertion) when refused. */
static const qm_ynode *yin(qm_arena *a, const char *text)
{
    qm_diag *d = qm_diag_new();
    const qm_ynode *root = NULL;
    CU_ASSERT_EQUAL_FATAL(tu_write(tu_path("y.yaml"), text, strlen(text)), 0);
    CU_ASSERT_EQUAL(qm_yin_load(tu_path("y.yaml"), NULL, a, &root, d), QM_OK);
    if (qm_diag_count(d))
        fprintf(stderr, "\n%s\n", tu_diag_all(d));
    qm_diag_free(d);
    return root;
}

/* Loading text as y.yaml fails with exactly "DIR/y.yaml" + message. */
static void yin_refuses(const char *text, const char *hint, const char *message)
{
    qm_diag *d = qm_diag_new();
    qm_arena a = {0};
    const qm_ynode *root = NULL;
    char want[512];
    snprintf(want, sizeof want, "%s%s", tu_path("y.yaml"), message);
    CU_ASSERT_EQUAL_FATAL(tu_write(tu_path("y.yaml"), text, strlen(text)), 0);
    CU_ASSERT_EQUAL(qm_yin_load(tu_path("y.yaml"), hint, &a, &root, d), QM_EFORMAT);
    CU_ASSERT_PTR_NULL(root);
    CU_ASSERT_EQUAL_FATAL(qm_diag_count(d), 1);
    if (strcmp(qm_diag_text(d, 0), want) != 0)
        fprintf(stderr, "\nwanted: %s\ngot:    %s\n", want, qm_diag_text(d, 0));
    CU_ASSERT_STRING_EQUAL(qm_diag_text(d, 0), want);
    qm_arena_free(&a);
    qm_diag_free(d);
}

static void test_yaml_read(void)
{
    qm_arena a = {0};
    const qm_ynode *r = yin(&a, "n: 128\nq: \"128\"\nt: !!str 128\nx: [-3, 2.5, .nan, -.inf, 1e999]\n"
                                "b: {yes: true, no: false, s: 'true'}\nk: keep\ne:\n");
    CU_ASSERT_FATAL(r && r->kind == QM_YMAP && r->n == 7);
    CU_ASSERT_STRING_EQUAL(r->pair[1].key->text, "q");
    CU_ASSERT(r->pair[1].val->line == 2 && r->pair[1].val->col == 4);
    long long i = 0;
    double x = 0;
    int b = -1;
    CU_ASSERT(qm_yin_int(qm_yin_get(r, "n"), &i) && i == 128);
    /* quoted or tagged, 128 is a string */
    CU_ASSERT(!qm_yin_int(qm_yin_get(r, "q"), &i) && !qm_yin_real(qm_yin_get(r, "q"), &x));
    CU_ASSERT(!qm_yin_int(qm_yin_get(r, "t"), &i));
    CU_ASSERT_STRING_EQUAL(qm_yin_str(qm_yin_get(r, "q")), "128");
    const qm_ynode *s = qm_yin_get(r, "x");
    CU_ASSERT_FATAL(s && s->kind == QM_YSEQ && s->n == 5);
    CU_ASSERT(qm_yin_int(s->item[0], &i) && i == -3);
    CU_ASSERT(!qm_yin_int(s->item[1], &i));
    CU_ASSERT(qm_yin_real(s->item[1], &x) && x == 2.5);
    CU_ASSERT(qm_yin_real(s->item[2], &x) && isnan(x));
    CU_ASSERT(qm_yin_real(s->item[3], &x) && isinf(x) && x < 0);
    CU_ASSERT(!qm_yin_real(s->item[4], &x)); /* too large for a double */
    const qm_ynode *m = qm_yin_get(r, "b");
    CU_ASSERT(qm_yin_bool(qm_yin_get(m, "yes"), &b) && b == 1);
    CU_ASSERT(qm_yin_bool(qm_yin_get(m, "no"), &b) && b == 0);
    CU_ASSERT(!qm_yin_bool(qm_yin_get(m, "s"), &b));
    CU_ASSERT(!qm_yin_int(qm_yin_get(r, "k"), &i) && !qm_yin_int(qm_yin_get(r, "e"), &i));
    CU_ASSERT_PTR_NULL(qm_yin_get(r, "absent"));
    CU_ASSERT_PTR_NULL(qm_yin_get(s, "x")); /* not a mapping */
    CU_ASSERT_PTR_NULL(qm_yin_str(s));
    CU_ASSERT_PTR_NULL(yin(&a, "# nothing\n"));
    qm_arena_free(&a);
}

/* A stream of a comment `left` bytes long, for fopencookie(). */
static ssize_t comment_bytes(void *cookie, char *buf, size_t n)
{
    size_t *left = cookie;
    n = n < *left ? n : *left;
    memset(buf, ' ', n);
    if (*left == (size_t)QM_YIN_MAX_BYTES + 1 && n)
        buf[0] = '#';
    *left -= n;
    return (ssize_t)n;
}

static void test_yaml_refusals(void)
{
    yin_refuses("a: 1\nb: [1\n", NULL, ":3:1: invalid YAML: did not find expected ',' or ']'");
    yin_refuses("a: 1\nb: 2\na: 3\n", "; try again", ":3:1: key 'a' appears twice (first on line 1); try again");
    yin_refuses("x: {a: 1, \"a\": 2}\n", NULL, ":1:11: key 'a' appears twice (first on line 1)");
    /* a mapping past the pairwise scan goes through a hash map */
    char big[2048] = "";
    for (int i = 0; i < 40; i++)
        snprintf(big + strlen(big), sizeof big - strlen(big), "k%d: %d\n", i, i);
    strcat(big, "k17: again\n");
    yin_refuses(big, NULL, ":41:1: key 'k17' appears twice (first on line 18)");
    yin_refuses("? [a]\n: 1\n", NULL, ":1:3: a mapping key must be a scalar");
    yin_refuses("a: &x 1\nb: *x\n", NULL, ":2:4: an alias (*x): anchors and aliases are not used in qmoe files");
    yin_refuses("a: 1\n---\nb: 2\n", NULL, ":2:1: a second YAML document; the file must hold one");
    /* nesting: 64 levels load, the 65th is refused where it opens */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    qm_arena a = {0};
    CU_ASSERT_PTR_NOT_NULL(yin(&a, deep));
    qm_arena_free(&a);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    yin_refuses(deep, NULL, ":1:65: nested more than 64 deep");
    /* size: a sparse file one byte past the limit is refused before it is read */
    const char *p = tu_path("y.yaml");
    CU_ASSERT_EQUAL_FATAL(truncate(p, (off_t)QM_YIN_MAX_BYTES + 1), 0);
    qm_diag *d = qm_diag_new();
    const qm_ynode *root;
    CU_ASSERT_EQUAL(qm_yin_load(p, "; hint", &a, &root, d), QM_EFORMAT);
    char want[512];
    snprintf(want, sizeof want, "%s: longer than 256 MiB, too long for a file qmoe reads; hint", p);
    CU_ASSERT_STRING_EQUAL(qm_diag_text(d, 0), want);
    /* ... and a stream's is counted as it is read (~1 s of parsing a comment) */
    size_t left = (size_t)QM_YIN_MAX_BYTES + 1;
    FILE *f = fopencookie(&left, "r", (cookie_io_functions_t){.read = comment_bytes});
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(qm_yin_load_file(f, "pipe", NULL, &a, &root, d), QM_EFORMAT);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(qm_diag_text(d, 1), "pipe: longer than 256 MiB, too long for a file qmoe reads");
    CU_ASSERT_EQUAL(qm_yin_load(tu_path("absent.yaml"), NULL, &a, &root, d), QM_ENOTFOUND);
    qm_arena_free(&a);
    qm_diag_free(d);
}

static void test_diag(void)
{
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL(qm_diag_fail(d, QM_EFORMAT, "bad %d", 7), QM_EFORMAT);
    qm_diag_warn(d, "careful");
    CU_ASSERT_EQUAL(qm_diag_errors(d), 1);
    CU_ASSERT_EQUAL(qm_diag_warnings(d), 1);
    CU_ASSERT_STRING_EQUAL(qm_diag_text(d, 0), "bad 7");
    for (int i = 0; i < 2000; i++) /* past the cap: counted, not stored */
        qm_diag_fail(d, QM_EFORMAT, "again");
    CU_ASSERT_EQUAL(qm_diag_errors(d), 2001);
    CU_ASSERT(qm_diag_count(d) <= 1000);
    CU_ASSERT_EQUAL(qm_diag_fail(NULL, QM_EIO, "dropped"), QM_EIO);
    CU_ASSERT_STRING_EQUAL(qm_status_name(QM_EFORMAT), "format");
    qm_diag_free(d);
}

/* The one list of widths, and the texts messages build from it. */
/* A resumable run's state file: read back as written, the first differing
 * field named, and anything not written by qm_resume_mark() taken as no
 * state at all (the run starts over, never resumes from garbage). */
static void test_resume(void)
{
    qm_diag *d = qm_diag_new();
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_path("resume"));
    CU_ASSERT_EQUAL_FATAL(qm_mkdir(dir, d), QM_OK);
    qm_resume_field f[2] = {{"plan_sha256", "ab12"}, {"settings", "ctx=8 samples=2"}};
    int done = -7;
    CU_ASSERT_EQUAL(qm_resume_match(dir, f, 2, &done), -1); /* none yet */
    CU_ASSERT_EQUAL(qm_resume_mark(dir, f, 2, 3, d), QM_OK);
    CU_ASSERT_EQUAL(qm_resume_match(dir, f, 2, &done), 2);
    CU_ASSERT_EQUAL(done, 3);
    qm_resume_field g[2] = {{"plan_sha256", "ab12"}, {"settings", "ctx=8 samples=3"}};
    done = -7;
    CU_ASSERT_EQUAL(qm_resume_match(dir, g, 2, &done), 1);
    CU_ASSERT_EQUAL(done, -7); /* untouched unless every field equals */
    CU_ASSERT_EQUAL(qm_resume_match(dir, f, 1, &done), -1); /* another kind of state file */
    char p[4200];
    static const char *bad[] = {"plan_sha256 ab12\nsettings ctx=8 samples=2\nlayers_done 3x\n",
                                "plan_sha256 ab12\nsettings ctx=8 samples=2\nlayers_done -1\n",
                                "plan_sha256 ab12\nsettings ctx=8 samples=2\n",
                                "plan_sha256 ab12\nsettings ctx=8 samples=2\nlayers_done 3"};
    snprintf(p, sizeof p, "%s/state", dir);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CU_ASSERT_EQUAL_FATAL(tu_write(p, bad[i], strlen(bad[i])), 0);
        CU_ASSERT_EQUAL(qm_resume_match(dir, f, 2, &done), -1);
    }
    float x[3] = {1, 2, 3}, y[3] = {0};
    CU_ASSERT_EQUAL(qm_resume_save(dir, "blob.f32", x, sizeof x, d), QM_OK);
    CU_ASSERT_EQUAL(qm_resume_load(dir, "blob.f32", y, sizeof y, d), QM_OK);
    CU_ASSERT_EQUAL(memcmp(x, y, sizeof x), 0);
    CU_ASSERT_EQUAL(qm_resume_load(dir, "blob.f32", y, 2 * sizeof *y, d), QM_EFORMAT);
    TU_ASSERT_DIAG(d, "missing or of the wrong size; remove");
    qm_resume_drop(dir, "blob.f32");
    CU_ASSERT_EQUAL(qm_resume_load(dir, "blob.f32", y, sizeof y, d), QM_EFORMAT);
    qm_diag_free(d);
}

static void test_widths(void)
{
    CU_ASSERT(qm_is_width(2) && qm_is_width(3) && qm_is_width(4) && qm_is_width(5) && qm_is_width(8));
    CU_ASSERT(!qm_is_width(0) && !qm_is_width(1) && !qm_is_width(6) && !qm_is_width(16) && !qm_is_width(-4));
    CU_ASSERT_EQUAL(qm_widths[QM_WIDTH_COUNT - 1], QM_MAX_WIDTH);
    char b[64];
    CU_ASSERT_STRING_EQUAL(qm_widths_text(b, sizeof b, "bit", " ", " "), "2bit 3bit 4bit 5bit 8bit");
    CU_ASSERT_STRING_EQUAL(qm_widths_text(b, sizeof b, "", ", ", " or "), "2, 3, 4, 5 or 8");
    CU_ASSERT_STRING_EQUAL(qm_widths_text(b, 6, "", ", ", " or "), "2, 3,"); /* cut, still terminated */
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("base", NULL, NULL);
    CU_add_test(s, "SHA-256 test vectors", test_sha256_vectors);
    CU_add_test(s, "string map", test_strmap);
    CU_add_test(s, "atomic files", test_afile);
    CU_add_test(s, "atomic write through a put function", test_afile_write);
    CU_add_test(s, "atomic files: the umask's mode", test_afile_mode);
    CU_add_test(s, "atomic files: a dead writer's temporary is removed", test_afile_stale);
    CU_add_test(s, "output paths against inputs", test_path_check);
    CU_add_test(s, "output directory lock", test_dir_lock);
    CU_add_test(s, "YAML quoting", test_yaml_quoting);
    CU_add_test(s, "YAML scalars printed into flow mappings", test_yaml_put_flow_str);
    CU_add_test(s, "YAML reading: structure, positions, typed scalars", test_yaml_read);
    CU_add_test(s, "YAML reading: what the strict reader refuses", test_yaml_refusals);
    CU_add_test(s, "diagnostics", test_diag);
    CU_add_test(s, "widths", test_widths);
    CU_add_test(s, "resumable runs: the state file and blobs", test_resume);
    return tu_run();
}
