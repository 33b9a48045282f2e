/* gguf_vocab.c: a model's tokenizer as GGUF metadata, the keys llama.cpp's
 * converter writes (conversion/base.py _set_vocab_gpt2, get_vocab_base,
 * gguf-py SpecialVocab) for a Hugging Face tokenizer.json with a BPE model:
 *
 *   tokenizer.ggml.model       "gpt2"
 *   tokenizer.ggml.pre         the pre-tokenizer's name in llama.cpp, found
 *                              as the converter finds it: the sha256 of the
 *                              ids of one fixed text, written as Python
 *                              writes a list ("[1, 2]"), looked up in the
 *                              converter's table (pre_names below)
 *   tokenizer.ggml.tokens      every id below the config's vocab_size: the
 *                              vocabulary's strings as the file spells them,
 *                              added tokens by their content, "[PADi]" for
 *                              an id nothing names
 *   tokenizer.ggml.token_type  1 normal, 3 control (special added tokens),
 *                              4 user-defined (other added tokens), 5 unused
 *   tokenizer.ggml.merges      "a b" in rank order
 *   tokenizer.ggml.bos_token_id / eos_token_id / add_bos_token
 *                              BOS when the tokenizer puts one first (qmoe
 *                              tokenize --add-special), else config.json's
 *                              bos_token_id; config.json's eos_token_id
 *
 * (added tokens that look special, "<|...|>" and a few more, are control
 * tokens as the converter's does_token_look_special() makes them).
 *
 * A SentencePiece tokenizer.model (and no tokenizer.json) is written as
 * _set_vocab_sentencepiece writes it: tokenizer.ggml.model "llama", .pre
 * "default", every piece's text, score (tokenizer.ggml.scores) and type
 * (SentencePiece's types are GGUF's: 1 normal, 2 unknown, 3 control, 4
 * user-defined, 5 unused, 6 byte), ids below vocab_size that no piece
 * names as "[PADi]" with score -10000, unused; BOS/EOS as above.  A model
 * with more pieces than vocab_size is refused (the converter drops them).  What the
 * converter does beyond this (added tokens that are not normalized
 * re-encoded, chat templates) is not done; the tests check that llama.cpp tokenizes texts to qmoe's ids.
 */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf.h"
#include "model/json.h"
#include "model/tokenizer.h"

/* The converter's get_vocab_base_pre(): its text, and each hash with the
 * name llama.cpp knows (llama.cpp commit de3ff81, node-llama-cpp 3.22.1's
 * bundle; a later entry for the same hash wins, as there). */
static const char chktxt[] =
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\360\237\232\200 (normal) \360\237\230\266\342\200"
    "\215\360\237\214\253\357\270\217 (multiple emojis concatenated) \342\234\205 \360\237\246\231\360"
    "\237\246\231 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 \341\236\200\341\236\266"
    "\341\236\223\341\237\213\341\236\217\341\237\202\341\236\226\341\236\267\341\236\237\341\237\201"
    "\341\236\237\341\236\242\341\236\266\341\236\205\360\237\230\201 ?\346\210\221\346\203\263\345\234"
    "\250apple\345\267\245\344\275\2341314151\345\244\251\357\275\236 ------======= \320\275\320\265\321"
    "\211\320\276 \320\275\320\260 \320\221\321\212\320\273\320\263\320\260\321\200\321\201\320\272\320"
    "\270 ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not su"
    "re I'll make it, 'D you like some tea? We'Ve a'lL";

