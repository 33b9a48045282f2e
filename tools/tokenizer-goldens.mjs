// tokenizer-goldens.mjs: golden token ids from the reference tokenizers
// (issue #14), for `qmoe tokenize` to be compared with.
//
//   node tools/tokenizer-goldens.mjs NPMDIR KIND TOKDIR OUTDIR [--time] [--max BYTES] INPUT...
//
// NPMDIR holds node_modules with @huggingface/tokenizers@0.2.0 (KIND hf:
// TOKDIR/tokenizer.json and tokenizer_config.json; KIND gpt2: TOKDIR's
// encoder.json + vocab.bpe, read as the ByteLevel BPE that GPT-2's
// tokenizer.json describes) and mistral-tokenizer-js (KIND spm: the
// vocabulary of Mistral's tokenizer.model, baked into the package), and
// tokenizers@0.23.2 (KIND rs: Hugging Face's own Rust library as a Node
// binding, TOKDIR/tokenizer.json; the reference where tokenizers.js
// simplifies, as in Split's behaviors other than Isolated).
// Each INPUT is read as bytes and decoded as WHATWG UTF-8 (one U+FFFD per
// maximal invalid subsequence, as Node and Python's errors="replace" do;
// qmoe decodes the same way); the first BYTES only with --max (cut back to
// a character boundary).  Ids go to OUTDIR/BASENAME.u32 (little-endian
// uint32), without BOS/EOS.  --time prints, per input, bytes and the
// seconds of encoding alone (for bench/tokenize.sh) instead of writing.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const argv = process.argv.slice(2);
let timeOnly = false, maxBytes = 0;
const pos = [];
for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--time') timeOnly = true;
    else if (argv[i] === '--max') maxBytes = Number(argv[++i]);
    else pos.push(argv[i]);
}
if (pos.length < 4) {
    console.error('usage: tokenizer-goldens.mjs NPMDIR hf|gpt2|spm|rs TOKDIR OUTDIR [--time] [--max BYTES] INPUT...');
    process.exit(2);
}
const [npmDir, kind, tokDir, outDir, ...inputs] = pos;
const mod = (p) => import(pathToFileURL(path.join(npmDir, 'node_modules', p)).href);

async function hfEncoder(json, config) {
    const { Tokenizer } = await mod('@huggingface/tokenizers/dist/tokenizers.mjs');
    const tok = new Tokenizer(json, config);
    return (text) => tok.encode(text, { add_special_tokens: false }).ids;
}

// GPT-2's pair as the tokenizer.json that Hugging Face publishes for it.
function gpt2Json(dir) {
    const vocab = JSON.parse(fs.readFileSync(path.join(dir, 'encoder.json'), 'utf8'));
    const merges = fs.readFileSync(path.join(dir, 'vocab.bpe'), 'utf8').split('\n')
        .filter((l) => l.length > 0 && !l.startsWith('#version'));
    const eot = '<|endoftext|>';
    return {
        version: '1.0', truncation: null, padding: null,
        added_tokens: eot in vocab ? [{ id: vocab[eot], content: eot, single_word: false, lstrip: false,
                                         rstrip: false, normalized: true, special: true }] : [],
        normalizer: null,
        pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
        post_processor: null,
        decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
        model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '',
                 end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
    };
}

let encode;
if (kind === 'hf') {
    const json = JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer.json'), 'utf8'));
    const cfgPath = path.join(tokDir, 'tokenizer_config.json');
    const config = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, 'utf8')) : {};
    encode = await hfEncoder(json, config);
} else if (kind === 'gpt2') {
    encode = await hfEncoder(gpt2Json(tokDir), {});
} else if (kind === 'spm') {
    const m = await mod('mistral-tokenizer-js/mistral-tokenizer.js');
    // encode(text, add_bos_token, add_preceding_space): the dummy prefix as
    // add_dummy_prefix asks, no BOS
    encode = (text) => m.default.encode(text, false, true) ?? [];
} else if (kind === 'rs') {
    const { createRequire } = await import('node:module');
    const { Tokenizer } = createRequire(path.join(npmDir, 'package.json'))('tokenizers');
    const tok = Tokenizer.fromFile(path.join(tokDir, 'tokenizer.json'));
    encode = async (text) => (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
} else {
    console.error(`tokenizer-goldens.mjs: unknown kind '${kind}' (expected hf, gpt2, spm or rs)`);
    process.exit(2);
}

function readText(file) {
    let bytes = fs.readFileSync(file);
    if (maxBytes > 0 && bytes.length > maxBytes) {
        let end = maxBytes;
        while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
        bytes = bytes.subarray(0, end);
    }
    return { text: new TextDecoder('utf-8').decode(bytes), bytes: bytes.length };
}

for (const file of inputs) {
    const { text, bytes } = readText(file);
    const cpu0 = process.cpuUsage(), t0 = process.hrtime.bigint();
    const ids = await encode(text);
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    if (timeOnly) {
        console.log(`${path.basename(file)} bytes ${bytes} tokens ${ids.length} seconds ${sec.toFixed(4)} ` +
                    `cpu_seconds ${((cpu.user + cpu.system) / 1e6).toFixed(4)}`);
        continue;
    }
    const out = Buffer.alloc(4 * ids.length);
    ids.forEach((id, i) => out.writeUInt32LE(id, 4 * i));
    fs.writeFileSync(path.join(outDir, path.basename(file).replace(/\.[^.]*$/, '') + '.u32'), out);
}
