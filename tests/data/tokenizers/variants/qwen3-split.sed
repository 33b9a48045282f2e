# qwen3-split: Qwen3's tokenizer.json with the pre-tokenizers Qwen3 lacks
# (Metaspace, Digits, Split by a string with each merging behavior,
# inverted) before its own, to hold them to the reference
/"pretokenizers": \[/a\
      {"type": "Metaspace", "replacement": "\\u2581", "prepend_scheme": "first", "split": true},\
      {"type": "Digits", "individual_digits": false},\
      {"type": "Split", "pattern": {"String": "e"}, "behavior": "MergedWithPrevious", "invert": false},\
      {"type": "Split", "pattern": {"String": "o"}, "behavior": "MergedWithNext", "invert": false},\
      {"type": "Split", "pattern": {"Regex": "[,;]"}, "behavior": "Contiguous", "invert": true},\
      {"type": "Split", "pattern": {"String": "!"}, "behavior": "Removed", "invert": false},