static const struct {
    const char *sha, *name;
} pre_names[] = {
    {"b6e8e1518dc4305be2fe39c313ed643381c4da5db34a98f6a04c093f8afbe99b", "chatglm-bpe"},
    {"81d72c7348a9f0ebe86f23298d37debe0a5e71149e29bd283904c02262b27516", "chatglm-bpe"},
    {"a1336059768a55c99a734006ffb02203cd450fed003e9a71886c88acf24fdbc2", "glm4"},
    {"9ca2dd618e8afaf09731a7cf6e2105b373ba6a1821559f258b272fe83e6eb902", "glm4"},
    {"cdf5f35325780597efd76153d4d1c16778f766173908894c04afc20108536267", "glm4"},
    {"1431a23e583c97432bc230bff598d103ddb5a1f89960c8f1d1051aaa944d0b35", "minerva-7b"},
    {"7e57df22b1fe23a7b1e1c7f3dc4e3f96d43a4eb0836d0c6bdc3436d7b2f1c664", "hunyuan"},
    {"bba3b3366b646dbdded5dbc42d59598b849371afc42f7beafa914afaa5b70aa6", "hunyuan-dense"},
    {"e6ddf9c6686791c12d698d34c31ab9be1fea9af5a3d9a6909783ab382198ae1c", "hy_v4"},
    {"a6b57017d60e6edb4d88ecc2845188e0eb333a70357e45dcc9b53964a73bbae6", "falcon-h1"},
    {"60476e1243776c4fb1b993dbd7a5f15ac22f83c80afdf425fa5ae01c8d44ef86", "falcon-h1"},
    {"3eda48b4c4dc7de733d1a8b3e3b4a85243dbbf704da2ee9d42c6beced8897896", "falcon-h1"},
    {"48f8e02c0359c0bbdd82f26909171fac1c18a457bb47573ed1fe3bbb2c1cfd4b", "falcon-h1"},
    {"81212dc7cdb7e0c1074ca62c5aeab0d43c9f52b8a737be7b12a777c953027890", "kimi-k2"},
    {"d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c", "qwen2"},
    {"1444df51289cfa8063b96f0e62b1125440111bc79a52003ea14b6eac7016fd5f", "qwen35"},
    {"66b8d4e19ab16c3bfd89bce5d785fb7e0155e8648708a1f42077cb9fe002c273", "grok-2"},
    {"b3d1dd861f1d4c5c0d2569ce36baf3f90fe8a102db3de50dd71ff860d91be3df", "jina-v2-de"},
    {"0fe1cf6eda062318a1af7270f3331a85c539a01778ff948e24388e949c5282f4", "gpt-2"},
    {"9e454714343b69b99b71795c1d27a68c2a1d15dab111f4d353109f966af29da7", "lfm2"},
    {"846deafc5b0fa786186fa4ae6c7b49903cf2f1d1895bdb80b9120d60be135252", "gemma4"},
    {"0a766d034107bc736a3f2dc4968fd62e54a3570f1454443e0c5a4cc6bd7941ed", "spark2_5"},
    {"0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5", "llama-bpe"},
    {"049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754", "deepseek-llm"},
    {"347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821", "deepseek-coder"},
    {"8aeee3860c56296a157a1fe2fad249ec40aa59b1bb5709f4ade11c4e6fe652ed", "falcon"},
    {"0876d13b50744004aa9aeae05e7b0647eac9d801b5ba4668afc01e709c15e19f", "bert-bge"},
    {"9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e", "falcon3"},
    {"8e62295832751ca1e8f92f2226f403dea30dc5165e448b5bfa05af5340c64ec7", "bert-bge-large"},
    {"b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166", "mpt"},
    {"35d91631860c815f952d711435f48d356ebac988362536bed955d43bfa436e34", "starcoder"},
    {"3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454", "gpt-2"},
    {"32d85c31273f8019248f2559fed492d929ea28b17e51d81d3bb36fff23ca72b3", "stablelm2"},
    {"6221ad2852e85ce96f791f476e0b390cf9b474c9e3d1362f53a24a06dc8220ff", "refact"},
    {"9c2227e4dd922002fb81bde4fc02b0483ca4f12911410dee2255e4987644e3f8", "command-r"},
    {"d772b220ace2baec124bed8cfafce0ead7d6c38a4b65ef11261cf9d5d62246d1", "tiny_aya"},
    {"52df12b4c8d4176e7481aab4b6e8454d1fd0a210a04a574f6d4e067d10e23c3e", "cohere2moe"},
    {"e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea", "qwen2"},
    {"b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166", "olmo"},
    {"a8594e3edff7c29c003940395316294b2c623e09894deebbc65f33f1515df79e", "dbrx"},
    {"c7699093ba4255a91e702aa38a596aa81669f3525dae06c2953267dde580f448", "jina-v1-en"},
    {"0876d13b50744004aa9aeae05e7b0647eac9d801b5ba4668afc01e709c15e19f", "jina-v2-en"},
    {"171aeeedd6fb548d418a7461d053f11b6f1f1fc9b387bd66640d28a4b9f5c643", "jina-v2-es"},
    {"27949a2493fc4a9f53f5b9b029c82689cfbe5d3a1929bb25e043089e28466de6", "jina-v2-de"},
    {"a023e9fdc5a11f034d3ef515b92350e56fb2af1f66c6b6811a4444ea9bf8763d", "jina-v5-nano"},
    {"c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d", "smaug-bpe"},
    {"c7ea5862a53e4272c035c8238367063e2b270d51faa48c0f09e9d5b54746c360", "poro-chat"},
    {"7967bfa498ade6b757b064f31e964dddbb80f8f9a4d68d4ba7998fcf281c531a", "jina-v2-code"},
    {"7fc505bd3104ca1083b150b17d088b59534ede9bde81f0dd2090967d7fe52cee", "viking"},
    {"b53802fb28e26d645c3a310b34bfe07da813026ec7c7716883404d5e0f8b1901", "jais"},
    {"bc5108ee1eb6a3d600cadd065f63190fbd0554dbc9e4bbd6a0d977970afc8d2a", "jais-2"},
    {"7b3e7548e4308f52a76e8229e4e6cc831195d0d1df43aed21ac6c93da05fec5f", "codeshell"},
    {"63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e", "tekken"},
    {"855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249", "smollm"},
    {"3c30d3ad1d6b64202cd222813e7736c2db6e1bd6d67197090fc1211fbc612ae7", "bloom"},
    {"bc01ce58980e1db43859146dc51b1758b3b88729b217a74792e9f8d43e479d21", "gpt3-finnish"},
    {"4e2b24cc4770243d65a2c9ec19770a72f08cffc161adbb73fcbb6b7dd45a0aae", "exaone"},
    {"fcace8b9cac38ce847670c970cd5892031a753a1ef381abd1d9af00f713da085", "phi-2"},
    {"60824e3c0d9401f89943cbb2fff727f0e2d4c545ba4df2d6e4f09a6db0f5b450", "chameleon"},
    {"8b5a93ed704057481f240da0be7e7dca721d7f8f4755263b6807227a2cbeae65", "roberta-bpe"},
    {"ad851be1dba641f2e3711822f816db2c265f788b37c63b4e1aeacb9ee92de8eb", "gigachat"},
    {"d4c8f286ea6b520b3d495c4455483cfa2302c0cfcd4be05d781b6a8a0a7cdaf1", "megrez"},
    {"877081d19cf6996e2c4ff0e1236341e9b7bde288f5311a56a937f0afbbb3aeb5", "deepseek-v3"},
    {"b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5", "deepseek-r1-qwen"},
    {"ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e", "gpt-4o"},
    {"7dec86086fcc38b66b7bc1575a160ae21cf705be7718b9d5598190d7c12db76f", "superbpe"},
    {"1994ffd01900cfb37395608534236ecd63f2bd5995d6cb1004dda1af50240f15", "trillion"},
    {"96a5f08be6259352137b512d4157e333e21df7edd3fcd152990608735a65b224", "bailingmoe"},
    {"d353350c764d8c3b39c763113960e4fb4919bea5fbf208a0e3b22e8469dc7406", "llama4"},
    {"0e9433cbbb161f89e264eb32e8e64bfe69e834973ffca5d41d3948a604a3e2a3", "pixtral"},
    {"d5f1dd6f980fec569fb218a81a7658ac45fc56b38c5a0adeb1c232fbe04ef5ec", "seed-coder"},
    {"b0a6b1c0bd5998ebd9df08611efde34a4ff03faed45ae09c43e6b31ebd4b94cf", "a.x-4.0"},
    {"f6791d196f87ce6b56a7d234be618e0d58f8cda3549416635b2bebcd22cd95c4", "midm-2.0"},
    {"169bf0296a13c4d9b7672313f749eb36501d931022de052aad6e36f2bf34dd51", "lfm2"},
    {"2085e1638f6c377a0aa4ead21b27bb4cb941bf800df86ed391011769c1758dfb", "exaone4"},
    {"a1e163ecab2e718a4c829d1148b6e86824ec36163bb71941c3dca9cd5ac25756", "mellum"},
    {"a0b64b4385f123663873756336c085744376d015ff328bb1d901598f63c44152", "modern-bert"},
    {"49fc0303c9e0d2c2c565c510f64b2d9b271276acdcdadff733249eda9f7d59df", "afmoe"},
    {"9b1be57e70d20d9501b2b3186e792d81181ae36ada3903c26f9fea418cf87206", "bailingmoe2"},
    {"53e325976a6e142379c19b09afcae354f2f496f147afa8f9e189a33fe4e3024e", "granite-docling"},
    {"f4f37b6c8eb9ea29b3eac6bb8c8487c5ab7885f8d8022e67edc1c68ce8403e95", "minimax-m2"},
    {"4a2e2abae11ca2b86d570fc5b44be4d5eb5e72cc8f22dd136a94b37da83ab665", "kormo"},
    {"9d70134b369a70e5735009b6de918f7581b5211f7c074d1f89f753aea8248af1", "youtu"},
    {"16389f0a1f51ee53e562ffd51c371dc508639ab0e4261502071836e50e223e91", "solar-open"},
    {"6c81ce329e0802883b22eabab0d3fa48357337ef1ecb45443828bf1f6254833f", "exaone-moe"},
    {"d30d75d9059f1aa2c19359de71047b3ae408c70875e8a3ccf8c5fba56c9d8af4", "qwen35"},
    {"b4b8ca1f9769494fbd956ebc4c249de6131fb277a4a3345a7a92c7dd7a55808d", "joyai-llm"},
    {"e4d54df1ebc1f2b91acd986c5b51aa50837d5faf7c7398e73c1f9e9ee5d19869", "kanana2"},
    {"862f827721df956049dff5ca81a57f29e575280bc622e290d3bf4e35eca29015", "f2llmv2"},
    {"62f6fb0a6fd5098caeabb19b07a5c1099cafc8b9c40eab6ea89ece4ec02fbc57", "sarvam-moe"},
    {"f728162c1315c26e40249849799b4ba3fe584c32084b4795b03eb295e63cb5af", "talkie"},
    {"36f3066e97b7f3994b379aaacde306c1444c6ae84e81a5ae3cd2b7ed3b8c42d4", "minicpm5"},
    {"f241072145675bf8322086f115aebad05e9f869557a238bf2150a2a417d1bf60", "granite-embed-multi-97m"},
    {"789696f5946cc0fc59371f39f6097cafed196b3acded6140432f26bbb1ae1669", "granite-embed-multi-311m"},
    {"9dcf830ee9990cdbf78cc523a5f7bd9ad8f3f9890c2d3581d2785ad10f07049d", "mellum2"},
    {"972da7b59cec44d1f0a490a86c96df53859e486e481563e5dddac155013d87ac", "laguna"},
    {"653660222fb704f61cbf2b618a8ae6502b7f8b20c980f9a5de07ed78e13319cd", "ufakzeka"},
};

enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5 };

static int ends(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The converter's does_token_look_special(): added tokens that are control
 * tokens whatever the file says. */
static int looks_special(const char *s)
{
    return strcmp(s, "<pad>") == 0 || strcmp(s, "<mask>") == 0 || strcmp(s, "<2mass>") == 0 ||
           strcmp(s, "[@BOS@]") == 0 || (strncmp(s, "<|", 2) == 0 && ends(s, "|>")) ||
           (strncmp(s, "<\357\275\234", 4) == 0 && ends(s, "\357\275\234>")) || /* <｜ ... ｜> */
           (strncmp(s, "<unused", 7) == 0 && ends(s, ">"));
}

/* llama.cpp's name of t's pre-tokenizer, or NULL with a diagnostic. */
static const char *pre_name(qm_tokenizer *t, const char *path, qm_diag *d)
{
    qm_tokens ids = {0};
    if (qm_tokenizer_encode(t, chktxt, sizeof chktxt - 1, 1, &ids, d) != QM_OK)
        return NULL;
    qm_buf b = {0};
    qm_buf_add(&b, "[", 1);
    for (size_t i = 0; i < ids.n; i++) {
        char num[24];
        int k = snprintf(num, sizeof num, i ? ", %d" : "%d", ids.ids[i]);
        qm_buf_add(&b, num, (size_t)k);
    }
    qm_buf_add(&b, "]", 1);
    qm_tokens_free(&ids);
    if (b.oom) {
        free(b.s);
        qm_diag_fail(d, QM_ENOMEM, "out of memory");
        return NULL;
    }
    qm_sha256 h;
    char hex[65];
    qm_sha256_init(&h);
    qm_sha256_update(&h, b.s, b.n);
    qm_sha256_hex(&h, hex);
    free(b.s);
    const char *name = NULL;
    for (size_t k = 0; k < sizeof pre_names / sizeof pre_names[0]; k++)
        if (strcmp(pre_names[k].sha, hex) == 0)
            name = pre_names[k].name;
    if (!name)
        qm_diag_fail(d, QM_EUNSUPPORTED, "%s: llama.cpp does not know this pre-tokenizer (its converter's hash %s); "
                     "GGUF cannot hold the tokenizer", path, hex);
    return name;
}

/* config.json's integer `key`, or -1. */
static long long config_id(const qm_model *m, const char *key)
{
    json_t *cfg = NULL;
    qm_diag *d = qm_diag_new();
    long long v = -1;
    if (d && qm_json_load(m->config_path, &cfg, d) == QM_OK && json_is_integer(json_object_get(cfg, key)))
        v = json_integer_value(json_object_get(cfg, key));
    json_decref(cfg);
    qm_diag_free(d);
    return v;
}

/* tokens/types (V) and merges from tokenizer.json's root j. */
static qm_status read_json(json_t *j, const char *path, long long V, const char **tok, int32_t *type, char ***merges,
                           size_t *n_merges, qm_diag *d)
{
    json_t *model = json_object_get(j, "model"), *vocab = json_object_get(model, "vocab");
    json_t *mg = json_object_get(model, "merges"), *added = json_object_get(j, "added_tokens");
    const char *mt = json_string_value(json_object_get(model, "type"));
    if (!mt || strcmp(mt, "BPE") || !json_is_object(vocab) || !json_is_array(mg))
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: model.type '%s': GGUF holds a BPE tokenizer.json (vocab and "
                            "merges)", path, mt ? mt : "(none)");
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        long long id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= V)
            return qm_diag_fail(d, QM_EFORMAT, "%s: model.vocab['%s'] is not an id below vocab_size %lld", path, key, V);
        tok[id] = key;
        type[id] = TT_NORMAL;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *idj = json_object_get(v, "id");
        const char *c = json_string_value(json_object_get(v, "content"));
        long long id = json_integer_value(idj);
        if (!json_is_integer(idj) || !c || id < 0 || id >= V)
            return qm_diag_fail(d, QM_EFORMAT, "%s: added_tokens[%zu] has no content or an id not below vocab_size "
                                "%lld", path, i, V);
        tok[id] = c;
        type[id] = json_is_true(json_object_get(v, "special")) || looks_special(c) ? TT_CONTROL : TT_USER;
    }
    if (!(*merges = calloc(json_array_size(mg) + 1, sizeof **merges)))
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    json_array_foreach(mg, i, v) {
        const char *a = json_string_value(v);
        char *s = a ? qm_strfmt("%s", a)
                    : json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) && json_is_string(json_array_get(v, 1))
                        ? qm_strfmt("%s %s", json_string_value(json_array_get(v, 0)), json_string_value(json_array_get(v, 1)))
                        : NULL;
        if (!s)
            return qm_diag_fail(d, QM_EFORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [a, b] (or memory ran "
                                "out)", path, i);
        (*merges)[(*n_merges)++] = s;
    }
    return QM_OK;
}

