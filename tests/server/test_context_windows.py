"""fim_window: cuts at statement starts, keeps imports, stays stable while typing, and is fast."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codestral_lsp.context import ParseCache, fim_window, parse
from codestral_lsp.context.windows import chunk_chars, first_true, range_starts


def count(s: str) -> int:
    return len(s) // 3 + 1


def at_cursor(src: str) -> tuple[str, int]:
    return src.replace("<CURSOR>", ""), src.index("<CURSOR>")


SAMPLES = {
    "python": '''import os
import sys
from collections import (
    OrderedDict,
    defaultdict,
)

CACHE_SIZE = 128


def load(path):
    with open(path) as f:
        return f.read()


class Store:
    """A tiny key-value store."""

    def __init__(self, root):
        self.root = root
        self.items = OrderedDict()

    def get(self, key, default=None):
        if key in self.items:
            return self.items[key]
        return default

    def save(self):
        path = os.path.join(self.root, "store.txt")
        with open(path, "w") as f:
            for key, value in self.items.items():
                f.write(f"{key}={value}\\n")
        return <CURSOR>path

    def size(self):
        return len(self.items)


def main(argv):
    store = Store(argv[1])
    print(store.save(), file=sys.stderr)
''',
    "javascript": '''import fs from "fs";
import { join } from "path";

const LIMIT = 10;

function readJson(path) {
  const text = fs.readFileSync(path, "utf8");
  return JSON.parse(text);
}

export class Queue {
  constructor() {
    this.items = [];
  }

  push(item) {
    if (this.items.length >= LIMIT) {
      this.items.shift();
    }
    this.items.push(item);
  }

  save(dir) {
    const path = join(dir, "queue.json");
    fs.writeFileSync(path, JSON.stringify(this.items));
    return <CURSOR>path;
  }
}

export function load(dir) {
  return readJson(join(dir, "queue.json"));
}
''',
    "typescript": '''import { readFileSync } from "fs";
import type { Config } from "./config";

export interface Point {
  x: number;
  y: number;
}

export function distance(a: Point, b: Point): number {
  const dx = a.x - b.x;
  const dy = a.y - b.y;
  return Math.sqrt(dx * dx + dy * dy);
}

export function centroid(points: Point[]): Point {
  let x = 0;
  let y = 0;
  for (const p of points) {
    x += p.x;
    y += p.y;
  }
  return { x: x / points.length, <CURSOR>y: y / points.length };
}

export function loadConfig(path: string): Config {
  return JSON.parse(readFileSync(path, "utf8")) as Config;
}
''',
    "typescriptreact": '''import React from "react";
import { useState } from "react";

type Props = { label: string; start?: number };

export function Counter({ label, start = 0 }: Props) {
  const [count, setCount] = useState(start);
  const increment = () => setCount(count + 1);
  const reset = () => setCount(start);
  return (
    <div className="counter">
      <span>{label}</span>
      <button onClick={increment}>{<CURSOR>count}</button>
      <button onClick={reset}>reset</button>
    </div>
  );
}

export default Counter;
''',
    "rust": '''use std::collections::HashMap;
use std::io::{self, Read};

pub struct Counter {
    counts: HashMap<String, usize>,
}

impl Counter {
    pub fn new() -> Self {
        Counter { counts: HashMap::new() }
    }

    pub fn add(&mut self, word: &str) {
        *self.counts.entry(word.to_string()).or_insert(0) += 1;
    }

    pub fn top(&self, n: usize) -> Vec<(&String, &usize)> {
        let mut all: Vec<_> = self.counts.iter().collect();
        all.sort_by(|a, b| b.1.cmp(a.1));
        all.truncate(<CURSOR>n);
        all
    }
}

fn main() -> io::Result<()> {
    let mut text = String::new();
    io::stdin().read_to_string(&mut text)?;
    Ok(())
}
''',
    "go": '''package main

import (
\t"fmt"
\t"strings"
)

type Stack struct {
\titems []string
}

func (s *Stack) Push(item string) {
\ts.items = append(s.items, item)
}

func (s *Stack) Pop() (string, bool) {
\tif len(s.items) == 0 {
\t\treturn "", false
\t}
\titem := s.items[len(s.items)-1]
\ts.items = s.items[:len(s.items)-1]
\treturn <CURSOR>item, true
}

func main() {
\ts := &Stack{}
\ts.Push(strings.ToUpper("a"))
\tfmt.Println(s.Pop())
}
''',
    "java": '''package demo;

import java.util.ArrayList;
import java.util.List;

public class Inventory {
    private final List<String> items = new ArrayList<>();

    public void add(String item) {
        if (item == null) {
            throw new IllegalArgumentException("item");
        }
        items.add(item);
    }

    public int count(String item) {
        int n = 0;
        for (String s : items) {
            if (s.equals(item)) {
                n++;
            }
        }
        return <CURSOR>n;
    }

    public static void main(String[] args) {
        Inventory inv = new Inventory();
        inv.add("apple");
        System.out.println(inv.count("apple"));
    }
}
''',
    "c": '''#include <stdio.h>
#include <stdlib.h>

#define MAX 16

struct buffer {
    char *data;
    size_t len;
};

static int grow(struct buffer *b, size_t extra) {
    char *p = realloc(b->data, b->len + extra);
    if (p == NULL) {
        return -1;
    }
    b->data = p;
    return 0;
}

int append(struct buffer *b, const char *s, size_t n) {
    if (grow(b, n) != 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        b->data[b->len + i] = s[i];
    }
    b->len += <CURSOR>n;
    return 0;
}

int main(void) {
    struct buffer b = {0};
    append(&b, "hi", 2);
    printf("%zu\\n", b.len);
    return 0;
}
''',
    "cpp": '''#include <string>
#include <vector>

namespace shapes {

class Polygon {
 public:
  explicit Polygon(std::vector<double> sides) : sides_(std::move(sides)) {}

  double perimeter() const {
    double total = 0;
    for (double s : sides_) {
      total += s;
    }
    return <CURSOR>total;
  }

  std::string name() const { return "polygon"; }

 private:
  std::vector<double> sides_;
};

}  // namespace shapes
''',
    "lua": '''local json = require("json")
local util = require("util")

local M = {}

local function clamp(x, lo, hi)
  if x < lo then
    return lo
  elseif x > hi then
    return hi
  end
  return x
end

function M.scale(values, factor)
  local out = {}
  for i, v in ipairs(values) do
    out[i] = clamp(v * factor, 0, <CURSOR>100)
  end
  return out
end

function M.dump(values)
  return json.encode(values)
end

return M
''',
    "plaintext": '''Shopping list
  apples
  pears

Tasks
  write the report
  call <CURSOR>the bank
  water plants

Notes
  nothing yet
''',
}

# language: (imports kept above the window, first line of the cut prefix, last line of the suffix),
# for budgets of 80 prefix and 40 suffix tokens.
EXPECTED = {
    "python": ("import os\nimport sys\n", "    def save(self):", "    store = Store(argv[1])"),
    "javascript": ('import fs from "fs";\nimport { join } from "path";\n', "  save(dir) {", "}"),
    "typescript": ('import { readFileSync } from "fs";\n', "export function centroid(points: Point[]): Point {",
                   "export function loadConfig(path: string): Config {"),
    "typescriptreact": ('import React from "react";\n', "  const increment = () => setCount(count + 1);",
                        "export default Counter;"),
    "rust": ("use std::collections::HashMap;\nuse std::io::{self, Read};\n",
             "        let mut all: Vec<_> = self.counts.iter().collect();", "    let mut text = String::new();"),
    "go": ('package main\nimport (\n\t"fmt"\n\t"strings"\n)\n', "func (s *Stack) Pop() (string, bool) {", "}"),
    "java": ("package demo;\nimport java.util.ArrayList;\n", "    public int count(String item) {",
             "        Inventory inv = new Inventory();"),
    "c": ("#include <stdio.h>\n#include <stdlib.h>\n", "    if (grow(b, n) != 0) {", '    printf("%zu\\n", b.len);'),
    "cpp": ("#include <string>\n#include <vector>\n", " public:", ""),
    "lua": ('local json = require("json")\nlocal util = require("util")\n', "  return x", "return M"),
    "plaintext": ("", "Shopping list", "  nothing yet"),
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_window_cuts_at_statements_and_keeps_imports(language):
    text, offset = at_cursor(SAMPLES[language])
    imports, first_line, last_line = EXPECTED[language]
    w = fim_window(text, offset, language, 80, 40, count, tree=parse(text, language))
    assert w.prefix == imports + text[w.prefix_start:offset]
    assert w.suffix == text[offset:w.suffix_end]
    assert text[w.prefix_start:].split("\n")[0] == first_line
    assert w.prefix_start == 0 or text[w.prefix_start - 1] == "\n"
    assert text[:w.suffix_end].split("\n")[-2] == last_line and text[w.suffix_end - 1] == "\n"
    assert count(w.prefix) <= 80 and count(w.suffix) <= 40


def test_python_window_exactly():
    text, offset = at_cursor(SAMPLES["python"])
    w = fim_window(text, offset, "python", 80, 40, count, tree=parse(text, "python"))
    assert (w.prefix_start, w.suffix_end) == (437, 755)
    assert w.prefix == (
        "import os\nimport sys\n"
        "    def save(self):\n"
        '        path = os.path.join(self.root, "store.txt")\n'
        '        with open(path, "w") as f:\n'
        "            for key, value in self.items.items():\n"
        '                f.write(f"{key}={value}\\n")\n'
        "        return ")
    assert w.suffix == ("path\n\n    def size(self):\n        return len(self.items)\n\n\n"
                        "def main(argv):\n    store = Store(argv[1])\n")


def test_tree_avoids_cutting_inside_an_if_chain():
    # Lua: with the tree, "elseif" (a clause, not a statement) is no cut point; by indentation alone it is.
    text, offset = at_cursor(SAMPLES["lua"])
    with_tree = fim_window(text, offset, "lua", 80, 40, count, tree=parse(text, "lua"))
    lines_only = fim_window(text, offset, "lua", 80, 40, count)
    assert text[lines_only.prefix_start:].split("\n")[0] == "  elseif x > hi then"
    assert text[with_tree.prefix_start:].split("\n")[0] == "  return x"


def test_whole_small_file_and_header_first():
    text = "import os\n\ndef f():\n    return os.sep\n"
    w = fim_window(text, text.index("urn"), "python", 200, 50, count, header="# path: a.py\n# x = 1\n")
    assert w == type(w)("# path: a.py\n# x = 1\nimport os\n\ndef f():\n    ret", "urn os.sep\n", 0, len(text))


def test_header_dropped_when_it_needs_over_half_the_budget():
    text = "x = 1\n"
    w = fim_window(text, 6, "python", 40, 10, count, header="# " + "y" * 100 + "\n")
    assert w.prefix == "x = 1\n"


def test_imports_within_the_window_are_not_repeated():
    text = "import a\nimport b\nx = 1\n"
    w = fim_window(text, len(text), "python", 100, 10, count)
    assert w.prefix == text and w.prefix_start == 0


def test_empty_suffix_budget_and_edges():
    text = "a = 1\nb = 2\n"
    assert fim_window(text, 3, "python", 50, 0, count).suffix == ""
    assert fim_window(text, -4, "python", 50, 50, count).prefix == ""
    w = fim_window(text, 99, "python", 50, 50, count)
    assert (w.prefix, w.suffix, w.suffix_end) == (text, "", len(text))
    assert fim_window("", 0, "rust", 50, 50, count) == type(w)("", "", 0, 0)


def test_minified_single_line_is_cut_mid_line():
    text = "var a=1;" * 20_000
    offset = len(text) // 2
    w = fim_window(text, offset, "javascript", 100, 50, count)
    assert 0 < offset - w.prefix_start <= 300 and count(w.prefix) <= 100
    assert 0 < w.suffix_end - offset <= 150 and count(w.suffix) <= 50


def test_chunk_grid_helpers():
    assert chunk_chars(768) == 576 and chunk_chars(1) == 4
    assert list(range_starts("ab\ncd\ne", 0, 7)) == [0, 3, 6]
    assert list(range_starts("ab\ncd\ne", 1, 6)) == [3]
    assert first_true(0, 100, 90, lambda k: k >= 37) == 37
    assert first_true(0, 100, 3, lambda k: k >= 37) == 37
    assert first_true(0, 100, 50, lambda k: False) is None
    assert first_true(5, 100, 0, lambda k: True) == 5


# -- stability: what the KV cache reuse depends on ---------------------------------------------------

TYPED = ('def helper(obj, names=("a", "b")):\n    """Return members [x] of {obj}."""\n'
         '    result = [getattr(obj, n) for n in names if hasattr(obj, n)]\n'
         '    return {"count": len(result), "items": result}\n\n') * 2
TYPED = TYPED[:200]


def big_python() -> str:
    body = "".join(f"def func_{i}(a, b):\n    '''Add {i}.'''\n    total = a + b + {i}\n    return total\n\n\n"
                   for i in range(60))
    return "import os\nimport sys\n\n\n" + body


def typing_changes(text, offset, language, typed, budget, use_tree):
    """Type `typed` at offset one character at a time; count changes of prefix start, lead and suffix."""
    cache, seen = ParseCache(), {"start": [], "lead": [], "suffix": []}
    for n in range(len(typed) + 1):
        doc = text[:offset] + typed[:n] + text[offset:]
        cursor = offset + n
        tree = cache.get("file:///t", n, doc, language) if use_tree else None
        w = fim_window(doc, cursor, language, budget, budget // 2, count, tree=tree, header="# path: b.py\n")
        assert w.prefix.endswith(doc[w.prefix_start:cursor]) and w.suffix == doc[cursor:w.suffix_end]
        seen["start"].append(w.prefix_start)
        seen["lead"].append(w.prefix[:len(w.prefix) - (cursor - w.prefix_start)])
        seen["suffix"].append(w.suffix)
    return {k: sum(a != b for a, b in zip(v, v[1:])) for k, v in seen.items()}


@pytest.mark.parametrize("use_tree", [False, True])
@pytest.mark.parametrize("budget", [128, 256, 768])
def test_typing_200_characters_rarely_moves_the_window(budget, use_tree):
    text = big_python()
    offset = text.index("def func_30")
    changes = typing_changes(text, offset, "python", TYPED, budget, use_tree)
    assert changes["suffix"] == 0 and changes["lead"] == 0
    # the start jumps by a chunk of a quarter budget (3 characters a token): 200 characters typed
    # overflow it at most 200 / chunk + 1 times, never once a keystroke.
    assert changes["start"] <= 200 // chunk_chars(budget) + 1, changes


@pytest.mark.parametrize("language", ["javascript", "c", "plaintext"])
def test_typing_in_other_languages_rarely_moves_the_window(language):
    text, offset = at_cursor(SAMPLES[language] * 3)
    typed = 'if (x[0] == "}") { y = {a: [1, 2]}; }\n' * 6
    changes = typing_changes(text, offset, language, typed[:200], 64, True)
    assert changes["suffix"] == 0 and changes["lead"] == 0
    assert changes["start"] <= 200 // chunk_chars(64) + 1, changes


# -- large documents -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def five_mb():
    unit = SAMPLES["python"].replace("<CURSOR>", "")
    return unit * (5_000_000 // len(unit) + 1)


@pytest.mark.parametrize("where", [0.5, 0.999])
def test_five_megabyte_document_is_fast(five_mb, where):
    offset = int(len(five_mb) * where)
    started = time.thread_time()  # CPU time of this thread: what the code costs, however busy the machine
    w = fim_window(five_mb, offset, "python", 768, 256, count)
    assert time.thread_time() - started < 1.0
    assert count(w.prefix) <= 768 and count(w.suffix) <= 256 and w.prefix.startswith("import os\nimport sys\n")


def test_five_megabyte_document_with_a_tree_is_fast(five_mb):
    tree = parse(five_mb, "python")
    offset = int(len(five_mb) * 0.75)
    started = time.thread_time()
    w = fim_window(five_mb, offset, "python", 768, 256, count, tree=tree)
    assert time.thread_time() - started < 1.0
    assert w.prefix.endswith(five_mb[w.prefix_start:offset])


# -- properties ---------------------------------------------------------------------------------------

LANGUAGES = ["python", "javascript", "typescriptreact", "rust", "go", "java", "c", "cpp", "lua", "plaintext"]
CODE = st.text(alphabet=" \t\n\r(){}[]:;,.=\"'`#/\\-ab_1é😀\x00", max_size=600)
TEXTS = st.one_of(st.text(max_size=600), CODE, st.binary(max_size=600).map(lambda b: b.decode("latin-1")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, where=st.integers(-10, 700), language=st.sampled_from(LANGUAGES), use_tree=st.booleans(),
       prefix_tokens=st.integers(16, 120), suffix_tokens=st.integers(0, 60), header=st.sampled_from(["", "# h\n"]))
def test_window_is_a_split_of_the_text_within_budget(text, where, language, use_tree, prefix_tokens,
                                                      suffix_tokens, header):
    tree = parse(text, language) if use_tree else None
    w = fim_window(text, where, language, prefix_tokens, suffix_tokens, count, tree=tree, header=header)
    offset = min(max(where, 0), len(text))
    assert 0 <= w.prefix_start <= offset <= w.suffix_end <= len(text)
    assert w.prefix.endswith(text[w.prefix_start:offset]) and w.prefix.startswith(header)
    assert w.suffix == text[offset:w.suffix_end]
    assert count(w.prefix) <= prefix_tokens
    assert w.suffix == "" or count(w.suffix) <= suffix_tokens


@settings(max_examples=150, deadline=None)
@given(text=TEXTS, where=st.integers(0, 600), char=st.characters(blacklist_characters="\n"),
       language=st.sampled_from(LANGUAGES))
def test_typing_a_character_keeps_the_suffix_and_never_moves_the_start_back(text, where, char, language):
    offset = min(where, len(text))
    before = fim_window(text, offset, language, 48, 24, count)
    after = fim_window(text[:offset] + char + text[offset:], offset + 1, language, 48, 24, count)
    assert after.suffix == before.suffix
    assert after.prefix_start >= before.prefix_start


# -- the real tokenizer ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    try:
        from engine.checkpoints.tokenizer import Tokenizer, v3_tokenizer_path
        return Tokenizer(v3_tokenizer_path())
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"v3 tokenizer unavailable: {exc}")


def test_budgets_with_the_real_tokenizer(tokenizer):
    text = big_python()
    offset = text.index("def func_30") + 20
    calls = []

    def counting(s):
        calls.append(len(s))
        return len(tokenizer.encode(s))

    w = fim_window(text, offset, "python", 256, 96, counting, tree=parse(text, "python"),
                   header="# path: util.py\n# def add(a, b):\n#     return a + b\n")
    assert 200 <= len(tokenizer.encode(w.prefix)) <= 256 and 48 <= len(tokenizer.encode(w.suffix)) <= 96
    assert w.prefix.startswith("# path: util.py\n# def add(a, b):\n#     return a + b\nimport os\nimport sys\n")
    assert text[w.prefix_start:].startswith("def func_") and text[w.suffix_end - 1] == "\n"
    assert len(calls) <= 16 and max(calls) <= 4 * 256 * 4  # bounded strings, a handful of calls


def test_prompt_tokens_are_reused_while_typing(tokenizer):
    """The FIM prompts of consecutive keystrokes share all but their last few tokens (the KV cache's gain)."""
    count = lambda s: len(tokenizer.encode(s))  # noqa: E731
    text, cache = big_python(), ParseCache()
    offset = text.index("def func_30")
    lost, previous = [], None
    for n in range(len(TYPED) + 1):
        doc = text[:offset] + TYPED[:n] + text[offset:]
        w = fim_window(doc, offset + n, "python", 768, 256, count, tree=cache.get("file:///t", n, doc, "python"))
        ids = tokenizer.encode_fim(w.prefix, w.suffix)
        if previous is not None:
            common = next((i for i, (a, b) in enumerate(zip(previous, ids)) if a != b), min(len(previous), len(ids)))
            lost.append(len(previous) - common)
        previous = ids
    assert len(lost) == 200 and sum(x > 8 for x in lost) <= 2 and sum(lost) / len(lost) < 4, sorted(lost)[-5:]
