# qwen3-lower: Qwen3's tokenizer.json with the normalizers Qwen3 lacks
# (NFKC, Lowercase, Replace by regex, Prepend), to hold them to the reference
s/^    "type": "NFC"$/    "type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Replace", "pattern": {"Regex": "\\\\d{3,}"}, "content": "#"}, {"type": "Replace", "pattern": {"String": "  "}, "content": " "}, {"type": "Prepend", "prepend": "^"}]/