/* tokenizer.ggml.bos_token_id / eos_token_id / add_bos_token, as the
 * header says. */
static void put_special(const qm_model *m, qm_gguf_meta *g, const qm_tokenizer *t, long long V)
{
    int bos = qm_tokenizer_bos(t);
    long long cb = config_id(m, "bos_token_id"), ce = config_id(m, "eos_token_id");
    if (bos >= 0 || (cb >= 0 && cb < V))
        qm_gguf_meta_u32(g, "tokenizer.ggml.bos_token_id", (uint32_t)(bos >= 0 ? bos : cb));
    if (ce >= 0 && ce < V)
        qm_gguf_meta_u32(g, "tokenizer.ggml.eos_token_id", (uint32_t)ce);
    qm_gguf_meta_bool(g, "tokenizer.ggml.add_bos_token", bos >= 0);
}

/* The SentencePiece model at path (the header's second part). */
static qm_status put_spm(const qm_model *m, qm_gguf_meta *g, const char *path, qm_diag *d)
{
    long long V = m->cfg.vocab;
    char **tok = calloc((size_t)V, sizeof *tok); /* owned, each */
    float *score = calloc((size_t)V, sizeof *score);
    int32_t *type = calloc((size_t)V, sizeof *type);
    qm_tokenizer *t = NULL;
    qm_status st = tok && score && type ? QM_OK : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = qm_tokenizer_open(path, &t, d);
    if (st == QM_OK && qm_tokenizer_vocab(t) > V)
        st = qm_diag_fail(d, QM_EUNSUPPORTED, "%s: %lld pieces, more than the model's vocab_size %lld", path,
                          qm_tokenizer_vocab(t), V);
    for (long long i = 0; st == QM_OK && i < V; i++) {
        const char *text;
        size_t len;
        float sc;
        int ty;
        if (qm_tokenizer_spm_piece(t, i, &text, &len, &sc, &ty)) {
            if ((tok[i] = malloc(len + 1))) {
                memcpy(tok[i], text, len);
                tok[i][len] = 0;
            }
            score[i] = sc, type[i] = ty;
        } else {
            tok[i] = qm_strfmt("[PAD%lld]", i);
            score[i] = -10000.0f, type[i] = TT_UNUSED;
        }
        if (!tok[i])
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    if (st == QM_OK) {
        qm_gguf_meta_str(g, "tokenizer.ggml.model", "llama");
        qm_gguf_meta_str(g, "tokenizer.ggml.pre", "default");
        qm_gguf_meta_strs(g, "tokenizer.ggml.tokens", (const char *const *)tok, (size_t)V);
        qm_gguf_meta_f32s(g, "tokenizer.ggml.scores", score, (size_t)V);
        qm_gguf_meta_i32s(g, "tokenizer.ggml.token_type", type, (size_t)V);
        put_special(m, g, t, V);
    }
    for (long long i = 0; tok && i < V; i++)
        free(tok[i]);
    free(tok);
    free(score);
    free(type);
    qm_tokenizer_free(t);
    return st;
}

qm_status qm_gguf_put_vocab(const qm_model *m, qm_gguf_meta *g, qm_diag *d)
{
    char *path = qm_strfmt("%s/tokenizer.json", m->dir);
    if (!path)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    int has_json = access(path, R_OK) == 0;
    if (m->cfg.byte_tokenizer || (!has_json && !qm_tokenizer_in_dir(m->dir))) {
        free(path);
        qm_gguf_meta_str(g, "tokenizer.ggml.model", "none");
        return QM_OK;
    }
    if (!has_json) {
        free(path);
        if (!(path = qm_strfmt("%s/tokenizer.model", m->dir)))
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        qm_status st = access(path, R_OK) == 0
                           ? put_spm(m, g, path, d)
                           : qm_diag_fail(d, QM_EUNSUPPORTED, "GGUF: the tokenizer of %s cannot be written yet (a "
                                          "Hugging Face tokenizer.json with a BPE model, or a SentencePiece "
                                          "tokenizer.model)", m->dir);
        free(path);
        return st;
    }
    long long V = m->cfg.vocab;
    const char **tok = calloc((size_t)V, sizeof *tok);
    int32_t *type = calloc((size_t)V, sizeof *type);
    char **pads = calloc((size_t)V, sizeof *pads), **merges = NULL;
    size_t n_merges = 0;
    json_t *j = NULL;
    qm_tokenizer *t = NULL;
    qm_status st = tok && type && pads ? QM_OK : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = qm_json_load(path, &j, d);
    if (st == QM_OK)
        st = read_json(j, path, V, tok, type, &merges, &n_merges, d);
    if (st == QM_OK)
        st = qm_tokenizer_open(m->dir, &t, d);
    const char *pre = st == QM_OK ? pre_name(t, path, d) : NULL;
    if (!pre && st == QM_OK)
        st = QM_EUNSUPPORTED;
    for (long long i = 0; st == QM_OK && i < V; i++)
        if (!tok[i]) {
            if (!(pads[i] = qm_strfmt("[PAD%lld]", i)))
                st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
            tok[i] = pads[i];
            type[i] = TT_UNUSED;
        }
    if (st == QM_OK) {
        qm_gguf_meta_str(g, "tokenizer.ggml.model", "gpt2");
        qm_gguf_meta_str(g, "tokenizer.ggml.pre", pre);
        qm_gguf_meta_strs(g, "tokenizer.ggml.tokens", tok, (size_t)V);
        qm_gguf_meta_i32s(g, "tokenizer.ggml.token_type", type, (size_t)V);
        qm_gguf_meta_strs(g, "tokenizer.ggml.merges", (const char *const *)merges, n_merges);
        put_special(m, g, t, V);
    }
    for (long long i = 0; pads && i < V; i++)
        free(pads[i]);
    for (size_t i = 0; i < n_merges; i++)
        free(merges[i]);
    free(merges);
    free(pads);
    free(tok);
    free(type);
    json_decref(j);
    qm_tokenizer_free(t);
    free(path);
    return st;
}
